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
import {encode} from "@msgpack/msgpack";

const [hub, expectPath] = process.argv.slice(2);
const want = JSON.parse(readFileSync(expectPath, "utf8"));
const TIMEOUT = 15000;

// ---- pages

const browser = await launch();
const pageErrors = [];

async function newPage(label) {
  const page = await browser.newPage();
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
    return {positions: Array.from(f.positions), numbers: Array.from(f.numbers), cell: f.cell, pbc: f.pbc, symbols: f.fields["arrays.symbols"].data, name: f.fields["info.name"]};
  });
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
  // inject messages the hub would never send.
  const sockets = [];
  await b.routeWebSocket(/\/api\/ws/, (ws) => {
    const server = ws.connectToServer();
    sockets.push(ws);
    ws.onMessage((m) => server.send(m));
    server.onMessage((m) => ws.send(m));
  });
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
}

// accessControl checks the client on a hub with users: the token from
// localStorage, a reader's refused edits, a role change, a bad token.
async function accessControl() {
  step("access control");
  const page = await newPage("C");
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
    return c.join(room).then(() => "joined", (e) => e.code);
  }, want.room);
  check(anonymous === "unauthorized", `anonymous join of a private room: ${anonymous}`);
}
