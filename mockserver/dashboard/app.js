// wanmock dashboard: plain JavaScript, no build step, no third-party code.
// Everything it shows comes from the control plane (/__admin/*), read through the server's
// store, so every worker answers alike. The admin token (if the server has one) is read from
// the URL fragment (#token=...) or asked for, kept in this tab's sessionStorage only, and sent
// in X-Wanmock-Admin-Token on every call.
"use strict";

const API = "/__admin";
const TOKEN_HEADER = "X-Wanmock-Admin-Token";
const TOKEN_KEY = "wanmock-admin-token";
const POLL_MS = 1000;
const JOURNAL_SHOWN = 200; // entries drawn at first ("show more" for the next ones)
const JOURNAL_KEPT = 5000; // newest entries the journal view keeps
const TERMINAL = new Set(["succeeded", "failed", "canceled", "expired"]);

const S = {
  token: null,
  version: null,
  clock: { kind: "system", now: 0, at: 0 },
  catalog: null,
  health: null,
  tasks: [],
  journalCount: null,
  journalEpoch: 0, // moves when the journal shrank (a reset): the journal view starts over
  view: null, // {name, args, params}
  rendering: false,
};

// -- small helpers ---------------------------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (v) =>
  String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const json = (v) => (v === null || v === undefined ? "—" : JSON.stringify(v, null, 2));

function serverNow() {
  const c = S.clock;
  return c.kind === "system" ? c.now + (performance.now() - c.at) / 1000 : c.now;
}

function isoTime(t) {
  if (t === null || t === undefined) return "—";
  return new Date(t * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function span(seconds) {
  const s = Math.abs(seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${+s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${+(s / 3600).toFixed(1)} h`;
  return `${+(s / 86400).toFixed(1)} d`;
}

function relative(t, now) {
  if (t === null || t === undefined) return "";
  const d = t - now;
  if (Math.abs(d) < 0.0005) return "now";
  return d > 0 ? `in ${span(d)}` : `${span(d)} ago`;
}

function notice(text, kind = "error") {
  const el = $("#notice");
  el.textContent = text;
  el.className = `notice ${kind}`;
  el.hidden = !text;
  clearTimeout(notice.timer);
  if (text && kind === "ok") notice.timer = setTimeout(() => (el.hidden = true), 4000);
}

// -- the token and the API ---------------------------------------------------------------------

function takeTokenFromFragment() {
  // "#token=abc" or "#token=abc&/task/..." : keep the token, drop it from the address bar.
  const frag = location.hash.slice(1);
  const m = frag.match(/(?:^|&)token=([^&]*)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    const rest = frag.replace(m[0], "").replace(/^&/, "");
    history.replaceState(null, "", location.pathname + location.search + "#" + (rest || "/tasks"));
  }
  S.token = sessionStorage.getItem(TOKEN_KEY);
}

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = {};
  if (S.token) headers[TOKEN_HEADER] = S.token;
  let body;
  if (options.method && options.method !== "GET") {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body ?? {});
  }
  const response = await fetch(API + path, { method: options.method || "GET", headers, body, cache: "no-store" });
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    const message = (data && data.error) || `${response.status} ${response.statusText}`;
    if (response.status === 401 || (response.status === 403 && /token/i.test(message))) askForToken(message);
    throw new ApiError(message, response.status);
  }
  return data;
}

function askForToken(message) {
  const bar = $("#token-bar");
  if (!bar.hidden) return;
  if (S.token) {
    // A token was sent and refused: forget it (this tab keeps no wrong token) and say so.
    message = "The admin token was refused; enter the one the server was started with";
    S.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
  }
  bar.hidden = false;
  $("#token-bar label").firstChild.textContent = `${message || "The control plane needs its admin token"}: `;
  $("#token-input").focus();
}

function setupToken() {
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    S.token = $("#token-input").value.trim() || null;
    if (S.token) sessionStorage.setItem(TOKEN_KEY, S.token);
    $("#token-input").value = "";
    $("#token-bar").hidden = true;
    start();
  });
}

// -- the clock ---------------------------------------------------------------------------------

function setClock(kind, now) {
  S.clock = { kind, now, at: performance.now() };
  const manual = kind === "manual";
  $("#clock-kind").textContent = manual ? "manual clock" : "system clock";
  $("#clock-buttons").hidden = !manual;
  drawClock();
}

function drawClock() {
  $("#clock-time").textContent = isoTime(serverNow());
  const next = nextTransition(S.tasks);
  const button = $("#clock-next");
  button.disabled = next === null;
  button.textContent = next === null ? "next transition" : `next transition (${relative(next, serverNow())})`;
}

async function advanceClock(seconds) {
  if (!(seconds > 0)) return;
  try {
    const c = await api("/clock/advance", { method: "POST", body: { seconds: Math.ceil(seconds * 1000) / 1000 } });
    setClock(c.clock, c.now);
    await poll(true);
  } catch (e) {
    notice(`Clock: ${e.message}`);
  }
}

// -- tasks: instants and timelines ---------------------------------------------------------------

function expiresAt(t) {
  const retained = t.retention_seconds === null || t.retention_seconds === undefined ? null : t.created_at + t.retention_seconds;
  if (t.expired_at === null || t.expired_at === undefined) return retained;
  return retained === null ? t.expired_at : Math.min(retained, t.expired_at);
}

function instants(t) {
  return [
    ["created", t.created_at],
    ["started", t.started_at],
    ["finished", t.finished_at],
    ["expires", expiresAt(t)],
  ];
}

function nextOf(t, now) {
  const found = instants(t)
    .map(([, at]) => at)
    .filter((at) => at !== null && at > now + 1e-6);
  return found.length ? Math.min(...found) : null;
}

function nextTransition(tasks) {
  const now = serverNow();
  let best = null;
  for (const t of tasks) {
    if (t.state === "expired") continue;
    const n = nextOf(t, now);
    if (n !== null && (best === null || n < best)) best = n;
  }
  return best;
}

// The bar spans created .. max(finished, now) (plus a margin); the expiry is drawn when it falls
// inside, and said in words otherwise (it is usually a day away, the run a few seconds).
function timeline(t, now, big = false) {
  const start = t.created_at;
  const expires = expiresAt(t);
  let end = Math.max(t.finished_at, now);
  if (expires !== null && expires <= end + (end - start) * 0.25) end = Math.max(end, expires);
  const width = Math.max(end - start, 1e-3) * 1.08;
  const pct = (at) => Math.max(0, Math.min(100, ((at - start) / width) * 100));
  const final = t.final_state || "succeeded";
  const stop = expires === null ? start + width : Math.min(expires, start + width);
  const segs = [
    ["queued", start, Math.min(t.started_at, stop)],
    ["running", t.started_at, Math.min(t.finished_at, stop)],
    [final, t.finished_at, stop],
  ];
  if (expires !== null && expires < start + width) segs.push(["expired", expires, start + width]);
  const title = `created ${isoTime(start)} · started ${isoTime(t.started_at)} · finished ${isoTime(t.finished_at)} · expires ${isoTime(expires)}`;
  let html = `<div class="tl${big ? " big" : ""}" data-start="${start}" data-width="${width}" title="${esc(title)}">`;
  for (const [cls, a, b] of segs) {
    if (b > a) html += `<div class="seg ${cls}" style="left:${pct(a)}%;width:${pct(b) - pct(a)}%"></div>`;
  }
  html += `<div class="now" style="left:${pct(now)}%"></div></div>`;
  return html;
}

function moveNowMarkers() {
  const now = serverNow();
  for (const tl of document.querySelectorAll(".tl")) {
    const start = +tl.dataset.start;
    const width = +tl.dataset.width;
    const marker = tl.querySelector(".now");
    if (marker) marker.style.left = `${Math.max(0, Math.min(100, ((now - start) / width) * 100))}%`;
  }
}

function stateBadge(t) {
  return `<span class="state ${esc(t.state)}">${esc(t.state)}</span>`;
}

function wordCell(t) {
  return t.status_word
    ? `<span class="word">${esc(t.status_word)}</span>`
    : `<span class="muted" title="the provider has no status word for ${esc(t.state)}">(no word)</span>`;
}

// -- views -------------------------------------------------------------------------------------

const VIEWS = {};

VIEWS.tasks = {
  journal: false,
  async load() {
    S.tasks = (await api("/tasks")).tasks;
  },
  render(view) {
    const p = view.params;
    const now = serverNow();
    const providers = Object.keys(S.catalog.providers);
    const states = ["queued", "running", "succeeded", "failed", "canceled", "expired"];
    const q = (p.get("q") || "").toLowerCase();
    const rows = [];
    let shown = 0;
    for (let i = S.tasks.length - 1; i >= 0; i--) {
      const t = S.tasks[i];
      if (p.get("provider") && t.provider !== p.get("provider")) continue;
      if (p.get("state") && t.state !== p.get("state")) continue;
      if (q && !`${t.id} ${t.model_id} ${t.test_id || ""} ${t.kind}`.toLowerCase().includes(q)) continue;
      shown++;
      const href = `#/task/${encodeURIComponent(t.provider)}/${encodeURIComponent(t.id)}`;
      rows.push(
        `<tr data-task="${esc(t.provider)}/${esc(t.id)}" data-state="${esc(t.state)}">` +
          `<td>${esc(t.provider)}</td>` +
          `<td class="id"><a href="${href}">${esc(t.id)}</a></td>` +
          `<td>${esc(t.model_id)} <span class="badge">${esc(t.kind)}</span></td>` +
          `<td>${t.test_id ? esc(t.test_id) : '<span class="muted">—</span>'}</td>` +
          `<td>${wordCell(t)}</td><td>${stateBadge(t)}</td>` +
          `<td>${timeline(t, now)}</td>` +
          `<td class="muted">${esc(t.state === "expired" ? "expired" : relative(expiresAt(t), now))}</td></tr>`,
      );
    }
    const option = (v, sel) => `<option value="${esc(v)}"${v === sel ? " selected" : ""}>${esc(v || "any")}</option>`;
    return (
      `<h1>Tasks <span class="badge" id="task-count">${shown} of ${S.tasks.length}</span></h1>` +
      `<form class="toolbar" id="task-filter">` +
      `<label>provider <select name="provider">${["", ...providers].map((v) => option(v, p.get("provider") || "")).join("")}</select></label>` +
      `<label>state <select name="state">${["", ...states].map((v) => option(v, p.get("state") || "")).join("")}</select></label>` +
      `<label>search <input name="q" value="${esc(p.get("q") || "")}" placeholder="id, model, test"></label>` +
      `<span class="muted">newest first · timeline: <span class="state queued">queued</span> <span class="state running">running</span> <span class="state succeeded">final</span> <span class="state expired">expired</span>, the black mark is now</span>` +
      `</form>` +
      `<table id="tasks"><thead><tr><th>Provider</th><th>Task</th><th>Model</th><th>Test</th><th>Provider's word</th><th>State</th><th>Timeline</th><th>Expires</th></tr></thead>` +
      `<tbody>${rows.join("") || '<tr><td colspan="8" class="muted">No task yet: submit one over a provider API.</td></tr>'}</tbody></table>`
    );
  },
  bind(view) {
    const form = $("#task-filter");
    const apply = () => {
      const params = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (v) params.set(k, v);
      navigate(`#/tasks${params.toString() ? "?" + params : ""}`, true);
    };
    form.addEventListener("change", apply);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      apply();
    });
  },
};

VIEWS.task = {
  journal: true,
  async load(view) {
    const [provider, id] = view.args;
    const ref = `${encodeURIComponent(provider)}/${encodeURIComponent(id)}`;
    const [task, entries] = await Promise.all([api(`/tasks/${ref}`), journalSince({ task: id, provider })]);
    view.task = task;
    view.entries = entries;
    const i = S.tasks.findIndex((t) => t.provider === provider && t.id === id);
    if (i >= 0) S.tasks[i] = task;
    if (task.state === "succeeded" && !view.result) {
      try {
        view.result = (await api(`/tasks/${ref}/result`)).url;
      } catch (e) {
        view.result = null;
      }
    }
  },
  render(view) {
    const t = view.task;
    const now = serverNow();
    const next = nextOf(t, now);
    const manual = S.clock.kind === "manual";
    const legend = instants(t)
      .map(
        ([name, at]) =>
          `<div class="${at !== null && at === next ? "next" : ""}" data-instant="${name}"><b>${name}</b>${esc(isoTime(at))}<br><span class="muted">${esc(relative(at, now))}</span></div>`,
      )
      .join("");
    const params = Object.entries(t.params || {})
      .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(typeof v === "string" ? v : JSON.stringify(v))}</dd>`)
      .join("");
    const error = t.error_code || t.error_message ? `<dt>error</dt><dd class="warn">${esc(t.error_code || "")} ${esc(t.error_message || "")}</dd>` : "";
    const terminal = TERMINAL.has(t.state);
    let result = `<p class="muted">The result appears here once the task has succeeded.</p>`;
    if (t.state === "succeeded" && view.result)
      result = `<video id="result-video" controls muted preload="auto" src="${esc(view.result)}"></video><p class="mono muted">${esc(view.result.split("?")[0])}</p>`;
    else if (t.state === "failed") result = `<p class="warn">Failed: ${esc(t.error_code || "")} ${esc(t.error_message || "")}</p>`;
    else if (t.state === "expired") result = `<p class="muted">Expired: the provider answers as for an unknown id.</p>`;
    return (
      `<p><a href="#/tasks">← all tasks</a></p>` +
      `<h1><span class="mono">${esc(t.id)}</span> ${stateBadge(t)} ${t.status_word ? `<span class="word">${esc(t.status_word)}</span>` : ""}</h1>` +
      `<div class="panel"><h2>Timeline <span class="muted">(server clock; the black mark is now)</span></h2>${timeline(t, now, true)}<div class="tl-legend">${legend}<div><b>now</b>${esc(isoTime(now))}<br><span class="muted">${esc(S.clock.kind)} clock</span></div></div></div>` +
      `<div class="grid2">` +
      `<div class="panel"><h2>Task</h2><dl class="facts"><dt>provider</dt><dd>${esc(t.provider)}</dd><dt>model</dt><dd>${esc(t.model_id)} <span class="badge">${esc(t.kind)}</span></dd>` +
      `<dt>test</dt><dd>${esc(t.test_id || "—")}</dd><dt>key</dt><dd class="mono">${esc(t.owner || "—")}</dd><dt>final state</dt><dd>${esc(t.final_state)}</dd>${params}${error}</dl></div>` +
      `<div class="panel"><h2>Actions</h2><div class="actions" id="task-actions">` +
      `<button type="button" data-action="advance" ${terminal ? "disabled" : ""}>Advance</button>` +
      `<button type="button" data-action="succeed" ${terminal ? "disabled" : ""}>Succeed</button>` +
      `<button type="button" data-action="cancel" ${terminal ? "disabled" : ""}>Cancel</button>` +
      `<button type="button" data-action="expire" class="danger" ${t.state === "expired" ? "disabled" : ""}>Expire</button></div>` +
      `<form class="actions" id="fail-form"><button type="submit" class="danger" ${terminal ? "disabled" : ""}>Fail</button>` +
      `<input name="code" placeholder="code (provider's)"> <input name="message" placeholder="message"></form>` +
      `<h2>Clock</h2><div class="actions">` +
      `<button type="button" id="task-next" ${manual && next !== null ? "" : "disabled"}>Advance to the next transition${next !== null ? ` (${esc(relative(next, now))})` : ""}</button>` +
      `${manual ? "" : '<span class="muted">the server runs on the system clock</span>'}</div>` +
      `<h2>Result</h2>${result}</div>` +
      `</div>` +
      `<div class="panel"><h2>Exchanges <span class="muted">(the submit and each poll, from the journal, oldest first)</span></h2>` +
      `${view.entries.length ? view.entries.map((e) => entryHtml(e, true)).join("") : '<p class="muted">No journal entry for this task.</p>'}</div>`
    );
  },
  bind(view) {
    const [provider, id] = view.args;
    const ref = `${encodeURIComponent(provider)}/${encodeURIComponent(id)}`;
    const act = async (action, body) => {
      try {
        await api(`/tasks/${ref}/${action}`, { method: "POST", body });
        notice(`${action}: done`, "ok");
        view.result = null;
        await poll(true);
      } catch (e) {
        notice(`${action}: ${e.message}`);
      }
    };
    for (const b of document.querySelectorAll("#task-actions [data-action]")) b.addEventListener("click", () => act(b.dataset.action, {}));
    $("#fail-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const body = {};
      for (const [k, v] of new FormData(e.target)) if (v) body[k] = v;
      act("fail", body);
    });
    $("#task-next").addEventListener("click", () => {
      const next = nextOf(view.task, serverNow());
      if (next !== null) advanceClock(next - serverNow());
    });
  },
};

// Journal entries after `after` (a seq), oldest first. Follows the control plane's pages
// (?cursor=&limit=, next_cursor) when it has them; entries at or before `after` are skipped either
// way, so a server that answers the whole journal at once works too.
async function journalSince(filters, after = 0) {
  const found = [];
  let cursor = after;
  for (let pages = 0; pages < 100; pages++) {
    const query = new URLSearchParams(filters);
    if (cursor) query.set("cursor", String(cursor));
    query.set("limit", "1000");
    const data = await api(`/journal?${query}`);
    for (const e of data.entries || []) if (e.seq > after && (!found.length || e.seq > found[found.length - 1].seq)) found.push(e);
    if (data.next_cursor === null || data.next_cursor === undefined || data.next_cursor === cursor) break;
    cursor = data.next_cursor;
  }
  return found;
}

function entryHtml(e, open = false) {
  const warnings = e.warnings || [];
  const cls = `s${String(e.status)[0]}`;
  const task = e.task_id
    ? `<a class="mono" href="#/task/${encodeURIComponent(e.provider || "")}/${encodeURIComponent(e.task_id)}">${esc(e.task_id)}</a>`
    : "";
  const path = e.path + (e.query ? `?${e.query}` : "");
  return (
    `<details class="exchange" data-seq="${esc(e.seq)}"${open && warnings.length ? " open" : ""}>` +
    `<summary><span class="muted">#${esc(e.seq)}</span><span class="mono">${esc(isoTime(e.at))}</span>` +
    `<span>${esc(e.provider || "")}</span><span class="badge">${esc(e.endpoint || "—")}</span>` +
    `<span class="mono">${esc(e.method)} ${esc(path)}</span><span class="status ${cls}">${esc(e.status || "dropped")}</span>` +
    `${task}${e.test_id ? `<span class="badge">test ${esc(e.test_id)}</span>` : ""}` +
    `${warnings.length ? `<span class="badge warn">${warnings.length} warning${warnings.length > 1 ? "s" : ""}</span>` : ""}</summary>` +
    `<div class="body">` +
    (warnings.length ? `<div class="full warn"><h4>Warnings (accepted, not documented)</h4><ul>${warnings.map((w) => `<li>${esc(w)}</li>`).join("")}</ul></div>` : "") +
    `<div><h4>Request body</h4><pre>${esc(json(e.request_body))}</pre></div>` +
    `<div><h4>Response body</h4><pre>${esc(json(e.response_body))}</pre></div>` +
    `<div class="full"><h4>Request headers</h4><pre>${esc(json(e.request_headers))}</pre></div>` +
    `</div></details>`
  );
}

const JOURNAL_FILTERS = ["provider", "endpoint", "status", "task", "test"];

VIEWS.journal = {
  journal: true,
  async load(view) {
    // Newest first, fetched incrementally: only entries after the newest one already shown.
    const filters = {};
    for (const k of JOURNAL_FILTERS) if (view.params.get(k)) filters[k] = view.params.get(k);
    if (!view.entries || view.epoch !== S.journalEpoch) {
      view.entries = [];
      view.epoch = S.journalEpoch;
    }
    const fresh = await journalSince(filters, view.entries.length ? view.entries[0].seq : 0);
    view.entries = fresh.reverse().concat(view.entries).slice(0, JOURNAL_KEPT);
  },
  render(view) {
    const p = view.params;
    const providers = Object.keys(S.catalog.providers);
    const endpoints = ["submit", "poll", "cancel", "list"];
    const option = (v, sel) => `<option value="${esc(v)}"${v === sel ? " selected" : ""}>${esc(v || "any")}</option>`;
    const shown = view.entries.slice(0, view.limit || JOURNAL_SHOWN);
    return (
      `<h1>Journal <span class="badge" id="journal-count">${shown.length} of ${view.entries.length}</span></h1>` +
      `<form class="toolbar" id="journal-filter">` +
      `<label>provider <select name="provider">${["", ...providers].map((v) => option(v, p.get("provider") || "")).join("")}</select></label>` +
      `<label>endpoint <select name="endpoint">${["", ...endpoints].map((v) => option(v, p.get("endpoint") || "")).join("")}</select></label>` +
      `<label>status <input name="status" size="5" value="${esc(p.get("status") || "")}" placeholder="200"></label>` +
      `<label>task <input name="task" value="${esc(p.get("task") || "")}" placeholder="task id"></label>` +
      `<label>test <input name="test" size="10" value="${esc(p.get("test") || "")}" placeholder="test id"></label>` +
      `<button type="submit" class="primary">Filter</button> <a href="#/journal">clear</a>` +
      `<span class="muted">newest first · bodies as the control plane shows them (secrets redacted)</span></form>` +
      `<div id="journal">${shown.map((e) => entryHtml(e)).join("") || '<p class="muted">No entry matches.</p>'}</div>` +
      (view.entries.length > shown.length ? `<p><button type="button" id="journal-more">Show ${Math.min(JOURNAL_SHOWN, view.entries.length - shown.length)} more</button></p>` : "")
    );
  },
  bind(view) {
    $("#journal-filter").addEventListener("submit", (e) => {
      e.preventDefault();
      const params = new URLSearchParams();
      for (const [k, v] of new FormData(e.target)) if (String(v).trim()) params.set(k, String(v).trim());
      navigate(`#/journal${params.toString() ? "?" + params : ""}`);
    });
    const more = $("#journal-more");
    if (more)
      more.addEventListener("click", () => {
        view.limit = (view.limit || JOURNAL_SHOWN) + JOURNAL_SHOWN;
        draw();
      });
  },
};

// -- fault and drift rules ---------------------------------------------------------------------

// Which fields each form offers (what the control plane accepts is decided by the server).
const FAULT_FIELDS = {
  error: [["status", "number", "HTTP status, 400-599", "500"], ["code", "text", "provider's error code"], ["message", "text"], ["retry_after", "number", "seconds"]],
  latency: [["latency_seconds", "number", "seconds, 0-120", "1"]],
  drop: [],
  fail: [["code", "text", "provider's error code"], ["message", "text"]],
};
const FAULT_HELP = {
  error: "Answer with this status in the provider's envelope.",
  latency: "Delay the answer.",
  drop: "Close the connection mid-answer.",
  fail: "The task a matching submit creates will fail.",
};
const DRIFT_FIELDS = {
  rename_field: [["pointer", "text", "default: the task id field"], ["to", "text", "default: pointer + _v2"]],
  remove_field: [["pointer", "text", "default: the task id field"]],
  add_field: [["pointer", "text", "default: /wanmock_new_field"], ["value", "json", "a JSON value"]],
  add_status_word: [["state", "state"], ["word", "text", "default: PAUSED"]],
  change_error_envelope: [],
  change_status_code: [["from_status", "number", "default: every error"], ["to_status", "number", "default: 422"]],
  move_result_url: [["to", "text", "default: /moved_result_url"]],
};

function field([name, type, placeholder, value], extra = {}) {
  if (type === "select" || type === "state") {
    const blank = type === "state" ? "default (running)" : "any";
    const options = (extra[name] || []).map((v) => `<option value="${esc(v)}">${esc(v || blank)}</option>`).join("");
    return `<label>${esc(name)} <select name="${esc(name)}" data-type="text">${options}</select></label>`;
  }
  const kind = type === "number" ? "number" : "text";
  return `<label>${esc(name)} <input name="${esc(name)}" type="${kind}" step="any" data-type="${esc(type)}" placeholder="${esc(placeholder || "")}" value="${esc(value || "")}"></label>`;
}

function formBody(form) {
  const body = {};
  for (const el of form.querySelectorAll("input, select")) {
    const v = el.value.trim();
    if (!el.name || v === "") continue;
    if (el.dataset.type === "number") body[el.name] = Number(v);
    else if (el.dataset.type === "json") {
      try {
        body[el.name] = JSON.parse(v);
      } catch (_) {
        body[el.name] = v;
      }
    } else body[el.name] = v;
  }
  return body;
}

function scopeText(r) {
  return ["provider", "endpoint", "model", "task_id", "test_id"]
    .filter((k) => r[k] !== null && r[k] !== undefined)
    .map((k) => `${k}=${r[k]}`)
    .join(" ") || "every request";
}

VIEWS.rules = {
  journal: false,
  async load(view) {
    const [faults, drift] = await Promise.all([api("/faults"), api("/drift")]);
    view.faults = faults.rules;
    view.drift = drift.rules;
  },
  render(view) {
    const c = S.catalog;
    const providers = Object.keys(c.providers);
    const faultRows = view.faults
      .map(
        (r) =>
          `<tr data-rule="${esc(r.id)}"><td class="mono">${esc(r.id)}</td><td>${esc(r.action)}</td><td>${esc(scopeText(r))}</td>` +
          `<td>${esc([r.status, r.code, r.message].filter((x) => x !== null && x !== undefined).join(" · "))}${r.action === "latency" ? esc(`${r.latency_seconds} s`) : ""}</td>` +
          `<td>${esc(r.count ?? "∞")}</td><td>${esc(r.hits)}</td><td><button type="button" class="danger" data-delete-fault="${esc(r.id)}">Delete</button></td></tr>`,
      )
      .join("");
    const scopeFields = [
      ["provider", "select"],
      ["endpoint", "select"],
      ["model", "text", "kind or model id"],
      ["task_id", "text"],
      ["test_id", "text"],
      ["count", "number", "times (empty: until deleted)"],
    ];
    const selects = { provider: ["", ...providers], endpoint: ["", ...c.fault_endpoints] };
    const faultForms = c.fault_actions
      .map(
        (action) =>
          `<form data-fault-form="${esc(action)}"><h3>${esc(action)}</h3><p class="help">${esc(FAULT_HELP[action] || "")}</p>` +
          (FAULT_FIELDS[action] || []).map((f) => field(f)).join("") +
          scopeFields.map((f) => field(f, selects)).join("") +
          `<button type="submit" class="primary">Add ${esc(action)} rule</button></form>`,
      )
      .join("");
    const driftRows = view.drift
      .map((r, i) => {
        const detail = Object.entries(r)
          .filter(([k, v]) => !["provider", "kind"].includes(k) && v !== null && (DRIFT_FIELDS[r.kind] || []).some(([n]) => n === k))
          .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
          .join(" ");
        return `<tr data-drift="${i}"><td>${esc(r.provider)}</td><td>${esc(r.kind)}</td><td class="mono">${esc(detail)}</td><td><button type="button" class="danger" data-delete-drift="${i}">Delete</button></td></tr>`;
      })
      .join("");
    const allStates = [...new Set(Object.values(c.providers).flatMap((p) => Object.keys(p.states)))];
    const driftForms = c.drift_kinds
      .map(
        (kind) =>
          `<form data-drift-form="${esc(kind)}"><h3>${esc(kind.replaceAll("_", " "))}</h3>` +
          field(["provider", "select"], { provider: providers }) +
          (DRIFT_FIELDS[kind] || []).map((f) => field(f, { state: ["", ...allStates] })).join("") +
          `<input type="hidden" name="kind" value="${esc(kind)}"><button type="submit" class="primary">Add drift</button></form>`,
      )
      .join("");
    return (
      `<h1>Fault rules <span class="badge">${view.faults.length}</span></h1>` +
      `<table id="faults"><thead><tr><th>Id</th><th>Action</th><th>Scope</th><th>Answer</th><th>Left</th><th>Hits</th><th></th></tr></thead>` +
      `<tbody>${faultRows || '<tr><td colspan="7" class="muted">No fault rule.</td></tr>'}</tbody></table>` +
      `<p><button type="button" class="danger" id="faults-clear" ${view.faults.length ? "" : "disabled"}>Delete all fault rules</button></p>` +
      `<div class="forms">${faultForms}</div>` +
      `<h1>Simulated drift <span class="badge">${view.drift.length}</span></h1>` +
      `<p class="muted">Drift rules change the mock's answers as a provider might change its API (kept by the process that answers).</p>` +
      `<table id="drift"><thead><tr><th>Provider</th><th>Kind</th><th>Where</th><th></th></tr></thead>` +
      `<tbody>${driftRows || '<tr><td colspan="4" class="muted">No drift.</td></tr>'}</tbody></table>` +
      `<div class="forms">${driftForms}</div>`
    );
  },
  bind(view) {
    const done = async (what, promise) => {
      try {
        await promise;
        notice(`${what}: done`, "ok");
        await poll(true);
      } catch (e) {
        notice(`${what}: ${e.message}`);
      }
    };
    for (const form of document.querySelectorAll("[data-fault-form]"))
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        done(`add ${form.dataset.faultForm} rule`, api("/faults", { method: "POST", body: { action: form.dataset.faultForm, ...formBody(form) } }));
      });
    for (const b of document.querySelectorAll("[data-delete-fault]"))
      b.addEventListener("click", () => done(`delete ${b.dataset.deleteFault}`, api(`/faults/${encodeURIComponent(b.dataset.deleteFault)}`, { method: "DELETE" })));
    $("#faults-clear").addEventListener("click", () => done("delete all fault rules", api("/faults", { method: "DELETE" })));
    for (const form of document.querySelectorAll("[data-drift-form]"))
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        done(`add ${form.dataset.driftForm} drift`, api("/drift", { method: "POST", body: formBody(form) }));
      });
    // The control plane deletes drift all at once: delete all, then add back the others.
    for (const b of document.querySelectorAll("[data-delete-drift]"))
      b.addEventListener("click", () => {
        const keep = view.drift.filter((_, i) => i !== +b.dataset.deleteDrift);
        done(
          "delete drift",
          (async () => {
            await api("/drift", { method: "DELETE" });
            for (const rule of keep) await api("/drift", { method: "POST", body: rule });
          })(),
        );
      });
  },
};

// -- routing, polling, drawing ---------------------------------------------------------------------

function parseRoute() {
  const frag = location.hash.replace(/^#\/?/, "") || "tasks";
  const [path, query] = frag.split("?");
  const [name, ...args] = path.split("/").map(decodeURIComponent);
  return { name: VIEWS[name] ? name : "tasks", args, params: new URLSearchParams(query || "") };
}

function navigate(hash, replace = false) {
  if (replace) {
    history.replaceState(null, "", hash);
    route();
  } else location.hash = hash;
}

async function route() {
  S.view = parseRoute();
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === S.view.name || (S.view.name === "task" && a.dataset.nav === "tasks"));
  await refresh();
}

async function refresh() {
  const view = S.view;
  try {
    await VIEWS[view.name].load(view);
    if (view !== S.view) return; // the user moved on meanwhile
    draw();
  } catch (e) {
    if (view !== S.view) return;
    $("#view").innerHTML = `<p class="warn">${esc(e.message)}</p>`;
  }
}

// Which form a field belongs to, the same across redraws (the fault and drift forms have no id).
function formKey(el) {
  const form = el.closest("form");
  return form ? form.dataset.faultForm || form.dataset.driftForm || form.id : undefined;
}

function draw() {
  const view = S.view;
  const main = $("#view");
  // Keep what the user has open (details, typed form values, the field being typed into and its
  // caret) across a live redraw, so that keys typed after it land where the earlier ones did.
  const open = new Set([...main.querySelectorAll("details[open]")].map((d) => d.dataset.seq));
  const typed = [...main.querySelectorAll("form input:not([type=hidden]), form select")].map((el) => [formKey(el), el.name, el.value]);
  const focused = document.activeElement && main.contains(document.activeElement) ? document.activeElement : null;
  const focusKey = focused && focused.name ? [formKey(focused), focused.name] : null;
  let caret = null;
  try {
    if (focused && focused.selectionStart !== null && focused.selectionStart !== undefined) caret = [focused.selectionStart, focused.selectionEnd];
  } catch (_) {
    caret = null; // a field type without a caret
  }
  const scrollY = window.scrollY;
  main.innerHTML = VIEWS[view.name].render(view);
  VIEWS[view.name].bind(view);
  for (const d of main.querySelectorAll("details")) if (open.has(d.dataset.seq)) d.open = true;
  const find = (form, name) => [...main.querySelectorAll(`form [name="${CSS.escape(name)}"]`)].find((x) => formKey(x) === form);
  if (view.drawn === view.name)
    for (const [form, name, value] of typed) {
      const el = find(form, name);
      if (el && el.type !== "hidden") el.value = value;
    }
  if (focusKey && focusKey[0] !== undefined && view.drawn === view.name) {
    const el = find(focusKey[0], focusKey[1]);
    if (el) {
      el.focus({ preventScroll: true });
      try {
        if (caret) el.setSelectionRange(caret[0], caret[1]);
      } catch (_) {
        // a field type without a caret
      }
    }
  }
  window.scrollTo(0, scrollY);
  view.drawn = view.name;
  document.body.dataset.view = view.name;
  document.body.dataset.drawn = String((+document.body.dataset.drawn || 0) + 1);
  drawClock();
}

let pollTimer = null;
async function poll(force = false) {
  clearTimeout(pollTimer);
  const started = performance.now();
  try {
    const wantJournal = VIEWS[S.view.name].journal ? "&journal=1" : "";
    const c = await api(`/changes?since=${encodeURIComponent(S.version || "")}${wantJournal}`);
    setClock(c.clock, c.now);
    if (c.journal !== undefined) {
      if (S.journalCount !== null && c.journal < S.journalCount) S.journalEpoch++;
      S.journalCount = c.journal;
    }
    $("#conn").classList.remove("down");
    $("#conn").title = `connected · ${c.tasks} tasks`;
    if (c.changed || force) {
      S.version = c.version;
      if (S.view.name !== "tasks") S.tasks = (await api("/tasks")).tasks;
      await refresh();
    } else {
      moveNowMarkers();
    }
  } catch (e) {
    $("#conn").classList.add("down");
    $("#conn").title = `no answer: ${e.message}`;
  }
  const took = performance.now() - started;
  pollTimer = setTimeout(poll, document.hidden ? 5 * POLL_MS : Math.max(POLL_MS, 4 * took));
}

async function start() {
  try {
    const [health, catalog] = await Promise.all([api("/health"), api("/catalog")]);
    S.health = health;
    S.catalog = catalog;
    $("#footer").textContent = `wanmock · ${health.providers.join(", ")} · ${health.timing} timing · store ${health.store} · answered by pid ${health.pid}`;
    setClock(health.clock, health.now);
    if (parseRoute().name !== "tasks") S.tasks = (await api("/tasks")).tasks; // the tasks view loads them itself
    await route();
    document.body.dataset.ready = "1";
    poll();
  } catch (e) {
    $("#view").innerHTML = `<p class="warn">${esc(e.message)}</p>`;
  }
}

window.addEventListener("DOMContentLoaded", () => {
  takeTokenFromFragment();
  setupToken();
  for (const b of document.querySelectorAll("[data-advance]")) b.addEventListener("click", () => advanceClock(+b.dataset.advance));
  $("#clock-next").addEventListener("click", () => {
    const next = nextTransition(S.tasks);
    if (next !== null) advanceClock(next - serverNow());
  });
  window.addEventListener("hashchange", () => {
    if (/(?:^#|&)token=/.test(location.hash)) takeTokenFromFragment();
    route();
  });
  setInterval(() => {
    drawClock();
    if (S.clock.kind === "system") moveNowMarkers();
  }, 1000);
  start();
});
