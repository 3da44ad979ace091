// The dashboard's script, run under Node with a minimal DOM and fetch stand-in: it must parse,
// render the summary cards and a job row (progress from epochs and steps), and put job text in
// with textContent only; a token in the address's fragment goes out as an Authorization header
// and leaves the address bar; a 401 shows the sign-in form, whose token is used next.
//   node dashboard_test.js server/http/dashboard_page.cc
"use strict";
const fs = require("fs");
const assert = require("assert");

const source = fs.readFileSync(process.argv[2], "utf8");
const html = source.slice(source.indexOf('R"html(') + 7, source.indexOf(')html"'));
assert.ok(html.includes('<script src="/static/chart.js"></script>'), "Chart.js is not loaded");
const script = html.match(/<script>([\s\S]*?)<\/script>/)[1];
assert.ok(!/innerHTML/.test(script), "job text must not be inserted as HTML");

function run(hash, answer) {
  const elements = {};
  function element(tag) {
    return {
      tag, children: [], style: {}, textContent: "", className: "", title: "", hidden: false,
      value: "", listeners: {},
      append(...c) { this.children.push(...c); },
      replaceChildren() { this.children = []; },
      addEventListener(type, f) { this.listeners[type] = f; },
    };
  }
  const storage = {};
  const env = {
    requests: [],
    elements,
    location: {hash, pathname: "/", search: ""},
    document: {
      createElement: element,
      getElementById: (id) => elements[id] || (elements[id] = element("div")),
    },
    setInterval: () => {},
    sessionStorage: {
      getItem: (k) => (k in storage ? storage[k] : null),
      setItem: (k, v) => { storage[k] = String(v); },
      removeItem: (k) => { delete storage[k]; },
    },
    history: {replaceState: (state, title, url) => { env.location.hash = ""; env.replaced = url; }},
    fetch: async (url, init) => {
      const auth = ((init || {}).headers || {}).Authorization;
      env.requests.push({url, auth});
      return answer(url, auth);
    },
  };
  new Function("document", "setInterval", "fetch", "location", "history", "sessionStorage",
               script)(env.document, env.setInterval, env.fetch, env.location, env.history,
                       env.sessionStorage);
  return env;
}

const SUMMARY = {version: "9.9.9", jobs: {queued: 2, running: 1, succeeded: 0, failed: 0,
                                          cancelled: 0},
                 queue_length: 2, workers: {busy: 1, idle: 0}};
const JOBS = {jobs: [{id: "j-1", state: "RUNNING", attempt: 2, worker_id: "w<script>",
                      spec: {model: "zoo:lenet5", dataset: "fashion-mnist", weight_bits: 2,
                             activation_bits: 0},
                      progress: {epoch: 2, total_epochs: 4, step: 5, steps_per_epoch: 10,
                                 phase: "weights", accuracy: 0.5},
                      metrics: {}, create_time: "2026-01-01T00:00:00Z"}],
              next_page_token: ""};
const ok = (url) => ({status: 200, ok: true,
                      json: async () => (url.includes("/api/v1/summary") ? SUMMARY : JOBS)});

// Open server, no token: the page renders.
const open = run("", ok);
// A token in the fragment: sent as a header, gone from the address.
const signed = run("#token=qnet_abc%2B1", (url, auth) => auth === "Bearer qnet_abc+1" ? ok(url)
    : {status: 401, ok: false, json: async () => ({error: "no identity"})});
// No token against a server that wants one: the sign-in form appears; its token is used.
const login = run("", (url, auth) => auth === "Bearer typed" ? ok(url)
    : {status: 401, ok: false, json: async () => ({error: "no identity"})});

setTimeout(() => {
  const elements = open.elements;
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
  assert.ok(open.requests.every((r) => r.auth === undefined));
  assert.strictEqual(elements.login.hidden, true);

  assert.ok(signed.requests.length > 0 &&
            signed.requests.every((r) => r.auth === "Bearer qnet_abc+1"));
  assert.strictEqual(signed.location.hash, "");
  assert.strictEqual(signed.replaced, "/");
  assert.strictEqual(signed.elements.error.textContent, "");

  assert.strictEqual(login.elements.login.hidden, false);
  login.document.getElementById("token").value = "typed";
  login.elements.login.listeners.submit({preventDefault() {}});
  setTimeout(() => {
    assert.strictEqual(login.elements.login.hidden, true);
    assert.strictEqual(login.elements.error.textContent, "");
    assert.strictEqual(login.elements.token.value, "");
    assert.strictEqual(login.requests[login.requests.length - 1].auth, "Bearer typed");
    console.log("dashboard ok");
  }, 100);
}, 100);
