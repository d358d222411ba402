// tradeflow console: renders the server's view (one "state" server-sent event per change)
// and sends control changes. Plain JS, no build step. Money arrives as exact decimal
// strings: each cell keeps the exact value in data-value and shows it rounded.
"use strict";

const CSRF = document.querySelector('meta[name="csrf"]').content;
const STATES = ["HALTED", "REDUCING", "ACTIVE"];
const JOB_LETTER = { portfolio_risk: "C", execution: "D", indicators: "A" };
let current = {};             // the whole view: each update carries only the sections that changed
window.tfConsole = { updates: 0, version: 0 };

// ------------------------------------------------------------------ formatting

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// Round a decimal string to dp places (half up) and group thousands, without floats.
function fmtDec(s, dp = 2) {
  if (s === null || s === undefined || s === "") return "-";
  let str = String(s);
  const neg = str.startsWith("-");
  if (neg) str = str.slice(1);
  let [int, frac = ""] = str.split(".");
  frac = frac + "0".repeat(dp + 1);
  let digits = int + frac.slice(0, dp);
  if (frac.charCodeAt(dp) - 48 >= 5) {
    const a = digits.split("");
    let k = a.length - 1;
    while (k >= 0 && a[k] === "9") { a[k] = "0"; k -= 1; }
    if (k < 0) a.unshift("1"); else a[k] = String(Number(a[k]) + 1);
    digits = a.join("");
  }
  int = (digits.slice(0, digits.length - dp) || "0").replace(/^0+(?=\d)/, "");
  const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const out = dp ? `${grouped}.${digits.slice(digits.length - dp)}` : grouped;
  return (neg && /[1-9]/.test(digits) ? "-" : "") + out;
}

function num(field, value, dp = 2, signed = false) {
  const cls = signed && value && value.startsWith("-") && /[1-9]/.test(value) ? "num neg" : "num";
  return `<td class="${cls}" data-field="${field}" data-value="${esc(value ?? "")}">${fmtDec(value, dp)}</td>`;
}

function time(iso) { return iso ? esc(iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "")) : "-"; }

function stateBadge(state) { return `<span class="state ${esc(state)}">${esc(state)}</span>`; }

function controlButtons(scope) {
  return STATES.map((s) => `<button type="button" class="ctl ${s}" data-scope="${esc(scope)}" data-state="${s}">${s === "HALTED" ? "HALT" : s}</button>`).join("");
}

function sparkline(series) {
  const w = 160, h = 34;
  const ys = series.map((p) => Number(p[1]));
  if (ys.length < 2) return `<svg class="spark" width="${w}" height="${h}"></svg>`;
  const lo = Math.min(...ys), hi = Math.max(...ys), span = hi - lo || 1;
  const pts = ys.map((y, i) => `${(i * (w - 2) / (ys.length - 1) + 1).toFixed(1)},${(h - 2 - (y - lo) * (h - 4) / span).toFixed(1)}`);
  return `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}"><title>equity ${fmtDec(String(lo))} .. ${fmtDec(String(hi))}</title><polyline points="${pts.join(" ")}"/></svg>`;
}

// ------------------------------------------------------------------ sections

function section(id, data, html) {
  patch(document.querySelector(`#${id} tbody`), html(data));
}

// Put the rows of `html` into `tbody`, touching only the cells that changed, so a button
// or a row under the pointer is not replaced by an update that did not change it (a click
// between mousedown and mouseup on a replaced node would be lost).
function patch(tbody, html) {
  const tpl = document.createElement("tbody");
  tpl.innerHTML = html;
  const rows = Array.from(tpl.children);
  rows.forEach((row, i) => {
    const old = tbody.children[i];
    if (!old) { tbody.appendChild(row); return; }
    if (old.outerHTML === row.outerHTML) return;
    if (old.dataset.key !== row.dataset.key || old.children.length !== row.children.length) {
      old.replaceWith(row);
      return;
    }
    for (const name of old.getAttributeNames()) if (!row.hasAttribute(name)) old.removeAttribute(name);
    for (const a of row.attributes) if (old.getAttribute(a.name) !== a.value) old.setAttribute(a.name, a.value);
    Array.from(row.children).forEach((cell, j) => {
      if (old.children[j].outerHTML !== cell.outerHTML) old.children[j].replaceWith(cell);
    });
  });
  while (tbody.children.length > rows.length) tbody.lastElementChild.remove();
}

function renderAccounts(rows) {
  return rows.map((a) => `<tr data-key="${esc(a.account)}" data-account="${esc(a.account)}">
    <td>${esc(a.account)}</td>
    <td data-field="trading_state" data-value="${esc(a.trading_state)}">${stateBadge(a.trading_state)}</td>
    ${num("equity", a.equity)}<td>${sparkline(a.equity_series)}</td>${num("cash", a.cash)}
    ${num("realized_pnl", a.realized_pnl, 2, true)}${num("unrealized_pnl", a.unrealized_pnl, 2, true)}
    ${num("gross_exposure", a.gross_exposure)}${num("leverage", a.leverage, 4)}${num("drawdown", a.drawdown)}
    <td class="num" data-field="open_orders" data-value="${a.open_orders}">${a.open_orders}</td>
    <td>${controlButtons(`account:${a.account}`)}</td></tr>`).join("");
}

function renderPositions(rows) {
  return rows.map((p) => `<tr data-key="${esc(p.account)}|${esc(p.symbol)}">
    <td>${esc(p.account)}</td><td>${esc(p.symbol)}</td>${num("net_qty", p.net_qty, 0, true)}${num("avg_px", p.avg_px, 4)}
    ${num("last_mark", p.last_mark, 4)}${num("market_value", p.market_value, 2, true)}
    ${num("realized_pnl", p.realized_pnl, 2, true)}${num("unrealized_pnl", p.unrealized_pnl, 2, true)}</tr>`).join("");
}

function renderOrders(rows) {
  if (!rows.length) return `<tr><td colspan="9" class="muted">no working orders</td></tr>`;
  return rows.map((o) => `<tr class="click" data-key="${esc(o.order_id)}" data-explain="${esc(o.order_id)}">
    <td>${esc(o.order_id)}</td><td>${esc(o.account)}</td><td>${esc(o.symbol)}</td><td>${esc(o.side)}</td>
    ${num("qty", o.qty, 0)}${num("leaves_qty", o.leaves_qty, 0)}<td>${esc(o.status)}</td><td>${esc(o.venue)}</td>
    <td class="num">${o.age_s.toFixed(1)}</td></tr>`).join("");
}

function renderFills(rows) {
  return rows.map((f) => `<tr class="click" data-explain="${esc(f.order_id)}">
    <td>${time(f.ts)}</td><td>${esc(f.account)}</td><td>${esc(f.symbol)}</td><td>${esc(f.side)}</td>
    ${num("last_qty", f.last_qty, 0)}${num("last_px", f.last_px, 4)}<td>${esc(f.venue)}</td><td>${esc(f.order_id)}</td></tr>`).join("");
}

function renderRejects(rules) {
  const rows = Object.entries(rules);
  if (!rows.length) return `<tr><td colspan="2" class="muted">no rejects</td></tr>`;
  return rows.map(([rule, n]) => `<tr><td>${esc(rule)}</td><td class="num">${n}</td></tr>`).join("");
}

function renderEvents(rows) {
  return rows.map((e) => `<tr class="${esc(e.severity)}${e.signal_id ? " click" : ""}" ${e.signal_id ? `data-explain="${esc(e.signal_id)}"` : ""}>
    <td>${esc(e.severity)}</td><td>${time(e.ts)}</td><td>${esc(e.account)}</td><td>${esc(e.rule)}</td>
    <td class="wrap">${esc(e.message)}</td></tr>`).join("");
}

function renderHealth(rows) {
  if (!rows.length) return `<tr><td colspan="8" class="muted">no metrics endpoints given (tradeflow console --metrics HOST:PORT ...)</td></tr>`;
  return rows.map((h) => `<tr class="click" data-key="${esc(h.target)}" data-letters="${esc(h.job)}">
    <td>${esc(h.job)}</td><td>${esc(h.shard)}</td>
    <td class="${h.alive ? "ok" : "bad"}">${h.alive ? "yes" : `NO ${esc(h.error || "")}`}</td>
    <td class="num">${h.lag ?? "-"}</td><td class="num">${h.snapshot_age_s ?? "-"}</td>
    <td class="num ${h.dead_letters ? "bad" : ""}">${h.dead_letters}</td><td class="num">${h.items_in}</td>
    <td class="muted">${esc(h.target)}</td></tr>`).join("");
}

function renderHops(rows) {
  return rows.map((h) => `<tr><td>${esc(h.hop)}</td><td class="num">${h.p50_ms ?? "-"}</td><td class="num">${h.p99_ms ?? "-"}</td>
    <td class="num">${h.samples}</td></tr>`).join("");
}

function renderDead(dead) {
  document.getElementById("dead-total").textContent = `(${dead.total} in all)`;
  if (!dead.recent.length) return `<tr><td colspan="4" class="muted">none</td></tr>`;
  return dead.recent.map((d, i) => `<tr class="click" data-letter="${i}">
    <td>${time(d.ts)}</td><td>${esc(d.job)}</td><td>${esc(d.source_stream)}:${d.partition ?? "-"}@${d.offset ?? "-"}</td>
    <td class="wrap">${esc(d.reason)}</td></tr>`).join("");
}

function renderControls(data) {
  const scopes = ["global", ...data.strategies.map((s) => `strategy:${s}`)];
  for (const scope of Object.keys(data.controls)) if (!scopes.includes(scope)) scopes.push(scope);
  return scopes.map((scope) => {
    const c = data.controls[scope];
    return `<tr data-key="${esc(scope)}" data-scope="${esc(scope)}"><td>${esc(scope)}</td>
      <td data-field="state" data-value="${esc(c ? c.state : "ACTIVE")}">${stateBadge(c ? c.state : "ACTIVE")}</td>
      <td class="wrap">${esc(c ? c.reason : "")}</td><td>${esc(c ? c.updated_by : "")}</td>
      <td>${controlButtons(scope)}</td></tr>`;
  }).join("");
}

function appliedCell(applied) {
  if (applied === null) return `<span class="muted">not written here</span>`;
  const jobs = Object.entries(applied);
  if (!jobs.length) return `<span class="muted">no job metrics</span>`;
  return jobs.map(([key, secs]) => {
    const job = key.split("@")[0];
    const letter = job.startsWith("strategy:") ? "B" : (JOB_LETTER[job] || "?");
    return secs === null
      ? `<span class="wait" data-job="${esc(job)}">${letter} ${esc(job)} &hellip;</span>`
      : `<span class="ok" data-job="${esc(job)}" data-applied="${secs}">${letter} ${esc(job)} &#10003; ${secs}s</span>`;
  }).join("<br>");
}

function renderAudit(rows) {
  if (!rows.length) return `<tr><td colspan="6" class="muted">no control changes</td></tr>`;
  return rows.map((c) => `<tr data-scope="${esc(c.scope)}" data-state="${esc(c.state)}" data-reason="${esc(c.reason)}">
    <td>${time(c.ts)}</td><td>${esc(c.scope)}</td><td>${stateBadge(c.state)}</td><td class="wrap">${esc(c.reason)}</td>
    <td>${esc(c.updated_by)}</td><td>${appliedCell(c.applied)}</td></tr>`).join("");
}

// Which page table shows which section of the view.
const TABLES = [
  ["accounts", "accounts", renderAccounts], ["positions", "positions", renderPositions],
  ["working_orders", "orders", renderOrders], ["fills", "fills", renderFills],
  ["rejects_by_rule", "rejects", renderRejects], ["risk_events", "events", renderEvents],
  ["health", "health", renderHealth], ["hops", "hops", renderHops], ["dead_letters", "dead", renderDead],
  ["audit", "audit", renderAudit],
];

function render(changed) {
  Object.assign(current, changed);
  const s = current;
  window.tfConsole.updates += 1;
  window.tfConsole.version = s.version;
  if ("clock" in changed) document.getElementById("clock").textContent = s.clock ? s.clock.replace("T", " ").replace("Z", "") : "-";
  if ("profile" in changed) document.getElementById("profile").textContent = s.profile;
  for (const [key, id, html] of TABLES) if (key in changed) section(id, s[key], html);
  if ("controls" in changed || "strategies" in changed) {
    section("controls", { controls: s.controls, strategies: s.strategies }, renderControls);
  }
  if ("decisions" in changed || "errors" in changed) {
    const d = s.decisions;
    document.getElementById("decisions").textContent =
      `decisions: ${d.PASS || 0} passed, ${d.FAIL || 0} refused` +
      (Object.keys(s.errors).length ? ` | unreadable: ${Object.keys(s.errors).join(", ")}` : "");
  }
}

// ------------------------------------------------------------------ live updates

function connect() {
  const conn = document.getElementById("conn");
  const source = new EventSource("/api/events");
  source.addEventListener("state", (ev) => render(JSON.parse(ev.data)));
  source.onopen = () => { conn.textContent = "live"; conn.className = "conn up"; };
  source.onerror = () => { conn.textContent = "reconnecting"; conn.className = "conn down"; };
}

// ------------------------------------------------------------------ side panel

function openPanel(title, text) {
  document.getElementById("panel-title").textContent = title;
  document.getElementById("panel-body").textContent = text;
  document.getElementById("panel").hidden = false;
}

async function explain(id) {
  openPanel(`risk explain ${id}`, "loading...");
  const resp = await fetch(`/api/explain/${encodeURIComponent(id)}`);
  const body = await resp.json();
  openPanel(`risk explain ${id}`, resp.ok ? body.text : body.error);
}

function showLetters(job) {
  const letters = current.dead_letters.recent.filter((d) => d.job === job);
  const text = letters.map((d) => `${d.ts}  ${d.source_stream}:${d.partition}@${d.offset}\n  ${d.reason}\n  ${d.payload}`).join("\n\n");
  openPanel(`dead letters of ${job} (last ${letters.length})`, text || "none among the recent dead letters");
}

function showLetter(i) {
  const d = current.dead_letters.recent[i];
  openPanel(`dead letter from ${d.source_stream}`, `job     ${d.job}\nwhere   ${d.source_stream} partition ${d.partition} offset ${d.offset}\ntime    ${d.ts}\nreason  ${d.reason}\n\npayload\n${d.payload}`);
}

// ------------------------------------------------------------------ controls

const dialog = document.getElementById("control-dialog");
let pending = null;

function askControl(scope, state) {
  pending = { scope, state };
  document.getElementById("control-what").textContent = `${state === "HALTED" ? "HALT" : state} ${scope}`;
  document.getElementById("control-reason").value = "";
  document.getElementById("control-error").textContent = "";
  const who = document.getElementById("control-who");
  who.value = who.value || localStorage.getItem("tf-who") || "operator";
  dialog.showModal();
  document.getElementById("control-reason").focus();
}

async function sendControl(ev) {
  ev.preventDefault();
  const error = document.getElementById("control-error");
  const reason = document.getElementById("control-reason").value.trim();
  const who = document.getElementById("control-who").value.trim();
  if (!reason) { error.textContent = "a reason is required"; return; }
  if (!who) { error.textContent = "say who you are"; return; }
  localStorage.setItem("tf-who", who);
  const resp = await fetch("/api/control", {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "X-Console-Token": document.getElementById("token").value,
      "X-CSRF-Token": CSRF,
    },
    body: JSON.stringify({ ...pending, reason, who }),
  });
  if (resp.ok) { dialog.close(); return; }
  const body = await resp.json().catch(() => ({}));
  error.textContent = `refused (${resp.status}): ${body.error || resp.statusText}`;
}

// ------------------------------------------------------------------ wiring

document.addEventListener("click", (ev) => {
  const button = ev.target.closest("button.ctl");
  if (button) { askControl(button.dataset.scope, button.dataset.state); return; }
  const row = ev.target.closest("tr");
  if (!row) return;
  if (row.dataset.explain) explain(row.dataset.explain);
  else if (row.dataset.letters) showLetters(row.dataset.letters);
  else if (row.dataset.letter !== undefined) showLetter(Number(row.dataset.letter));
});
document.getElementById("panel-close").addEventListener("click", () => { document.getElementById("panel").hidden = true; });
document.getElementById("control-form").addEventListener("submit", sendControl);
document.getElementById("control-cancel").addEventListener("click", () => dialog.close());
document.getElementById("token").addEventListener("input", (ev) => {
  const mode = document.getElementById("mode");
  mode.textContent = ev.target.value ? "controls enabled" : "read-only";
  mode.className = ev.target.value ? "badge rw" : "badge ro";
});
connect();
