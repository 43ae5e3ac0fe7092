import {api, el, setToken, token} from "/ui/app.js";

const who = document.getElementById("who");
const status = document.getElementById("status");
const table = document.getElementById("rooms");
const create = document.getElementById("create");
const createMessage = document.getElementById("create-message");

// roomURL is the room page's stable address.
export function roomURL(name) {
  return "/rooms/" + encodeURIComponent(name);
}

create.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  createMessage.textContent = "";
  createMessage.className = "";
  const name = document.getElementById("new-room").value.trim();
  const from = document.getElementById("copy-from").value;
  try {
    await api("/api/rooms", {method: "POST", body: from ? {name, from} : {name}});
    location.href = roomURL(name);
  } catch (e) {
    createMessage.className = "error";
    createMessage.textContent = e.status === 409 ? `Room ${name} exists already.` : e.message;
  }
});

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
    el("tr", {"data-room": r.name}, el("td", {}, el("a", {href: roomURL(r.name)}, r.name)), el("td", {}, String(r.frames)),
      el("td", {}, String(r.generation)), el("td", {}, String(r.members)))));
  status.textContent = listing.rooms.length ? `${listing.rooms.length} rooms you can see` :
    (token() ? "No rooms you can see yet." : "No public rooms: log in to see yours.");
  table.hidden = listing.rooms.length === 0;
  const from = document.getElementById("copy-from");
  from.replaceChildren(el("option", {value: ""}, "(empty room)"),
    ...listing.rooms.map((r) => el("option", {value: r.name}, `${r.name} (${r.frames} frames)`)));
  create.hidden = !(me.local_mode || me.user);
}

main().catch((e) => {
  status.textContent = "Error: " + e.message;
  status.className = "error";
});
