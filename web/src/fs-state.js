// Values of the room documents: reading Automerge values as plain
// JavaScript, writing plain values the way the Go package crdt does
// (crdt/doc.go, crdt/json.go), and parsing trajectory entries.
import * as A from "@automerge/automerge/slim";
import {fsError, isPlainObject, equal} from "./fs-util.js";

const MAX_DEPTH = 64; // as crdt.maxJSONDepth
const PROTO = "__proto__";

// toPlain converts a value read from an Automerge document (a proxy, or
// what toJS gives) into plain JSON-like JavaScript: scalar strings
// (ImmutableString) and text become strings, counters numbers, timestamps
// milliseconds (as the Go side reads them), bytes a copied Uint8Array.
// A map key "__proto__" is skipped: no plain object can hold it as an
// ordinary key, and neither Automerge's proxies nor toJS read it as one.
export function toPlain(v) {
  if (v === null || v === undefined || typeof v === "boolean" || typeof v === "number" || typeof v === "string") return v;
  if (typeof v === "bigint") return Number(v);
  if (A.isImmutableString(v)) return v.toString();
  if (A.isCounter(v)) return Number(v.value);
  if (v instanceof Date) return v.getTime();
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (Array.isArray(v)) return Array.from(v, toPlain);
  if (typeof v === "object") {
    const out = {};
    for (const k of Object.keys(v)) if (k !== PROTO) out[k] = toPlain(v[k]);
    return out;
  }
  return undefined;
}

// checkString returns s if it is well-formed Unicode, else throws
// "bad_input": Automerge would store a lone surrogate as U+FFFD, and the Go
// side refuses invalid UTF-8.
export function checkString(s, what) {
  if (!s.isWellFormed()) throw fsError("bad_input", `${what}: ${JSON.stringify(s)} is not well-formed Unicode (a lone surrogate)`);
  return s;
}

// normalize checks a value given by page code and returns its canonical
// plain form, the one toPlain reads back after it is written: JSON values,
// with typed arrays as arrays of numbers, Dates as ISO strings (as Go's
// JSON encoding gives), undefined object members dropped (as JSON.stringify
// does), object keys sorted and Uint8Array kept as bytes. Anything else (NaN, functions,
// class instances, nesting deeper than 64) is a "bad_input" Error, as is
// what Automerge cannot store faithfully: the key "__proto__" (its core
// panics on it) and strings or keys that are not well-formed Unicode.
export function normalize(v, what = "value", depth = 0) {
  if (depth > MAX_DEPTH) throw fsError("bad_input", `${what}: nested deeper than ${MAX_DEPTH} levels`);
  switch (typeof v) {
    case "boolean":
      return v;
    case "string":
      return checkString(v, what);
    case "number":
      if (!Number.isFinite(v)) throw fsError("bad_input", `${what}: ${v} is not a JSON number`);
      return v;
    case "bigint":
      return Number(v);
    case "object":
      break;
    default:
      throw fsError("bad_input", `${what}: a ${typeof v} is not a JSON value`);
  }
  if (v === null) return null;
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v, (x) => normalize(x, what, depth + 1));
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map((x, i) => (x === undefined ? null : normalize(x, `${what}[${i}]`, depth + 1)));
  if (isPlainObject(v)) {
    // Keys sorted, as Automerge gives them back when read.
    const out = {};
    for (const k of Object.keys(v).sort()) {
      if (k === PROTO) throw fsError("bad_input", `${what}: the key "__proto__" cannot be stored`);
      checkString(k, `${what}: key`);
      if (v[k] !== undefined) out[k] = normalize(v[k], `${what}.${k}`, depth + 1);
    }
    return out;
  }
  throw fsError("bad_input", `${what}: a ${v.constructor ? v.constructor.name : "object"} is not a JSON value`);
}

const INT64_LIMIT = 2 ** 63;

// toAM converts a normalized value into what Automerge writes the way Go's
// crdt package does: strings as scalar strings (not Text), integral numbers
// as int (float64 beyond the int64 range), other numbers as float64, maps
// with their keys in sorted order.
export function toAM(v) {
  if (typeof v === "string") return new A.ImmutableString(v);
  if (typeof v === "number") {
    if (Number.isInteger(v) && (v >= INT64_LIMIT || v < -INT64_LIMIT)) return new A.Float64(v);
    return v; // Automerge writes integral numbers as int, the others as f64
  }
  if (v === null || typeof v === "boolean" || v instanceof Uint8Array) return v;
  if (Array.isArray(v)) return v.map(toAM);
  const out = {};
  for (const k of Object.keys(v).sort()) out[k] = toAM(v[k]);
  return out;
}

// isMap reports whether a value read from a document (proxy) is a map.
export function isMap(v) {
  return (
    v !== null &&
    typeof v === "object" &&
    !Array.isArray(v) &&
    !A.isImmutableString(v) &&
    !A.isCounter(v) &&
    !(v instanceof Date) &&
    !(v instanceof Uint8Array)
  );
}

// writeMapInPlace makes the document map target (a proxy inside a change)
// equal nw, given old, its current plain value: only keys that changed are
// written and nested maps are updated key by key, so concurrent edits of
// different keys merge (crdt.writeMapInPlace).
export function writeMapInPlace(target, old, nw) {
  for (const k of Object.keys(old)) {
    if (!Object.hasOwn(nw, k)) delete target[k];
  }
  for (const k of Object.keys(nw).sort()) {
    const had = Object.hasOwn(old, k);
    if (had && equal(old[k], nw[k])) continue;
    if (had && isPlainObject(old[k]) && isPlainObject(nw[k]) && isMap(target[k])) {
      writeMapInPlace(target[k], old[k], nw[k]);
      continue;
    }
    target[k] = toAM(nw[k]);
  }
}

// parseEntry parses a trajectory entry "<id> <version> <hash> <time>
// <author>" (the author may contain spaces).
export function parseEntry(s) {
  const [id = "", version = "", hash = "", time = "", ...rest] = String(s).split(" ");
  return {id, version: Number(version), hash, time: Number(time), author: rest.join(" ")};
}

// sameHeads reports whether two head lists name the same version.
export function sameHeads(a, b) {
  if (a.length !== b.length) return false;
  const s = new Set(a);
  return b.every((h) => s.has(h));
}
