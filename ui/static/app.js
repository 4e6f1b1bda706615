// pyoco run viewer. Plain JavaScript, no build step: it reads the REST API
// of the server that serves it (docs/api.md), with the bearer token kept in
// this tab's sessionStorage. Every value from the API reaches the page
// through textContent or SVG attributes, never as HTML.
"use strict";

const TOKEN_KEY = "pyoco_token";
const API = new URL("..", location.href); // /ui/ → the API's root
const SVG_NS = "http://www.w3.org/2000/svg";
const TERMINAL_RUN = new Set(["COMPLETED", "FAILED", "CANCELLED"]);

let config = { trace_url: "" };
let view = null; // the current view's stop function
// Each navigation takes a number; a route() that awaited while a newer one
// began draws nothing (else its view would keep refreshing under the new one).
let routeGen = 0;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// ---- API access -----------------------------------------------------------

class Unauthorized extends Error {}

function headers() {
  const h = { Accept: "application/json" };
  const tok = sessionStorage.getItem(TOKEN_KEY);
  if (tok) h.Authorization = "Bearer " + tok;
  return h;
}

async function api(path, opts) {
  const resp = await fetch(new URL(path, API), { headers: headers(), ...(opts || {}) });
  if (resp.status === 401) throw new Unauthorized("unauthorized");
  let body = null;
  const text = await resp.text();
  if (text) {
    try { body = JSON.parse(text); } catch { body = null; }
  }
  if (!resp.ok) {
    const msg = body && body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${resp.status}`;
    throw new Error(msg);
  }
  return body;
}

// followLogs streams a run's log entries (GET /runs/{id}/logs?follow=true)
// with fetch, so that the Authorization header goes along (EventSource
// cannot send one). It reconnects after a cut from the last seq seen, and
// returns when the stream's "end" event arrives or signal aborts.
async function followLogs(runID, task, onEntry, onState, signal) {
  let after = 0;
  while (!signal.aborted) {
    const q = new URLSearchParams({ follow: "true", limit: "1000" });
    if (after > 0) q.set("after", String(after));
    if (task) q.set("task", task);
    let resp;
    try {
      resp = await fetch(new URL(`runs/${encodeURIComponent(runID)}/logs?${q}`, API), {
        headers: { ...headers(), Accept: "text/event-stream" }, signal, cache: "no-store",
      });
    } catch (e) {
      if (signal.aborted) return;
      onState("reconnecting…");
      await sleep(1000, signal);
      continue;
    }
    if (resp.status === 401) throw new Unauthorized("unauthorized");
    if (resp.status === 204) { onState("ended"); return; }
    if (!resp.ok) {
      onState(`error: HTTP ${resp.status}`);
      return;
    }
    onState("live");
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, "\n");
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const [field, ...rest] = line.split(":");
            const val = rest.join(":").replace(/^ /, "");
            if (field === "event") event = val;
            else if (field === "data") data += (data ? "\n" : "") + val;
          }
          if (!data) continue;
          const doc = JSON.parse(data);
          if (event === "end") { onState(`ended (${doc.run_status})`); return; }
          if (event === "error") { onState("error: " + (doc.error ? doc.error.message : data)); break; }
          after = Math.max(after, doc.seq);
          onEntry(doc);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    onState("reconnecting…");
    await sleep(1000, signal);
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

// ---- formatting -------------------------------------------------------------

function fmtMS(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${ms}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${Math.floor(s % 60)}s`;
  return `${Math.floor(m / 60)}h${m % 60}m`;
}

function fmtTime(ts) {
  if (!ts) return "–";
  const d = new Date(ts);
  return d.toLocaleString(undefined, { hour12: false });
}

function statusBadge(st) {
  return el("span", { class: `status s-${st}`, text: st });
}

function traceLink(traceID) {
  if (!traceID) return document.createTextNode("–");
  if (!config.trace_url) return el("span", { class: "mono", text: traceID });
  const a = el("a", { class: "mono trace-link", href: config.trace_url.split("{trace_id}").join(encodeURIComponent(traceID)),
    target: "_blank", rel: "noopener noreferrer", text: traceID });
  return a;
}

function showError(e) {
  if (e instanceof Unauthorized) {
    showLogin("The server refused the token: enter it again.");
    return;
  }
  $("error").textContent = e ? String(e.message || e) : "";
}

// ---- views -------------------------------------------------------------------

function hideAll() {
  for (const id of ["login", "runs-view", "run-view"]) $(id).hidden = true;
  $("error").textContent = "";
}

function showLogin(msg) {
  if (view) { view(); view = null; }
  hideAll();
  $("login").hidden = false;
  $("login-error").textContent = msg && sessionStorage.getItem(TOKEN_KEY) ? msg : "";
  $("token").value = "";
  $("token").focus();
}

// Runs list: filters and paging live in the hash (#/runs?status=..&flow=..
// &tag=..&limit=..&cursor=..), so a page can be linked and reloaded; the
// cursors of the newer pages are kept to page back.
function runsView(params) {
  hideAll();
  $("runs-view").hidden = false;
  $("f-status").value = params.get("status") || "";
  $("f-flow").value = params.get("flow") || "";
  $("f-tag").value = params.get("tag") || "";
  $("f-limit").value = params.get("limit") || "50";
  const cursors = (params.get("back") || "").split(" ").filter(Boolean);
  const cursor = params.get("cursor") || "";
  $("page-no").textContent = `page ${cursors.length + 1}`;
  let stopped = false;
  let timer = null;

  const q = new URLSearchParams();
  for (const k of ["status", "flow", "tag", "limit", "cursor"]) if (params.get(k)) q.set(k, params.get(k));
  const load = async () => {
    try {
      const page = await api(`runs?${q}`);
      if (stopped) return;
      renderRuns(page.runs);
      $("next").disabled = !page.next_cursor;
      $("next").onclick = () => go(withParams(params, { cursor: page.next_cursor, back: [...cursors, cursor || "-"].join(" ") }));
      $("prev").disabled = !cursor;
      $("prev").onclick = () => {
        const b = cursors.slice();
        const c = b.pop();
        go(withParams(params, { cursor: c && c !== "-" ? c : "", back: b.join(" ") }));
      };
      $("first").disabled = !cursor;
      $("first").onclick = () => go(withParams(params, { cursor: "", back: "" }));
      // The newest page follows new runs; older pages stay as they are.
      if (!cursor && !stopped) timer = setTimeout(load, 2000);
    } catch (e) {
      if (!stopped) showError(e);
    }
  };
  load();
  api("flows").then((d) => {
    const dl = $("flow-names");
    dl.replaceChildren(...(d.flows || []).map((f) => el("option", { value: f.name })));
  }).catch(() => {});
  return () => { stopped = true; clearTimeout(timer); };
}

function withParams(params, changes) {
  const p = new URLSearchParams(params);
  for (const [k, v] of Object.entries(changes)) {
    if (v) p.set(k, v); else p.delete(k);
  }
  return "#/runs?" + p.toString();
}

function renderRuns(runs) {
  const tbody = $("runs").tBodies[0];
  tbody.replaceChildren(...runs.map((r) => {
    const link = el("a", { href: `#/runs/${encodeURIComponent(r.run_id)}`, class: "mono run-link", text: r.run_id });
    const tr = el("tr", { "data-run-id": r.run_id, "data-status": r.status },
      el("td", {}, link),
      el("td", { text: r.flow_name }),
      el("td", {}, statusBadge(r.status)),
      el("td", {}, ...(r.tags || []).map((t) => el("span", { class: "tag", text: t }))),
      el("td", { text: fmtTime(r.created_at) }),
      el("td", { text: fmtMS(r.run_duration_ms) }),
      el("td", { text: String(r.attempt) }),
      el("td", { class: "err", text: r.error || "", title: r.error || "" }));
    return tr;
  }));
  $("runs-empty").hidden = runs.length > 0;
}

// Run page: the run's summary, its task graph (layered by dependency), a
// timeline of every attempt, and its logs followed live.
function runView(runID) {
  hideAll();
  $("run-view").hidden = false;
  $("r-flow").textContent = "…";
  $("r-status").textContent = "";
  $("r-meta").replaceChildren();
  $("r-error").textContent = "";
  $("graph").replaceChildren();
  $("timeline").replaceChildren();
  $("logs").replaceChildren();
  $("log-state").textContent = "";
  const ctl = new AbortController();
  let timer = null;
  let flow = null;
  let lastRun = null;
  let logCtl = null;

  const startLogs = () => {
    if (logCtl) logCtl.abort();
    logCtl = new AbortController();
    const sig = logCtl.signal;
    ctl.signal.addEventListener("abort", () => logCtl.abort(), { once: true });
    $("logs").replaceChildren();
    followLogs(runID, $("log-task").value, appendLog, (s) => { $("log-state").textContent = s; }, sig)
      .catch((e) => { if (!sig.aborted) showError(e); });
  };
  $("log-task").onchange = startLogs;

  const load = async () => {
    try {
      const run = await api(`runs/${encodeURIComponent(runID)}`);
      if (ctl.signal.aborted) return;
      if (!flow) {
        flow = await api(`runs/${encodeURIComponent(runID)}/flow`).catch(() => ({ tasks: [], edges: [] }));
        if (ctl.signal.aborted) return;
        const sel = $("log-task");
        sel.replaceChildren(el("option", { value: "", text: "all" }),
          ...taskNames(run, flow).map((n) => el("option", { value: n, text: n })));
        startLogs();
      }
      lastRun = run;
      renderRun(run, flow);
      if (!TERMINAL_RUN.has(run.status)) timer = setTimeout(load, 1000);
    } catch (e) {
      if (!ctl.signal.aborted) showError(e);
    }
  };
  $("r-cancel").onclick = async () => {
    try {
      await api(`runs/${encodeURIComponent(runID)}/cancel`, { method: "POST" });
      clearTimeout(timer);
      load();
    } catch (e) { showError(e); }
  };
  load();
  // Running tasks' bars grow between polls.
  const tick = setInterval(() => { if (lastRun && !TERMINAL_RUN.has(lastRun.status)) renderTimeline(lastRun, flow); }, 250);
  return () => { ctl.abort(); clearTimeout(timer); clearInterval(tick); };
}

function taskNames(run, flow) {
  const names = (flow.tasks || []).map((t) => t.name);
  for (const n of Object.keys(run.tasks || {}).sort()) if (!names.includes(n)) names.push(n);
  return names;
}

function renderRun(run, flow) {
  $("r-flow").textContent = run.flow_name;
  $("r-status").replaceWith(Object.assign(statusBadge(run.status), { id: "r-status" }));
  const meta = [
    ["run", el("span", { class: "mono", text: run.run_id })],
    ["trace", traceLink(run.trace_id)],
    ["created", document.createTextNode(fmtTime(run.created_at))],
    ["queued for", document.createTextNode(fmtMS(run.queue_wait_ms))],
    ["started", document.createTextNode(fmtTime(run.start_time))],
    ["duration", document.createTextNode(fmtMS(run.run_duration_ms))],
    ["worker", document.createTextNode(run.worker_id || "–")],
    ["attempt", document.createTextNode(String(run.attempt))],
    ["tags", el("span", {}, ...(run.tags || []).map((t) => el("span", { class: "tag", text: t })))],
    ["params", el("span", { class: "mono", text: JSON.stringify(run.params || {}) })],
  ];
  $("r-meta").replaceChildren(...meta.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
  $("r-error").textContent = run.error || "";
  $("r-cancel").hidden = TERMINAL_RUN.has(run.status) || run.status === "CANCELLING";
  renderGraph(run, flow);
  renderTimeline(run, flow);
}

// layers puts each task one layer below its deepest upstream task.
function layers(names, upstream) {
  const depth = new Map();
  const visit = (n, seen) => {
    if (depth.has(n)) return depth.get(n);
    if (seen.has(n)) return 0; // a cycle cannot load; be safe anyway
    seen.add(n);
    let d = 0;
    for (const u of upstream.get(n) || []) if (names.includes(u)) d = Math.max(d, visit(u, seen) + 1);
    depth.set(n, d);
    return d;
  };
  for (const n of names) visit(n, new Set());
  const out = [];
  for (const n of names) {
    const d = depth.get(n);
    (out[d] = out[d] || []).push(n);
  }
  return out.filter(Boolean);
}

function renderGraph(run, flow) {
  const names = taskNames(run, flow);
  const upstream = new Map((flow.tasks || []).map((t) => [t.name, t.upstream || []]));
  const ls = layers(names, upstream);
  const W = 190, H = 44, GX = 60, GY = 22, PAD = 12;
  const rows = Math.max(1, ...ls.map((l) => l.length));
  const width = PAD * 2 + ls.length * W + (ls.length - 1) * GX;
  const height = PAD * 2 + rows * H + (rows - 1) * GY;
  const pos = new Map();
  ls.forEach((layer, i) => {
    const off = ((rows - layer.length) * (H + GY)) / 2;
    layer.forEach((n, j) => pos.set(n, { x: PAD + i * (W + GX), y: PAD + off + j * (H + GY) }));
  });
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "task graph" });
  for (const e of flow.edges || []) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    root.append(svg("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }));
  }
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#9a978f" }));
  defs.append(marker);
  root.prepend(defs);
  for (const n of names) {
    const p = pos.get(n);
    const t = (run.tasks || {})[n] || { state: "PENDING", attempts: 0 };
    const g = svg("g", { class: "node", "data-task": n, "data-state": t.state, transform: `translate(${p.x},${p.y})` });
    g.append(svg("title", {}, `${n}: ${t.state}${t.use ? " (" + t.use + ")" : ""}${t.error ? "\n" + t.error : ""}`));
    g.append(svg("rect", { class: `f-${t.state}`, width: W, height: H, rx: 6 }));
    g.append(svg("text", { x: 10, y: 18 }, clipText(n, 22)));
    const dur = t.duration_ms !== null && t.duration_ms !== undefined ? fmtMS(t.duration_ms) : "";
    const att = t.attempts > 1 ? ` · ×${t.attempts}` : "";
    g.append(svg("text", { x: 10, y: 35, class: "sub" }, `${t.state.toLowerCase()}${dur ? " · " + dur : ""}${att}`));
    g.addEventListener("click", () => {
      $("log-task").value = n;
      $("log-task").dispatchEvent(new Event("change"));
    });
    root.append(g);
  }
  $("graph").replaceChildren(root);
}

function clipText(s, n) { return s.length > n ? s.slice(0, n - 1) + "…" : s; }

function renderTimeline(run, flow) {
  const names = taskNames(run, flow);
  const now = Date.now();
  const attempts = [];
  for (const n of names) {
    const t = (run.tasks || {})[n];
    for (const a of (t && t.attempt_log) || []) {
      attempts.push({ task: n, n: a.attempt, status: a.status, start: Date.parse(a.started_at),
        end: a.ended_at ? Date.parse(a.ended_at) : null, error: a.error || "", worker: a.worker_id || "" });
    }
  }
  if (attempts.length === 0) {
    $("timeline").replaceChildren(el("p", { class: "muted", text: "No attempt yet." }));
    return;
  }
  const t0 = Math.min(...attempts.map((a) => a.start), run.start_time ? Date.parse(run.start_time) : Infinity);
  const t1 = Math.max(t0 + 1, ...attempts.map((a) => a.end || now), run.end_time ? Date.parse(run.end_time) : 0);
  const LABEL = 160, ROW = 24, PAD = 8, PLOT = 900;
  const rowsOf = names.filter((n) => attempts.some((a) => a.task === n));
  const width = LABEL + PLOT + PAD * 2 + 60, height = PAD * 2 + 18 + rowsOf.length * ROW;
  const x = (t) => LABEL + PAD + ((t - t0) / (t1 - t0)) * PLOT;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "timeline of attempts" });
  for (let i = 0; i <= 4; i++) {
    const gx = LABEL + PAD + (PLOT * i) / 4;
    root.append(svg("line", { class: "grid", x1: gx, y1: PAD, x2: gx, y2: height - PAD }));
    root.append(svg("text", { class: "axis", x: gx + 3, y: PAD + 10 }, "+" + fmtMS(Math.round(((t1 - t0) * i) / 4))));
  }
  rowsOf.forEach((n, i) => {
    const y = PAD + 18 + i * ROW;
    root.append(svg("text", { x: PAD, y: y + 15 }, clipText(n, 22)));
    for (const a of attempts.filter((a) => a.task === n)) {
      const end = a.end || now;
      const bx = x(a.start), bw = Math.max(3, x(end) - bx);
      const bar = svg("rect", { class: `f-${a.status} attempt`, x: bx, y: y + 3, width: bw, height: ROW - 8, rx: 3,
        "data-task": n, "data-attempt": a.n, "data-status": a.status });
      bar.append(svg("title", {}, `${n} attempt ${a.n}: ${a.status}, ${fmtMS(end - a.start)}${a.worker ? " on " + a.worker : ""}${a.error ? "\n" + a.error : ""}`));
      root.append(bar);
      if (bw > 26) root.append(svg("text", { x: bx + 4, y: y + 15, class: "bar-label" }, `#${a.n}`));
    }
  });
  $("timeline").replaceChildren(root);
}

function appendLog(e) {
  const pre = $("logs");
  const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  const line = el("span", { class: "entry", "data-seq": String(e.seq) },
    el("span", { class: "ts", text: (e.timestamp || "").slice(11, 23) + " " }),
    el("span", { class: "task", text: `[${e.task}] ` }));
  if (e.stream === "stderr") line.append(el("span", { class: "stderr", text: "stderr: " }));
  else if (e.stream === "log" && e.level && e.level !== "INFO") line.append(el("span", { class: "lvl", text: e.level + ": " }));
  line.append(document.createTextNode(e.text.replace(/\n$/, "") + "\n"));
  pre.append(line);
  if (stick) pre.scrollTop = pre.scrollHeight;
}

// ---- routing -----------------------------------------------------------------

function go(hash) {
  if (location.hash === hash) route(); else location.hash = hash;
}

async function route() {
  const gen = ++routeGen;
  if (view) { view(); view = null; }
  const h = location.hash.replace(/^#/, "") || "/runs";
  const [path, query] = h.split("?");
  const m = path.match(/^\/runs\/([^/]+)$/);
  // Check the token before drawing a view: 401 shows the login form.
  try {
    await api("runs?limit=1");
  } catch (e) {
    if (gen !== routeGen) return;
    if (e instanceof Unauthorized) { showLogin("The server refused the token."); return; }
  }
  if (gen !== routeGen) return;
  $("logout").hidden = !sessionStorage.getItem(TOKEN_KEY);
  if (m) view = runView(decodeURIComponent(m[1]));
  else view = runsView(new URLSearchParams(query || ""));
}

function init() {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    route();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    route();
  });
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const [k, id] of [["status", "f-status"], ["flow", "f-flow"], ["tag", "f-tag"], ["limit", "f-limit"]]) {
      const v = $(id).value.trim();
      if (v && !(k === "limit" && v === "50")) p.set(k, v);
    }
    go("#/runs" + (p.toString() ? "?" + p : ""));
  });
  window.addEventListener("hashchange", route);
  fetch("config.json").then((r) => r.json()).then((c) => { config = c; }).catch(() => {}).finally(route);
}

init();
