#include "server/http/dashboard_page.h"

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/digest.h"

namespace qnet::server {
namespace {

constexpr absl::string_view kHtml = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>qnet dashboard</title>
<script src="/static/chart.js"></script>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d232b; }
  header { background: #1d232b; color: #fff; padding: 12px 24px; display: flex; gap: 24px;
           align-items: baseline; }
  header h1 { font-size: 20px; margin: 0; }
  header span { opacity: 0.8; font-size: 14px; }
  main { padding: 16px 24px; }
  .cards { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 16px; }
  .card { background: #fff; border-radius: 8px; padding: 12px 16px; min-width: 110px;
          box-shadow: 0 1px 2px rgba(0,0,0,.08); }
  .card .n { font-size: 26px; font-weight: 600; }
  .card .l { font-size: 12px; text-transform: uppercase; opacity: .7; }
  .charts { display: grid; grid-template-columns: minmax(0,1fr) minmax(0,2fr); gap: 16px;
            margin-bottom: 16px; }
  .panel { background: #fff; border-radius: 8px; padding: 12px 16px;
           box-shadow: 0 1px 2px rgba(0,0,0,.08); }
  .panel h2 { font-size: 14px; margin: 0 0 8px; }
  table { width: 100%; border-collapse: collapse; font-size: 13px; }
  th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e6e8eb; }
  th { font-weight: 600; font-size: 12px; text-transform: uppercase; opacity: .7; }
  td.mono { font-family: ui-monospace, monospace; }
  .bar { background: #e6e8eb; border-radius: 4px; height: 8px; width: 120px; overflow: hidden; }
  .bar > div { background: #3b82f6; height: 100%; }
  .state { font-weight: 600; }
  .QUEUED { color: #6b7280; } .RUNNING { color: #2563eb; } .SUCCEEDED { color: #16a34a; }
  .FAILED { color: #dc2626; } .CANCELLED { color: #a16207; }
  #error { color: #dc2626; }
  #login input { font: inherit; padding: 2px 6px; width: 22em; }
</style>
</head>
<body>
<header><h1>qnet</h1><span id="updated">loading&hellip;</span><span id="error"></span>
  <form id="login" hidden><input id="token" type="password" autocomplete="off"
    placeholder="qnet token" aria-label="qnet token"> <button>Sign in</button></form></header>
<main>
  <div class="cards" id="cards"></div>
  <div class="charts">
    <div class="panel"><h2>Jobs by state</h2><canvas id="states" height="220"></canvas></div>
    <div class="panel"><h2>Queue length and running jobs</h2>
      <canvas id="queue" height="110"></canvas></div>
  </div>
  <div class="panel">
    <h2>Recent jobs</h2>
    <table>
      <thead><tr><th>Job</th><th>Model</th><th>Dataset</th><th>Bits (w/a)</th><th>State</th>
        <th>Attempt</th><th>Progress</th><th>Accuracy</th><th>Worker</th><th>Created</th></tr>
      </thead>
      <tbody id="jobs"></tbody>
    </table>
  </div>
</main>
<script>
"use strict";
const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];
const COLORS = ["#9ca3af", "#3b82f6", "#22c55e", "#ef4444", "#eab308"];
const REFRESH_MS = 3000;
const TOKEN_KEY = "qnet-token";
let stateChart = null, queueChart = null;
const series = { labels: [], queued: [], running: [] };

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function initCharts() {
  if (typeof Chart === "undefined") return;  // the page still works without Chart.js
  stateChart = new Chart(document.getElementById("states"), {
    type: "doughnut",
    data: { labels: STATES, datasets: [{ data: [0, 0, 0, 0, 0], backgroundColor: COLORS }] },
    options: { animation: false, plugins: { legend: { position: "right" } } },
  });
  queueChart = new Chart(document.getElementById("queue"), {
    type: "line",
    data: { labels: series.labels, datasets: [
      { label: "queued", data: series.queued, borderColor: COLORS[0], tension: 0.2 },
      { label: "running", data: series.running, borderColor: COLORS[1], tension: 0.2 },
    ] },
    options: { animation: false, scales: { y: { beginAtZero: true } } },
  });
}

function renderSummary(s) {
  const cards = document.getElementById("cards");
  cards.replaceChildren();
  const add = (label, n) => {
    const c = el("div", undefined, "card");
    c.append(el("div", n, "n"), el("div", label, "l"));
    cards.append(c);
  };
  for (const st of STATES) add(st, s.jobs[st] || 0);
  add("workers busy", s.workers.busy);
  add("workers idle", s.workers.idle);
  if (stateChart) {
    stateChart.data.datasets[0].data = STATES.map(st => s.jobs[st] || 0);
    stateChart.update();
  }
  series.labels.push(new Date().toLocaleTimeString());
  series.queued.push(s.jobs.queued || 0);
  series.running.push(s.jobs.running || 0);
  if (series.labels.length > 100) {
    series.labels.shift(); series.queued.shift(); series.running.shift();
  }
  if (queueChart) queueChart.update();
}

function progressCell(job) {
  const td = el("td");
  const p = job.progress || {};
  const total = Number(p.total_epochs) || 0;
  let frac = 0;
  if (job.state === "SUCCEEDED") frac = 1;
  else if (total > 0) {
    const steps = Number(p.steps_per_epoch) || 0;
    const within = steps > 0 ? Number(p.step) / steps : 0;
    frac = Math.min(1, Math.max(0, (Math.max(0, Number(p.epoch) - 1) + within) / total));
  }
  const bar = el("div", undefined, "bar");
  const fill = el("div");
  fill.style.width = (frac * 100).toFixed(1) + "%";
  bar.append(fill);
  td.append(bar);
  if (total > 0 && job.state === "RUNNING") {
    td.append(el("span", (p.phase || "") + " epoch " + p.epoch + "/" + total));
  }
  return td;
}

function accuracyOf(job) {
  const m = job.metrics || {};
  const acc = Number(m.quantized_top1) || Number((job.progress || {}).accuracy) || 0;
  return acc > 0 ? (acc * 100).toFixed(2) + "%" : "";
}

function renderJobs(list) {
  const body = document.getElementById("jobs");
  body.replaceChildren();
  for (const job of list.jobs || []) {
    const spec = job.spec || {};
    const tr = el("tr");
    tr.append(el("td", job.id, "mono"), el("td", spec.model, "mono"), el("td", spec.dataset),
              el("td", spec.weight_bits + "/" + (spec.activation_bits || "float")),
              el("td", job.state + (job.cancel_requested ? " (cancelling)" : ""),
                 "state " + job.state),
              el("td", job.attempt), progressCell(job), el("td", accuracyOf(job)),
              el("td", job.worker_id),
              el("td", job.create_time ? new Date(job.create_time).toLocaleString() : ""));
    if (job.error) tr.title = job.error;
    body.append(tr);
  }
}

// The token comes once in the address's fragment (/#token=...; never sent to the server) or the
// sign-in form, lives in this tab's sessionStorage and goes out as an Authorization header.
function takeTokenFromFragment() {
  const m = /^#token=(.+)$/.exec(location.hash);
  if (!m) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search);  // out of sight
}

function showLogin(show) {
  document.getElementById("login").hidden = !show;
}

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const r = await fetch(path, token ? { headers: { Authorization: "Bearer " + token } } : {});
  if (r.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(true);
    throw new Error("sign in with a qnet token");
  }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
  return body;
}

async function refresh() {
  try {
    const [summary, jobs] = await Promise.all([
      api("/api/v1/summary"),
      api("/api/v1/jobs?page_size=25"),
    ]);
    showLogin(false);
    renderSummary(summary);
    renderJobs(jobs);
    document.getElementById("updated").textContent =
        "qnetd " + summary.version + " \u00b7 updated " + new Date().toLocaleTimeString();
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "cannot reach qnetd: " + e;
  }
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();  // the token stays in the page, never in a URL
  const input = document.getElementById("token");
  if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = "";
  refresh();
});
takeTokenFromFragment();
initCharts();
refresh();
setInterval(refresh, REFRESH_MS);
</script>
</body>
</html>
)html";

// "'sha256-<base64>'" of the text between the first `open` and `close` tags of the page.
std::string InlineHash(absl::string_view open, absl::string_view close) {
  const size_t begin = kHtml.find(open) + open.size();
  const absl::string_view text = kHtml.substr(begin, kHtml.find(close, begin) - begin);
  const std::string digest =
      DigestOf(std::string_view(text.data(), text.size()));  // "sha256:<hex>"
  return absl::StrCat(
      "'sha256-", absl::Base64Escape(absl::HexStringToBytes(digest.substr(digest.find(':') + 1))),
      "'");
}

}  // namespace

absl::string_view DashboardHtml() { return kHtml; }

const std::string& DashboardContentSecurityPolicy() {
  // Only this page's own inline script and style run; Chart.js and the data come from this
  // server; nothing may frame the page.
  static const std::string* const kPolicy = new std::string(
      absl::StrCat("default-src 'none'; script-src 'self' ", InlineHash("<script>", "</script>"),
                   "; style-src ", InlineHash("<style>", "</style>"),
                   "; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
                   "frame-ancestors 'none'"));
  return *kPolicy;
}

}  // namespace qnet::server
