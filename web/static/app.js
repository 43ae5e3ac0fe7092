// framesync web UI: the hub API with the login token from localStorage.
export const tokenKey = "framesync.token";

export function token() {
  return localStorage.getItem(tokenKey) || "";
}

export function setToken(t) {
  if (t) localStorage.setItem(tokenKey, t);
  else localStorage.removeItem(tokenKey);
}

// api calls the hub and returns the decoded JSON; an error answer throws an
// Error carrying the hub's status, code and message.
export async function api(path, {method = "GET", body} = {}) {
  const headers = {};
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) {
    const err = new Error((data && data.message) || resp.statusText);
    err.status = resp.status;
    err.code = data && data.code;
    throw err;
  }
  return data;
}

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}
