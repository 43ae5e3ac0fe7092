// Drives web/src/framesync.js (the bundle the hub serves at
// /ui/dist/framesync.js) in headless Chromium against a real hub, together
// with a Go client run by web/client_test.go. Usage:
//   node client.mjs HUB_URL EXPECT_JSON
// EXPECT_JSON (written by the Go test) holds the room and what the Go
// client pushed; with "mode": "auth" the hub runs with access control and
// only those checks run. Steps that need the Go side print one line
//   go <command> <JSON arguments>
// on stdout and wait for "ok" (or "fail <why>") on stdin. Prints "PASS" and
// exits 0 when every check held; exits 1 with the reason otherwise.
import {check, goSide, launch, step} from "./harness.mjs";
import {readFileSync} from "node:fs";
import {decode, encode} from "@msgpack/msgpack";

const [hub, expectPath] = process.argv.slice(2);
const want = JSON.parse(readFileSync(expectPath, "utf8"));
const TIMEOUT = 15000;

// ---- pages

const browser = await launch();
const pageErrors = [];

// newPage opens a page, in its own context unless given one (pages of a
// context share their storage, as tabs do).
async function newPage(label, context) {
  const page = await (context || browser).newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => pageErrors.push(`${label}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") console.log(`# ${label} console.${m.type()}: ${m.text()}`);
  });
  return page;
}

// open connects the page's own client (window.T) and joins the room;
// events are logged in T.log for later checks.
async function open(page, name) {
  return page.evaluate(
    async ({room, name}) => {
      const fs = await import("/ui/dist/framesync.js");
      const client = await fs.connect(undefined, {name, minBackoff: 100, maxBackoff: 1000});
      const log = {status: [], state: [], trajectory: [], frames: [], presenter: [], coll: [], errors: []};
      client.on("status", (s) => log.status.push(s));
      client.on("error", (e) => log.errors.push(`${e.code}: ${e.message}`));
      const r = await client.join(room);
      r.on("state", (d) => log.state.push(d));
      r.on("trajectory", (e) => log.trajectory.push(e));
      r.on("frame", (e) => log.frames.push(e));
      r.on("presenter", (p) => log.presenter.push(p));
      window.T = {fs, client, room: r, log};
      return {id: client.id, length: r.length, status: client.status};
    },
    {room: want.room, name},
  );
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// until waits for cond (checked in this process) to hold, at most ms.
async function until(cond, what, ms = TIMEOUT) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// hubMessage decodes a control channel message seen by a WebSocket route
// (null for text).
const hubMessage = (m) => (typeof m === "string" ? null : decode(m));

try {
  if (want.mode === "auth") await accessControl();
  else await everything();
  check(pageErrors.length === 0, `uncaught errors in the pages: ${pageErrors.join("; ")}`);
  console.log("PASS");
} catch (e) {
  console.error(`FAIL: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  process.stdin.destroy();
}

async function everything() {
  // ---- the example page renders the room
  step("example page");
  const a = await newPage("A");
  await a.goto(`${hub}/ui/example.html?room=${want.room}`);
  await a.waitForFunction((n) => document.getElementById("length").textContent === String(n), want.count);
  await a.waitForFunction(() => document.getElementById("frame-info").textContent.startsWith("frame 0"));

  // ---- join, length, entries
  step("join");
  const ida = await open(a, "alice");
  check(ida.length === want.count, `length ${ida.length}, want ${want.count}`);
  check(ida.status === "online", `status ${ida.status}`);
  const ids = await a.evaluate(() => T.room.entries().map((e) => e.id));
  check(same(ids, want.ids), `entry IDs ${ids}, want ${want.ids}`);
  const missing = await a.evaluate(() => T.client.join("no-such-room").then(() => "joined", (e) => e.code));
  check(missing === "not_found", `joining a missing room: ${missing}`);

  // ---- frames: full first read, then only what changed
  step("frames");
  const requests = [];
  a.on("request", (r) => {
    if (r.url().includes("/frames/")) requests.push(decodeURIComponent(r.url().slice(hub.length)));
  });
  const f0 = await a.evaluate(async () => {
    const f = await T.room.frame(0);
    // Cached arrays must not be views into the whole HTTP response (it
    // would stay alive beyond the cache budget).
    const views = Object.entries(f.fields)
      .filter(([, v]) => v && ArrayBuffer.isView(v.data) && v.data.byteLength !== v.data.buffer.byteLength)
      .map(([k, v]) => `${k} (${v.dtype}): ${v.data.byteLength} of ${v.data.buffer.byteLength} bytes`);
    return {positions: Array.from(f.positions), numbers: Array.from(f.numbers), cell: f.cell, pbc: f.pbc, symbols: f.fields["arrays.symbols"].data, name: f.fields["info.name"], views};
  });
  check(f0.views.length === 0, `cached arrays viewing a larger buffer: ${f0.views.join(", ")}`);
  check(same(f0.positions, want.positions[0]), `frame 0 positions ${f0.positions}`);
  check(same(f0.numbers, want.numbers), `numbers ${f0.numbers}, want ${want.numbers}`);
  check(same(f0.cell, want.cell) && same(f0.pbc, want.pbc), `cell ${f0.cell} pbc ${f0.pbc}`);
  check(same(f0.symbols, want.symbols) && f0.name === want.info_name, `symbols ${f0.symbols}, info.name ${f0.name}`);
  requests.length = 0;
  const f1 = await a.evaluate(async () => Array.from((await T.room.frame(1)).positions));
  check(same(f1, want.positions[1]), `frame 1 positions ${f1}, want ${want.positions[1]}`);
  let data = requests.filter((u) => u.includes("data="));
  check(data.length === 1 && data[0].endsWith("data=positions"), `stepping to frame 1 fetched ${JSON.stringify(requests)}`);

  // Two reads of one frame at once share one fetch.
  requests.length = 0;
  const both = await a.evaluate(async () => {
    const [x, y] = await Promise.all([T.room.frame(2), T.room.frame(2)]);
    return same(x.positions, y.positions);
    function same(p, q) {
      return p.length === q.length && p.every((v, i) => v === q[i]);
    }
  });
  data = requests.filter((u) => u.includes("data="));
  check(both && data.length === 1 && requests.length === 2, `two concurrent reads of frame 2: ${JSON.stringify(requests)}`);
  const bad = await a.evaluate(() => T.room.frame(99).then(() => "resolved", (e) => e.code));
  check(bad === "not_found", `frame 99: ${bad}`);
  const unknownID = await a.evaluate(() => T.room.frame("0123456789abcdef").then((f) => `resolved with frame ${f.index}`, (e) => e.code));
  check(unknownID === "not_found", `an unknown frame ID: ${unknownID}`);

  // ---- state both ways
  step("state");
  await a.evaluate(() => T.room.setStep(3));
  await goSide("wait-step", 3);
  // The example page's own client follows the step and lists alice.
  await a.waitForFunction(() => document.getElementById("step-value").textContent === "3");
  await a.waitForFunction(() => document.getElementById("frame-info").textContent.startsWith("frame 3"));
  await a.waitForFunction(() => document.getElementById("members").textContent.includes("alice"));
  await goSide("set-selection", [1, 2]);
  await a.waitForFunction(() => T.log.state.some((d) => d.some((x) => x.id === "selection" && JSON.stringify(x.new) === "[1,2]")));
  check(same(await a.evaluate(() => T.room.state.selection), [1, 2]), "room.state.selection");
  await a.evaluate(() => T.room.setCamera({position: [1, 2.5, 3], zoom: 2}));
  await goSide("wait-camera", {position: [1, 2.5, 3], zoom: 2});

  // ---- collections
  step("collections");
  const coll = await a.evaluate(() => {
    const c = T.room.collection("atoms");
    c.add_callback((d) => T.log.coll.push(d));
    const first = c.update({insert: [{id: "a", color: "red", n: 1}, {id: "b", color: "blue"}]});
    const second = c.update({insert: [{id: "a", color: "green", n: 1}], remove: ["b"]});
    const none = c.update({insert: [{id: "a", color: "green", n: 1}]});
    return {first, second, none, size: c.size, a: c.get("a"), all: c.get(), log: T.log.coll, same: c === T.room.collection("atoms")};
  });
  check(coll.first.length === 2 && coll.first[0].old === undefined && coll.first[0].new.color === "red", `first update ${JSON.stringify(coll.first)}`);
  check(
    same(coll.second, [
      {id: "a", old: {color: "red", id: "a", n: 1}, new: {color: "green", id: "a", n: 1}},
      {id: "b", old: {color: "blue", id: "b"}},
    ]),
    `second update ${JSON.stringify(coll.second)}`,
  );
  check(coll.none.length === 0 && coll.size === 1 && coll.a.color === "green" && coll.all.length === 1 && coll.same, `collection ${JSON.stringify(coll)}`);
  check(same(coll.log, [coll.first, coll.second]), `callbacks got ${JSON.stringify(coll.log)}`);
  await goSide("wait-item", "atoms", "a", {id: "a", color: "green", n: 1});
  await goSide("put-item", "atoms", {id: "c", label: "from go", xyz: [1, 2, 3]});
  await a.waitForFunction(() =>
    T.log.coll.some((d) => d.length === 1 && d[0].id === "c" && d[0].old === undefined && d[0].new.label === "from go"),
  );

  // ---- a second page: members, presenter, locks
  step("second page");
  const b = await newPage("B");
  // B's control channel goes through Playwright, so that this test can
  // inject messages the hub would never send, and hold, drop or refuse
  // what it would: proxy.toHub and proxy.toPage see every message (and
  // the socket to the page) and return true for what they handled
  // themselves; proxy.refuse closes new connections at once.
  const sockets = [];
  const proxy = {toHub: null, toPage: null, refuse: false};
  await b.routeWebSocket(/\/api\/ws/, (ws) => {
    if (proxy.refuse) return void ws.close();
    const server = ws.connectToServer();
    sockets.push(ws);
    ws.onMessage((m) => (proxy.toHub && proxy.toHub(m, ws)) || server.send(m));
    server.onMessage((m) => (proxy.toPage && proxy.toPage(m, ws)) || ws.send(m));
  });
  // reconnectB drops B's connection and waits until B has a new one.
  const reconnectB = async () => {
    const k = await b.evaluate(() => T.log.status.length);
    await sockets.at(-1).close();
    await b.waitForFunction((k) => T.log.status.slice(k).includes("online"), k);
  };
  await b.goto(`${hub}/healthz`);
  const idb = await open(b, "bob");
  await a.waitForFunction((id) => T.room.members.some((m) => m.client === id && m.name === "bob"), idb.id);
  check(await b.evaluate((id) => T.room.members.some((m) => m.client === id), ida.id), "B does not list A as a member");

  step("presenter");
  await a.evaluate(() => T.room.present());
  await b.waitForFunction((id) => T.room.presenter && T.room.presenter.holder === id && T.room.presenter.name === "alice", ida.id);
  await a.evaluate(() => T.room.sendFrame(2, {camera: {zoom: 3}}));
  await b.waitForFunction(
    (id) => T.log.frames.some((f) => f.step === 2 && f.client === id && f.payload.camera.zoom === 3 && f.frame === T.room.entry(2).id),
    ida.id,
  );
  await a.evaluate(() => T.room.unpresent());
  await b.waitForFunction(() => T.room.presenter === null);

  step("locks");
  await a.evaluate(async () => (T.lock = await T.room.lock("trajectory", 10000)));
  await b.waitForFunction((id) => T.room.locks.some((l) => l.target === "trajectory" && l.holder === id), ida.id);
  const refused = await b.evaluate(() => T.room.lock("trajectory", 5000).then(() => "granted", (e) => ({code: e.code, holder: e.holder})));
  check(refused.code === "locked" && refused.holder === ida.id, `B's lock of a held target: ${JSON.stringify(refused)}`);
  await a.evaluate(() => T.lock.release());
  await b.waitForFunction(() => T.room.locks.length === 0);

  // ---- malformed input: frame bytes and control messages
  step("malformed frames");
  const garbage = [
    Buffer.from([0xc1, 0x00]), // not msgpack
    Buffer.from([0x81, 0xa9, ...Buffer.from("positions"), 0xdd, 0xff, 0xff, 0xff, 0xff]), // truncated huge array
    Buffer.from(encode({positions: {nd: true, type: "<f8", kind: new Uint8Array(0), shape: [4, 3], data: new Uint8Array(5)}})),
    Buffer.from(encode({positions: {nd: true, type: ">f8", kind: new Uint8Array(0), shape: [1], data: new Uint8Array(8)}})),
    Buffer.from(encode([1, 2, 3])),
    // dtypes that are names of what every object inherits
    ...["toString", "constructor", "__proto__", "hasOwnProperty"].map((type) =>
      Buffer.from(encode({positions: {nd: true, type, kind: new Uint8Array(0), shape: [1], data: new Uint8Array(8)}})),
    ),
    Buffer.from(encode({positions: {nd: false, type: "valueOf", data: new Uint8Array(8)}})),
  ];
  for (const body of garbage) {
    await b.route(/data=/, (route) => route.fulfill({status: 200, contentType: "application/msgpack", body}));
    const code = await b.evaluate(() => T.room.frame(4).then(() => "resolved", (e) => e.code));
    check(code === "bad_input", `garbage frame ${body.toString("hex").slice(0, 40)}: ${code}`);
    await b.unroute(/data=/);
  }
  const good = await b.evaluate(async () => Array.from((await T.room.frame(4)).positions));
  check(same(good, want.positions[4]), "frame 4 after the garbage");

  step("malformed messages");
  check(sockets.length === 1, `B has ${sockets.length} control connections`);
  for (const m of [
    Buffer.from([0xc1]),
    "a text message",
    encode([1, 2]),
    encode({t: 7}),
    encode({t: "sync", room: want.room, doc: "state", data: new Uint8Array([1, 2, 3, 4])}),
    encode({t: "sync", room: want.room, doc: "state", data: "not bytes"}),
    encode({t: "member", room: want.room, client: {x: 1}, state: "joined"}),
    encode({t: "presenter", room: want.room, holder: 5, state: "acquired"}),
    encode({t: "frame", room: want.room, step: "x", payload: 3}),
    encode({t: "lock_state", room: want.room, target: 1}),
    encode({t: "role", room: want.room, state: {}}),
    encode({t: "job", room: want.room, payload: [1]}),
    encode({t: "error", code: 5}),
  ]) {
    sockets[0].send(Buffer.isBuffer(m) || typeof m === "string" ? m : Buffer.from(m));
  }
  await b.evaluate(() => T.room.setStep(4));
  await a.waitForFunction(() => T.room.state.step === 4);
  check((await b.evaluate(() => T.client.status)) === "online", "B went offline after malformed messages");
  const errs = await b.evaluate(() => T.log.errors);
  check(errs.length > 0, "B reported none of the malformed messages");

  // ---- hub restart: offline reading and editing, reconnect, merge
  step("hub restart");
  await goSide("stop-hub");
  await a.waitForFunction(() => T.client.status === "offline");
  await b.waitForFunction(() => T.client.status === "offline");
  const offline = await a.evaluate(async () => {
    const f = await T.room.frame(1); // cached
    T.room.setBookmark(T.room.entry(1).id, "marked offline");
    T.room.collection("atoms").update({insert: [{id: "d", offline: true}]});
    return {length: T.room.length, step: T.room.state.step, positions: Array.from(f.positions), bookmark: T.room.state.bookmarks[T.room.entry(1).id]};
  });
  check(offline.length === want.count && offline.step === 4 && same(offline.positions, want.positions[1]) && offline.bookmark === "marked offline", `offline ${JSON.stringify(offline)}`);
  const refusedOffline = await a.evaluate(() => T.room.present().then(() => "granted", (e) => e.code));
  check(refusedOffline === "offline", `present offline: ${refusedOffline}`);
  await goSide("put-item", "atoms", {id: "e", from: "go, offline too"});
  await goSide("resume-hub");
  await a.waitForFunction(() => T.client.status === "online" && T.room.joined);
  await b.waitForFunction(() => T.client.status === "online" && T.room.joined);
  const statuses = await a.evaluate(() => T.log.status.join(","));
  check(/offline,connecting,(offline,connecting,)*online/.test(statuses), `statuses ${statuses}`);
  await goSide("wait-bookmark", want.ids[1], "marked offline");
  await goSide("wait-item", "atoms", "d", {id: "d", offline: true});
  await b.waitForFunction((id) => T.room.state.bookmarks[id] === "marked offline", want.ids[1]);
  await a.waitForFunction(() => T.room.collection("atoms").get("e") && T.log.coll.some((d) => d.some((x) => x.id === "e")));
  await goSide("set-selection", [7]);
  await a.waitForFunction(() => JSON.stringify(T.room.state.selection) === "[7]");
  await b.waitForFunction(() => JSON.stringify(T.room.state.selection) === "[7]");

  // ---- new frames
  step("append");
  await goSide("append", 2);
  await a.waitForFunction((n) => T.room.length === n && T.log.trajectory.some((e) => e.length === n), want.count + 2);
  const last = await a.evaluate(async () => Array.from((await T.room.frame(-1)).positions));
  check(same(last, want.appended_last), `last appended frame ${last}`);

  // ---- an import: upload with progress, job events, the new frames
  step("import");
  const job = await a.evaluate(async (xyz) => {
    T.log.jobs = [];
    T.room.on("job", (j) => T.log.jobs.push(j));
    const progress = [];
    const j = await T.room.upload(new Blob([xyz]), {name: "three.xyz", onProgress: (p) => progress.push(p)});
    return {job: j, progress};
  }, want.xyz);
  check(job.job.name === "three.xyz" && typeof job.job.id === "string", `upload answered ${JSON.stringify(job.job)}`);
  check(job.progress.length > 0 && job.progress.at(-1).loaded === want.xyz.length, `upload progress ${JSON.stringify(job.progress)}`);
  await a.waitForFunction(
    ({id, n}) => T.log.jobs.some((j) => j.id === id && j.state === "done" && j.committed === 3 && typeof j.created === "string") && T.room.length === n,
    {id: job.job.id, n: want.count + 5},
  );
  const jobs = await a.evaluate(() => T.room.jobs());
  check(jobs.some((j) => j.id === job.job.id && j.state === "done"), `jobs ${JSON.stringify(jobs)}`);
  const imported = await a.evaluate(async () => Array.from((await T.room.frame(-1)).positions));
  check(same(imported, [0, 0, 2, 1, 1, 2]), `imported frame ${imported}`);

  // An upload the hub stops answering must end: the watchdog aborts it.
  step("stalled upload");
  const stalled = [];
  await a.route(/\/import\?/, (route) => stalled.push(route)); // never answered
  const stall = await a.evaluate(() => {
    const up = T.room.upload(new Blob(["2\nx\nH 0 0 0\nH 0 0 1\n"]), {name: "stall.xyz", stallTimeout: 300});
    const hung = new Promise((r) => setTimeout(() => r({code: "still pending after 10 s"}), 10000));
    return Promise.race([up, hung]).then(
      (v) => (v && v.code) || "resolved",
      (e) => e.code,
    );
  });
  await a.unroute(/\/import\?/);
  for (const r of stalled) await r.abort().catch(() => {});
  check(stall === "timeout", `a stalled upload: ${stall}`);

  // ---- joins: snapshots that do not load, close meanwhile
  step("snapshot that does not load");
  await a.route(/\/docs\/state$/, (route) => route.fulfill({status: 200, contentType: "application/octet-stream", body: Buffer.from("not an automerge document")}));
  const snapshot = await a.evaluate(async (room) => {
    const c = await T.fs.connect(undefined, {name: "snapshot"});
    const code = await c.join(room).then(() => "joined", (e) => e.code);
    c.close();
    return code;
  }, want.room);
  await a.unroute(/\/docs\/state$/);
  check(snapshot === "bad_input", `joining with a state snapshot that does not load: ${snapshot}`);

  step("close during a join");
  const closedJoin = await a.evaluate(async (room) => {
    const c = await T.fs.connect(undefined, {name: "closer"});
    const p = c.join(room);
    c.close();
    return p.then((r) => `resolved (joined ${r.joined})`, (e) => e.code);
  }, want.room);
  check(closedJoin === "closed", `a join the client closed meanwhile: ${closedJoin}`);

  // ---- keys Automerge or plain objects cannot take
  step("hostile keys");
  const hostile = await a.evaluate(async () => {
    await T.client.createRoom("protos");
    const other = await T.fs.connect(undefined, {name: "mallory"});
    window.H = {other, r1: await T.client.join("protos"), r2: await other.join("protos")};
    const code = (fn) => {
      try {
        fn();
        return "accepted";
      } catch (e) {
        return e.code || `${e.name}: ${e.message}`;
      }
    };
    const c = H.r1.collection("notes");
    return {
      bookmark: code(() => H.r1.setBookmark("__proto__", "x")),
      deleteBookmark: code(() => H.r1.deleteBookmark("__proto__")),
      notAnID: code(() => H.r1.setBookmark("frame 1", "x")),
      camera: code(() => H.r1.setCamera(JSON.parse('{"__proto__": {"zoom": 2}}'))),
      itemKey: code(() => c.update({insert: [JSON.parse('{"id": "x", "__proto__": 1}')]})),
      itemID: code(() => c.update({insert: [{id: "\ud800"}]})),
      label: code(() => H.r1.setBookmark("0123456789abcdef", "half a pair \ud83d")),
    };
  });
  check(Object.values(hostile).every((c) => c === "bad_input"), `hostile keys: ${JSON.stringify(hostile)}`);
  // Another replica writes a root key "__proto__" (Automerge's proxy lets
  // a change do that): it must not become the prototype of room.state.
  await a.evaluate(() => {
    H.r2.change((d) => {
      d["__proto__"] = {polluted: true};
    });
    H.r2.setStep(5);
    H.r1.setBookmark("0123456789abcdef", "still works");
  });
  await a.waitForFunction(() => H.r1.state.step === 5 && H.r2.state.bookmarks && H.r2.state.bookmarks["0123456789abcdef"] === "still works");
  const protos = await a.evaluate(async () => {
    const clean = (s) => Object.getPrototypeOf(s) === Object.prototype && !Object.hasOwn(s, "__proto__") && s.polluted === undefined;
    const third = await T.fs.connect(undefined, {name: "late"});
    const r3 = await third.join("protos"); // from the snapshot
    const out = {local: clean(H.r2.state), synced: clean(H.r1.state), loaded: clean(r3.state) && r3.state.step === 5};
    third.close();
    H.other.close();
    return out;
  });
  check(protos.local && protos.synced && protos.loaded, `a root key __proto__: ${JSON.stringify(protos)}`);

  // ---- rejoins through B's proxy
  step("a failed rejoin is retried");
  let refusedJoin = false;
  proxy.toHub = (m, ws) => {
    const d = hubMessage(m);
    if (d && d.t === "join" && d.room === want.room && !refusedJoin) {
      refusedJoin = true;
      ws.send(Buffer.from(encode({t: "error", id: d.id, code: "unavailable", message: "busy (injected by the test)"})));
      return true;
    }
  };
  await reconnectB();
  await b.waitForFunction(() => T.room.joined);
  proxy.toHub = null;
  check(refusedJoin, "B's rejoin did not pass the proxy");
  await a.evaluate(() => T.room.setStep(1));
  await b.waitForFunction(() => T.room.state.step === 1);

  step("a late answer to a rejoin counts");
  let late = false;
  proxy.toPage = (m, ws) => {
    const d = hubMessage(m);
    if (d && d.t === "joined" && d.room === want.room && !late) {
      // As if the request had timed out just before the answer came.
      late = true;
      ws.send(Buffer.from(encode({t: "error", id: d.id, code: "timeout", message: "no answer (injected by the test)"})));
      ws.send(m);
      return true;
    }
  };
  proxy.toHub = (m) => {
    const d = hubMessage(m);
    return late && d && d.t === "join" && d.room === want.room; // no retry reaches the hub: only the late answer can join
  };
  await reconnectB();
  await b.waitForFunction(() => T.room.joined);
  proxy.toHub = proxy.toPage = null;
  check(late, "B's rejoin answer did not pass the proxy");
  await a.evaluate(() => T.room.setStep(2));
  await b.waitForFunction(() => T.room.state.step === 2);

  step("a room deleted and created again while offline");
  const PH = "phoenix";
  const BM = "00000000000000aa";
  await a.evaluate((n) => T.client.createRoom(n), PH);
  await b.evaluate(
    async ({n, bm}) => {
      T.ph = await T.client.join(n);
      T.log.recreated = [];
      T.log.phState = [];
      T.ph.on("recreated", (e) => T.log.recreated.push(e));
      T.ph.on("state", (d) => T.log.phState.push(...d.map((x) => x.id)));
      T.ph.setBookmark(bm, "from the old room");
      T.ph.collection("notes").update({insert: [{id: "n1", text: "old"}]});
    },
    {n: PH, bm: BM},
  );
  await a.evaluate(async (n) => (T.ph = await T.client.join(n)), PH);
  await a.waitForFunction((bm) => T.ph.state.bookmarks && T.ph.state.bookmarks[bm] && T.ph.collection("notes").size === 1, BM);
  proxy.refuse = true; // B stays offline meanwhile
  await sockets.at(-1).close();
  await b.waitForFunction(() => !T.ph.joined);
  await a.evaluate(async (n) => {
    await T.client.deleteRoom(n);
    await new Promise((r) => (T.ph.deleted ? r() : T.ph.on("deleted", r)));
    await T.client.createRoom(n);
  }, PH);
  proxy.refuse = false;
  await b.waitForFunction(() => T.log.recreated.length === 1 && T.ph.joined);
  const fresh = await b.evaluate((bm) => ({bookmarks: T.ph.state.bookmarks, notes: T.ph.collection("notes").size, events: T.log.phState}), BM);
  check(!(fresh.bookmarks && fresh.bookmarks[BM]) && fresh.notes === 0, `B kept the old room's state: ${JSON.stringify(fresh)}`);
  check(fresh.events.includes("bookmarks") && fresh.events.includes("collections"), `B's state events on the new room: ${fresh.events}`);
  await b.evaluate(() => T.ph.setStep(9));
  await a.evaluate(async (n) => (T.ph = await T.client.join(n)), PH);
  await a.waitForFunction(() => T.ph.state.step === 9);
  const resurrected = await a.evaluate((bm) => ({bookmark: T.ph.state.bookmarks && T.ph.state.bookmarks[bm], notes: T.ph.collection("notes").size}), BM);
  check(resurrected.bookmark === undefined && resurrected.notes === 0, `the new room got the old one's state: ${JSON.stringify(resurrected)}`);

  step("leave during a rejoin");
  let held = null;
  let heldOn = null;
  proxy.toPage = (m, ws) => {
    const d = hubMessage(m);
    if (d && d.t === "joined" && d.room === want.room && !held) {
      [held, heldOn] = [m, ws];
      return true;
    }
  };
  await sockets.at(-1).close();
  await until(() => held, "B's rejoin answer");
  await a.waitForFunction((id) => T.room.members.some((m) => m.client === id), idb.id); // the hub has B again
  await b.evaluate(() => T.room.leave());
  heldOn.send(held);
  proxy.toPage = null;
  await a.waitForFunction((id) => !T.room.members.some((m) => m.client === id), idb.id);
}

// accessControl checks the client on a hub with users: the token from
// localStorage, a reader's refused edits, a role change, a bad token.
async function accessControl() {
  step("access control");
  const context = await browser.newContext();
  const page = await newPage("C", context);
  await page.goto(`${hub}/healthz`);
  await page.evaluate((token) => localStorage.setItem("framesync.token", token), want.token);
  const joined = await open(page, "ann");
  check(joined.length === want.count, `ann sees ${joined.length} frames`);
  const reader = await page.evaluate(async () => {
    let code = "none";
    try {
      T.room.setStep(1);
    } catch (e) {
      code = e.code;
    }
    const f = await T.room.frame(0);
    return {role: T.room.role, code, atoms: f.numbers.length};
  });
  check(reader.role === "reader" && reader.code === "forbidden" && reader.atoms === 4, `reader ${JSON.stringify(reader)}`);
  await goSide("set-role", "ann", "writer");
  await page.waitForFunction(() => T.room.role === "writer");
  await page.evaluate(() => T.room.setStep(2));
  await goSide("wait-step", 2);

  const bad = await page.evaluate(() => T.fs.connect(undefined, {token: "fs1.not-a-token"}).then(() => "connected", (e) => e.code));
  check(bad === "unauthorized", `a bad token: ${bad}`);
  const anonymous = await page.evaluate(async (room) => {
    const c = await T.fs.connect(undefined, {token: ""});
    const code = await c.join(room).then(() => "joined", (e) => e.code);
    c.close();
    return code;
  }, want.room);
  check(anonymous === "unauthorized", `anonymous join of a private room: ${anonymous}`);

  // ---- the stored token goes to this page's hub only
  step("the stored token stays home");
  const wsURLs = [];
  await page.routeWebSocket(/other\.example/, (ws) => {
    wsURLs.push(ws.url());
    ws.onMessage((m) => {
      const d = hubMessage(m);
      if (d && d.t === "hello") ws.send(Buffer.from(encode({t: "welcome", client: "c1", hub: "elsewhere", version: 1})));
    });
  });
  const authHeaders = [];
  await page.route(/other\.example/, (route) => {
    authHeaders.push(route.request().headers()["authorization"] || "");
    route.fulfill({status: 200, contentType: "application/json", headers: {"Access-Control-Allow-Origin": "*"}, body: '{"rooms": []}'});
  });
  const elsewhere = await page.evaluate(async () => {
    const c = await T.fs.connect("http://other.example");
    const rooms = await c.rooms().then((r) => r.length, (e) => e.code);
    c.close();
    const explicit = await T.fs.connect("http://other.example", {token: "given"});
    explicit.close();
    return rooms;
  });
  check(wsURLs.length === 2 && !wsURLs[0].includes("token=") && wsURLs[1].includes("token=given"), `WebSocket URLs for another hub: ${wsURLs}`);
  check(elsewhere === 0 && same(authHeaders, [""]), `another hub's rooms: ${elsewhere}, Authorization ${JSON.stringify(authHeaders)}`);

  // ---- tokens revoked: a new login is taken up, otherwise the client stops
  // The page lists the WebSockets it opens, to see a client that stopped
  // stay stopped.
  await page.evaluate(() => {
    const W = window.WebSocket;
    window.opened = [];
    window.WebSocket = class extends W {
      constructor(url, ...rest) {
        super(url, ...rest);
        window.opened.push(String(url));
      }
    };
  });
  const login = () =>
    page.evaluate(async (password) => {
      const resp = await fetch("/api/auth/login", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({username: "ann", password})});
      const {token} = await resp.json();
      localStorage.setItem("framesync.token", token);
      return token;
    }, want.password);
  const logout = (token) => page.evaluate((t) => fetch("/api/auth/logout", {method: "POST", headers: {Authorization: "Bearer " + t}}).then((r) => r.status), token);
  // staysQuiet checks that client T[c], stopped since its "unauthorized"
  // error, opens no WebSocket with its token, even when the browser says it
  // is back online: it looks after longer than the clients' largest
  // reconnection back-off (1 s), so a timer-driven reconnect would show.
  const staysQuiet = (c, token) =>
    page.evaluate(
      async ({c, token}) => {
        window.dispatchEvent(new Event("online"));
        await new Promise((r) => setTimeout(r, 1500)); // watching for something that must not happen
        const opened = window.opened.slice(T[c + "Opened"]).filter((u) => new URL(u).searchParams.get("token") === token);
        return {status: T[c].status, opened: opened.length};
      },
      {c, token},
    );

  step("a revoked token replaced by a new login");
  const second = await login();
  let k = await page.evaluate(() => T.log.status.length);
  check((await logout(want.token)) === 204, "logout of the first token");
  await page.waitForFunction((k) => T.log.status.slice(k).includes("offline") && T.client.status === "online" && T.room.joined, k);
  await page.evaluate(() => T.room.setStep(3));
  await goSide("wait-step", 3);

  step("access withdrawn");
  await page.evaluate(() => {
    T.log.evicted = [];
    T.room.on("evicted", (e) => T.log.evicted.push({code: e.code, message: e.message}));
  });
  await goSide("drop-role", "ann");
  await page.waitForFunction(() => T.log.evicted.length === 1 && !T.room.joined);
  const evicted = await page.evaluate(async (room) => {
    let edit = "accepted";
    try {
      T.room.setStep(4);
    } catch (e) {
      edit = e.code;
    }
    const again = await T.client.join(room).then(() => "joined", (e) => e.code);
    return {edit, again, event: T.log.evicted[0], online: T.client.status};
  }, want.room);
  check(evicted.event.code === "forbidden" && evicted.edit === "closed" && evicted.again === "forbidden" && evicted.online === "online", `evicted: ${JSON.stringify(evicted)}`);
  await goSide("set-role", "ann", "reader");

  step("a revoked token without a new login");
  await page.evaluate(() =>
    T.client.on("error", (e) => {
      if (e.code === "unauthorized") T.clientOpened = window.opened.length;
    }),
  );
  check((await logout(second)) === 204, "logout of the second token");
  await page.waitForFunction(() => T.clientOpened !== undefined && T.client.status === "offline");
  const stopped = await staysQuiet("client", second);
  check(stopped.status === "offline" && stopped.opened === 0, `after the token was revoked: ${JSON.stringify(stopped)}`);

  step("a token revoked while the hub was away");
  const third = await login();
  await page.evaluate(async (room) => {
    T.c3 = await T.fs.connect(undefined, {name: "ann again", minBackoff: 100, maxBackoff: 1000});
    T.c3.on("error", (e) => {
      if (e.code === "unauthorized") T.c3Opened = window.opened.length;
    });
    T.r3 = await T.c3.join(room);
  }, want.room);
  await goSide("stop-http");
  await page.waitForFunction(() => T.c3.status !== "online");
  await goSide("revoke", third);
  await goSide("resume-http");
  await page.waitForFunction(() => T.c3Opened !== undefined && T.c3.status === "offline");
  const away = await staysQuiet("c3", third);
  check(away.status === "offline" && away.opened === 0, `after the token was revoked while away: ${JSON.stringify(away)}`);

  // A login in another tab (same origin, same storage) brings both back.
  step("a new login in another tab resumes stopped clients");
  const tab = await newPage("C2", context);
  await tab.goto(`${hub}/healthz`);
  await tab.evaluate(async (password) => {
    const resp = await fetch("/api/auth/login", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({username: "ann", password})});
    localStorage.setItem("framesync.token", (await resp.json()).token);
  }, want.password);
  await page.waitForFunction(() => T.client.status === "online" && T.c3.status === "online" && T.r3.joined);
  const rejoined = await page.evaluate((room) => T.client.join(room).then((r) => r.role, (e) => e.code), want.room);
  check(rejoined === "reader", `joining after the new login: ${rejoined}`);
  await tab.close();
}
