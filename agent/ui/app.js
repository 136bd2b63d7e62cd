// vigil's dashboard: polls the agent's HTTP API every second and draws it.
// Everything from the API is inserted as text, never as HTML.
"use strict";

const history = {}; // peer -> [{rtt (ms), pfail}], last 60 polls
const whyCache = {}; // "name@boot" -> GET /v1/why/name

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "class") e.className = v;
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function get(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

function ms(ns) { return (ns / 1e6).toFixed(ns < 1e7 ? 2 : 0) + " ms"; }

function status(s) { return el("span", { class: "status s-" + s }, s); }

function tags(t) {
  return Object.keys(t || {}).sort().map(k => k + "=" + t[k]).join(", ");
}

function renderMembers(members) {
  const body = document.querySelector("#members tbody");
  body.replaceChildren(...members.map(m => el("tr", { "data-member": m.name, "data-status": m.status, "data-gossip": m.gossip },
    el("td", {}, m.name), el("td", {}, status(m.status)), el("td", {}, m.gossip), el("td", {}, m.addr),
    el("td", {}, m.epoch), el("td", { class: "muted" }, m.boot), el("td", {}, tags(m.tags)))));
}

function sparkline(points, key, max, color) {
  const w = 240, h = 36, ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  if (points.length > 1) {
    const line = document.createElementNS(ns, "polyline");
    const step = w / 59;
    line.setAttribute("points", points.map((p, i) =>
      (i * step).toFixed(1) + "," + (h - 2 - (h - 4) * Math.min(p[key] / max, 1)).toFixed(1)).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", color);
    line.setAttribute("stroke-width", "1.5");
    svg.append(line);
  }
  return svg;
}

function renderPeers(scores) {
  const box = document.getElementById("peers");
  if (scores.length === 0) {
    box.replaceChildren(el("p", { class: "muted" }, "this agent probes no peer"));
    return;
  }
  box.replaceChildren(...scores.map(s => {
    const h = history[s.peer] || (history[s.peer] = []);
    h.push({ rtt: s.last_rtt_ns / 1e6, pfail: s.pfail });
    if (h.length > 60) h.shift();
    const maxRTT = Math.max(1, ...h.map(p => p.rtt));
    return el("div", { class: "peer", "data-peer": s.peer, "data-state": s.state },
      el("div", {}, el("span", { class: "name" }, s.peer), " ", status(s.state)),
      el("div", { class: "muted" }, "rtt " + ms(s.last_rtt_ns) + " · pfail " + s.pfail.toFixed(4) +
        " · threshold " + s.threshold.toFixed(2) + " · misses " + s.misses),
      sparkline(h, "rtt", maxRTT, "#0969da"),
      sparkline(h, "pfail", 1, "#cf222e"));
  }));
}

function renderLog(views) {
  document.getElementById("epoch").textContent = "view epoch " + views.epoch + " · " + views.members.length + " members";
  const log = views.log.slice().reverse();
  document.getElementById("log").replaceChildren(...log.map(e => el("li", { "data-decision": e.id },
    el("b", {}, "epoch " + e.epoch + " "), e.kind + " " + e.node + " ", status(e.reason),
    el("span", { class: "muted" }, " proposed by " + (e.proposer || "?") + ", " + e.votes + " votes" +
      (e.executor ? ", executor " + e.executor : "") + " · " + e.id))));
}

function renderRecoveries(jobs) {
  const body = document.querySelector("#recoveries tbody");
  body.replaceChildren(...jobs.slice().reverse().map(j => el("tr", { "data-job": j.id, "data-state": j.state },
    el("td", {}, j.epoch), el("td", {}, j.node), el("td", {}, j.state), el("td", {}, j.executor),
    el("td", {}, (j.attempts || []).map(a => a.n + "@" + a.executor + (a.ended ? " exit " + a.exit : " running")).join(", ")),
    el("td", { class: "muted" }, j.id))));
}

async function renderEvidence(members) {
  const failed = members.filter(m => m.status === "failed");
  const box = document.getElementById("evidence");
  if (failed.length === 0) {
    box.replaceChildren(el("p", { class: "muted" }, "no failure decided"));
    return;
  }
  const blocks = [];
  for (const m of failed) {
    const key = m.name + "@" + m.boot;
    if (!whyCache[key]) whyCache[key] = await get("/v1/why/" + encodeURIComponent(m.name));
    for (const d of whyCache[key].decisions.filter(d => d.reason === "failed" && d.boot === m.boot)) {
      const rows = (d.evidence || []).map(e => el("tr", { "data-observer": e.observer, "data-role": e.role },
        el("td", {}, e.observer), el("td", {}, e.role), el("td", {}, (e.monitored ? "probes it" : "asked") + (e.burst ? " + burst" : "")),
        el("td", {}, e.state), el("td", {}, e.misses), el("td", {}, ms(e.silence_ns)),
        el("td", {}, (100 * e.loss).toFixed(1) + "%"),
        el("td", {}, e.pfail || e.threshold ? e.pfail.toFixed(4) : "-"),
        el("td", {}, e.pfail || e.threshold ? e.threshold.toFixed(2) : "-")));
      blocks.push(el("div", { class: "verdict", "data-node": m.name, "data-decision": d.id },
        el("h3", {}, m.name + " failed at epoch " + d.epoch + " — proposed by " + d.proposer + ", " + d.votes + " votes"),
        rows.length === 0 ? el("p", { class: "muted" }, "no evidence kept for this decision") :
          el("table", {}, el("thead", {}, el("tr", {}, ...["observer", "role", "how", "state", "misses", "silent", "loss", "pfail", "threshold"].map(h => el("th", {}, h)))),
            el("tbody", {}, ...rows))));
    }
  }
  box.replaceChildren(...blocks);
}

async function refresh() {
  const updated = document.getElementById("updated");
  try {
    const [info, members, scores, views, jobs] = await Promise.all([
      get("/v1/info"), get("/v1/members"), get("/v1/scores"), get("/v1/views"), get("/v1/recoveries")]);
    document.getElementById("node").textContent = info.node + " @ " + info.addr;
    renderMembers(members);
    renderPeers(scores);
    renderLog(views);
    renderRecoveries(jobs);
    await renderEvidence(members);
    updated.className = "muted";
    updated.textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.ready = "1";
  } catch (err) {
    updated.className = "error";
    updated.textContent = "cannot reach the agent: " + err.message;
  }
}

refresh();
setInterval(refresh, 1000);
