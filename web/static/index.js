import {api, el, setToken, token} from "/ui/app.js";

const who = document.getElementById("who");
const status = document.getElementById("status");
const table = document.getElementById("rooms");

async function logout() {
  try {
    await api("/api/auth/logout", {method: "POST"});
  } catch (e) {
    // The token may be expired already; forget it either way.
  }
  setToken("");
  location.href = "/login";
}

async function main() {
  let me;
  try {
    me = await api("/api/auth/me");
  } catch (e) {
    if (e.status === 401) {
      setToken("");
      location.href = "/login";
      return;
    }
    throw e;
  }
  if (me.local_mode) {
    who.textContent = "local mode: everyone may do everything";
  } else if (me.user) {
    const out = el("button", {id: "logout"}, "Log out");
    out.addEventListener("click", logout);
    who.replaceChildren("signed in as ", el("strong", {id: "user"}, me.user), " ", out);
  } else {
    who.replaceChildren(el("a", {href: "/login", id: "login"}, "Log in"));
  }
  const listing = await api("/api/rooms");
  const body = table.querySelector("tbody");
  body.replaceChildren(...listing.rooms.map((r) =>
    el("tr", {"data-room": r.name}, el("td", {}, r.name), el("td", {}, String(r.frames)),
      el("td", {}, String(r.generation)), el("td", {}, String(r.members)))));
  status.textContent = listing.rooms.length ? `${listing.rooms.length} rooms you can see` :
    (token() ? "No rooms you can see yet." : "No public rooms: log in to see yours.");
  table.hidden = listing.rooms.length === 0;
}

main().catch((e) => {
  status.textContent = "Error: " + e.message;
  status.className = "error";
});
