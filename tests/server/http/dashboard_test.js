// The dashboard's script, run once under Node with a minimal DOM and fetch stand-in: it must
// parse, render the summary cards and a job row (progress from epochs and steps), and put job
// text in with textContent only.
//   node dashboard_test.js server/http/dashboard_page.cc
"use strict";
const fs = require("fs");
const assert = require("assert");

const source = fs.readFileSync(process.argv[2], "utf8");
const html = source.slice(source.indexOf('R"html(') + 7, source.indexOf(')html"'));
assert.ok(html.includes('<script src="/static/chart.js"></script>'), "Chart.js is not loaded");
const script = html.match(/<script>([\s\S]*?)<\/script>/)[1];
assert.ok(!/innerHTML/.test(script), "job text must not be inserted as HTML");

const elements = {};
function element(tag) {
  return {
    tag, children: [], style: {}, textContent: "", className: "", title: "",
    append(...c) { this.children.push(...c); },
    replaceChildren() { this.children = []; },
  };
}
const context = {
  document: {
    createElement: element,
    getElementById: (id) => elements[id] || (elements[id] = element("div")),
  },
  setInterval: () => {},
  fetch: async (url) => ({
    json: async () => url.includes("/api/v1/summary")
      ? {version: "9.9.9", jobs: {queued: 2, running: 1, succeeded: 0, failed: 0, cancelled: 0},
         queue_length: 2, workers: {busy: 1, idle: 0}}
      : {jobs: [{id: "j-1", state: "RUNNING", attempt: 2, worker_id: "w<script>",
                 spec: {model: "zoo:lenet5", dataset: "fashion-mnist", weight_bits: 2,
                        activation_bits: 0},
                 progress: {epoch: 2, total_epochs: 4, step: 5, steps_per_epoch: 10,
                            phase: "weights", accuracy: 0.5},
                 metrics: {}, create_time: "2026-01-01T00:00:00Z"}],
         next_page_token: ""},
  }),
};
new Function("document", "setInterval", "fetch", script)(
    context.document, context.setInterval, context.fetch);

setTimeout(() => {
  assert.strictEqual(elements.error.textContent, "");
  assert.ok(elements.updated.textContent.includes("9.9.9"));
  assert.strictEqual(elements.cards.children.length, 7);  // five states, busy, idle
  assert.strictEqual(elements.cards.children[0].children[0].textContent, "2");
  const row = elements.jobs.children[0];
  const cells = row.children.map((c) => c.textContent);
  assert.strictEqual(cells[0], "j-1");
  assert.strictEqual(cells[3], "2/float");
  assert.strictEqual(cells[7], "50.00%");
  assert.strictEqual(cells[8], "w<script>");  // as text, not markup
  assert.strictEqual(row.children[6].children[0].children[0].style.width, "37.5%");
  console.log("dashboard ok");
}, 100);
