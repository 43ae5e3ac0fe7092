// framesync.js: the browser client of a framesync hub (docs/web-client.md).
//
//   import {connect} from "/ui/dist/framesync.js";
//   const client = await connect();            // this page's hub, token from localStorage
//   const room = await client.join("demo");
//   const f = await room.frame(0);             // f.positions: Float64Array, 3N
//   room.on("state", (diffs) => ...);          // [{id: "step", old, new}, ...]
//   room.setStep(3);
//
// The control channel is one WebSocket per client carrying msgpack messages
// (docs/protocol.md); the room documents are Automerge documents synced
// over it (crdt/doc.go); frames travel over HTTP as msgpack-numpy
// (docs/frame-format.md). The client reconnects by itself with backoff and
// resumes document sync; what was read stays readable meanwhile.
import * as A from "@automerge/automerge/slim";
import {encode} from "@msgpack/msgpack";
import {Emitter, fsError, isPlainObject} from "./fs-util.js";
import {Http, responseError} from "./fs-http.js";
import {decodeMsgpack, NDArray, decodeFrame} from "./fs-frames.js";
import {Room} from "./fs-room.js";

export {NDArray, decodeFrame};

// version is the control channel protocol version this module speaks.
export const version = 1;

// tokenKey is where the hub's pages keep the login token (localStorage).
export const tokenKey = "framesync.token";

const REQUEST_TIMEOUT_MS = 15_000;
const HELLO_TIMEOUT_MS = 15_000;
const ROOM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

// The Automerge core is WebAssembly, loaded once per page from next to this
// module (build.mjs copies automerge.wasm into dist/).
let wasmReady = null;
function initAutomerge(url) {
  if (A.isWasmInitialized()) return Promise.resolve();
  if (!wasmReady) {
    wasmReady = A.initializeWasm(url || new URL("./automerge.wasm", import.meta.url).href).catch((e) => {
      wasmReady = null; // let a later connect try again
      throw fsError("wasm", `loading the Automerge core: ${e && e.message ? e.message : e}`);
    });
  }
  return wasmReady;
}

function storedToken() {
  try {
    return globalThis.localStorage ? localStorage.getItem(tokenKey) || "" : "";
  } catch {
    return ""; // storage disabled
  }
}

// connect opens a client for the hub at hubURL (default: this page's
// origin) and resolves once the hub has welcomed it. Options:
//   token       bearer token; default the one the hub's login page stored,
//               for the hub of this page's origin only (never sent elsewhere)
//   name        display name shown to the other members
//   cacheBytes  frame cache budget per room (default 256 MB)
//   minBackoff, maxBackoff  reconnection delays in ms (default 200, 10000)
//   wasmURL     where automerge.wasm is (default: next to this module)
export async function connect(hubURL, opts = {}) {
  await initAutomerge(opts.wasmURL);
  const client = new Client(hubURL, opts);
  await client._start();
  return client;
}

export class Client {
  #http;
  #tokenStored; // the token is the one in localStorage, read again when refused
  #name;
  #opts;
  #events = new Emitter();
  #ws = null;
  #pending = new Map(); // request id -> {resolve, reject, timer}
  #nextID = 0;
  #rooms = new Map(); // name -> Room
  #joining = new Map(); // name -> Promise<Room>
  #attempt = 0; // failed connection attempts in a row
  #timer = null; // reconnection timer
  #closed = false;
  #wasOnline = false;
  #stopped = false; // the hub refused the token: no reconnection until a new login
  #onlineListener = null;
  #storageListener = null;

  constructor(hubURL, opts) {
    const here = globalThis.location;
    const base = new URL(hubURL || here.origin, here && here.href);
    this.url = base.origin + base.pathname.replace(/\/+$/, "");
    // The stored token is the login to this page's hub: another hub must
    // not get it (it would be in its logs, and could use it here).
    this.#tokenStored = opts.token === undefined && !!here && base.origin === here.origin;
    const token = opts.token !== undefined ? opts.token : this.#tokenStored ? storedToken() : "";
    this.#http = new Http(this.url, token);
    this.#name = opts.name || "";
    this.#opts = {minBackoff: 200, maxBackoff: 10_000, cacheBytes: 256 << 20, ...opts};
    this.status = "connecting";
    this.id = ""; // from welcome; kept across reconnects
    this.hub = ""; // the hub's ID
  }

  // on subscribes to "status" (the new status) or "error" (problems not
  // tied to a request: a refused sync message, a malformed message; code
  // "unauthorized" when the hub no longer takes the token and the client
  // has stopped, see #tokenRefused).
  on(event, fn) {
    return this.#events.on(event, fn);
  }

  _report(err) {
    this.#events.emit("error", err);
  }

  #setStatus(s) {
    if (this.status === s) return;
    this.status = s;
    this.#events.emit("status", s);
  }

  // ---- connection

  // _start makes the first connection. Its failure rejects connect with the
  // hub's reason when the hub can tell it (a WebSocket handshake refused
  // with 401 shows the browser nothing).
  async _start() {
    try {
      await this.#open();
    } catch (e) {
      this.#closed = true;
      this.#setStatus("offline");
      throw await this.#explain(e);
    }
    // Back online (laptop woke, Wi-Fi returned): retry at once instead of
    // waiting out the backoff.
    if (globalThis.addEventListener) {
      this.#onlineListener = () => this.#reconnectNow();
      globalThis.addEventListener("online", this.#onlineListener);
      // A login in another tab of this origin stores a new token.
      if (this.#tokenStored) {
        this.#storageListener = (ev) => ev.key === tokenKey && this.#newLogin();
        globalThis.addEventListener("storage", this.#storageListener);
      }
    }
  }

  async #explain(err) {
    try {
      const resp = await fetch(this.url + "/api/auth/me", {headers: this.#http.headers(), signal: AbortSignal.timeout(5000)});
      if (!resp.ok) return await responseError(resp, "connect");
    } catch {
      // the hub is unreachable: err says so
    }
    return err;
  }

  #wsURL() {
    const ws = new URL(this.url + "/api/ws");
    ws.protocol = ws.protocol === "https:" ? "wss:" : "ws:";
    if (this.#http.token) ws.searchParams.set("token", this.#http.token);
    return ws.href;
  }

  // #open makes one connection attempt and resolves on the welcome.
  #open() {
    this.#setStatus("connecting");
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.#wsURL());
      } catch (e) {
        reject(fsError("network", `connect: ${e.message}`));
        return;
      }
      ws.binaryType = "arraybuffer";
      this.#ws = ws;
      let welcomed = false;
      const timer = setTimeout(() => ws.close(), HELLO_TIMEOUT_MS);
      ws.onopen = () => {
        ws.send(encode({t: "hello", client: this.id, name: this.#name}));
      };
      ws.onmessage = (ev) => {
        const m = decodeMessage(ev.data);
        if (!m) {
          this._report(fsError("bad_input", "a malformed message from the hub was ignored"));
          return;
        }
        if (welcomed) {
          this.#dispatch(m);
        } else if (m.t === "welcome") {
          welcomed = true;
          clearTimeout(timer);
          this.#welcome(m);
          resolve();
        }
      };
      ws.onerror = () => {}; // onclose follows with what we need
      ws.onclose = (ev) => {
        clearTimeout(timer);
        if (this.#ws === ws) this.#closedConn(ev, welcomed);
        if (!welcomed) reject(fsError("network", `the hub's control channel at ${this.url} closed (code ${ev.code}${ev.reason ? ": " + ev.reason : ""})`, {closeCode: ev.code}));
      };
    });
  }

  #welcome(m) {
    if (typeof m.client === "string" && m.client) this.id = m.client;
    if (typeof m.hub === "string") this.hub = m.hub;
    this.#attempt = 0;
    this.#wasOnline = true;
    this.#setStatus("online");
    for (const room of this.#rooms.values()) this.#rejoin(room);
  }

  // #rejoin joins a room again after a reconnect: sync resumes with fresh
  // sync states on the same documents. A rejoin that fails (a hub that has
  // just restarted may answer late) is retried with backoff while this
  // connection lasts; a room deleted or no longer readable meanwhile ends.
  #rejoin(room, attempt = 0) {
    const ws = this.#ws;
    const pending = () => this.#ws === ws && this.#rooms.get(room.name) === room && !room.joined;
    room._join().catch((e) => {
      if (!pending()) return; // disconnected, left, or joined by a late answer meanwhile
      if (e.code === "not_found") {
        room._handle({t: "room_deleted", room: room.name}); // gone
      } else if (e.code === "forbidden") {
        room._handle({t: "error", room: room.name, code: e.code, message: `rejoin: ${e.message}`}); // no longer ours: evicted
      } else if (e.code !== "offline") {
        room._handle({t: "error", room: room.name, code: e.code, message: `rejoin: ${e.message} (trying again)`});
        setTimeout(() => pending() && this.#rejoin(room, attempt + 1), this.#backoff(attempt));
      }
    });
  }

  // #closedConn handles the end of the current connection; welcomed: the
  // hub had welcomed it (else it was a failed attempt).
  #closedConn(ev, welcomed) {
    this.#ws = null;
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(fsError("offline", "the connection to the hub closed before the answer"));
      this.#pending.delete(id);
    }
    for (const room of this.#rooms.values()) room._disconnected();
    this.#setStatus("offline");
    if (this.#closed || !this.#wasOnline) return;
    if (ev.code === 1008) {
      // The hub revoked the token (logout, refresh, user deleted).
      this.#tokenRefused(`the hub closed the connection: ${ev.reason || "token revoked"}`);
    } else if (!welcomed && this.#http.token) {
      this.#checkToken();
    } else {
      this.#scheduleReconnect();
    }
  }

  // #checkToken runs after a failed reconnection attempt: a WebSocket
  // handshake refused with 401 shows the browser nothing, so the hub is
  // asked whether the token (expired, or revoked while we were away) is
  // the reason.
  async #checkToken() {
    const err = await this.#explain(null);
    if (this.#closed || this.#ws) return;
    if (err && err.code === "unauthorized") this.#tokenRefused(err.message);
    else this.#scheduleReconnect();
  }

  // #tokenRefused handles the hub refusing the token. Retrying with it
  // fails until the user logs in again: a token from localStorage is read
  // again, and if a new one is there, the client reconnects with it.
  // Otherwise the client stops (status "offline"; rooms stay as they are,
  // edits are kept) and reports "unauthorized", so that the page can send
  // the user to its login. A new token stored by another tab (see
  // #newLogin) resumes it.
  #tokenRefused(why) {
    const fresh = this.#tokenStored ? storedToken() : "";
    if (fresh && fresh !== this.#http.token) {
      this.#http.token = fresh;
      this.#attempt = 0;
      this.#scheduleReconnect();
      return;
    }
    this.#stopped = true;
    this._report(fsError("unauthorized", `${why}; log in again`));
  }

  // #newLogin resumes a client stopped by a refused token once a new token
  // is stored.
  #newLogin() {
    const fresh = storedToken();
    if (!this.#stopped || this.#closed || !fresh || fresh === this.#http.token) return;
    this.#stopped = false;
    this.#http.token = fresh;
    this.#attempt = 0;
    this.#tryConnect();
  }

  // #backoff returns the delay before retry number attempt (from 0):
  // exponential with full jitter, so that many clients of a hub that
  // restarts do not all come back at the same instant.
  #backoff(attempt) {
    const {minBackoff, maxBackoff} = this.#opts;
    return minBackoff / 2 + Math.random() * Math.min(maxBackoff, minBackoff * 2 ** attempt);
  }

  #scheduleReconnect() {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#tryConnect(), this.#backoff(this.#attempt++));
  }

  #tryConnect() {
    this.#timer = null;
    if (this.#closed || this.#ws) return;
    this.#open().catch(() => {}); // a failure closes, which schedules the next try
  }

  #reconnectNow() {
    if (this.#closed || this.#ws || !this.#timer) return;
    clearTimeout(this.#timer);
    this.#attempt = 0;
    this.#tryConnect();
  }

  // ---- messages

  #dispatch(m) {
    const pending = m.id ? this.#pending.get(m.id) : undefined;
    if (pending) {
      this.#pending.delete(m.id);
      clearTimeout(pending.timer);
      if (m.t === "error") pending.reject(hubError(m));
      else pending.resolve(m);
      return;
    }
    const room = typeof m.room === "string" ? this.#rooms.get(m.room) : undefined;
    if (room) {
      try {
        room._handle(m);
      } catch (e) {
        // A message of a shape nobody expected: report it, keep going.
        this._report(fsError("bad_input", `handling ${m.t} of room ${m.room}: ${e.message}`));
      }
    } else if (m.t === "joined" && typeof m.room === "string") {
      this._leaveStale(m.room); // a late answer to a join given up
    } else if (m.t === "error") {
      this._report(hubError(m));
    }
  }

  // _leaveStale leaves room name at the hub after it answered a join of a
  // room this client no longer has (left meanwhile, or its join given up),
  // unless the room is being joined again.
  _leaveStale(name) {
    if (this.#rooms.has(name) || this.#joining.has(name)) return;
    this._request({t: "leave", room: name}).catch(() => {});
  }

  // _send sends one message; false when not connected.
  _send(m) {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.status !== "online") return false;
    ws.send(encode(m, {ignoreUndefined: true}));
    return true;
  }

  // _request sends a request and resolves with the hub's reply; an error
  // reply rejects with an Error carrying the hub's code, message and
  // details.
  _request(m, timeout = REQUEST_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      const id = ++this.#nextID;
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(fsError("timeout", `${m.t}: no answer from the hub within ${timeout / 1000} s`));
      }, timeout);
      this.#pending.set(id, {resolve, reject, timer});
      if (!this._send({...m, id})) {
        this.#pending.delete(id);
        clearTimeout(timer);
        reject(fsError("offline", `${m.t}: not connected to the hub`));
      }
    });
  }

  // ---- rooms

  // rooms lists the rooms the caller can see: [{name, frames, generation,
  // members, changed}].
  async rooms() {
    const r = await this.#http.json("GET", "/api/rooms");
    return r && Array.isArray(r.rooms) ? r.rooms : [];
  }

  // createRoom creates a room, empty or as a copy of room from; resolves
  // with its info.
  createRoom(name, from) {
    const body = {name};
    if (from) body.from = from;
    return this.#http.json("POST", "/api/rooms", body);
  }

  // deleteRoom deletes a room (its members get room_deleted).
  async deleteRoom(name) {
    await this.#http.json("DELETE", `/api/rooms/${encodeURIComponent(name)}`);
  }

  // join joins a room and resolves once its documents are loaded: length,
  // entries and state are readable at once. Joining a joined room gives
  // the same Room.
  join(name) {
    if (typeof name !== "string" || !ROOM_NAME.test(name)) {
      return Promise.reject(fsError("bad_input", `${JSON.stringify(name)} is not a valid room name: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`));
    }
    if (this.#closed) return Promise.reject(fsError("closed", "the client is closed"));
    const known = this.#rooms.get(name);
    if (known) return Promise.resolve(known);
    let p = this.#joining.get(name);
    if (!p) {
      p = this.#join(name).finally(() => this.#joining.delete(name));
      this.#joining.set(name, p);
    }
    return p;
  }

  async #join(name) {
    const room = new Room(this, this.#http, name, this.#opts.cacheBytes);
    await room._load();
    this.#checkOpen(name);
    this.#rooms.set(name, room); // before the join, so no sync message is missed
    try {
      await room._join();
    } catch (e) {
      if (e.code !== "offline") {
        this._forget(room);
        throw e;
      }
      // Dropped meanwhile: the reconnect joins it.
    }
    this.#checkOpen(name);
    return room;
  }

  #checkOpen(name) {
    if (this.#closed) throw fsError("closed", `join ${name}: the client was closed meanwhile`);
  }

  _forget(room) {
    if (this.#rooms.get(room.name) === room) this.#rooms.delete(room.name);
  }

  // close closes the connection for good; rooms stay readable.
  close() {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    if (this.#onlineListener) globalThis.removeEventListener("online", this.#onlineListener);
    if (this.#storageListener) globalThis.removeEventListener("storage", this.#storageListener);
    for (const room of this.#rooms.values()) room._close();
    this.#rooms.clear();
    const ws = this.#ws;
    if (ws) ws.close(1000, "client closed");
    else this.#setStatus("offline");
  }
}

// decodeMessage decodes one control channel message, or returns null for
// anything that is not a binary msgpack map with a string "t".
function decodeMessage(data) {
  if (!(data instanceof ArrayBuffer)) return null;
  try {
    const m = decodeMsgpack(new Uint8Array(data));
    return isPlainObject(m) && typeof m.t === "string" ? m : null;
  } catch {
    return null;
  }
}

function hubError(m) {
  const details = isPlainObject(m.payload) ? {...m.payload} : {};
  // Times in milliseconds, as everywhere in this module.
  if (details.expires instanceof Date) details.expires = details.expires.getTime();
  else if (typeof details.expires === "string") details.expires = Date.parse(details.expires);
  return fsError(typeof m.code === "string" ? m.code : "error", typeof m.message === "string" ? m.message : "the hub refused the request", details);
}
