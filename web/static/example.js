// The example page of docs/web-client.md (keep the two the same): join a
// room, step through its frames together with everyone in it, bookmark
// frames. Served at /ui/example.html?room=<name>.
import {connect} from "/ui/dist/framesync.js";

const $ = (id) => document.getElementById(id);
const roomName = new URLSearchParams(location.search).get("room") || "demo";
$("room").textContent = roomName;

try {
  const client = await connect(); // this hub; the login token from localStorage
  $("status").textContent = client.status;
  client.on("status", (s) => ($("status").textContent = s));
  const room = await client.join(roomName);

  // The frame count follows the trajectory document.
  const showLength = () => {
    $("length").textContent = room.length;
    $("step").max = Math.max(0, room.length - 1);
  };
  showLength();
  room.on("trajectory", showLength);

  // The shared step: the slider sets it for everyone; a step set by someone
  // else moves the slider. Only the fields that differ are fetched.
  let shown = -1;
  async function show(step) {
    $("step").value = step;
    $("step-value").textContent = step;
    if (step >= room.length || step === shown) return;
    shown = step;
    try {
      const f = await room.frame(step);
      if (shown !== step) return; // the user moved on meanwhile
      const [x, y, z] = f.positions;
      $("frame-info").textContent = `frame ${f.index}: ${f.numbers.length} atoms, first at (${x}, ${y}, ${z})`;
    } catch (e) {
      if (shown === step) shown = -1; // offline and not cached: try again later
      $("frame-info").textContent = `frame ${step}: ${e.code}: ${e.message}`;
    }
  }
  $("step").addEventListener("input", () => room.setStep(Number($("step").value)));
  room.on("state", (diffs) => {
    for (const d of diffs) {
      if (d.id === "step") show(d.new);
      if (d.id === "bookmarks") showBookmarks();
    }
  });
  show(room.state.step || 0);

  // Bookmarks: frame ID -> label, in the state document.
  function showBookmarks() {
    const index = new Map(room.entries().map((e, i) => [e.id, i]));
    $("bookmarks").replaceChildren(...Object.entries(room.state.bookmarks || {}).map(([id, label]) => {
      const li = document.createElement("li");
      li.textContent = `frame ${index.get(id) ?? "?"}: ${label}`;
      return li;
    }));
  }
  showBookmarks();
  $("bookmark").addEventListener("click", () => {
    const e = room.entry(Number($("step").value));
    if (e) room.setBookmark(e.id, `bookmarked at ${new Date().toLocaleTimeString()}`);
  });

  // Who else is here.
  const showMembers = (list) => $("members").replaceChildren(...list.map((m) => {
    const li = document.createElement("li");
    li.textContent = (m.name || "anonymous") + (m.client === client.id ? " (you)" : "");
    return li;
  }));
  showMembers(room.members);
  room.on("members", showMembers);
} catch (e) {
  $("error").textContent = `${e.code || "error"}: ${e.message}`;
}
