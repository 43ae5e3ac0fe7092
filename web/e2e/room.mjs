// Drives the room page (/rooms/<name>: web/static/room.html with
// web/src/app.js) in headless Chromium against a real hub, with a Go client
// run by web/room_test.go on the other side. Usage:
//   node room.mjs HUB_URL ROOM SCENARIO ARTIFACT_DIR
// Scenarios: view, follow, edit, upload, offline, select, access, perf (see
// the Go tests of the same names). Steps that need the Go side print one line
//   go <command> <JSON arguments>
// and wait for "ok" (or "fail <why>") on stdin. Lines starting with "# " are
// logged by the Go test; "perf <json>" carries measurements. Prints "PASS"
// and exits 0 when every check held; exits 1 with the reason otherwise.

// WebGL runs on SwiftShader (software): see launch in harness.mjs.
import {check, goSide, launch, step} from "./harness.mjs";
import {mkdirSync} from "node:fs";
import {join} from "node:path";

const [hub, roomName, scenario, artifacts] = process.argv.slice(2);
const TIMEOUT = 20000;
mkdirSync(artifacts, {recursive: true});

// ---- pages

const browser = await launch();
const pageErrors = [];

// openRoom opens the room page in a new browser context (its own
// localStorage, so its own client) as user name; token: a login token the
// page starts with (stored once: what the pages do with it afterwards
// stays).
async function openRoom(name, {wantFrame = true, token = ""} = {}) {
  const context = await browser.newContext({viewport: {width: 1280, height: 800}});
  await context.addInitScript(([n, t]) => {
    localStorage.setItem("framesync.name", n);
    if (t && !sessionStorage.getItem("test.token-set")) {
      localStorage.setItem("framesync.token", t);
      sessionStorage.setItem("test.token-set", "1");
    }
  }, [name, token]);
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !m.location().url.endsWith("/favicon.ico")) console.log(`# ${name} console.error: ${m.text()}`);
  });
  await page.goto(`${hub}/rooms/${encodeURIComponent(roomName)}`);
  await page.waitForFunction(() => window.framesync && window.framesync.room);
  if (wantFrame) await waitShown(page);
  return page;
}

// waitShown waits until frame index (default: the page's step) is on screen
// and rendered.
async function waitShown(page, index) {
  await page.waitForFunction((i) => {
    const f = window.framesync;
    if (!f) return false;
    const want = i === undefined ? f.step : i;
    return f.shown && f.shown.index === want && f.viewer.renders > 0 && !f.viewer.pending;
  }, index);
}

const counter = (page) => page.textContent("#frame-counter");

// waitControl waits until nobody presents to page and its player is back.
async function waitControl(page, timeout = 5000) {
  await page.waitForFunction(() => document.getElementById("presenter-badge").hidden && !document.getElementById("slider").disabled, null, {timeout});
}

async function waitCounter(page, text, timeout = TIMEOUT) {
  await page.waitForFunction((t) => document.getElementById("frame-counter").textContent === t, text, {timeout});
}

// pixels takes a screenshot of the 3D view and counts, in the PNG (decoded
// by the browser), the pixels that differ from the background: atoms and
// cell lines. Returns {fraction, colours: distinct coarse colours}.
async function pixels(page, file) {
  const png = await page.locator("#view").screenshot({path: file});
  return page.evaluate(async (b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bmp = await createImageBitmap(new Blob([bytes], {type: "image/png"}));
    const c = new OffscreenCanvas(bmp.width, bmp.height);
    const g = c.getContext("2d");
    g.drawImage(bmp, 0, 0);
    const d = g.getImageData(0, 0, bmp.width, bmp.height).data;
    const bg = [0x1d, 0x23, 0x2e];
    let differ = 0;
    const colours = new Set();
    for (let i = 0; i < d.length; i += 4) {
      const dist = Math.abs(d[i] - bg[0]) + Math.abs(d[i + 1] - bg[1]) + Math.abs(d[i + 2] - bg[2]);
      if (dist > 40) {
        differ++;
        colours.add(`${d[i] >> 5},${d[i + 1] >> 5},${d[i + 2] >> 5}`);
      }
    }
    return {fraction: differ / (d.length / 4), colours: colours.size, width: bmp.width, height: bmp.height};
  }, png.toString("base64"));
}

async function checkAtomsDrawn(page, file) {
  const px = await pixels(page, file);
  step(`screenshot ${file}: ${(100 * px.fraction).toFixed(1)}% of ${px.width}x${px.height} pixels drawn, ${px.colours} colours`);
  check(px.fraction > 0.02, `the 3D view shows almost nothing: ${(100 * px.fraction).toFixed(2)}% of its pixels differ from the background`);
  check(px.colours >= 3, `the 3D view has ${px.colours} colours: no elements told apart`);
  return px;
}

// ---- scenarios

const scenarios = {
  // (1) A room with a 3-frame trajectory: atoms on the canvas, 1/3, stepping.
  async view() {
    const page = await openRoom("ann");
    check(await counter(page) === "1/3", `counter reads ${await counter(page)}, want 1/3`);
    const info = await page.evaluate(() => window.framesync.viewer.info());
    step(`viewer: ${JSON.stringify(info)}`);
    check(info.atoms > 0 && info.cell, "no atoms or no cell drawn");
    await checkAtomsDrawn(page, join(artifacts, "view-frame1.png"));
    step("next frame: only positions change, fetched alone");
    const before = await page.evaluate(() => window.framesync.room.frameFetches);
    await page.click("#next");
    await waitCounter(page, "2/3");
    await waitShown(page, 1);
    const fetches = await page.evaluate(() => window.framesync.room.frameFetches);
    step(`frame data requests for the step: ${fetches - before}`);
    check(fetches - before === 1, `stepping to a frame whose positions alone differ made ${fetches - before} frame requests`);
    await page.click("#last");
    await waitCounter(page, "3/3");
    await waitShown(page, 2);
    await page.keyboard.press("Home");
    await waitCounter(page, "1/3");
    await waitShown(page, 0);

    step("bookmark frame 1, shown in the list");
    await page.fill("#bookmark-label", "start");
    await page.click("#bookmark-form button");
    await page.waitForSelector("#bookmarks li[data-frame] >> text=start");
    await goSide("expect-bookmark", "start");

    step("select an atom; the picture for the README");
    const hit = await page.evaluate(() => { // the visible atom nearest the camera
      const v = window.framesync.viewer;
      const c = v.camera.position;
      let best = null;
      for (let i = 0; i < v.positions.length / 3; i++) {
        const p = v.project(i);
        const d = Math.hypot(v.positions[3 * i] - c.x, v.positions[3 * i + 1] - c.y, v.positions[3 * i + 2] - c.z);
        if (v.pick(p.x, p.y) === i && (!best || d < best.d)) best = {...p, d};
      }
      return best;
    });
    await page.mouse.click(hit.x, hit.y);
    await page.waitForFunction(() => window.framesync.viewer.info().selected === 1 && !window.framesync.viewer.pending);
    await page.screenshot({path: join(artifacts, "room-page.png")});

    step("a frame without atomic numbers: drawn as element X, and the page says so");
    await page.evaluate(() => {
      const r = window.framesync.room;
      window.realFrame = r.frame;
      r.frame = async (...args) => ({...(await window.realFrame.apply(r, args)), numbers: null});
    });
    await page.click("#next");
    await waitShown(page, 1);
    const noNumbers = await page.evaluate(() => ({info: window.framesync.viewer.info(), message: document.getElementById("stage-message").textContent,
      hidden: document.getElementById("stage-message").hidden, atoms: document.getElementById("view").dataset.atoms}));
    step(`numberless frame: ${noNumbers.info.atoms} atoms drawn, message "${noNumbers.message}"`);
    check(noNumbers.info.atoms === 512 && noNumbers.atoms === "512", `a frame without numbers draws ${noNumbers.info.atoms} atoms (canvas says ${noNumbers.atoms}), want 512`);
    check(!noNumbers.hidden && noNumbers.message.includes("no atomic numbers"), `no message about the missing numbers: ${noNumbers.message}`);
    await page.evaluate(() => {
      window.framesync.room.frame = window.realFrame;
    });
    await page.click("#prev");
    await waitShown(page, 0);
    await page.waitForSelector("#stage-message", {state: "hidden"});

    step("impostor buffers that grow free the ones they replace");
    const live = await page.evaluate(() => {
      const canvas = document.createElement("canvas");
      canvas.style.cssText = "position: fixed; left: 0; top: 0; width: 200px; height: 200px";
      document.body.append(canvas);
      const v = new window.framesync.viewer.constructor(canvas);
      const gl = v.renderer.getContext();
      let buffers = 0; // WebGL buffers alive
      const create = gl.createBuffer.bind(gl);
      const remove = gl.deleteBuffer.bind(gl);
      gl.createBuffer = () => (buffers++, create());
      gl.deleteBuffer = (b) => (b && buffers--, remove(b));
      const n = 6000; // past impostorAbove
      const pos = new Float64Array(3 * n);
      for (let i = 0; i < n; i++) pos.set([2 * (i % 20), 2 * ((i / 20 | 0) % 20), 2 * (i / 400 | 0)], 3 * i); // a grid
      v.show({numbers: new Int32Array(n).fill(8), positions: pos, cell: null});
      v.render();
      const out = [v.info().impostors];
      for (const k of [20, 200, 2000]) { // the halo's buffers grow each time
        v.setSelection(Array.from({length: k}, (_, i) => i));
        v.render();
        out.push(buffers);
      }
      v.dispose();
      canvas.remove();
      return out;
    });
    step(`impostors ${live[0]}; WebGL buffers alive after selecting 20, 200, 2000 atoms: ${live.slice(1)}`);
    check(live[0], "6,000 atoms are not drawn as impostors");
    check(live[1] === live[2] && live[2] === live[3], `WebGL buffers leak as the impostor halo grows: ${live.slice(1)}`);

    step("the room list links here; a copy of the room made from it opens at its own URL");
    await page.goto(hub + "/rooms");
    await page.click(`tr[data-room="${roomName}"] a`);
    await page.waitForURL(`${hub}/rooms/${roomName}`);
    await waitShown(page);
    await page.goto(hub + "/rooms");
    await page.waitForSelector("#create:not([hidden])");
    await page.screenshot({path: join(artifacts, "rooms.png")});
    await page.fill("#new-room", "copy");
    await page.selectOption("#copy-from", roomName);
    await page.click("#create button[type=submit]");
    await page.waitForURL(`${hub}/rooms/copy`);
    await waitShown(page);
    check(await counter(page) === "1/3", `the copy reads ${await counter(page)}`);
    check(await page.textContent("#room-name") === "copy", "the page does not name the copy");
    step("a room that does not exist offers to create it");
    await page.goto(hub + "/rooms/new-one");
    await page.click("#create-room");
    await page.waitForFunction(() => window.framesync && window.framesync.room && window.framesync.room.name === "new-one");
    check(await counter(page) === "0/0", `a new room reads ${await counter(page)}`);
    await page.waitForSelector("#stage-message:not([hidden])");

    step("an address whose room name does not decode: an error, not a blank page");
    await page.goto(hub + "/rooms/%E0%A4");
    await page.waitForSelector("#stage-message:not([hidden])");
    const bad = await page.textContent("#stage-message");
    step(`message: ${bad}`);
    check(bad.includes("names no room"), `a malformed room address shows: ${bad}`);
  },

  // (2) Scrubbing in one page presents: the other follows within a second
  // and shows who presents; letting go gives control back.
  async follow() {
    const a = await openRoom("ann");
    const b = await openRoom("bob");
    const n = await a.evaluate(() => window.framesync.room.length);
    const box = await a.locator("#slider").boundingBox();
    const y = box.y + box.height / 2;
    await a.mouse.move(box.x + 4, y);
    await a.mouse.down();
    for (let k = 1; k <= 10; k++) await a.mouse.move(box.x + 4 + (box.width - 8) * k / 10, y);
    await waitCounter(a, `${n}/${n}`);
    const t0 = Date.now();
    await waitCounter(b, `${n}/${n}`, 1000);
    step(`bob followed to ${n}/${n} within ${Date.now() - t0} ms of ann's last move`);
    await waitShown(b, n - 1);
    await b.waitForFunction(() => !document.getElementById("presenter-badge").hidden);
    const badge = await b.textContent("#presenter-badge");
    step(`bob's badge: ${badge}`);
    check(badge.includes("ann"), `bob's presenter badge does not name ann: ${badge}`);
    check(await b.isDisabled("#slider"), "bob's slider stays enabled while ann presents");
    check((await a.textContent("#presenter-badge")).includes("You"), "ann's badge does not say she presents");
    await b.screenshot({path: join(artifacts, "follow-bob.png")});

    step("a move back while still holding: bob follows again");
    await a.mouse.move(box.x + 4 + (box.width - 8) / 2, y);
    const mid = await counter(a);
    await waitCounter(b, mid, 1000);

    step("ann's drag is cancelled (as a touch drag ends): control returns to bob");
    await a.dispatchEvent("#slider", "pointercancel"); // no pointerup
    await waitControl(b); // within 5 s: the 10 s idle limit is not what released it
    await a.waitForFunction(() => document.getElementById("presenter-badge").hidden);
    await a.mouse.up();
    const [ca, cb] = [await counter(a), await counter(b)];
    check(ca === cb, `after presenting ann shows ${ca}, bob ${cb}`);
    await b.click("#first");
    await waitCounter(b, `1/${n}`);
    await waitShown(b, 0);
    await goSide("expect-step", Number(ca.split("/")[0]) - 1); // the hub wrote the presenter's last step
    check(await counter(a) === ca, "bob's local step moved ann"); // after a round trip to the hub

    step("ann drags again, then her window loses focus: control returns to bob");
    await a.mouse.move(box.x + 4, y);
    await a.mouse.down();
    await a.mouse.move(box.x + 4 + (box.width - 8) / 3, y);
    await waitCounter(b, await counter(a));
    await b.waitForFunction(() => !document.getElementById("presenter-badge").hidden);
    await a.evaluate(() => window.dispatchEvent(new Event("blur")));
    await waitControl(b);
    await a.mouse.up();

    step("a press on the slider whose release never comes: presenting ends 10 s after the last input");
    await a.dispatchEvent("#slider", "pointerdown");
    await b.waitForFunction(() => !document.getElementById("presenter-badge").hidden);
    const t1 = Date.now();
    await waitControl(b, 20000);
    step(`bob regained control ${Date.now() - t1} ms after ann's press`);
    check(Date.now() - t1 > 8000, "the held press stopped presenting before the idle limit");

    step("ann presents a frame bob does not have yet; the frames arrive after it");
    await b.click("#first");
    await waitCounter(b, `1/${n}`);
    await a.evaluate(async (s) => {
      await window.framesync.room.present();
      window.framesync.room.sendFrame(s);
    }, n + 1);
    await waitCounter(b, `${n}/${n}`); // clamped: frame n+2 is not there yet
    await goSide("append", 2);
    await waitCounter(b, `${n + 2}/${n + 2}`, 5000);
    await waitShown(b, n + 1);
    await a.evaluate(() => window.framesync.room.unpresent());
    await waitControl(b);

    step("bob leaves: ann forgets his presence");
    const bobID = await b.evaluate(() => window.framesync.client.id);
    await a.waitForFunction((id) => window.framesync.presence.has(id), bobID);
    await b.context().close();
    await a.waitForFunction((id) => !window.framesync.presence.has(id) && !document.querySelector(`#members li[data-client="${id}"]`), bobID);
  },

  // (3) A Go client edits the frame the page shows: the page updates.
  async edit() {
    const page = await openRoom("ann");
    await page.click("#next");
    await waitShown(page, 1);
    const before = await page.evaluate(() => ({version: window.framesync.shown.version, x: window.framesync.viewer.positions[0]}));
    await goSide("edit", 1, 3.0);
    await page.waitForFunction((v) => window.framesync.shown.version > v && !window.framesync.viewer.pending, before.version);
    const after = await page.evaluate(() => ({version: window.framesync.shown.version, x: window.framesync.viewer.positions[0], index: window.framesync.shown.index}));
    step(`frame 2: version ${before.version} -> ${after.version}, x0 ${before.x} -> ${after.x}`);
    check(after.index === 1 && Math.abs(after.x - before.x - 3.0) < 1e-9, "the page does not show the edited positions");
    check(await counter(page) === "2/3", "the counter moved");
    await checkAtomsDrawn(page, join(artifacts, "edit-after.png"));
  },

  // (4) Dropping an extxyz file imports it: progress, then the frames. A
  // malformed file fails with an error naming the line; the room stays.
  async upload() {
    const a = await openRoom("ann", {wantFrame: false});
    const b = await openRoom("bob", {wantFrame: false});
    for (const p of [a, b]) {
      await p.evaluate(() => {
        window.seenProgress = false;
        new MutationObserver(() => {
          if (document.querySelector("#jobs progress")) window.seenProgress = true;
        }).observe(document.getElementById("jobs"), {childList: true, subtree: true});
      });
    }
    check(await counter(a) === "0/0", `an empty room reads ${await counter(a)}`);
    const frames = 400;
    const text = extxyz(frames, 200);
    step(`dropping good.extxyz: ${frames} frames, ${(text.length / 1e6).toFixed(1)} MB`);
    await drop(a, "good.extxyz", text);
    await a.waitForSelector("#jobs li[data-state=done]", {timeout: 60000});
    await b.waitForSelector("#jobs li[data-state=done]", {timeout: 60000});
    await waitCounter(a, `1/${frames}`);
    await waitCounter(b, `1/${frames}`);
    await waitShown(a, 0);
    await waitShown(b, 0);
    const seen = [await a.evaluate(() => window.seenProgress), await b.evaluate(() => window.seenProgress)];
    step(`progress bar seen: uploader ${seen[0]}, other member ${seen[1]}`);
    check(seen[0], "the uploader never saw a progress bar");
    check(seen[1], "the other member never saw a progress bar");
    await checkAtomsDrawn(b, join(artifacts, "upload-done.png"));
    await a.screenshot({path: join(artifacts, "upload-done-page.png")});

    step("a malformed file");
    const bad = extxyz(3, 4).split("\n");
    bad[8] = "O 1.0 not-a-number 2.0"; // an atom line of the second frame
    await drop(a, "bad.xyz", bad.join("\n"));
    await a.waitForSelector("#jobs li[data-state=failed] .job-error");
    const err = await a.textContent("#jobs li[data-state=failed] .job-error");
    step(`error shown: ${err}`);
    check(/line 9\b/.test(err), `the error does not name line 9: ${err}`);
    await b.waitForSelector("#jobs li[data-state=failed] .job-error");
    check(await counter(a) === `1/${frames}`, `the room changed: ${await counter(a)}`);
    await goSide("expect-length", frames);
    await a.screenshot({path: join(artifacts, "upload-failed-page.png")});

    step("60 more imports (all malformed): the list keeps the newest 50 or so");
    await drop(a, Array.from({length: 60}, (_, k) => [`bad-${k}.xyz`, bad.join("\n")]));
    await a.waitForFunction(() => document.querySelector("#jobs li[data-job]") &&
      !document.querySelector("#jobs li[data-state=running], #jobs li[data-state=queued]"), null, {timeout: 60000});
    const listed = await a.evaluate(() => ({items: document.querySelectorAll("#jobs li[data-job]").length, jobs: window.framesync.jobs.size,
      newest: document.querySelector("#jobs li[data-job] strong").textContent}));
    step(`jobs listed: ${listed.items} (the page keeps ${listed.jobs}), newest ${listed.newest}`);
    // At most 50; a few fewer when pruning ran while an upload's own entry
    // and the hub's job for it were both listed (the first goes when the
    // upload returns).
    check(listed.items <= 50 && listed.items >= 40 && listed.jobs === listed.items, `the page lists ${listed.items} jobs and keeps ${listed.jobs}, want 40 to 50`);
  },

  // (7) Access ends while the page is open: a member whose access is
  // withdrawn, a login revoked (logged out elsewhere), a room deleted. Each
  // page says so and stays; the signed-out one leads to the login and back.
  async access() {
    const token = async (user) => {
      const r = await fetch(`${hub}/api/auth/login`, {method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({username: user, password: `${user}-password`})});
      check(r.ok, `login ${user}: ${r.status}`);
      return (await r.json()).token;
    };
    const tokens = {ann: await token("ann"), bob: await token("bob")};
    const a = await openRoom("ann", {token: tokens.ann});
    const b = await openRoom("bob", {token: tokens.bob});

    step("bob's access is withdrawn");
    await goSide("set-role", "bob", "");
    await b.waitForSelector("#stage-message[data-reason=evicted]:not([hidden])");
    step(`bob sees: ${await b.textContent("#stage-message")}`);
    await b.click("#next"); // a frame bob can no longer fetch: the notice stays
    await b.waitForFunction(() => window.framesync.step === 1 && document.getElementById("loading").hidden);
    const still = await b.textContent("#stage-message");
    check(still.includes("withdrawn") && await b.getAttribute("#stage-message", "data-reason") === "evicted", `bob's notice went: ${still}`);
    await b.screenshot({path: join(artifacts, "evicted.png")});

    step("ann's login is revoked (she logged out elsewhere)");
    const out = await fetch(`${hub}/api/auth/logout`, {method: "POST", headers: {Authorization: `Bearer ${tokens.ann}`}});
    check(out.ok, `logout: ${out.status}`);
    await a.waitForSelector("#stage-message[data-reason=unauthorized]:not([hidden])");
    await a.waitForSelector("#connection[data-state=signed-out]");
    step(`ann sees: ${await a.textContent("#stage-message")} / ${await a.textContent("#connection")}`);
    await a.screenshot({path: join(artifacts, "signed-out.png")});
    const href = await a.getAttribute("#login-again", "href");
    check(href === `/login?next=${encodeURIComponent(`/rooms/${encodeURIComponent(roomName)}`)}`, `the login link is ${href}`);
    await a.click("#login-again");
    await a.waitForURL((u) => u.pathname === "/login");
    await a.fill("#username", "ann");
    await a.fill("#password", "ann-password");
    await a.click("button[type=submit]");
    await a.waitForURL(`${hub}/rooms/${encodeURIComponent(roomName)}`);
    await a.waitForFunction(() => window.framesync && window.framesync.room);
    await waitShown(a);
    await a.waitForSelector("#connection[data-state=online]");
    check(await a.isHidden("#stage-message"), `after logging in again ann sees: ${await a.textContent("#stage-message")}`);

    step("the room is deleted");
    await goSide("delete-room");
    await a.waitForSelector("#stage-message[data-reason=deleted]:not([hidden])");
    step(`ann sees: ${await a.textContent("#stage-message")}`);
  },

  // (5) The hub stops: the page says offline and keeps the last frame;
  // cached frames still step. The hub returns: the page catches up.
  async offline() {
    const page = await openRoom("ann");
    for (const [button, i] of [["#next", 1], ["#first", 0]]) { // frames 1 and 2 into the cache
      await page.click(button);
      await waitShown(page, i);
    }
    await goSide("stop");
    await page.waitForSelector("#connection[data-state=offline]");
    step(`connection: ${await page.textContent("#connection")}`);
    await checkAtomsDrawn(page, join(artifacts, "offline.png"));
    check(await counter(page) === "1/3", `counter offline: ${await counter(page)}`);
    await page.click("#next"); // a cached frame, offline
    await waitShown(page, 1);
    await page.screenshot({path: join(artifacts, "offline-page.png")});
    await goSide("resume");
    await page.waitForSelector("#connection[data-state=online]", {timeout: 30000});
    await goSide("append", 1);
    await waitCounter(page, "2/4", 30000);
    await page.click("#last");
    await waitShown(page, 3);
    await checkAtomsDrawn(page, join(artifacts, "reconnected.png"));
  },

  // (6) Selecting atoms in one page shows the selection in the other.
  async select() {
    const a = await openRoom("ann");
    const b = await openRoom("bob");
    const click = async (page, i, shift = false) => {
      const p = await page.evaluate((k) => window.framesync.viewer.project(k), i);
      if (shift) await page.keyboard.down("Shift");
      await page.mouse.click(p.x, p.y);
      if (shift) await page.keyboard.up("Shift");
    };
    // Atoms that a click at their centre hits (not hidden behind others).
    const order = await a.evaluate(() => {
      const v = window.framesync.viewer;
      const out = [];
      for (let i = 0; i < v.positions.length / 3 && out.length < 5; i++) {
        const p = v.project(i);
        if (v.pick(p.x, p.y) === i) out.push(i);
      }
      return out;
    });
    check(order.length >= 2, `no two atoms to click: ${order}`);
    await click(a, order[0]);
    await a.waitForFunction(() => window.framesync.viewer.selection.length === 1);
    const first = await a.evaluate(() => window.framesync.viewer.selection.slice());
    step(`ann selected ${first}`);
    await b.waitForFunction((s) => window.framesync.viewer.selection.join(",") === s, first.join(","), {timeout: 5000});
    let other = order.find((i) => i !== first[0]);
    await click(a, other, true);
    await a.waitForFunction(() => window.framesync.viewer.selection.length === 2);
    const two = await a.evaluate(() => window.framesync.viewer.selection.slice());
    step(`ann shift-clicked: ${two}`);
    await b.waitForFunction((s) => window.framesync.viewer.selection.join(",") === s && window.framesync.viewer.info().selected === 2 && !window.framesync.viewer.pending, two.join(","), {timeout: 5000});
    const text = await b.textContent("#selection");
    step(`bob's panel: ${text}`);
    check(text.startsWith("2 atoms"), `bob's selection panel: ${text}`);
    await b.screenshot({path: join(artifacts, "select-bob.png")});
    await goSide("expect-selection", two);
    step("bob clears it: ann's clears too");
    await b.click("#clear-selection");
    await a.waitForFunction(() => window.framesync.viewer.selection.length === 0, null, {timeout: 5000});
  },

  // Rendering 100,000 atoms: time per rendered frame while the camera turns,
  // in software WebGL (SwiftShader), and the time to step to a frame whose
  // positions alone changed.
  async perf() {
    const t0 = Date.now();
    const page = await openRoom("ann");
    const firstShown = Date.now() - t0;
    const info = await page.evaluate(() => window.framesync.viewer.info());
    const renderer = await page.evaluate(() => {
      const gl = window.framesync.viewer.renderer.getContext();
      const d = gl.getExtension("WEBGL_debug_renderer_info");
      return d ? gl.getParameter(d.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
    });
    const ticks = 60;
    const ms = await page.evaluate(async (ticks) => {
      const v = window.framesync.viewer;
      const gl = v.renderer.getContext();
      const px = new Uint8Array(4);
      const frame = () => new Promise((r) => requestAnimationFrame(r));
      await frame();
      const t = performance.now();
      for (let k = 0; k < ticks; k++) {
        await frame();
        const target = v.controls.target;
        v.camera.position.sub(target).applyAxisAngle(v.camera.up, 0.02).add(target); // turn around the atoms
        v.camera.lookAt(target);
        v.render();
        gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px); // wait for the frame to be drawn
      }
      return (performance.now() - t) / ticks;
    }, ticks);
    const s0 = Date.now();
    await page.click("#next");
    await waitShown(page, 1);
    const stepMs = Date.now() - s0;
    await checkAtomsDrawn(page, join(artifacts, "perf-100k.png"));
    console.log(`perf ${JSON.stringify({atoms: info.atoms, impostors: info.impostors, triangles: info.triangles, renderer, msPerFrame: +ms.toFixed(1), ticks, firstShownMs: firstShown, stepMs})}`);
  },
};

// extxyz writes frames of n atoms (O and H) as extended xyz.
function extxyz(frames, n) {
  const out = [];
  for (let f = 0; f < frames; f++) {
    out.push(String(n), `Lattice="12 0 0 0 12 0 0 0 12" Properties=species:S:1:pos:R:3 energy=${(-1.5 * f).toFixed(3)} pbc="T T T"`);
    for (let i = 0; i < n; i++) {
      const s = Math.cbrt(n) | 0 || 1;
      const x = (i % s) * 12 / s + 0.1 * Math.sin(f + i);
      const y = (Math.floor(i / s) % s) * 12 / s;
      const z = Math.floor(i / s / s) * 12 / s;
      out.push(`${i % 3 ? "H" : "O"} ${x.toFixed(6)} ${y.toFixed(6)} ${z.toFixed(6)}`);
    }
  }
  return out.join("\n") + "\n";
}

// drop drops a file with text onto the page, as a user dragging it in;
// files: [[name, text], …] drops several at once.
async function drop(page, name, text) {
  const files = Array.isArray(name) ? name : [[name, text]];
  await page.evaluate((files) => {
    const dt = new DataTransfer();
    for (const [name, text] of files) dt.items.add(new File([text], name, {type: "chemical/x-xyz"}));
    for (const type of ["dragenter", "dragover", "drop"]) {
      document.querySelector(".view-wrap").dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
    }
  }, files);
}

try {
  const run = scenarios[scenario];
  if (!run) throw new Error(`no scenario ${scenario}`);
  await run();
  check(pageErrors.length === 0, `errors in the page: ${pageErrors.join("; ")}`);
  console.log("PASS");
} catch (e) {
  console.log(`# FAIL ${e.stack || e.message}`);
  for (const c of browser.contexts()) {
    for (const [i, p] of c.pages().entries()) {
      await p.screenshot({path: join(artifacts, `failure-${browser.contexts().indexOf(c)}-${i}.png`)}).catch(() => {});
    }
  }
  if (pageErrors.length) console.log(`# page errors: ${pageErrors.join("; ")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  process.exit();
}
