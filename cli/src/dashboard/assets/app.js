// shoal dashboard: draws the snapshot the server streams (server-sent
// events, `state`), one whole redraw per snapshot. Every text goes in
// through textContent: nothing the swarm names becomes markup.
"use strict";

// What the end-to-end test reads: when each task's box first showed, and
// first showed it running (ms since the epoch).
window.shoal = { snapshots: 0, firstSeen: {}, runningSeen: {}, last: null };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function hue(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}
function colour(name) { return `hsl(${hue(name)}, 60%, 78%)`; }

function ago(ts) {
  const t = Date.parse(ts);
  if (!t) return "";
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

function render(v) {
  window.shoal.snapshots++;
  window.shoal.last = v;
  const now = Date.now();
  const services = new Map(v.services.map((s) => [s.id, s]));
  const nodesById = new Map(v.nodes.map((n) => [n.id, n]));
  const leader = v.leader ? nodesById.get(v.leader) : null;
  document.getElementById("leader").textContent =
    `leader: ${leader ? leader.hostname : "none"} · term ${v.term}`;
  const running = v.tasks.filter((t) => t.state === "running").length;
  document.getElementById("counts").textContent =
    `${v.nodes.length} nodes · ${v.services.length} services · ${running} tasks running`;

  // Nodes as columns, each node's tasks as boxes coloured by service.
  const columns = [];
  for (const n of v.nodes) {
    const tasks = v.tasks.filter((t) => t.node_id === n.id);
    tasks.sort((a, b) => a.name.localeCompare(b.name));
    const boxes = tasks.map((t) => {
      const svc = services.get(t.service_id);
      const stopping = t.desired !== "running" && t.desired !== "ready" && t.desired !== "accepted";
      if (!(t.id in window.shoal.firstSeen)) window.shoal.firstSeen[t.id] = now;
      if (t.state === "running" && !(t.id in window.shoal.runningSeen)) window.shoal.runningSeen[t.id] = now;
      return el("div", {
        class: `task ${t.state}${stopping ? " stopping" : ""}`,
        style: `background: ${colour(svc ? svc.name : t.service_id)}`,
        "data-task-id": t.id,
        "data-service": svc ? svc.name : "",
        "data-state": t.state,
        title: `${t.id} ${t.state}${t.err ? ": " + t.err : ""}`,
      },
        el("div", { class: "tname" }, t.name),
        el("div", { class: "tstate" }, `${t.state} ${ago(t.since)}`),
        t.err ? el("div", { class: "err" }, t.err) : null);
    });
    const lead = n.leader ? el("span", { class: "leader-mark", title: "Raft leader" }, " ★ leader") : null;
    columns.push(el("div", { class: `node ${n.state}`, "data-node-id": n.id, "data-hostname": n.hostname },
      el("div", { class: "node-head" },
        el("div", { class: "name" }, el("span", { class: `dot ${n.state}` }), n.hostname, lead),
        el("div", { class: "meta" }, `${n.role} · ${n.state} · ${n.availability}`),
        el("div", { class: "meta" }, n.addr)),
      el("div", { class: "tasks" }, ...boxes)));
  }
  document.getElementById("nodes").replaceChildren(...columns);

  // Services: replicas, mode, ports, update state and a rollout's progress.
  const rows = v.services.map((s) => {
    let update = "";
    if (s.update) {
      update = el("span", {}, s.update.state);
      if (s.update.total > 0 && (s.update.state === "updating" || s.update.state === "rollback_started")) {
        const pct = Math.min(100, Math.round((100 * s.update.done) / s.update.total));
        update.append(el("span", { class: "bar", title: `${s.update.done}/${s.update.total}` },
          el("span", { style: `width: ${pct}%` })), ` ${s.update.done}/${s.update.total}`);
      }
    }
    const tr = el("tr", { class: "svc", "data-service-id": s.id, "data-service-name": s.name },
      el("td", {}, el("span", { class: "swatch", style: `background: ${colour(s.name)}` }), s.name),
      el("td", {}, s.mode),
      el("td", {}, `${s.running}/${s.desired}`),
      el("td", {}, s.ports.join(", ")),
      el("td", {}, update));
    tr.addEventListener("click", () => showHistory(s.id));
    return tr;
  });
  document.querySelector("#services tbody").replaceChildren(...rows);

  // Recent events, newest first.
  const events = v.events.map((e) => {
    const t = new Date(e.time_nano / 1e6).toLocaleTimeString();
    return el("li", {}, el("span", { class: "time" }, t), `${e.kind} ${e.action} ${e.name || e.id}`);
  });
  document.getElementById("events").replaceChildren(...events);

  if (openService) refreshHistory();
}

// A service's history, read when clicked and again while open.
let openService = null;
let historyAt = 0;
async function showHistory(id) {
  openService = id;
  historyAt = 0;
  document.getElementById("detail").hidden = false;
  await refreshHistory();
}
async function refreshHistory() {
  if (!openService || Date.now() - historyAt < 1000) return;
  historyAt = Date.now();
  const id = openService;
  let h;
  try {
    const r = await fetch(`services/${encodeURIComponent(id)}`);
    if (!r.ok) { document.getElementById("detail-name").textContent = `${id}: ${r.status}`; return; }
    h = await r.json();
  } catch (e) { return; }
  if (openService !== id) return;
  document.getElementById("detail-name").textContent = `${h.name}: task history`;
  const rows = h.tasks.map((t) => el("tr", { "data-task-id": t.id },
    el("td", {}, t.name), el("td", {}, t.node), el("td", {}, t.desired),
    el("td", {}, t.state), el("td", {}, ago(t.since)),
    el("td", { class: "err" }, t.err || "")));
  document.querySelector("#history tbody").replaceChildren(...rows);
}
document.getElementById("detail-close").addEventListener("click", () => {
  openService = null;
  document.getElementById("detail").hidden = true;
});

// The timeline, drawn by the server, fetched again every few seconds.
setInterval(() => {
  document.getElementById("timeline").src = `timeline.svg?t=${Date.now()}`;
}, 5000);

const live = document.getElementById("live");
const stream = new EventSource("stream");
stream.addEventListener("state", (m) => {
  live.textContent = "live";
  live.className = "";
  try { render(JSON.parse(m.data)); } catch (e) { console.error(e); }
});
stream.onerror = () => { live.textContent = "reconnecting"; live.className = "off"; };
