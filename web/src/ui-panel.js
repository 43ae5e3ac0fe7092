// The room page's side panel: members, selection, bookmarks, locks and
// imports, drawn from what the client knows. Pure rendering: app.js wires
// the events.
import {symbol} from "./elements.js";

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// when formats an expiry (unix ms or RFC 3339) as a local time of day.
export function when(t) {
  const d = new Date(typeof t === "number" ? t : Date.parse(t));
  return isNaN(d) ? String(t) : d.toLocaleTimeString();
}

// members: [{client, name}], self: our client ID, presence: client -> payload.
export function renderMembers(ul, members, self, presence) {
  const items = (members || []).map((m) => {
    const id = m.client ?? m.id ?? m;
    const name = m.name || shortID(id);
    const p = presence.get(id);
    const where = id === self ? null : p && Number.isInteger(p.step) ? el("span", {class: "muted"}, ` · frame ${p.step + 1}`) : null;
    return el("li", {"data-client": id}, el("span", {class: "dot", "aria-hidden": "true"}), name,
      id === self ? el("span", {class: "muted"}, " (you)") : null, where);
  });
  ul.replaceChildren(...(items.length ? items : [el("li", {class: "muted"}, "nobody")]));
}

// locks: [{target, holder, expires}]; names maps client IDs to names,
// frameIndex maps frame IDs to indices.
export function renderLocks(ul, locks, names, frameIndex) {
  const items = (locks || []).filter((l) => l.target !== "presenter").map((l) => {
    let what = l.target;
    if (what.startsWith("frame:")) {
      const i = frameIndex(what.slice(6));
      what = i >= 0 ? `frame ${i + 1}` : `frame ${what.slice(6, 14)}…`;
    }
    return el("li", {"data-target": l.target}, el("strong", {}, what), ` held by ${names(l.holder)} until ${when(l.expires)}`);
  });
  ul.replaceChildren(...(items.length ? items : [el("li", {class: "muted"}, "none")]));
}

// selection: atom indices; numbers: the atomic numbers of the frame shown.
export function renderSelection(p, clear, selection, numbers) {
  if (!selection.length) {
    p.textContent = "No atoms selected. Click an atom; shift-click adds.";
    p.className = "muted";
    clear.hidden = true;
    return;
  }
  const shown = selection.slice(0, 12).map((i) => numbers && i < numbers.length ? `${symbol(Number(numbers[i]))} ${i}` : `atom ${i}`);
  p.textContent = `${selection.length} atom${selection.length === 1 ? "" : "s"}: ${shown.join(", ")}${selection.length > 12 ? ", …" : ""}`;
  p.className = "";
  p.dataset.count = String(selection.length);
  clear.hidden = false;
}

// bookmarks: {frameID: label}; frameIndex maps IDs to indices; go(i) jumps.
export function renderBookmarks(ul, bookmarks, frameIndex, go, remove) {
  const rows = Object.entries(bookmarks || {}).map(([id, label]) => ({id, label, i: frameIndex(id)}))
    .sort((a, b) => (a.i < 0) - (b.i < 0) || a.i - b.i);
  const items = rows.map(({id, label, i}) => el("li", {"data-frame": id},
    i >= 0 ? el("button", {type: "button", class: "link", onclick: () => go(i), "aria-label": `Go to frame ${i + 1}: ${label}`}, `${i + 1}`) :
      el("span", {class: "muted", title: "frame no longer in the trajectory"}, "–"),
    " ", label, " ",
    el("button", {type: "button", class: "icon", onclick: () => remove(id), "aria-label": `Remove bookmark ${label}`, title: "Remove"}, "×")));
  ul.replaceChildren(...(items.length ? items : [el("li", {class: "muted"}, "none")]));
}

const jobStates = {queued: "queued", running: "running", done: "finished", failed: "failed"};

// jobs: import jobs {id, name, user, state, phase, bytes, total_bytes,
// frames, committed, error}, newest first. Running and queued jobs get a
// progress bar.
export function renderJobs(ul, jobs) {
  const items = jobs.map((j) => {
    const li = el("li", {class: `job job-${j.state}`, "data-job": j.id, "data-state": j.state},
      el("div", {class: "job-head"}, el("strong", {}, j.name || "upload"), " ",
        el("span", {class: `tag tag-${j.state}`}, jobStates[j.state] || j.state)));
    const by = j.user ? `by ${j.user}` : "";
    if (j.state === "queued" || j.state === "running") {
      // Uploading and parsing go by bytes, committing by frames.
      const [done, total] = j.phase === "committing" ? [j.committed || 0, j.frames || 0] : [j.bytes || 0, j.total_bytes || 0];
      const bar = el("progress", {class: "job-progress", max: total > 0 ? String(total) : null,
        "aria-label": `Import of ${j.name || "file"}`});
      if (total > 0) bar.value = Math.min(done, total);
      li.append(bar, el("div", {class: "muted small"}, [j.state === "queued" ? j.message || "queued" : j.phase, progressText(j), by].filter(Boolean).join(" · ")));
    } else if (j.state === "done") {
      li.append(el("div", {class: "muted small"}, [`${j.committed ?? j.frames ?? 0} frames added`, by].filter(Boolean).join(" · ")));
    } else if (j.state === "failed") {
      li.append(el("div", {class: "error small job-error", role: "alert"}, j.error || "failed"));
    }
    return li;
  });
  ul.replaceChildren(...(items.length ? items : [el("li", {class: "muted"}, "none yet")]));
}

function progressText(j) {
  const parts = [];
  if (j.total_bytes) parts.push(`${mb(j.bytes || 0)} of ${mb(j.total_bytes)} MB`);
  else if (j.bytes) parts.push(`${mb(j.bytes)} MB`);
  if (j.phase === "committing") parts.push(`${j.committed || 0} of ${j.frames} frames added`);
  else if (j.frames) parts.push(`${j.frames} frames`);
  return parts.join(", ");
}

function mb(b) {
  return (b / 1e6).toFixed(b < 1e7 ? 1 : 0);
}

function shortID(id) {
  return typeof id === "string" && id.length > 10 ? id.slice(0, 8) + "…" : String(id);
}
