// The room page (/rooms/<name>): the current frame in 3D, a player, and a
// side panel with members, selection, bookmarks, locks and imports.
//
// Who drives the step:
//   - Dragging the slider (or moving it with the keyboard) presents: the page
//     takes the room's presenter token (room.present(), renewed every 2 s while
//     scrubbing) and sends each step (room.sendFrame); every other page follows
//     and shows a badge naming the presenter, with its own player disabled.
//     Letting go (pointer up, then 1.2 s without input) gives the token back.
//   - When nobody presents, each page steps on its own (buttons, keys, play,
//     bookmarks). Local steps are not written to the state document: that
//     would add an Automerge change per played frame and drag every other page
//     along. The hub writes the presenter's last step to the state document
//     when presenting ends, so state.step is "where the room last looked",
//     and a page opening the room starts there.
//   - Members see each other's local step in the member list (presence).
//
// Frames load without blocking: at most one fetch is in flight; the newest
// step asked for is fetched next and steps skipped meanwhile are never
// fetched. A finished fetch is shown even if the user moved on, so scrubbing
// shows progress; the page never waits on a fetch. The client fetches only
// the fields that changed and caches frames, so steps already seen also work
// offline.
import {connect} from "./framesync.js";
import {Viewer} from "./viewer.js";
import {el, renderBookmarks, renderJobs, renderLocks, renderMembers, renderSelection} from "./ui-panel.js";

const fields = ["numbers", "positions", "cell", "pbc"];
const renewEvery = 2000; // ms: the presenter token expires 5 s after the last renewal
const releaseAfter = 1200; // ms without scrubbing before the token is given back
const playInterval = 50; // ms: at most 20 frames per second when playing

const $ = (id) => document.getElementById(id);
const ui = {
  name: $("room-name"), badge: $("presenter-badge"), conn: $("connection"), who: $("who"),
  canvas: $("view"), message: $("stage-message"), drop: $("drop-hint"),
  first: $("first"), prev: $("prev"), play: $("play"), next: $("next"), last: $("last"),
  slider: $("slider"), counter: $("frame-counter"), loading: $("loading"),
  members: $("members"), selection: $("selection"), clearSelection: $("clear-selection"),
  bookmarks: $("bookmarks"), bookmarkForm: $("bookmark-form"), bookmarkLabel: $("bookmark-label"),
  locks: $("locks"), jobs: $("jobs"), file: $("file"),
};

const roomName = decodeURIComponent(location.pathname.replace(/^\/rooms\//, "").replace(/\/$/, ""));
document.title = `${roomName} · framesync`;
ui.name.textContent = roomName;

let client, room, viewer;
let length = 0;
let step = 0; // the step this page wants to show
let shown = null; // {index, id, version, numbers} of the frame on screen
let selection = [];
let presenter = null; // {holder, name, expires} or null
const presence = new Map(); // client -> payload
const jobs = new Map(); // id -> job
let everOnline = false;
let ready = false; // joined and wired: messages about the room may show

function setMessage(text, kind = "info") {
  ui.message.hidden = !text;
  ui.message.textContent = text || "";
  ui.message.className = `stage-message ${kind}`;
}

// ---- connection ----

function showConnection(status) {
  // The client says connecting, online or offline. While the hub is away
  // it alternates between offline and connecting (each retry): the page
  // says "offline · reconnecting…" throughout instead of flickering.
  if (status === "online") everOnline = true;
  const state = status === "online" ? "online" : everOnline || status === "offline" ? "offline" : "connecting";
  ui.conn.dataset.state = state;
  ui.conn.textContent = state === "offline" ? "offline · reconnecting…" : state;
  ui.members.classList.toggle("stale", state !== "online"); // as last seen
  ui.conn.title = status === "online" ? "connected to the hub" : "not connected: the last frame stays on screen; changes sync when the hub is back";
}

// ---- frames ----

const loader = {inflight: false, force: false};

// want asks for step to be on screen; force refetches even if the frame on
// screen seems current (a frame_updated for it).
function want(force = false) {
  if (force) loader.force = true;
  pump();
}

function entryAt(i) {
  const es = room.entries();
  return i >= 0 && i < es.length ? es[i] : null;
}

async function pump() {
  if (loader.inflight) return;
  if (length === 0) {
    if (shown) {
      viewer.clear();
      shown = null;
    }
    setMessage(ready ? "This room has no frames yet: drop an .xyz or .extxyz file here to import one." : "");
    ui.loading.hidden = true;
    return;
  }
  const i = step;
  const e = entryAt(i);
  if (!loader.force && shown && shown.index === i && e && shown.id === e.id && shown.version === e.version) {
    ui.loading.hidden = true;
    return;
  }
  loader.force = false;
  loader.inflight = true;
  ui.loading.hidden = false;
  try {
    const f = await room.frame(i, {fields});
    viewer.show(f);
    shown = {index: i, id: f.id, version: f.version, numbers: f.numbers};
    ui.canvas.dataset.frame = String(i);
    ui.canvas.dataset.frameId = f.id || "";
    ui.canvas.dataset.version = String(f.version ?? "");
    ui.canvas.dataset.atoms = String(f.numbers ? f.numbers.length : 0);
    ui.canvas.setAttribute("aria-label", `3D view of frame ${i + 1} of ${length}: ${f.numbers ? f.numbers.length : 0} atoms`);
    setMessage("");
    renderSelection(ui.selection, ui.clearSelection, selection, shown.numbers);
  } catch (err) {
    // Not retried in a loop: the next step, trajectory change or reconnect asks again.
    if (step === i) {
      setMessage(offline() ? `Frame ${i + 1} is not in this browser's cache and the hub is not reachable.` : `Frame ${i + 1}: ${err.message}`, "error");
      loader.inflight = false;
      ui.loading.hidden = true;
      return;
    }
  } finally {
    loader.inflight = false;
  }
  if (step !== i || loader.force) pump();
  else ui.loading.hidden = true;
}

function offline() {
  return client.status !== "online";
}

// ---- player ----

function updatePlayer() {
  const n = length;
  ui.slider.max = String(Math.max(0, n - 1));
  ui.slider.value = String(step);
  ui.counter.textContent = n ? `${step + 1}/${n}` : "0/0";
  const followed = presenter && presenter.holder !== client.id;
  for (const b of [ui.first, ui.prev, ui.play, ui.next, ui.last, ui.slider]) b.disabled = n === 0 || !!followed;
  ui.slider.title = followed ? `${presenterName()} is presenting: your view follows` : "";
}

// setStep moves this page to step i. source: "local" (buttons, keys, play,
// bookmarks), "scrub" (the slider: presents), "presenter" (another member
// presents), "trajectory" (clamped after frames were removed).
function setStep(i, source = "local") {
  if (length === 0) i = 0;
  else i = Math.max(0, Math.min(length - 1, i | 0));
  const moved = i !== step;
  step = i;
  updatePlayer();
  if (source === "scrub" || (source === "local" && presenting)) sendStep();
  if (moved && source !== "presenter") announce();
  want();
}

// Presence: other members see where this page is (throttled).
let announceTimer = 0;
function announce() {
  if (announceTimer) return;
  announceTimer = setTimeout(() => {
    announceTimer = 0;
    try {
      room.presence({step});
    } catch (e) {
      // offline: presence is ephemeral
    }
  }, 250);
}

// ---- presenting ----

let presenting = false;
let presentPending = null;
let renewTimer = 0;
let releaseTimer = 0;
let pointerDown = false;

function presenterName() {
  if (!presenter) return "";
  if (presenter.name) return presenter.name;
  const m = (room.members || []).find((x) => (x.client ?? x) === presenter.holder);
  return (m && m.name) || String(presenter.holder).slice(0, 8);
}

function startPresenting() {
  if (presenting || presentPending) return;
  stopPlaying();
  presentPending = room.present().then(() => {
    presenting = true;
    clearInterval(renewTimer);
    renewTimer = setInterval(() => {
      room.present().catch(lostPresenter);
    }, renewEvery);
    sendStep();
    scheduleRelease();
  }, (err) => {
    setMessage(`Cannot present: ${err.message}`, "error");
    setTimeout(() => setMessage(""), 3000);
  }).finally(() => {
    presentPending = null;
  });
}

function lostPresenter(err) {
  if (!presenting) return;
  presenting = false;
  clearInterval(renewTimer);
  setMessage(`Presenting stopped: ${err.message}`, "error");
}

function sendStep() {
  if (!presenting) return;
  try {
    room.sendFrame(step);
  } catch (e) {
    // offline: followers catch up from the next one
  }
}

function scheduleRelease() {
  clearTimeout(releaseTimer);
  releaseTimer = setTimeout(release, releaseAfter);
}

function release() {
  if (pointerDown || presentPending) {
    scheduleRelease();
    return;
  }
  if (!presenting) return;
  presenting = false;
  clearInterval(renewTimer);
  room.unpresent().catch(() => {}); // it expires anyway
}

function scrubbed() {
  setStep(Number(ui.slider.value), "scrub");
  startPresenting();
  scheduleRelease();
}

// ---- play ----

let playTimer = 0;

function startPlaying() {
  if (playTimer || length < 2) return;
  ui.play.setAttribute("aria-label", "Pause");
  ui.play.setAttribute("aria-pressed", "true");
  const tick = () => {
    playTimer = setTimeout(tick, playInterval);
    if (loader.inflight || (shown && shown.index !== step)) return; // wait for the frame: never outrun the fetches
    setStep(step + 1 >= length ? 0 : step + 1);
  };
  playTimer = setTimeout(tick, playInterval);
}

function stopPlaying() {
  if (!playTimer) return;
  clearTimeout(playTimer);
  playTimer = 0;
  ui.play.setAttribute("aria-label", "Play");
  ui.play.setAttribute("aria-pressed", "false");
}

// ---- state document ----

function frameIndex(id) {
  const es = room.entries();
  for (let i = 0; i < es.length; i++) if (es[i].id === id) return i;
  return -1;
}

function showSelection() {
  viewer.setSelection(selection);
  ui.canvas.dataset.selection = selection.join(",");
  renderSelection(ui.selection, ui.clearSelection, selection, shown && shown.numbers);
}

function showBookmarks() {
  renderBookmarks(ui.bookmarks, (room.state && room.state.bookmarks) || {}, frameIndex, (i) => setStep(i),
    (id) => {
      try {
        room.deleteBookmark(id);
      } catch (err) {
        setMessage(`Bookmark not removed: ${err.message}`, "error");
      }
    });
}

function selectionFromState() {
  const s = room.state && room.state.selection;
  selection = Array.isArray(s) ? s.map(Number).filter(Number.isInteger) : [];
  showSelection();
}

function setSelection(next) {
  selection = next;
  showSelection();
  try {
    room.setSelection(next);
  } catch (e) {
    setMessage(`Selection not shared: ${e.message}`, "error");
  }
}

// ---- panel ----

function memberName(id) {
  if (id === client.id) return "you";
  if (String(id).startsWith("import:")) return "an import";
  const m = (room.members || []).find((x) => (x.client ?? x) === id);
  return (m && m.name) || String(id).slice(0, 8);
}

function showMembers() {
  renderMembers(ui.members, room.members, client.id, presence);
}

function showLocks() {
  renderLocks(ui.locks, room.locks, memberName, frameIndex);
}

function showPresenter(p) {
  presenter = p && p.holder ? p : null;
  if (presenter && presenter.holder !== client.id) {
    stopPlaying();
    ui.badge.hidden = false;
    ui.badge.textContent = `▶ ${presenterName()} is presenting`;
    ui.badge.dataset.holder = presenter.holder;
  } else if (presenter) {
    ui.badge.hidden = false;
    ui.badge.textContent = "● You are presenting";
    ui.badge.dataset.holder = presenter.holder;
  } else {
    ui.badge.hidden = true;
    ui.badge.textContent = "";
    delete ui.badge.dataset.holder;
  }
  updatePlayer();
}

function showJobs() {
  renderJobs(ui.jobs, [...jobs.values()].sort((a, b) => b.seq - a.seq)); // newest first
}

let jobSeq = 0;
function putJob(j) {
  const old = jobs.get(j.id);
  jobs.set(j.id, {...old, ...j, seq: old ? old.seq : ++jobSeq});
  showJobs();
}

// ---- upload ----

async function upload(file) {
  const local = `local-${++jobSeq}`;
  putJob({id: local, name: file.name, state: "running", phase: "uploading", bytes: 0, total_bytes: file.size, created: new Date().toISOString()});
  try {
    const res = await room.upload(file, {
      name: file.name,
      onProgress: (p) => {
        const j = jobs.get(local);
        if (j) putJob({...j, bytes: typeof p === "number" ? p : p.bytes ?? p.loaded ?? 0});
      },
    });
    jobs.delete(local); // the hub's job (and its job events) take over
    if (res && res.id && !jobs.has(res.id)) putJob(res);
    showJobs();
  } catch (err) {
    putJob({id: local, name: file.name, state: "failed", error: err.message});
  }
}

function setupDrop() {
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && [...(e.dataTransfer.types || [])].includes("Files");
  document.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth++;
    ui.drop.hidden = false;
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) ui.drop.hidden = true;
  });
  document.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    ui.drop.hidden = true;
    for (const f of e.dataTransfer ? e.dataTransfer.files : []) upload(f);
  });
  ui.file.addEventListener("change", () => {
    for (const f of ui.file.files) upload(f);
    ui.file.value = "";
  });
}

// ---- wiring ----

function setupControls() {
  ui.first.addEventListener("click", () => setStep(0));
  ui.prev.addEventListener("click", () => setStep(step - 1));
  ui.next.addEventListener("click", () => setStep(step + 1));
  ui.last.addEventListener("click", () => setStep(length - 1));
  ui.play.addEventListener("click", () => (playTimer ? stopPlaying() : startPlaying()));
  ui.slider.addEventListener("pointerdown", () => {
    pointerDown = true;
    startPresenting();
  });
  window.addEventListener("pointerup", () => {
    if (!pointerDown) return;
    pointerDown = false;
    scheduleRelease();
  });
  ui.slider.addEventListener("input", scrubbed);
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, textarea, select") || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target.closest("button") && (e.key === " " || e.key === "Enter")) return; // the button's own
    if (ui.slider.disabled) return;
    const keys = {ArrowLeft: () => setStep(step - 1), ArrowRight: () => setStep(step + 1),
      Home: () => setStep(0), End: () => setStep(length - 1), " ": () => (playTimer ? stopPlaying() : startPlaying())};
    if (keys[e.key]) {
      e.preventDefault();
      keys[e.key]();
    }
  });
  ui.clearSelection.addEventListener("click", () => setSelection([]));
  ui.bookmarkForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const en = entryAt(step);
    const label = ui.bookmarkLabel.value.trim();
    if (!en || !label) return;
    try {
      room.setBookmark(en.id, label);
      ui.bookmarkLabel.value = "";
    } catch (err) {
      setMessage(`Bookmark not saved: ${err.message}`, "error");
    }
    showBookmarks();
  });
  viewer.onPick(({index, shiftKey, ctrlKey}) => {
    if (index < 0) {
      if (!shiftKey && !ctrlKey && selection.length) setSelection([]);
      return;
    }
    if (shiftKey || ctrlKey) {
      setSelection(selection.includes(index) ? selection.filter((i) => i !== index) : [...selection, index]);
    } else {
      setSelection(selection.length === 1 && selection[0] === index ? [] : [index]);
    }
  });
}

async function displayName() {
  const saved = localStorage.getItem("framesync.name");
  if (saved) return saved;
  try {
    const headers = {};
    const t = localStorage.getItem("framesync.token");
    if (t) headers.Authorization = "Bearer " + t;
    const resp = await fetch("/api/auth/me", {headers});
    if (resp.status === 401) {
      localStorage.removeItem("framesync.token");
      location.href = "/login?next=" + encodeURIComponent(location.pathname);
      return null;
    }
    const me = await resp.json();
    if (me.user) return me.user;
  } catch (e) {
    // the hub is down: a guest name
  }
  const name = "guest-" + Math.random().toString(36).slice(2, 6);
  localStorage.setItem("framesync.name", name);
  return name;
}

async function main() {
  viewer = new Viewer(ui.canvas);
  const name = await displayName();
  if (name === null) return;
  ui.who.textContent = name;
  client = await connect(location.origin, {name});
  showConnection(client.status);
  client.on("status", (s) => {
    showConnection(s);
    if (s === "online") want();
  });
  try {
    room = await client.join(roomName);
  } catch (err) {
    if (err.status === 401 || err.code === "unauthorized") {
      location.href = "/login?next=" + encodeURIComponent(location.pathname);
      return;
    }
    throw err;
  }
  length = room.length;
  const s = room.state && room.state.step;
  step = Number.isInteger(s) && s >= 0 && s < length ? s : 0;
  setupControls();
  setupDrop();

  room.on("trajectory", ({length: n}) => {
    length = n ?? room.length;
    if (step >= length) setStep(length - 1, "trajectory");
    updatePlayer();
    showBookmarks();
    showLocks();
    want();
  });
  room.on("frame_updated", (m) => {
    if (shown && (m.frame === shown.id || m.index === step) && (m.version === undefined || m.version !== shown.version)) want(true);
  });
  room.on("frame", (m) => {
    if (m.client === client.id) return;
    if (Number.isInteger(m.step)) setStep(m.step, "presenter");
  });
  room.on("presenter", showPresenter);
  room.on("state", (diffs) => {
    for (const d of diffs) {
      if (d.id === "selection") selectionFromState();
      if (d.id === "bookmarks") showBookmarks();
    }
  });
  room.on("members", () => {
    showMembers();
    showLocks();
  });
  room.on("locks", showLocks);
  room.on("presence", (m) => {
    if (!m || m.client === client.id) return;
    presence.set(m.client, m.payload || {});
    showMembers();
  });
  room.on("job", putJob);
  room.on("deleted", () => {
    stopPlaying();
    setMessage(`Room ${roomName} was deleted. The last frame stays on screen.`, "error");
  });

  showPresenter(room.presenter);
  showMembers();
  showLocks();
  showBookmarks();
  selectionFromState();
  ready = true;
  updatePlayer();
  want();
  announce();
  try {
    const list = await room.jobs();
    const known = [...list].sort((a, b) => Date.parse(a.created || 0) - Date.parse(b.created || 0));
    for (const j of known) if (!jobs.has(j.id)) putJob(j);
  } catch (e) {
    // an older hub without imports, or offline
  }
  showJobs();
  // For tests and the console: the page's parts.
  window.framesync = {client, room, viewer, get step() {
    return step;
  }, get shown() {
    return shown;
  }};
}

main().catch((err) => {
  setMessage(`Cannot open room ${roomName}: ${err.message}`, "error");
  if (err.code === "not_found" && client) {
    // A stable URL of a room that does not exist (yet): offer to create it.
    const create = el("button", {type: "button", id: "create-room"}, `Create room ${roomName}`);
    create.addEventListener("click", () => client.createRoom(roomName).then(() => location.reload(),
      (e) => setMessage(`Cannot create room ${roomName}: ${e.message}`, "error")));
    ui.message.append(" ", create);
  } else {
    console.error(err);
  }
});
