// The actorlog dashboard: renders snapshots pushed over a WebSocket.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#4aa3ff", "#3ecf8e", "#f5b342", "#ff5d5d", "#b48cff", "#5fd3e0"];
const STATE_COLORS = {
  running: "#4aa3ff", paused: "#b48cff", completed: "#3ecf8e",
  failed: "#ff5d5d", cancelled: "#8a96a3",
};
const STATES = ["running", "paused", "completed", "failed", "cancelled"];
let selected = null;       // the drilled-down execution id
let selectedSeen = -1;     // the last position at which it was fetched
let lastHead = -1;
let lastSnapshot = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

function fmt(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Number(n).toFixed(digits);
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s === 0) return "0";
  if (s < 1e-3) return (s * 1e6).toFixed(0) + " µs";
  if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + " ms";
  return s.toFixed(2) + " s";
}

function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

// A line chart of aligned series: [{name, color, points: [number|null], area}].
function lineChart(svg, series, opts) {
  const width = svg.clientWidth || 600;
  const height = svg.clientHeight || 190;
  const pad = { l: 58, r: 8, t: 8, b: 18 };
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const count = Math.max(1, ...series.map((s) => s.points.length));
  let top = 0;
  for (const s of series) for (const p of s.points) if (p !== null && p > top) top = p;
  top = niceMax(top);
  const x = (i) => pad.l + (i / Math.max(1, count - 1)) * (width - pad.l - pad.r);
  const y = (v) => pad.t + (1 - v / top) * (height - pad.t - pad.b);
  for (let k = 0; k <= 4; k++) {
    const v = (top * k) / 4;
    svg.append(svgEl("line", { class: "grid-line", x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v) }));
    const label = svgEl("text", { class: "axis", x: pad.l - 6, y: y(v) + 3, "text-anchor": "end" });
    label.textContent = opts.format(v);
    svg.append(label);
  }
  const span = opts.seconds || count;
  for (const frac of [0, 0.5, 1]) {
    const label = svgEl("text", {
      class: "axis", x: x(frac * (count - 1)), y: height - 4,
      "text-anchor": frac === 0 ? "start" : frac === 1 ? "end" : "middle",
    });
    label.textContent = frac === 1 ? "now" : `-${Math.round((1 - frac) * span)}s`;
    svg.append(label);
  }
  for (const s of series) {
    let d = "";
    let pen = false;
    s.points.forEach((p, i) => {
      if (p === null || p === undefined) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(p).toFixed(1)}`;
      pen = true;
    });
    if (!d) continue;
    if (s.area) {
      const first = s.points.findIndex((p) => p !== null);
      const area = `${d}L${x(s.points.length - 1)},${y(0)}L${x(first)},${y(0)}Z`;
      svg.append(svgEl("path", { class: "area", d: area, fill: s.color }));
    }
    svg.append(svgEl("path", { class: "series", d, stroke: s.color, "data-name": s.name }));
  }
}

function legend(node, series) {
  node.replaceChildren(...series.map((s) => {
    const swatch = el("i");
    swatch.style.background = s.color;
    return el("span", {}, swatch, s.label || s.name);
  }));
}

function sum(points) { return points.reduce((a, b) => a + (b || 0), 0); }

// Charts start at the first busy second, showing at least the last 30 s.
function chartStart(total) {
  const first = total.findIndex((n) => n > 0);
  return first < 0 ? Math.max(0, total.length - 30) : Math.max(0, Math.min(first, total.length - 30));
}

function renderThroughput(t) {
  const from = chartStart(t.total);
  const series = [{ name: "all events", color: "#d9e1ea", points: t.total.slice(from), area: true }];
  Object.entries(t.by_type).forEach(([name, points], i) => {
    series.push({ name, color: PALETTE[i % PALETTE.length], points: points.slice(from) });
  });
  const svg = $("throughput-chart");
  lineChart(svg, series, { format: (v) => fmt(v), seconds: t.seconds - from });
  svg.setAttribute("data-sum", String(sum(t.total)));
  legend($("throughput-legend"), series.map((s) => ({ ...s, label: `${s.name} (${fmt(sum(s.points))})` })));
  const commits = sum(t.commits);
  const biggest = Math.max(0, ...t.max_commit);
  $("commit-summary").textContent = commits
    ? `${fmt(commits)} commits in the window · ${fmt(sum(t.total) / commits, 1)} events per commit on average · largest ${fmt(biggest)}`
    : "no commits in the window";
  const recent = t.total.slice(-10);
  $("stat-rate").textContent = fmt(sum(recent) / Math.max(1, recent.length), 1);
}

function renderLatency(snapshot) {
  const from = chartStart(snapshot.throughput.total);
  const latency = snapshot.step_latency;
  const series = [
    { name: "step p50", color: "#3ecf8e", points: latency.p50.slice(from) },
    { name: "step p95", color: "#f5b342", points: latency.p95.slice(from) },
    { name: "step p99", color: "#ff5d5d", points: latency.p99.slice(from) },
  ];
  // Without workflow steps, chart the monitoring system's p95 series
  // instead (one point per push).
  const metrics = Object.entries(snapshot.metrics.history).slice(0, 4).map(([name, h], i) => (
    { name: `${name} p95`, color: PALETTE[i % PALETTE.length], points: h.p95 }));
  const hasSteps = series.some((s) => s.points.some((p) => p !== null));
  const shown = hasSteps || !metrics.length ? series : metrics;
  const seconds = hasSteps || !metrics.length
    ? snapshot.throughput.seconds - from
    : Math.max(...metrics.map((s) => s.points.length)) * snapshot.refresh_s;
  const svg = $("latency-chart");
  lineChart(svg, shown, { format: (v) => fmtSeconds(v), seconds });
  svg.setAttribute("data-source", hasSteps || !metrics.length ? "steps" : "metrics");
  legend($("latency-legend"), shown);
  $("latency-what").textContent = shown === series ? "workflow step duration" : "monitoring p95";
}

function badge(state) { return el("span", { class: `badge s-${state}` }, state); }

function rows(tbody, items, render, empty, columns) {
  if (!items.length) {
    tbody.replaceChildren(el("tr", {}, el("td", { class: "empty", colSpan: columns }, empty)));
    return;
  }
  tbody.replaceChildren(...items.map(render));
}

function renderWorkflows(w) {
  $("wf-total").textContent = `${fmt(w.total)} executions`;
  const total = Math.max(1, Object.values(w.by_state).reduce((a, b) => a + b, 0));
  const bar = $("wf-states");
  bar.replaceChildren(...STATES.filter((s) => w.by_state[s]).map((s) => {
    const part = el("div", { title: `${s}: ${w.by_state[s]}`, "data-state": s });
    part.style.width = `${(100 * w.by_state[s]) / total}%`;
    part.style.background = STATE_COLORS[s];
    return part;
  }));
  legend($("wf-state-legend"), STATES.map((s) => ({ name: s, color: STATE_COLORS[s], label: `${s} ${w.by_state[s] || 0}` })));
  $("stat-running").textContent = fmt(w.by_state.running || 0);
  $("stat-failed").textContent = fmt(w.by_state.failed || 0);
  rows($("wf-by-workflow").tBodies[0], Object.entries(w.by_workflow), ([name, counts]) =>
    el("tr", {}, el("td", {}, name || "(unnamed)"), ...STATES.map((s) => el("td", {}, counts[s] || ""))),
    "no workflow executions yet", 6);
  rows($("executions").tBodies[0], w.recent, (e) => {
    const tr = el("tr", { "data-execution": e.execution_id, class: e.execution_id === selected ? "selected" : "" },
      el("td", {}, el("code", {}, e.execution_id)), el("td", {}, e.workflow),
      el("td", {}, badge(e.state)), el("td", {}, e.step || ""), el("td", {}, fmtTime(e.updated_at)));
    tr.addEventListener("click", () => select(e.execution_id));
    return tr;
  }, "no executions yet", 5);
}

function renderAlerts(a) {
  $("stat-alerts").textContent = fmt(a.active.length);
  const items = a.active.length ? a.active : a.recent.slice(0, 8);
  const list = $("alerts");
  if (!items.length) { list.replaceChildren(el("li", { class: "muted" }, "no alerts")); return; }
  list.replaceChildren(...items.map((item) => {
    const firing = item.firing !== undefined ? item.firing : item.type !== "AlertResolved";
    const details = Object.entries(item.data || {}).filter(([k]) => k !== "name")
      .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join("  ");
    return el("li", {}, el("span", { class: `badge ${firing ? "s-failed" : "s-completed"}` }, firing ? "firing" : "resolved"),
      " ", el("b", {}, item.name), " ", el("span", { class: "when" }, fmtTime(item.since || item.at)),
      details ? el("div", { class: "mono muted" }, details) : null);
  }));
}

function renderErrors(errors) {
  rows($("errors").tBodies[0], errors, (e) => {
    const tr = el("tr", { "data-execution": e.execution_id },
      el("td", {}, fmtTime(e.at)), el("td", {}, el("code", {}, e.execution_id)),
      el("td", {}, e.kind === "step" ? `${e.step} #${e.attempt}` : `${e.step || ""} (execution)`),
      el("td", { class: "error-text" }, `${e.error_type}: ${e.error}${e.will_retry ? " (will retry)" : ""}`));
    tr.addEventListener("click", () => select(e.execution_id));
    return tr;
  }, "no errors", 4);
}

function renderTables(snapshot) {
  rows($("projections").tBodies[0], [{ name: "dashboard", position: snapshot.position, lag: snapshot.lag }, ...snapshot.projections],
    (p) => el("tr", {}, el("td", {}, p.name), el("td", {}, fmt(p.position)), el("td", {}, fmt(p.lag))), "", 3);
  rows($("types").tBodies[0], Object.entries(snapshot.throughput.type_totals).slice(0, 10),
    ([name, n]) => el("tr", {}, el("td", {}, name), el("td", {}, fmt(n))), "no events in the window", 2);
  const metrics = snapshot.metrics;
  $("metrics-panel").hidden = !metrics.enabled;
  if (metrics.enabled) {
    rows($("metrics").tBodies[0], Object.entries(metrics.series), ([name, s]) => {
      const spark = svgEl("svg", { class: "spark", viewBox: "0 0 120 22", preserveAspectRatio: "none" });
      const points = (metrics.history[name] || {}).p95 || [];
      const top = Math.max(1e-12, ...points.filter((p) => p !== null));
      const d = points.map((p, i) => `${i ? "L" : "M"}${(i / Math.max(1, points.length - 1)) * 120},${21 - (20 * (p || 0)) / top}`).join("");
      if (d) spark.append(svgEl("path", { d }));
      return el("tr", { "data-series": name }, el("td", {}, el("code", {}, name)),
        ...["count", "sum", "min", "max", "p50", "p95", "p99"].map((k) => el("td", {}, fmt(s[k], k === "count" ? 0 : 3))),
        el("td", {}, spark));
    }, metrics.error ? `metrics unavailable: ${metrics.error}` : "no metric series", 9);
  }
}

function render(snapshot) {
  lastSnapshot = snapshot;
  $("store").textContent = snapshot.store;
  $("stat-head").textContent = fmt(snapshot.head_position);
  $("stat-lag").textContent = fmt(snapshot.lag);
  const problems = [snapshot.follow_error && `Stopped following the log: ${snapshot.follow_error}`,
    snapshot.metrics.error && `Metrics provider failed: ${snapshot.metrics.error}`].filter(Boolean);
  $("banner").hidden = !problems.length;
  $("banner").textContent = problems.join(" · ");
  renderThroughput(snapshot.throughput);
  renderLatency(snapshot);
  renderWorkflows(snapshot.workflows);
  renderAlerts(snapshot.alerts);
  renderErrors(snapshot.errors);
  renderTables(snapshot);
  if (selected && snapshot.position !== lastHead) {
    const summary = snapshot.workflows.recent.find((e) => e.execution_id === selected);
    if (!summary || summary.last_position !== selectedSeen) loadExecution(selected);
  }
  lastHead = snapshot.position;
}

function select(id) {
  selected = id;
  selectedSeen = -1;
  loadExecution(id);
  if (lastSnapshot) renderWorkflows(lastSnapshot.workflows);
}

async function loadExecution(id) {
  const response = await fetch(`/api/executions/${encodeURIComponent(id)}`, { credentials: "same-origin" });
  if (id !== selected) return;
  if (!response.ok) { $("drill").hidden = true; return; }
  renderExecution(await response.json());
}

function renderExecution(e) {
  selectedSeen = e.history.length ? e.history[e.history.length - 1].position : -1;
  $("drill").hidden = false;
  $("drill").setAttribute("data-execution", e.execution_id);
  $("drill-id").textContent = e.execution_id;
  const state = $("drill-state");
  state.className = `badge s-${e.state}`;
  state.textContent = e.state;
  const started = Date.parse(e.started_at);
  const ended = e.ended_at ? Date.parse(e.ended_at) : Date.now();
  $("drill-meta").replaceChildren(
    el("span", {}, "workflow ", el("b", {}, e.workflow || "–")),
    el("span", {}, "started ", el("b", {}, fmtTime(e.started_at))),
    el("span", {}, "ended ", el("b", {}, fmtTime(e.ended_at))),
    el("span", {}, "took ", el("b", {}, fmtSeconds((ended - started) / 1000))),
    el("span", {}, "events ", el("b", {}, e.history.length)));
  $("drill-error").hidden = !e.error;
  $("drill-error").textContent = e.error || "";
  const span = Math.max(1, ended - started);
  rows($("steps").tBodies[0], e.steps, (s) => {
    const line = el("div", { class: "timeline" });
    if (s.started_at) {
      const a = Date.parse(s.started_at) - started;
      const b = (s.ended_at ? Date.parse(s.ended_at) : ended) - started;
      const bar = el("div");
      bar.style.left = `${(100 * a) / span}%`;
      bar.style.width = `${Math.max(0.5, (100 * (b - a)) / span)}%`;
      bar.style.background = { succeeded: "#3ecf8e", failed: "#ff5d5d", retrying: "#f5b342", skipped: "#8a96a3" }[s.state] || "#4aa3ff";
      line.append(bar);
    }
    return el("tr", { "data-step": s.step, "data-state": s.state },
      el("td", {}, el("code", {}, s.step)), el("td", {}, badge(s.state)), el("td", {}, s.attempts),
      el("td", {}, fmtTime(s.started_at)), el("td", {}, fmtTime(s.ended_at)),
      el("td", {}, fmtSeconds(s.duration_s)), el("td", {}, line),
      el("td", { class: "error-text" }, s.error || (s.reason ? `skipped: ${s.reason}` : "")));
  }, "no steps recorded", 8);
}

function connect() {
  const params = new URLSearchParams(location.search);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const token = params.get("token");
  const url = `${scheme}://${location.host}/ws${token ? `?token=${encodeURIComponent(token)}` : ""}`;
  const socket = new WebSocket(url);
  const status = $("status");
  socket.addEventListener("open", () => { status.dataset.state = "live"; status.textContent = "live"; });
  socket.addEventListener("message", (message) => render(JSON.parse(message.data)));
  socket.addEventListener("close", () => {
    status.dataset.state = "offline";
    status.textContent = "reconnecting…";
    setTimeout(connect, 1500);
  });
}

window.addEventListener("DOMContentLoaded", () => {
  $("drill-close").addEventListener("click", () => { selected = null; $("drill").hidden = true; if (lastSnapshot) renderWorkflows(lastSnapshot.workflows); });
  window.addEventListener("resize", () => lastSnapshot && render(lastSnapshot));
  connect();
});
