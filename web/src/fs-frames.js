// Frames: msgpack-numpy decoding (docs/frame-format.md) and the frame store
// that fetches only the fields whose blobs it does not have yet.
import {decode} from "@msgpack/msgpack";
import {fsError, LRU, isPlainObject} from "./fs-util.js";

const utf8 = new TextDecoder("utf-8");

// Msgpack-numpy writes array map keys as bin; JavaScript encoders write str.
function mapKey(key) {
  if (typeof key === "string" || typeof key === "number") return key;
  if (key instanceof Uint8Array) return utf8.decode(key);
  throw new Error("a map key is neither a string nor bytes");
}

// decodeMsgpack decodes one msgpack value. No declared length may exceed
// the input's size (every element takes at least a byte), so a short
// hostile input cannot make the decoder allocate much.
export function decodeMsgpack(bytes) {
  const n = bytes.length;
  return decode(bytes, {mapKeyConverter: mapKey, maxStrLength: n, maxBinLength: n, maxArrayLength: n, maxMapLength: n, maxExtLength: n});
}

// NDArray is a decoded msgpack-numpy array: dtype as numpy writes it
// ("<f8", "<U2", ...), shape, and data in C order: a typed array for
// numbers (64-bit integers as a Float64Array, exact up to 2^53; booleans as
// a Uint8Array of 0 and 1), an array of strings for "<U<n>" and "|S<n>".
export class NDArray {
  constructor(dtype, shape, data) {
    this.dtype = dtype;
    this.shape = shape;
    this.data = data;
  }

  get size() {
    return this.data.length;
  }
}

// Typed array and item size of each numeric dtype. A Map, so that dtypes
// such as "toString" or "constructor" find nothing instead of what an
// object inherits.
const NUMERIC = new Map([
  ["<f8", [Float64Array, 8]],
  ["<f4", [Float32Array, 4]],
  ["<i8", [BigInt64Array, 8]],
  ["<u8", [BigUint64Array, 8]],
  ["<i4", [Int32Array, 4]],
  ["<u4", [Uint32Array, 4]],
  ["<i2", [Int16Array, 2]],
  ["<u2", [Uint16Array, 2]],
  ["|i1", [Int8Array, 1]],
  ["|u1", [Uint8Array, 1]],
  ["|b1", [Uint8Array, 1]],
]);

const bad = (field, msg) => fsError("bad_input", `frame field ${field}: ${msg}`, {field});

// decodeFrame decodes a frame or a field selection (a msgpack map from
// field name to value) into {name: value}. Malformed input is an Error with
// code "bad_input".
export function decodeFrame(bytes) {
  let raw;
  try {
    raw = decodeMsgpack(bytes);
  } catch (e) {
    throw fsError("bad_input", `frame: not msgpack: ${e.message}`);
  }
  if (!isPlainObject(raw)) throw fsError("bad_input", "frame: not a msgpack map");
  const out = {};
  for (const [name, v] of Object.entries(raw)) out[name] = decodeValue(v, name);
  return out;
}

// decodeValue decodes one field value: a scalar or a msgpack-numpy array.
export function decodeValue(v, field) {
  if (v === null || typeof v === "boolean" || typeof v === "number" || typeof v === "string") return v;
  if (typeof v === "bigint") return Number(v);
  if (!isPlainObject(v)) throw bad(field, "not a frame value");
  if (v.nd === true) return decodeArray(v, field);
  if (v.nd === false) return decodeScalar(v, field);
  throw bad(field, "a map that is not a msgpack-numpy array");
}

function decodeArray(m, field) {
  const {type, shape, data} = m;
  if (typeof type !== "string") throw bad(field, "array without a dtype");
  if (!(data instanceof Uint8Array)) throw bad(field, "array data is not bytes");
  if (!Array.isArray(shape) || shape.length > 32 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw bad(field, "bad array shape");
  }
  const count = shape.reduce((a, b) => a * b, 1);
  const [itemsize, read] = elementReader(type, field);
  if (count * itemsize !== data.length) {
    throw bad(field, `${data.length} bytes of data for shape [${shape}] of ${type}`);
  }
  return new NDArray(type, shape, read(data, count));
}

// elementReader returns the item size of dtype and a function that turns
// its bytes into the array's data.
function elementReader(type, field) {
  const num = NUMERIC.get(type);
  if (num) {
    const [T, size] = num;
    return [size, (data, count) => typedArray(T, data, count)];
  }
  const str = /^([<|])([US])(\d+)$/.exec(type);
  if (str && Number(str[3]) > 0 && (str[2] === "S" || str[1] === "<")) {
    const n = Number(str[3]);
    return str[2] === "U" ? [4 * n, (data, count) => unicodeStrings(data, count, n)] : [n, (data, count) => byteStrings(data, count, n)];
  }
  throw bad(field, `unsupported dtype ${JSON.stringify(type)}`);
}

// The platforms that run browsers are little-endian, as the wire format
// is, so typed arrays can view the bytes directly. But data is a view into
// the whole HTTP response, and a cached view would keep all of it alive
// (beyond the cache's budget): only bytes that are a buffer of their own
// are viewed, anything else is copied (which also aligns it).
function typedArray(T, data, count) {
  const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
  const arr = new T(own ? data.buffer : data.slice().buffer, 0, count);
  // 64-bit integers: a Float64Array is what JavaScript code can use.
  if (T === BigInt64Array || T === BigUint64Array) return Float64Array.from(arr, Number);
  return arr;
}

function unicodeStrings(data, count, n) {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out = new Array(count);
  for (let i = 0; i < count; i++) {
    let s = "";
    for (let j = 0; j < n; j++) {
      const cp = view.getUint32(4 * (i * n + j), true);
      if (cp === 0) break;
      s += cp <= 0x10ffff ? String.fromCodePoint(cp) : "\ufffd";
    }
    out[i] = s;
  }
  return out;
}

function byteStrings(data, count, n) {
  const out = new Array(count);
  for (let i = 0; i < count; i++) {
    const item = data.subarray(i * n, (i + 1) * n);
    const end = item.indexOf(0);
    out[i] = utf8.decode(end < 0 ? item : item.subarray(0, end));
  }
  return out;
}

// A numpy scalar as msgpack-numpy writes it: {nd: false, type, data}.
function decodeScalar(m, field) {
  const num = NUMERIC.get(m.type);
  if (!num || !(m.data instanceof Uint8Array) || m.data.length !== num[1]) throw bad(field, "bad numpy scalar");
  const v = typedArray(num[0], m.data, 1)[0];
  return m.type === "|b1" ? v !== 0 : Number(v);
}

// valueSize estimates the memory a decoded value holds, for the cache.
function valueSize(v) {
  if (v instanceof NDArray) {
    return ArrayBuffer.isView(v.data) ? v.data.byteLength : v.data.reduce((a, s) => a + 2 * s.length + 16, 0);
  }
  return typeof v === "string" ? 2 * v.length + 16 : 16;
}

// selectFields returns the manifest's field names a selection asks for:
// all of them without one; the group names "arrays", "info" and "calc"
// stand for every field of the group.
export function selectFields(manifest, sel) {
  const names = Object.keys(manifest);
  if (!sel) return names;
  const want = new Set();
  for (const s of sel) {
    if (s === "arrays" || s === "info" || s === "calc") {
      for (const n of names) if (n.startsWith(s + ".")) want.add(n);
    } else if (Object.hasOwn(manifest, s)) {
      want.add(s);
    }
  }
  return [...want];
}

// FrameStore reads frames of one room. Field values are cached by blob
// hash, manifests by frame hash; both are content-addressed, so a cached
// value is never stale and stepping to a frame whose only change is its
// positions fetches the positions alone. Concurrent reads share fetches.
export class FrameStore {
  #http;
  #room;
  #manifests = new LRU(8192); // frame hash -> {field: blob hash}
  #blobs; // blob hash -> decoded value
  #pendingManifests = new Map(); // frame hash -> Promise
  #pendingBlobs = new Map(); // blob hash -> Promise of the value

  constructor(http, room, cacheBytes) {
    this.#http = http;
    this.#room = room;
    this.#blobs = new LRU(cacheBytes);
    this.fetches = 0; // frame data requests made, for tests and statistics
  }

  // get returns frame entry (at index) with the fields sel selects.
  async get(entry, index, sel) {
    const manifest = await this.manifest(entry);
    const names = selectFields(manifest, sel);
    const values = new Map(); // blob hash -> value, held while assembling
    const missing = [];
    for (const name of names) {
      const h = manifest[name];
      if (this.#blobs.has(h)) values.set(h, this.#blobs.get(h));
      else if (!this.#pendingBlobs.has(h)) missing.push(name);
    }
    if (missing.length) this.#fetchFields(entry, manifest, missing);
    // Take the promises now: each removes itself from pendingBlobs once
    // settled, which may happen while an earlier one is awaited.
    const waits = [];
    for (const name of names) {
      const h = manifest[name];
      if (!values.has(h)) waits.push([h, this.#pendingBlobs.get(h)]);
    }
    for (const [h, p] of waits) values.set(h, await p);
    return assemble(entry, index, names, manifest, values);
  }

  // manifest returns {field: blob hash} of the entry's version.
  manifest(entry) {
    const cached = this.#manifests.get(entry.hash);
    if (cached) return Promise.resolve(cached);
    let p = this.#pendingManifests.get(entry.hash);
    if (!p) {
      p = this.#fetchManifest(entry).finally(() => this.#pendingManifests.delete(entry.hash));
      this.#pendingManifests.set(entry.hash, p);
    }
    return p;
  }

  async #fetchManifest(entry) {
    const path = `${this.#framePath(entry)}/manifest?version=${entry.version}`;
    const bytes = await this.#http.bytes(path, "application/msgpack");
    let m;
    try {
      m = decodeMsgpack(bytes);
    } catch (e) {
      throw fsError("bad_input", `manifest of frame ${entry.id}: ${e.message}`);
    }
    const fields = isPlainObject(m) ? m.fields : null;
    if (!isPlainObject(fields) || !Object.values(fields).every((h) => typeof h === "string")) {
      throw fsError("bad_input", `manifest of frame ${entry.id}: no field map`);
    }
    if (typeof m.hash === "string" && m.hash !== entry.hash) {
      throw fsError("bad_input", `manifest of frame ${entry.id} version ${entry.version}: hash ${m.hash}, the trajectory says ${entry.hash}`);
    }
    this.#manifests.set(entry.hash, fields, 1);
    return fields;
  }

  // fetchFields fetches fields names of the entry's version in one request
  // and registers a pending promise per blob, so that concurrent readers of
  // the same blobs wait for this request instead of making their own.
  #fetchFields(entry, manifest, names) {
    const path = `${this.#framePath(entry)}?version=${entry.version}&data=${names.map(encodeURIComponent).join(",")}`;
    this.fetches++;
    const all = this.#http.bytes(path, "application/msgpack").then(decodeFrame);
    for (const name of names) {
      const h = manifest[name];
      if (this.#pendingBlobs.has(h)) continue; // two fields with the same value
      const p = all
        .then((fields) => {
          if (!Object.hasOwn(fields, name)) throw fsError("bad_input", `frame ${entry.id}: the hub sent no field ${name}`);
          this.#blobs.set(h, fields[name], valueSize(fields[name]));
          return fields[name];
        })
        .finally(() => this.#pendingBlobs.delete(h));
      p.catch(() => {}); // the readers awaiting it see the error; nobody else must
      this.#pendingBlobs.set(h, p);
    }
  }

  #framePath(entry) {
    return `/api/rooms/${encodeURIComponent(this.#room)}/frames/${encodeURIComponent(entry.id)}`;
  }

  clear() {
    this.#manifests.clear();
    this.#blobs.clear();
  }
}

// assemble builds the frame object readers get. Arrays are shared with the
// cache: treat them as read-only.
function assemble(entry, index, names, manifest, values) {
  const fields = {};
  for (const name of names) fields[name] = values.get(manifest[name]);
  const data = (v) => (v instanceof NDArray ? v.data : null);
  const cell = data(fields.cell);
  const pbc = data(fields.pbc);
  return {
    index,
    id: entry.id,
    version: entry.version,
    hash: entry.hash,
    numbers: data(fields.numbers),
    positions: data(fields.positions),
    cell: cell && cell.length === 9 ? Array.from(cell, Number) : null,
    pbc: pbc ? Array.from(pbc, Boolean) : null,
    fields,
  };
}
