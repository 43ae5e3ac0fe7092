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
//   token       bearer token; default the one the hub's login page stored
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
  #wsURL;
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
  #onlineListener = null;

  constructor(hubURL, opts) {
    const base = new URL(hubURL || globalThis.location.origin, globalThis.location && globalThis.location.href);
    this.url = base.origin + base.pathname.replace(/\/+$/, "");
    const token = opts.token !== undefined ? opts.token : storedToken();
    this.#http = new Http(this.url, token);
    const ws = new URL(this.url + "/api/ws");
    ws.protocol = base.protocol === "https:" ? "wss:" : "ws:";
    if (token) ws.searchParams.set("token", token);
    this.#wsURL = ws.href;
    this.#name = opts.name || "";
    this.#opts = {minBackoff: 200, maxBackoff: 10_000, cacheBytes: 256 << 20, ...opts};
    this.status = "connecting";
    this.id = ""; // from welcome; kept across reconnects
    this.hub = ""; // the hub's ID
  }

  // on subscribes to "status" (the new status) or "error" (problems not
  // tied to a request: a refused sync message, a malformed message).
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

  // #open makes one connection attempt and resolves on the welcome.
  #open() {
    this.#setStatus("connecting");
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.#wsURL);
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
        if (this.#ws === ws) this.#closedConn(ev);
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
  // sync states on the same documents.
  #rejoin(room) {
    room._join().catch((e) => {
      if (e.code === "not_found" || e.code === "forbidden") {
        room._handle({t: "room_deleted", room: room.name}); // gone, or no longer ours
      } else if (e.code !== "offline") {
        room._handle({t: "error", code: e.code, message: `rejoin: ${e.message}`});
      }
    });
  }

  // #closedConn handles the end of the current connection.
  #closedConn(ev) {
    this.#ws = null;
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(fsError("offline", "the connection to the hub closed before the answer"));
      this.#pending.delete(id);
    }
    for (const room of this.#rooms.values()) room._disconnected();
    if (ev.code === 1008 && this.#wasOnline) {
      // The hub revoked the token (logout, refresh, user deleted): retrying
      // with it fails until the page logs in again.
      this._report(fsError("unauthorized", `the hub closed the connection: ${ev.reason || "token revoked"}`));
    }
    this.#setStatus("offline");
    if (!this.#closed && this.#wasOnline) this.#scheduleReconnect();
  }

  #scheduleReconnect() {
    // Exponential backoff with full jitter, so that many clients of a hub
    // that restarts do not all come back at the same instant.
    const {minBackoff, maxBackoff} = this.#opts;
    const cap = Math.min(maxBackoff, minBackoff * 2 ** this.#attempt++);
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#tryConnect(), minBackoff / 2 + Math.random() * cap);
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
    } else if (m.t === "error") {
      this._report(hubError(m));
    }
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
    this.#rooms.set(name, room); // before the join, so no sync message is missed
    try {
      await room._join();
    } catch (e) {
      if (e.code !== "offline") {
        this.#rooms.delete(name);
        throw e;
      }
      // Dropped meanwhile: the reconnect joins it.
    }
    return room;
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
