// The hub's data channel (HTTP): requests with the bearer token, hub errors
// turned into Errors with the hub's code, and uploads with progress.
import {fsError} from "./fs-util.js";

const JSON_TIMEOUT_MS = 30_000;
// Frame data can be large and links slow; a stuck request must still end,
// or every later request sharing its fetch would wait forever.
const DATA_TIMEOUT_MS = 180_000;
// An upload may take long, but not without progress.
const UPLOAD_STALL_MS = 60_000;

export class Http {
  constructor(base, token) {
    this.base = base; // "http://host:port", no trailing slash
    this.token = token || "";
  }

  url(path) {
    return this.base + path;
  }

  headers(extra = {}) {
    const h = {...extra};
    if (this.token) h["Authorization"] = "Bearer " + this.token;
    return h;
  }

  // request sends one request and returns the Response; a hub error throws
  // an Error with the hub's code, message and details.
  async request(method, path, {headers = {}, body, timeout = JSON_TIMEOUT_MS} = {}) {
    let resp;
    try {
      resp = await fetch(this.url(path), {method, headers: this.headers(headers), body, signal: AbortSignal.timeout(timeout)});
    } catch (e) {
      const code = e && e.name === "TimeoutError" ? "timeout" : "network";
      throw fsError(code, `${method} ${path}: ${e && e.message ? e.message : e}`);
    }
    if (!resp.ok) throw await responseError(resp, `${method} ${path}`);
    return resp;
  }

  // json sends an optional JSON body and returns the decoded JSON answer
  // (null for an empty one).
  async json(method, path, body) {
    const opts = {headers: {Accept: "application/json"}};
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const resp = await this.request(method, path, opts);
    const text = await readBody(resp, () => resp.text(), `${method} ${path}`);
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch {
      throw fsError("bad_input", `${method} ${path}: the hub's answer is not JSON`);
    }
  }

  // bytes returns the body of a GET as a Uint8Array.
  async bytes(path, accept = "application/octet-stream") {
    const resp = await this.request("GET", path, {headers: {Accept: accept}, timeout: DATA_TIMEOUT_MS});
    return new Uint8Array(await readBody(resp, () => resp.arrayBuffer(), `GET ${path}`));
  }

  // upload POSTs body (a Blob, File, ArrayBuffer, typed array or string)
  // with XMLHttpRequest, which, unlike fetch, reports upload progress:
  // onProgress({loaded, total}). Resolves with the decoded JSON answer.
  // XMLHttpRequest has no timeout fit for uploads of any size, so a
  // watchdog aborts one that makes no progress (sending or receiving) for
  // stallTimeout ms: it rejects with "timeout".
  upload(path, body, onProgress, stallTimeout = UPLOAD_STALL_MS) {
    const what = `POST ${path}`;
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", this.url(path));
      for (const [k, v] of Object.entries(this.headers({"Content-Type": "application/octet-stream", Accept: "application/json"}))) {
        xhr.setRequestHeader(k, v);
      }
      let watchdog = null;
      let stalled = false;
      const progressed = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => {
          stalled = true;
          xhr.abort(); // onabort rejects
        }, stallTimeout);
      };
      const settle = (fn, v) => {
        clearTimeout(watchdog);
        fn(v);
      };
      xhr.upload.onprogress = (ev) => {
        progressed();
        if (!onProgress) return;
        try {
          onProgress({loaded: ev.loaded, total: ev.lengthComputable ? ev.total : undefined});
        } catch (e) {
          console.error("framesync: onProgress threw", e);
        }
      };
      xhr.upload.onload = progressed; // sent: the answer is next
      xhr.onprogress = progressed; // the answer arriving
      xhr.onerror = () => settle(reject, fsError("network", `${what}: the upload failed`));
      xhr.onabort = () =>
        settle(reject, stalled ? fsError("timeout", `${what}: no progress for ${stallTimeout / 1000} s, the upload was aborted`) : fsError("network", `${what}: the upload was aborted`));
      xhr.onload = () => {
        const data = parseJSON(xhr.responseText);
        if (xhr.status >= 200 && xhr.status < 300) settle(resolve, data);
        else settle(reject, errorFromBody(data, xhr.status, xhr.statusText, what));
      };
      xhr.send(body);
      progressed();
    });
  }
}

async function readBody(resp, read, what) {
  try {
    return await read();
  } catch (e) {
    throw fsError(e && e.name === "TimeoutError" ? "timeout" : "network", `${what}: reading the answer: ${e && e.message ? e.message : e}`);
  }
}

function parseJSON(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

// responseError turns an HTTP error answer into an Error: the hub's JSON
// {code, message, ...details} when it sent one, the status otherwise.
export async function responseError(resp, what) {
  let text = "";
  try {
    text = await resp.text();
  } catch {
    // the status alone must do
  }
  return errorFromBody(parseJSON(text), resp.status, resp.statusText, what);
}

function errorFromBody(body, status, statusText, what) {
  const ok = body !== null && typeof body === "object" && !Array.isArray(body);
  const code = ok && typeof body.code === "string" ? body.code : `http_${status}`;
  const message = ok && typeof body.message === "string" ? body.message : `${what}: ${status} ${statusText || ""}`.trim();
  const details = {status};
  if (ok) {
    for (const [k, v] of Object.entries(body)) {
      if (k !== "code" && k !== "message") details[k] = v;
    }
  }
  return fsError(code, message, details);
}
