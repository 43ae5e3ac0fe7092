// Drives the web UI's login in headless Chromium. Usage:
//   node login.mjs HUB_URL USER PASSWORD ROOM
// Exits 0 when every step behaved, 1 with a message otherwise.
import {chromium} from "playwright-core";

const [hub, user, password, room] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
function check(ok, what) {
  if (!ok) throw new Error(what);
}
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(15000);

  // Anonymous: a login link, and the room is not listed.
  await page.goto(hub + "/rooms");
  await page.waitForSelector("#login");
  check(await page.locator(`tr[data-room="${room}"]`).count() === 0, "an anonymous visitor sees the private room");

  // A wrong password shows the hub's message.
  await page.goto(hub + "/login");
  await page.fill("#username", user);
  await page.fill("#password", "wrong-" + password);
  await page.click("button[type=submit]");
  await page.waitForSelector("#message.error");
  check((await page.textContent("#message")).includes("wrong username or password"), "no error for a wrong password");

  // The right one leads to the rooms the user can see.
  await page.fill("#password", password);
  await page.click("button[type=submit]");
  await page.waitForSelector("#user");
  check((await page.textContent("#user")) === user, "not signed in as " + user);
  await page.waitForSelector(`tr[data-room="${room}"]`);
  check((await page.evaluate(() => localStorage.getItem("framesync.token") || "")).startsWith("fs1."), "no token kept");

  // Logging out forgets the token and revokes it.
  const token = await page.evaluate(() => localStorage.getItem("framesync.token"));
  await page.click("#logout");
  await page.waitForURL(hub + "/login");
  check(await page.evaluate(() => localStorage.getItem("framesync.token")) === null, "token kept after logout");
  const resp = await fetch(hub + "/api/rooms/" + room, {headers: {Authorization: "Bearer " + token}});
  check(resp.status === 401, "the token still works after logout: " + resp.status);
  console.log("ok");
} catch (e) {
  console.error(e.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}
