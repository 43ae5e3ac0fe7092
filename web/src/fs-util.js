// Small pieces shared by the framesync client modules: errors, events,
// structural equality and freezing of plain values.

// fsError returns an Error carrying a stable code, as the hub's errors do
// ("not_found", "locked", ...; the client adds "network", "timeout",
// "offline", "closed"). Details (holder, expires, status, ...) become
// properties of the error.
export function fsError(code, message, details = {}) {
  const err = new Error(message);
  err.name = "FramesyncError";
  err.code = code;
  for (const [k, v] of Object.entries(details)) {
    if (!(k in err)) err[k] = v;
  }
  return err;
}

// Emitter is a minimal event emitter. A listener that throws is reported on
// the console and does not stop the others: a bug in page code must not
// break the client's bookkeeping.
export class Emitter {
  #handlers = new Map();

  on(event, fn) {
    if (typeof fn !== "function") throw new TypeError("on: the listener must be a function");
    let set = this.#handlers.get(event);
    if (!set) this.#handlers.set(event, (set = new Set()));
    // Wrap, so that adding the same function twice gives two listeners that
    // unsubscribe separately.
    const entry = (v) => fn(v);
    set.add(entry);
    return () => set.delete(entry);
  }

  emit(event, value) {
    const set = this.#handlers.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(value);
      } catch (e) {
        console.error(`framesync: a "${event}" listener threw`, e);
      }
    }
  }
}

// isPlainObject reports whether v is a plain object (a JSON object), not an
// array, typed array, Date or class instance.
export function isPlainObject(v) {
  if (v === null || typeof v !== "object") return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

// equal compares plain values structurally (objects, arrays, typed arrays,
// scalars; NaN equals NaN).
export function equal(a, b) {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (ArrayBuffer.isView(a) || ArrayBuffer.isView(b)) {
    if (!ArrayBuffer.isView(a) || !ArrayBuffer.isView(b) || a.constructor !== b.constructor || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!equal(a[i], b[i])) return false;
    return true;
  }
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.hasOwn(b, k) || !equal(a[k], b[k])) return false;
  }
  return true;
}

// deepFreeze freezes a plain value in place and returns it. The client hands
// out the same objects to every reader (room.state, diffs, collection
// items), so one reader mutating them would corrupt what the others see.
// Typed arrays cannot be frozen and are left as they are.
export function deepFreeze(v) {
  if (v === null || typeof v !== "object" || ArrayBuffer.isView(v) || Object.isFrozen(v)) return v;
  for (const x of Object.values(v)) deepFreeze(x);
  return Object.freeze(v);
}

// LRU is a map that forgets its least recently used entries once the sum of
// their sizes exceeds a budget.
export class LRU {
  #map = new Map(); // key -> {value, size}, oldest first
  #bytes = 0;

  constructor(budget) {
    this.budget = budget;
  }

  get size() {
    return this.#map.size;
  }

  get bytes() {
    return this.#bytes;
  }

  has(key) {
    return this.#map.has(key);
  }

  get(key) {
    const e = this.#map.get(key);
    if (!e) return undefined;
    this.#map.delete(key);
    this.#map.set(key, e);
    return e.value;
  }

  set(key, value, size = 1) {
    const old = this.#map.get(key);
    if (old) {
      this.#bytes -= old.size;
      this.#map.delete(key);
    }
    this.#map.set(key, {value, size});
    this.#bytes += size;
    for (const [k, e] of this.#map) {
      if (this.#bytes <= this.budget || k === key) break;
      this.#map.delete(k);
      this.#bytes -= e.size;
    }
  }

  clear() {
    this.#map.clear();
    this.#bytes = 0;
  }
}
