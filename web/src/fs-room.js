// A joined room: its two Automerge documents synced with the hub over the
// control channel, frames over HTTP, members, locks, presenter and
// presence. Created by Client.join (framesync.js); the methods whose names
// start with "_" are the client's side of that contract, not page API.
import * as A from "@automerge/automerge/slim";
import {Emitter, fsError, deepFreeze, equal, isPlainObject} from "./fs-util.js";
import {FrameStore} from "./fs-frames.js";
import {toPlain, normalize, checkString, toAM, isMap, writeMapInPlace, parseEntry, sameHeads} from "./fs-state.js";

// How many sync messages one flush sends per document at most: Automerge
// returns null once it waits for the hub's answer, this only guards
// against a loop.
const MAX_SYNC_BURST = 64;

// A frame ID: 16 lower-case hex digits (crdt/doc.go).
const FRAME_ID = /^[0-9a-f]{16}$/;

export class Room {
  #client;
  #http;
  #events = new Emitter();
  #frames;
  #traj = null; // trajectory document (written by the hub only)
  #state = null; // state document
  #trajSync = A.initSyncState();
  #stateSync = A.initSyncState();
  #joined = false; // joined on the current connection
  #left = false; // left, deleted, evicted, or the client closed
  #created; // the room's creation time (ms) when these documents were loaded
  #mirror = Object.freeze({}); // plain, frozen copy of the state document
  #entries = null; // parsed trajectory entries, dropped when it changes
  #index = null; // collection name -> Map(id -> item), dropped when collections change
  #collections = new Map(); // name -> {api, callbacks: Map(handle -> fn)}
  #nextHandle = 1;

  constructor(client, http, name, cacheBytes) {
    this.#client = client;
    this.#http = http;
    this.#frames = new FrameStore(http, name, cacheBytes);
    this.name = name;
    this.role = "";
    this.info = null;
    this.members = Object.freeze([]);
    this.locks = Object.freeze([]);
    this.presenter = null;
    this.deleted = false;
  }

  // ---- events

  // on subscribes to an event: "state", "trajectory", "frame_updated",
  // "generation", "members", "locks", "presenter", "frame", "presence",
  // "job", "joined", "role", "deleted", "evicted", "recreated", "error".
  // Returns the unsubscribe function.
  on(event, fn) {
    return this.#events.on(event, fn);
  }

  // #report tells the page about a problem it did not ask about (a sync
  // message refused, an error without a request): "error" on the room and
  // on the client.
  #report(err) {
    err.room = this.name;
    this.#events.emit("error", err);
    this.#client._report(err);
  }

  // ---- lifecycle (called by the client)

  // _load starts the documents from the hub's snapshots: one request each,
  // instead of syncing a whole history message by message (crdt/doc.go:
  // cold joins should start from a snapshot). It also replaces documents
  // already loaded (see #recreated), with "trajectory" and "state" events
  // for what changed.
  async _load() {
    const base = `/api/rooms/${encodeURIComponent(this.name)}/docs/`;
    const [traj, state] = await Promise.all([this.#http.bytes(base + "trajectory"), this.#http.bytes(base + "state")]);
    const trajDoc = this.#loadDoc(traj, "trajectory");
    const stateDoc = this.#loadDoc(state, "state");
    [this.#traj, this.#trajSync] = [trajDoc, A.initSyncState()];
    [this.#state, this.#stateSync] = [stateDoc, A.initSyncState()];
    this.#entries = null;
    this.#events.emit("trajectory", {length: this.length, generation: this.generation});
    this.#stateChanged(null);
  }

  // #loadDoc loads a snapshot. One that does not load fails the join: an
  // empty document in its place would not share the skeleton change
  // (crdt/doc.go), so an edit made before the first sync would create root
  // maps that conflict with the skeleton's, and lose entries in the merge.
  #loadDoc(bytes, what) {
    try {
      return A.load(bytes);
    } catch (e) {
      throw fsError("bad_input", `room ${this.name}: the hub's ${what} snapshot does not load: ${e.message}`);
    }
  }

  // _join joins the room on the current connection and starts syncing.
  async _join() {
    const m = await this.#client._request({t: "join", room: this.name});
    if (this.#left) {
      // Left while the join was under way: the hub made us a member anyway.
      this.#client._leaveStale(this.name);
      return;
    }
    if (this.#joined) return; // a late answer to an earlier join came first
    const created = createdOf(m.info);
    if (this.#isRecreated(created)) return this.#recreated(created);
    this.#accept(m.info);
  }

  // #isRecreated reports whether the room the hub has is not the one these
  // documents came from: deleted and created again under the same name.
  #isRecreated(created) {
    return this.#created !== undefined && created !== undefined && created !== this.#created;
  }

  // #recreated handles a room deleted and created again while this page was
  // away. Both rooms start from the same skeleton, so syncing the old
  // documents would bring what was deleted back for everyone: they are
  // dropped instead (with any edits not sent yet), fresh snapshots loaded
  // and the room joined again on a fresh sync session. "recreated" tells the
  // page to redraw.
  async #recreated(created) {
    await this.#client._request({t: "leave", room: this.name}).catch((e) => {
      // Refused: not a member. Unanswered: maybe still one, and syncing
      // the old documents: fail, the client tries again.
      if (e.code === "offline" || e.code === "timeout") throw e;
    });
    if (this.#left) return;
    await this._load();
    if (this.#left) return;
    this.#created = created;
    this.#events.emit("recreated", {created});
    await this._join();
  }

  // #accept takes the hub's joined answer: sync starts.
  #accept(info) {
    if (this.#created === undefined) this.#created = createdOf(info);
    this.#joined = true;
    this.#setInfo(info);
    this.#flush();
    this.#events.emit("joined", this.info);
  }

  // _disconnected is called when the connection ends. The next connection
  // syncs with fresh sync states on the same documents: nothing local is
  // lost, and edits made meanwhile are sent then.
  _disconnected() {
    this.#joined = false;
    this.#trajSync = A.initSyncState();
    this.#stateSync = A.initSyncState();
  }

  // _close ends the room for good (left, deleted, client closed); what was
  // read stays readable.
  _close() {
    this.#left = true;
    this._disconnected();
  }

  get joined() {
    return this.#joined;
  }

  // leave leaves the room; its documents and cached frames stay readable.
  async leave() {
    if (this.#left) return;
    const joined = this.#joined;
    this._close();
    this.#client._forget(this);
    if (joined) await this.#client._request({t: "leave", room: this.name}).catch(() => {});
  }

  // ---- messages of the hub

  _handle(m) {
    switch (m.t) {
      case "sync":
        return this.#receive(m);
      case "member":
        return this.#member(m);
      case "lock_state":
        return this.#lockState(m);
      case "presenter":
        if (typeof m.holder !== "string") return;
        if (m.state === "acquired" || m.state === "renewed") this.#setPresenter(m.holder, m.expires);
        else if (this.presenter && this.presenter.holder === m.holder) this.#setPresenter(null);
        return;
      case "frame":
        if (!Number.isSafeInteger(m.step) || typeof m.client !== "string") return;
        return this.#events.emit("frame", {step: m.step, client: m.client, name: this.#nameOf(m.client), frame: m.frame, payload: m.payload});
      case "presence":
        if (typeof m.client !== "string") return;
        return this.#events.emit("presence", {client: m.client, name: m.name || this.#nameOf(m.client), payload: m.payload});
      case "frame_updated":
      case "generation":
        return this.#events.emit(m.t, m);
      case "job": {
        const job = normalizeJob(m.payload);
        return job && this.#events.emit("job", job);
      }
      case "role":
        if (typeof m.state !== "string") return;
        this.role = m.state;
        if (this.info) this.info = Object.freeze({...this.info, role: m.state});
        return this.#events.emit("role", m.state);
      case "joined":
        // A late answer to a join whose request timed out: the hub made us
        // a member, so it counts (the client's retry finds the room
        // joined), unless the room was recreated: the retry handles that.
        if (this.#left || this.#joined || this.#isRecreated(createdOf(m.info))) return;
        return this.#accept(m.info);
      case "room_deleted":
        this.deleted = true;
        return this.#end("deleted", this.name);
      case "error":
        if (m.code === "forbidden" && !m.id && !m.doc) {
          // Not an answer: the hub withdrew our access and dropped us from
          // the room (relay evictOutsiders).
          return this.#end("evicted", fsError("forbidden", typeof m.message === "string" ? m.message : `room ${this.name}: your access was withdrawn`, {room: this.name}));
        }
        return this.#report(fsError(m.code || "error", m.message || "error from the hub", m.payload || {}));
    }
  }

  // #end ends the room on the hub's word (deleted, access withdrawn): no
  // longer synced nor rejoined; what was read stays readable.
  #end(event, value) {
    this._close();
    this.#client._forget(this);
    this.#events.emit(event, value);
  }

  // #receive applies one sync message of the hub.
  #receive(m) {
    if (!this.#joined || !(m.data instanceof Uint8Array)) return;
    const isState = m.doc === "state";
    if (!isState && m.doc !== "trajectory") return;
    const doc = isState ? this.#state : this.#traj;
    const before = A.getHeads(doc);
    try {
      const [next, sync] = A.receiveSyncMessage(doc, isState ? this.#stateSync : this.#trajSync, m.data);
      if (isState) [this.#state, this.#stateSync] = [next, sync];
      else [this.#traj, this.#trajSync] = [next, sync];
    } catch (e) {
      this.#report(fsError("bad_input", `sync ${m.doc}: ${e.message}`));
      return;
    }
    if (isState) this.#stateChanged(before);
    else this.#trajectoryChanged(before);
    this.#flush();
  }

  // #flush sends what the sync states have for the hub.
  #flush() {
    if (!this.#joined) return;
    for (const doc of ["trajectory", "state"]) {
      for (let i = 0; i < MAX_SYNC_BURST; i++) {
        const isState = doc === "state";
        const [sync, data] = A.generateSyncMessage(isState ? this.#state : this.#traj, isState ? this.#stateSync : this.#trajSync);
        if (isState) this.#stateSync = sync;
        else this.#trajSync = sync;
        if (!data) break;
        if (!this.#client._send({t: "sync", room: this.name, doc, data})) return; // the reconnect resyncs
      }
    }
  }

  // ---- trajectory

  // length is the number of frames.
  get length() {
    const f = this.#traj && this.#traj.frames;
    return Array.isArray(f) ? f.length : 0;
  }

  // generation is the room's generation (one more per commit).
  get generation() {
    return toPlain(this.#traj && this.#traj.generation) || 0;
  }

  // entries returns every frame's entry {id, version, hash, time, author},
  // in order (a frozen array, shared until the trajectory changes).
  entries() {
    if (!this.#entries) {
      const f = this.#traj && this.#traj.frames;
      this.#entries = Object.freeze(Array.isArray(f) ? Array.from(f, (s) => Object.freeze(parseEntry(s))) : []);
    }
    return this.#entries;
  }

  // entry returns the entry of frame i (negative counts from the end), or
  // undefined.
  entry(i) {
    const n = this.length;
    if (!Number.isInteger(i)) return undefined;
    if (i < 0) i += n;
    if (i < 0 || i >= n) return undefined;
    if (this.#entries) return this.#entries[i];
    return Object.freeze(parseEntry(this.#traj.frames[i]));
  }

  #trajectoryChanged(before) {
    if (sameHeads(before, A.getHeads(this.#traj))) return;
    this.#entries = null;
    this.#events.emit("trajectory", {length: this.length, generation: this.generation});
  }

  // frame reads frame ref (an index, negative from the end, or a frame ID)
  // with the fields sel selects (default all): {index, id, version, hash,
  // numbers, positions, cell, pbc, fields}. Only fields whose blobs are not
  // cached are fetched; offline, cached frames still read.
  async frame(ref, {fields} = {}) {
    let index = ref;
    if (typeof ref === "string") index = this.entries().findIndex((e) => e.id === ref);
    else if (Number.isInteger(ref) && ref < 0) index = ref + this.length;
    const e = index >= 0 ? this.entry(index) : undefined; // -1: no such ID
    if (!e) throw fsError("not_found", `room ${this.name}: no frame ${ref} (${this.length} frames)`);
    if (fields !== undefined && !Array.isArray(fields)) throw fsError("bad_input", "frame: fields must be an array of field names");
    return this.#frames.get(e, index, fields);
  }

  // frameFetches counts the frame data requests made (manifests not
  // included).
  get frameFetches() {
    return this.#frames.fetches;
  }

  // ---- state

  // state is a plain, frozen copy of the state document, replaced (not
  // mutated) on every change.
  get state() {
    return this.#mirror;
  }

  #checkWritable() {
    if (this.#left) throw fsError("closed", `room ${this.name}: left`);
    if (this.role === "reader") throw fsError("forbidden", `room ${this.name}: you are a reader here; changing the shared state needs the writer role`);
  }

  // change runs fn on the state document as one Automerge change (fn gets
  // the document's root; see Automerge's change) and sends it to the hub.
  change(fn, message) {
    this.#checkWritable();
    const before = A.getHeads(this.#state);
    this.#state = message ? A.change(this.#state, {message}, fn) : A.change(this.#state, fn);
    this.#stateChanged(before);
    this.#flush();
  }

  // setField replaces root key key with value (normalized), unless equal.
  #setField(key, value) {
    this.#checkWritable();
    const v = normalize(value, key);
    if (Object.hasOwn(this.#mirror, key) && equal(this.#mirror[key], v)) return;
    this.change((d) => {
      d[key] = toAM(v);
    }, `state: set ${key}`);
  }

  setStep(step) {
    if (!Number.isSafeInteger(step)) throw fsError("bad_input", `setStep: ${step} is not an integer`);
    this.#setField("step", step);
  }

  // setSelection replaces the selection whole (of two concurrent ones, one
  // wins), as crdt.State.SetSelection does.
  setSelection(sel) {
    if (!Array.isArray(sel) && !ArrayBuffer.isView(sel)) throw fsError("bad_input", "setSelection: want an array of atom indices");
    const list = Array.from(sel);
    if (!list.every(Number.isSafeInteger)) throw fsError("bad_input", "setSelection: atom indices must be integers");
    this.#setField("selection", list);
  }

  // setCamera and setSettings make the object equal obj, writing only the
  // keys that changed, so concurrent edits of different keys merge.
  setCamera(obj) {
    this.#setObject("camera", obj);
  }

  setSettings(obj) {
    this.#setObject("settings", obj);
  }

  #setObject(key, obj) {
    this.#checkWritable();
    const v = normalize(obj, key);
    if (!isPlainObject(v)) throw fsError("bad_input", `${key}: want an object`);
    const old = isPlainObject(this.#mirror[key]) ? this.#mirror[key] : null;
    if (old && equal(old, v)) return;
    this.change((d) => {
      if (old && isMap(d[key])) writeMapInPlace(d[key], old, v);
      else d[key] = toAM(v);
    }, `state: set ${key}`);
  }

  // setBookmark labels a frame (by ID: 16 lower-case hex digits).
  setBookmark(frameId, label) {
    this.#checkWritable();
    checkFrameID(frameId, "setBookmark");
    if (typeof label !== "string") throw fsError("bad_input", "setBookmark: the label must be a string");
    checkString(label, "setBookmark: label");
    const cur = this.#mirror.bookmarks;
    if (isPlainObject(cur) && cur[frameId] === label) return;
    this.change((d) => {
      if (!isMap(d.bookmarks)) d.bookmarks = {};
      d.bookmarks[frameId] = toAM(label);
    }, `state: set bookmark ${frameId}`);
  }

  deleteBookmark(frameId) {
    this.#checkWritable();
    checkFrameID(frameId, "deleteBookmark");
    const cur = this.#mirror.bookmarks;
    if (!isPlainObject(cur) || !Object.hasOwn(cur, frameId)) return;
    this.change((d) => {
      delete d.bookmarks[frameId];
    }, `state: delete bookmark ${frameId}`);
  }

  // #stateChanged computes what changed since heads before (local change or
  // sync; null: a new document, reread whole), updates the plain copy and
  // emits "state" diffs and collection callbacks. The changed keys come from
  // Automerge's patches, so a change costs what it touches, not the size of
  // the document. A root key "__proto__" is not read (see toPlain).
  #stateChanged(before) {
    let patches = null;
    if (before) {
      const after = A.getHeads(this.#state);
      if (sameHeads(before, after)) return;
      try {
        patches = A.diff(this.#state, before, after);
      } catch (e) {
        console.warn("framesync: state diff failed, rereading the whole document", e);
      }
    }
    const keys = new Set();
    let items = new Set(); // changed collection keys; null: all
    if (!patches) {
      for (const k of Object.keys(this.#state)) keys.add(k);
      for (const k of Object.keys(this.#mirror)) keys.add(k);
      items = null;
    } else {
      for (const p of patches) {
        const [k, item] = p.path;
        if (typeof k !== "string") continue;
        keys.add(k);
        if (k === "collections" && items) {
          if (typeof item === "string") items.add(item);
          else items = null;
        }
      }
    }
    const old = this.#mirror;
    const next = {...old};
    const diffs = [];
    let itemDiffs = new Map();
    keys.delete("__proto__");
    for (const k of [...keys].sort()) {
      if (k === "collections") {
        const [coll, changed] = this.#readCollections(old.collections, items);
        itemDiffs = changed;
        if (coll === undefined) delete next.collections;
        else next.collections = coll;
        if (changed.size || (old.collections === undefined) !== (coll === undefined)) diffs.push({id: k, old: old[k], new: next[k]});
        continue;
      }
      const v = deepFreeze(toPlain(this.#state[k]));
      if (v === undefined) delete next[k];
      else next[k] = v;
      if (!equal(old[k], v)) diffs.push({id: k, old: old[k], new: v});
    }
    this.#mirror = Object.freeze(next);
    if (itemDiffs.size) this.#index = null;
    for (const [name, list] of itemDiffs) {
      const c = this.#collections.get(name);
      if (!c) continue;
      const frozen = Object.freeze(list.map(Object.freeze));
      for (const fn of [...c.callbacks.values()]) {
        try {
          fn(frozen);
        } catch (e) {
          console.error(`framesync: a callback of collection ${name} threw`, e);
        }
      }
    }
    if (diffs.length) this.#events.emit("state", Object.freeze(diffs.map(Object.freeze)));
  }

  // #readCollections rereads the collection items named by keys (all when
  // null) and returns the new collections map and the item diffs by
  // collection, sorted by ID.
  #readCollections(old, keys) {
    const doc = isMap(this.#state.collections) ? this.#state.collections : null;
    if (!doc && old === undefined) return [undefined, new Map()];
    const next = isPlainObject(old) ? {...old} : {};
    const list = keys ? [...keys] : [...new Set([...Object.keys(next), ...(doc ? Object.keys(doc) : [])])];
    const changed = new Map();
    for (const key of list) {
      const ov = next[key];
      const nv = doc ? deepFreeze(toPlain(doc[key])) : undefined;
      if (equal(ov, nv)) continue;
      if (nv === undefined) delete next[key];
      else next[key] = nv;
      const slash = key.indexOf("/");
      if (slash <= 0) continue; // not "<collection>/<id>": not an item
      const name = key.slice(0, slash);
      if (!changed.has(name)) changed.set(name, []);
      changed.get(name).push({id: key.slice(slash + 1), old: ov, new: nv});
    }
    for (const l of changed.values()) l.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return [doc ? Object.freeze(next) : undefined, changed];
  }

  // ---- collections

  // collection returns the named collection of JSON items with a string
  // "id" (stored in the state document's flat "collections" map, see
  // crdt/doc.go). The same object is returned for the same name.
  collection(name) {
    if (typeof name !== "string" || !name || name.includes("/")) {
      throw fsError("bad_input", `collection name ${JSON.stringify(name)}: want a non-empty string without "/"`);
    }
    checkString(name, "collection name");
    const known = this.#collections.get(name);
    if (known) return known.api;
    const callbacks = new Map();
    const room = this;
    const items = () => room.#collectionIndex().get(name) || new Map();
    const api = Object.freeze({
      name,
      // get(id) returns one item (undefined if missing); get() every item,
      // sorted by ID.
      get(id) {
        if (id === undefined) return [...items().entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map((e) => e[1]);
        return items().get(id);
      },
      has: (id) => items().has(id),
      get size() {
        return items().size;
      },
      ids: () => [...items().keys()].sort(),
      update: (u) => room.#updateCollection(name, u),
      add_callback(fn) {
        if (typeof fn !== "function") throw new TypeError("add_callback: want a function");
        const h = room.#nextHandle++;
        callbacks.set(h, fn);
        return h;
      },
      remove_callback: (h) => callbacks.delete(h),
    });
    this.#collections.set(name, {api, callbacks});
    return api;
  }

  #collectionIndex() {
    if (!this.#index) {
      this.#index = new Map();
      const all = isPlainObject(this.#mirror.collections) ? this.#mirror.collections : {};
      for (const [key, item] of Object.entries(all)) {
        const slash = key.indexOf("/");
        if (slash <= 0) continue;
        const name = key.slice(0, slash);
        if (!this.#index.has(name)) this.#index.set(name, new Map());
        this.#index.get(name).set(key.slice(slash + 1), item);
      }
    }
    return this.#index;
  }

  // #updateCollection applies {reset, remove, insert} in that order as one
  // change, like crdt.State.Update: items are written key by key in place,
  // an insert equal to the existing item changes nothing. Returns the diffs
  // [{id, old, new}] sorted by ID.
  #updateCollection(name, {insert = [], remove = [], reset = false} = {}) {
    this.#checkWritable();
    if (!Array.isArray(insert) || !Array.isArray(remove)) throw fsError("bad_input", "update: insert and remove must be arrays");
    const inserts = new Map();
    insert.forEach((it, i) => {
      const item = normalize(it, `insert[${i}]`);
      if (!isPlainObject(item) || typeof item.id !== "string" || !item.id) {
        throw fsError("bad_input", `insert[${i}]: an item is an object with a non-empty string "id"`);
      }
      if (inserts.has(item.id)) throw fsError("bad_input", `insert[${i}]: item ${JSON.stringify(item.id)} inserted twice`);
      inserts.set(item.id, item);
    });
    const cur = this.#collectionIndex().get(name) || new Map();
    const drop = new Set(reset ? cur.keys() : []);
    for (const id of remove) if (cur.has(id)) drop.add(id);
    const diffs = [];
    for (const id of drop) if (!inserts.has(id)) diffs.push({id, old: cur.get(id), new: undefined});
    for (const [id, item] of inserts) {
      const old = cur.get(id);
      if (old === undefined || !equal(old, item)) diffs.push({id, old, new: deepFreeze(item)});
    }
    if (!diffs.length) return Object.freeze([]);
    diffs.sort((a, b) => (a.id < b.id ? -1 : 1));
    this.change((d) => {
      if (!isMap(d.collections)) d.collections = {};
      const c = d.collections;
      for (const {id, old, new: item} of diffs) {
        const key = `${name}/${id}`;
        if (item === undefined) delete c[key];
        else if (old !== undefined && isMap(c[key])) writeMapInPlace(c[key], old, item);
        else c[key] = toAM(item);
      }
    }, `state: update ${name} (reset ${!!reset}, remove ${remove.length}, insert ${insert.length})`);
    return Object.freeze(diffs.map(Object.freeze));
  }

  // ---- members, locks, presenter

  #setInfo(info) {
    if (!isPlainObject(info)) return;
    const members = Array.isArray(info.members) ? info.members.filter(isPlainObject).map((m) => Object.freeze({client: m.client, name: m.name || ""})) : [];
    const locks = Array.isArray(info.locks) ? info.locks.filter(isPlainObject).map(lockOf) : [];
    this.info = Object.freeze({...info, members, locks, presenter: isPlainObject(info.presenter) ? lockOf(info.presenter) : null});
    if (typeof info.role === "string") this.role = info.role;
    this.members = Object.freeze(members);
    this.#events.emit("members", this.members);
    this.locks = Object.freeze(locks);
    this.#events.emit("locks", this.locks);
    const p = this.info.presenter;
    this.#setPresenter(p ? p.holder : null, p && p.expires);
  }

  #nameOf(client) {
    const m = this.members.find((x) => x.client === client);
    return m ? m.name : undefined;
  }

  #member(m) {
    if (typeof m.client !== "string") return;
    const others = this.members.filter((x) => x.client !== m.client);
    if (m.state === "joined") others.push(Object.freeze({client: m.client, name: m.name || ""}));
    this.members = Object.freeze(others);
    this.#events.emit("members", this.members);
  }

  #lockState(m) {
    if (typeof m.target !== "string" || typeof m.holder !== "string") return;
    const live = m.state === "acquired" || m.state === "renewed";
    this.#putLock(m.target, live ? lockOf(m) : null);
  }

  #putLock(target, lock) {
    const others = this.locks.filter((l) => l.target !== target);
    if (lock) others.push(lock);
    this.locks = Object.freeze(others);
    this.#events.emit("locks", this.locks);
  }

  #setPresenter(holder, expires) {
    const p = holder ? Object.freeze({holder, name: this.#nameOf(holder), expires: toMillis(expires)}) : null;
    if (equal(p, this.presenter)) return;
    this.presenter = p;
    this.#events.emit("presenter", p);
  }

  #request(fields) {
    if (!this.#joined) return Promise.reject(fsError("offline", `room ${this.name}: not joined (offline)`));
    return this.#client._request({...fields, room: this.name});
  }

  // present takes or renews the presenter token; it expires after 5 s
  // without renewal, so call it again while scrubbing. Resolves with
  // {token, expires}.
  async present() {
    const m = await this.#request({t: "present"});
    this.#setPresenter(this.#client.id, m.expires); // the hub tells only the others
    return {token: m.token, expires: m.expires};
  }

  async unpresent() {
    await this.#request({t: "unpresent"});
    if (this.presenter && this.presenter.holder === this.#client.id) this.#setPresenter(null);
  }

  // sendFrame moves every member to frame step (as presenter; the hub
  // ignores others). payload (an object, e.g. the camera) travels along.
  // Returns false when offline.
  sendFrame(step, payload) {
    if (!Number.isSafeInteger(step)) throw fsError("bad_input", `sendFrame: ${step} is not a frame index`);
    const m = {t: "frame", room: this.name, step};
    const e = this.entry(step);
    if (e) m.frame = e.id;
    if (payload !== undefined) m.payload = objectPayload(payload, "sendFrame");
    return this.#joined && this.#client._send(m);
  }

  // presence sends ephemeral data (cursor, hover) to the other members.
  presence(payload) {
    const m = {t: "presence", room: this.name, payload: objectPayload(payload, "presence")};
    return this.#joined && this.#client._send(m);
  }

  // lock acquires target ("trajectory" or "frame:<id>") for ttlMs and
  // resolves with {target, token, expires, renew(ttlMs), release()}. Someone
  // else holding it rejects with code "locked" (holder, expires).
  async lock(target, ttlMs = 60_000) {
    const m = await this.#request({t: "lock", target, ttl_ms: ttlMs});
    const lock = {target, token: m.token, expires: m.expires};
    this.#putLock(target, lockOf({target, holder: m.holder || this.#client.id, expires: m.expires}));
    lock.renew = async (ttl = ttlMs) => {
      const r = await this.#request({t: "renew", target, token: lock.token, ttl_ms: ttl});
      lock.expires = r.expires;
      this.#putLock(target, lockOf({target, holder: r.holder || this.#client.id, expires: r.expires}));
      return lock;
    };
    lock.release = async () => {
      await this.#request({t: "unlock", target, token: lock.token});
      this.#putLock(target, null);
    };
    return lock;
  }

  // ---- imports

  // upload sends a trajectory file (File, Blob, ArrayBuffer, ...) to be
  // imported into the room; resolves with the job once the hub has the
  // whole file (202). onProgress({loaded, total}) follows the upload;
  // "job" events follow the import. An upload without progress for
  // stallTimeout ms (default 60 s) is aborted and rejects with "timeout".
  async upload(file, {name, onProgress, stallTimeout} = {}) {
    const n = name || (file && typeof file.name === "string" && file.name) || "upload";
    const path = `/api/rooms/${encodeURIComponent(this.name)}/import?name=${encodeURIComponent(n)}`;
    return normalizeJob(await this.#http.upload(path, file, onProgress, stallTimeout));
  }

  // jobs lists the room's import jobs.
  async jobs() {
    const r = await this.#http.json("GET", `/api/rooms/${encodeURIComponent(this.name)}/jobs`);
    const list = Array.isArray(r) ? r : r && Array.isArray(r.jobs) ? r.jobs : [];
    return list.map(normalizeJob).filter(Boolean);
  }
}

// checkFrameID throws "bad_input" unless id is a frame ID. Other keys
// could be harmful: "__proto__" makes the Automerge core panic.
function checkFrameID(id, what) {
  if (typeof id !== "string" || !FRAME_ID.test(id)) throw fsError("bad_input", `${what}: ${JSON.stringify(id)} is not a frame ID (16 lower-case hex digits)`);
}

// createdOf returns the creation time (ms) in a room's info.
function createdOf(info) {
  const t = isPlainObject(info) ? toMillis(info.created) : undefined;
  return Number.isFinite(t) ? t : undefined;
}

function toMillis(t) {
  if (t instanceof Date) return t.getTime();
  if (typeof t === "string") return Date.parse(t);
  return typeof t === "number" ? t : undefined;
}

function lockOf(l) {
  return Object.freeze({target: l.target, holder: l.holder, expires: toMillis(l.expires)});
}

function objectPayload(p, what) {
  const v = normalize(p, what);
  if (!isPlainObject(v)) throw fsError("bad_input", `${what}: the payload must be an object`);
  return v;
}

// normalizeJob gives jobs the same shape whether they came as JSON (times
// as RFC 3339 strings) or msgpack (timestamps): times as ISO strings.
function normalizeJob(j) {
  if (!isPlainObject(j)) return null;
  const out = {...j};
  for (const k of ["created", "started", "finished"]) {
    if (out[k] instanceof Date) out[k] = out[k].toISOString();
  }
  return out;
}
