// The room page (/rooms/<name>): the current frame in 3D, a player, and a
// side panel with members, selection, bookmarks, locks and imports.
//
// Who drives the step:
//   - Dragging the slider (or moving it with the keyboard) presents: the page
//     takes the room's presenter token (room.present(), renewed every 2 s while
//     scrubbing) and sends each step (room.sendFrame); every other page follows
//     and shows a badge naming the presenter, with its own player disabled.
//     Letting go (pointer up or cancelled, the slider losing the pointer, the
//     window losing focus; then 1.2 s without input) gives the token back,
//     and so do 10 s without slider input while the pointer seems held: a
//     lost pointerup never leaves the room locked to this page.
//   - A presenter's step can name a frame this page does not have yet (its
//     trajectory update still on the way, e.g. right after an import): the
//     page clamps, remembers the step, and goes there when the trajectory
//     catches up.
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
//
// The page stops pretending when the room is out of reach for good: a token
// revoked or expired (the client's "error" event with code "unauthorized")
// shows a notice with a link to log in again; access withdrawn ("evicted")
// and a deleted room show theirs. These notices stay until the page is
// reloaded (or, for the login, the connection comes back).
import {connect, tokenKey} from "./framesync.js";
import {Viewer} from "./viewer.js";
import {el, renderBookmarks, renderJobs, renderLocks, renderMembers, renderSelection} from "./ui-panel.js";

const fields = ["numbers", "positions", "cell", "pbc"];
const renewEvery = 2000; // ms: the presenter token expires 5 s after the last renewal
const releaseAfter = 1200; // ms without scrubbing before the token is given back
const idleRelease = 10000; // ms without slider input after which a held pointer no longer presents
const followGrace = 5000; // ms after a presenter's last frame in which a late trajectory still applies it
const keepJobs = 50; // import jobs listed; older finished ones are forgotten
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

// roomFromPath returns the room named by the page's URL, null if the path
// does not decode (a malformed %-escape).
function roomFromPath() {
  try {
    return decodeURIComponent(location.pathname.replace(/^\/rooms\//, "").replace(/\/$/, ""));
  } catch (e) {
    return null;
  }
}

const roomName = roomFromPath();
if (roomName !== null) {
  document.title = `${roomName} · framesync`;
  ui.name.textContent = roomName;
}

let client, room, viewer;
let length = 0;
let step = 0; // the step this page wants to show
let shown = null; // {index, id, version, numbers} of the frame on screen
let selection = [];
let presenter = null; // {holder, name, expires} or null
let presenterStep = null; // {step, holder, at}: the last step another member presented
const presence = new Map(); // client -> payload, of current members only
const jobs = new Map(); // id -> job, at most keepJobs unless more are running
const forgotten = new Set(); // IDs of jobs pruned from jobs (bounded)
let everOnline = false;
let ready = false; // joined and wired: messages about the room may show
let signedOut = false; // the hub refused the token: no reconnect will help
let notice = null; // {reason, text}: a lasting message (signed out, evicted, deleted)
let startToken = null; // the login token the client connected with (from localStorage)

// setMessage shows a passing message over the view ("" hides it); a
// lasting notice stays in its place.
function setMessage(text, kind = "info") {
  if (notice) return;
  ui.message.hidden = !text;
  ui.message.textContent = text || "";
  ui.message.className = `stage-message ${kind}`;
}

// showNotice shows a message that stays: the room is out of reach until
// the user acts. extra: elements after the text (a link). The first notice
// stays: a rejoin refused after an eviction is reported as a deletion,
// and the login link must not go.
function showNotice(reason, text, ...extra) {
  if (notice) return;
  notice = {reason, text};
  ui.message.hidden = false;
  ui.message.className = "stage-message error notice";
  ui.message.dataset.reason = reason;
  ui.message.replaceChildren(text, ...extra.flatMap((e) => [" ", e]));
}

function clearNotice(reason) {
  if (!notice || notice.reason !== reason) return;
  notice = null;
  delete ui.message.dataset.reason;
  setMessage("");
}

// loginURL is the login page, coming back here afterwards.
function loginURL() {
  return "/login?next=" + encodeURIComponent(location.pathname + location.search + location.hash);
}

// ---- connection ----

function showConnection(status) {
  // The client says connecting, online or offline. While the hub is away
  // it alternates between offline and connecting (each retry): the page
  // says "offline · reconnecting…" throughout instead of flickering.
  // Signed out (the token refused), retrying cannot help: it says so.
  if (status === "online") everOnline = true;
  const state = signedOut ? "signed-out" : status === "online" ? "online" : everOnline || status === "offline" ? "offline" : "connecting";
  ui.conn.dataset.state = state;
  ui.conn.textContent = {offline: "offline · reconnecting…", "signed-out": "signed out"}[state] || state;
  ui.members.classList.toggle("stale", state !== "online"); // as last seen
  ui.conn.title = state === "online" ? "connected to the hub" : state === "signed-out" ? "the hub no longer accepts this login: log in again" :
    "not connected: the last frame stays on screen; changes sync when the hub is back";
}

// unauthorized handles the hub refusing the token while connected (revoked
// by a logout, expired, the user deleted): the client stops reconnecting,
// the page says why and links to the login, which comes back here.
function unauthorized(err) {
  signedOut = true;
  // The token is dead: forget it (the login page would send it along and be
  // refused), unless another tab has stored a new one meanwhile.
  if (startToken && localStorage.getItem(tokenKey) === startToken) localStorage.removeItem(tokenKey);
  stopPlaying();
  stopPresenting();
  showConnection(client.status);
  const link = el("a", {id: "login-again", href: loginURL()}, "Log in again");
  showNotice("unauthorized", `Signed out: the hub no longer accepts this login (${err.message || "token revoked or expired"}). The last frame stays on screen.`, link);
}

// roomGone handles the room becoming unreachable for good: access
// withdrawn or the room deleted. What was loaded stays on screen.
function roomGone(reason, text) {
  stopPlaying();
  stopPresenting();
  presenterStep = null;
  showNotice(reason, text, el("a", {href: "/rooms"}, "Other rooms"));
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
    const drawn = viewer.show(f);
    shown = {index: i, id: f.id, version: f.version, numbers: f.numbers};
    ui.canvas.dataset.frame = String(i);
    ui.canvas.dataset.frameId = f.id || "";
    ui.canvas.dataset.version = String(f.version ?? "");
    ui.canvas.dataset.atoms = String(drawn.atoms);
    ui.canvas.setAttribute("aria-label", `3D view of frame ${i + 1} of ${length}: ${drawn.atoms} atoms`);
    setMessage(drawn.warning ? `Frame ${i + 1}: ${drawn.warning}` : "", drawn.warning ? "error" : "info");
    renderSelection(ui.selection, ui.clearSelection, selection, shown.numbers);
  } catch (err) {
    // Not retried in a loop: the next step, trajectory change or reconnect asks again.
    if (step === i) {
      setMessage(offline() ? `Frame ${i + 1} is not in this browser's cache and the hub is not reachable.` : `Frame ${i + 1}: ${err.message}`, "error");
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
  if (source === "local" || source === "scrub") presenterStep = null; // the user took over
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
let pointerDown = false; // the slider is being dragged
let lastInput = 0; // Date.now() of the last slider input or press

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
    if (notice) { // signed out, evicted or deleted meanwhile
      room.unpresent().catch(() => {});
      return;
    }
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

// release gives the token back once the slider is let go, or once a held
// pointer has not moved it for idleRelease (its pointerup may never come).
function release() {
  if (presentPending || (pointerDown && Date.now() - lastInput < idleRelease)) {
    scheduleRelease();
    return;
  }
  pointerDown = false;
  if (!presenting) return;
  presenting = false;
  clearInterval(renewTimer);
  room.unpresent().catch(() => {}); // it expires anyway
}

// endDrag ends a slider drag however it ends: pointerup, pointercancel
// (touch), the slider losing pointer capture, the window losing focus.
function endDrag() {
  if (!pointerDown) return;
  pointerDown = false;
  scheduleRelease();
}

// stopPresenting drops presenting at once, without asking the hub (signed
// out, evicted, deleted: it cannot answer; the token expires).
function stopPresenting() {
  pointerDown = false;
  presenting = false;
  clearInterval(renewTimer);
  clearTimeout(releaseTimer);
}

function scrubbed() {
  lastInput = Date.now();
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

// prunePresence forgets the presence of clients no longer in the room.
function prunePresence() {
  const here = new Set((room.members || []).map((m) => m.client ?? m));
  for (const id of presence.keys()) if (!here.has(id)) presence.delete(id);
}

// following tells whether this page follows holder's presenting.
function following(holder) {
  return !!presenter && presenter.holder === holder && holder !== client.id;
}

// presented moves to a step another member presented. A step past the
// trajectory this page has (its update still on the way) is clamped for
// now and remembered: catchUp applies it when the frames arrive.
function presented(m) {
  if (m.client === client.id || !Number.isInteger(m.step)) return;
  presenterStep = {step: m.step, holder: m.client, at: Date.now()};
  setStep(m.step, "presenter");
}

// catchUp, on a trajectory change, goes to the step the presenter asked for
// if this page could not show it before: while following, or shortly after
// the presenter's last frame if the user did not step since.
function catchUp() {
  const p = presenterStep;
  if (!p || length === 0) return;
  if (!following(p.holder) && (presenter || Date.now() - p.at > followGrace)) return;
  const target = Math.min(p.step, length - 1);
  if (target !== step) setStep(target, "presenter");
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
  if (forgotten.has(j.id)) return; // pruned: a late report of a finished job
  const old = jobs.get(j.id);
  jobs.set(j.id, {...old, ...j, seq: old ? old.seq : ++jobSeq});
  pruneJobs();
  showJobs();
}

// pruneJobs keeps the keepJobs newest jobs: older finished ones are
// forgotten (running and queued ones stay, however many).
function pruneJobs() {
  if (jobs.size <= keepJobs) return;
  const finished = [...jobs.values()].filter((j) => j.state === "done" || j.state === "failed").sort((a, b) => a.seq - b.seq);
  for (const j of finished) {
    if (jobs.size <= keepJobs) break;
    jobs.delete(j.id);
    forgotten.add(j.id);
  }
  for (const id of forgotten) {
    if (forgotten.size <= 10 * keepJobs) break;
    forgotten.delete(id); // the oldest first
  }
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
    lastInput = Date.now();
    startPresenting();
  });
  // However the drag ends: a touch drag often ends with pointercancel, and
  // a pointerup outside the window or after a focus change never comes.
  for (const type of ["pointerup", "pointercancel", "blur"]) window.addEventListener(type, endDrag);
  ui.slider.addEventListener("lostpointercapture", endDrag);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) endDrag();
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
    const t = localStorage.getItem(tokenKey);
    if (t) headers.Authorization = "Bearer " + t;
    const resp = await fetch("/api/auth/me", {headers});
    if (resp.status === 401) {
      localStorage.removeItem(tokenKey);
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
  startToken = localStorage.getItem(tokenKey);
  try {
    client = await connect(location.origin, {name});
  } catch (err) {
    if (err.status === 401 || err.code === "unauthorized") {
      location.href = loginURL();
      return;
    }
    throw err;
  }
  showConnection(client.status);
  client.on("status", (s) => {
    if (s === "online" && signedOut) { // let in after all (the client reported the refusal, then got in)
      signedOut = false;
      clearNotice("unauthorized");
    }
    showConnection(s);
    if (s === "online") want();
  });
  client.on("error", (err) => {
    if (err && err.code === "unauthorized") unauthorized(err);
  });
  try {
    room = await client.join(roomName);
  } catch (err) {
    if (err.status === 401 || err.code === "unauthorized") {
      location.href = loginURL();
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
    catchUp();
    if (step >= length) setStep(length - 1, "trajectory");
    updatePlayer();
    showBookmarks();
    showLocks();
    want();
  });
  room.on("frame_updated", (m) => {
    if (shown && (m.frame === shown.id || m.index === step) && (m.version === undefined || m.version !== shown.version)) want(true);
  });
  room.on("frame", presented);
  room.on("presenter", showPresenter);
  room.on("state", (diffs) => {
    for (const d of diffs) {
      if (d.id === "selection") selectionFromState();
      if (d.id === "bookmarks") showBookmarks();
    }
  });
  room.on("members", () => {
    prunePresence();
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
  room.on("deleted", () => roomGone("deleted", `Room ${roomName} was deleted. The last frame stays on screen.`));
  // Access withdrawn: the client's "evicted" event; a hub error about the
  // room with code forbidden and no request is the same (it sends that
  // only when it evicts).
  const evicted = () => roomGone("evicted", `Your access to room ${roomName} was withdrawn: this page no longer follows it. The last frame stays on screen.`);
  room.on("evicted", evicted);
  room.on("error", (err) => {
    if (err && err.code === "forbidden") evicted();
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
  }, presence, jobs};
}

if (roomName === null) {
  setMessage("This address names no room: its room name is not valid URL encoding.", "error");
  ui.name.textContent = "?";
} else main().catch((err) => {
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
