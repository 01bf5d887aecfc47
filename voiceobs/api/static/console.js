// voiceobs console: live overview over the WebSocket feed, slowest turns, recent calls, and the
// call explorer (waterfall from the trace, log lines from Loki). Plain JavaScript, no
// dependencies; every value from the backends is written as text, never as HTML.
"use strict";

const API = "/api/dashboard";
const $ = (selector, root = document) => root.querySelector(selector);
let token = sessionStorage.getItem("voiceobs-token") || "";
let socket = null;

function ms(seconds) {
  return seconds === null || seconds === undefined ? "–" : `${Math.round(seconds * 1000)} ms`;
}
function pct(ratio) {
  return ratio === null || ratio === undefined ? "–" : `${(ratio * 100).toFixed(1)} %`;
}
function usd(value, digits = 4) {
  return value === null || value === undefined ? "–" : `$${value.toFixed(digits)}`;
}
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") Object.assign(node.style, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}
function traceLink(traceId) {
  return el("a", { className: "trace-link", textContent: traceId, title: "open this trace",
                   dataset: { trace: traceId } });
}
function callLink(callId) {
  return el("a", { className: "call-link", textContent: callId, dataset: { call: callId } });
}

async function api(path) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(API + path, { headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail
      : (body.detail || []).map((e) => `${e.loc.at(-1)}: ${e.msg}`).join("; ");
    throw new Error(`HTTP ${response.status}: ${detail}`);
  }
  return body;
}

// Live overview --------------------------------------------------------------------------

function showOverview(data) {
  $("#calls-active").textContent = data.calls_active.toFixed(0);
  $("#calls-per-minute").textContent = data.calls_per_minute.toFixed(1);
  $("#success-rate").textContent = pct(data.success_rate);
  $("#error-rate").textContent = pct(data.error_rate);
  $("#cost-per-minute").textContent = usd(data.cost_per_minute_usd);
  const t = data.turn_latency;
  $("#turn-latency").textContent = `${ms(t.p50)} / ${ms(t.p95)} / ${ms(t.p99)}`;
  const rows = data.pipelines.map((p) => el("tr", {},
    el("td", { textContent: p.pipeline }),
    el("td", { textContent: ms(p.turn_latency.p50) }),
    el("td", { textContent: ms(p.turn_latency.p95),
               className: (p.turn_latency.p95 || 0) > 0.8 ? "over" : "" }),
    el("td", { textContent: ms(p.turn_latency.p99) }),
    el("td", { textContent: p.calls_active.toFixed(0) }),
    el("td", { textContent: p.calls_per_minute.toFixed(1) }),
    el("td", { textContent: pct(p.error_rate) })));
  $("#pipelines tbody").replaceChildren(...rows);
  $("#overview-missing").textContent = data.missing.join("; ");
}

function connectFeed() {
  if (socket) socket.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  socket = new WebSocket(`${scheme}://${location.host}${API}/ws/real-time${query}`);
  const status = $("#feed-status");
  socket.onopen = () => { status.textContent = "live"; };
  socket.onmessage = (event) => {
    const update = JSON.parse(event.data);
    if (update.type === "metrics") {
      showOverview(update.data);
      status.textContent = `live · ${new Date(update.data.generated_at * 1000).toLocaleTimeString()}`;
    } else {
      status.textContent = `feed: ${update.detail}`;
    }
  };
  socket.onclose = (event) => {
    status.textContent = `feed closed${event.reason ? ": " + event.reason : ""}; retrying…`;
    setTimeout(connectFeed, 5000);
  };
}

// Lists ----------------------------------------------------------------------------------

async function refreshLists() {
  try {
    const slow = await api("/slowest-turns?window=15m&limit=10");
    $("#slowest tbody").replaceChildren(...slow.turns.map((turn) => el("tr", {},
      el("td", { textContent: ms(turn.latency_s), className: turn.latency_s > 0.8 ? "over" : "" }),
      el("td", {}, turn.call_id ? callLink(turn.call_id) : "–"),
      el("td", { textContent: turn.pipeline || "–" }),
      el("td", { textContent: turn.tenant || "–" }),
      el("td", {}, traceLink(turn.trace_id)))));
    $("#slowest .missing").textContent = slow.missing.join("; ");
  } catch (error) {
    $("#slowest .missing").textContent = error.message;
  }
  try {
    const recent = await api("/recent-activity?hours=1&limit=15");
    $("#recent tbody").replaceChildren(...recent.calls.map((call) => el("tr", {},
      el("td", { textContent: new Date(call.started_at * 1000).toLocaleTimeString() }),
      el("td", {}, callLink(call.call_id)),
      el("td", { textContent: call.status || "–", className: call.status === "failed" ? "over" : "" }),
      el("td", { textContent: String(call.turns) }),
      el("td", { textContent: usd(call.cost_usd) }),
      el("td", {}, traceLink(call.trace_id)))));
    $("#recent .missing").textContent = recent.missing.join("; ");
  } catch (error) {
    $("#recent .missing").textContent = error.message;
  }
}

// Call explorer --------------------------------------------------------------------------

function bar(className, left, width, text, title) {
  return el("div", { className: `bar ${className}`, textContent: text, title,
                     style: { left: `${left}%`, width: `${Math.max(width, 0.3)}%` } });
}

function stageFigure(turn, name) {
  const stage = turn.stages.find((s) => s.name === name);
  if (!stage) return null;
  return stage.time_to_first_chunk_s ?? stage.duration_s;
}

function showCall(call) {
  $("#trace-view").hidden = true;
  $("#call-view").hidden = false;
  const facts = [["call", call.call_id], ["status", call.status || "running"],
    ["tenant", call.tenant || "–"], ["pipeline", call.pipeline || "–"],
    ["duration", `${call.duration_s.toFixed(1)} s`], ["cost", usd(call.cost_usd)],
    ["turns", String(call.turns.length)], ["failure", call.failure_reason || "–"]];
  const dl = $("#call-facts");
  dl.replaceChildren();
  for (const [k, v] of facts) dl.append(el("dt", { textContent: k }), el("dd", { textContent: v }));
  dl.append(el("dt", { textContent: "trace" }), el("dd", {}, traceLink(call.trace_id)));
  const rows = call.turns.map((turn) => {
    const scale = 100 / Math.max(turn.duration_s, 1e-6);
    const track = el("div", { className: "track" },
      bar("turn-bar", 0, 100, "", `turn ${turn.number}: span ${ms(turn.duration_s)}`));
    if (turn.eou_delay_s) {
      track.append(bar("eou", 0, turn.eou_delay_s * scale, "EOU", `EOU ${ms(turn.eou_delay_s)}`));
    }
    const rowOf = { stt: 1, llm: 2, tts: 3, tool: 2 };
    for (const stage of turn.stages) {
      const b = bar(stage.name, stage.start_offset_s * scale, stage.duration_s * scale,
        `${stage.name} ${ms(stage.duration_s)}`,
        `${stage.name} ${stage.provider || ""} ${stage.model || ""}: ${ms(stage.duration_s)}` +
        (stage.time_to_first_chunk_s !== null ? `, first chunk ${ms(stage.time_to_first_chunk_s)}` : ""));
      b.style.top = `${(rowOf[stage.name] || 1) * 0.75}rem`;
      b.dataset.stage = stage.name;
      track.append(b);
    }
    const figures = el("div", { className: "figures" },
      el("strong", { textContent: `#${turn.number} ` }),
      el("span", { className: "latency", textContent: ms(turn.latency_s),
                   dataset: { seconds: String(turn.latency_s) } }),
      turn.interrupted ? " barge-in" : "",
      el("br"),
      `EOU ${ms(turn.eou_delay_s)} · STT ${ms(turn.stt_finalisation_s)}`,
      el("br"),
      `TTFT ${ms(stageFigure(turn, "llm"))} · TTFB ${ms(stageFigure(turn, "tts"))}`);
    return el("div", { className: "turn", dataset: { turn: String(turn.number) } }, figures, track);
  });
  $("#waterfall").replaceChildren(...rows);
  $("#logs").replaceChildren(...call.logs.map((line) => {
    const item = el("li", { className: "log-line" },
      el("span", { className: "muted", textContent: new Date(line.time * 1000).toLocaleTimeString() + " " }));
    if (line.trace_id) item.append("[", traceLink(line.trace_id), "] ");
    item.append(line.line);
    return item;
  }));
  $("#call-missing").textContent = call.missing.join("; ");
}

function showTrace(trace) {
  $("#call-view").hidden = true;
  $("#trace-view").hidden = false;
  $("#trace-id").textContent = trace.trace_id;
  const end = Math.max(...trace.spans.map((s) => s.start_offset_s + s.duration_s), 1e-6);
  const depth = {};
  for (const span of trace.spans) {
    depth[span.span_id] = span.parent_span_id in depth ? depth[span.parent_span_id] + 1 : 0;
  }
  $("#spans").replaceChildren(...trace.spans.map((span) => {
    const row = el("div", { className: "span-row", dataset: { span: span.span_id } },
      el("span", { textContent: `${span.name} ${ms(span.duration_s)}`,
                   style: { paddingLeft: `${depth[span.span_id]}rem` } }),
      el("div", { className: "track" },
        bar(span.name.replace("voice.", ""), span.start_offset_s / end * 100,
            span.duration_s / end * 100, "", span.name)));
    row.addEventListener("click", () => {
      $("#span-attributes").textContent = JSON.stringify(span.attributes, null, 2);
    });
    return row;
  }));
  $("#span-attributes").textContent = trace.call_id ? `call ${trace.call_id}: click a span` : "";
}

async function openFromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const error = $("#explorer-error");
  error.textContent = "";
  try {
    if (params.get("call")) {
      $("#call-input").value = params.get("call");
      showCall(await api(`/calls/${encodeURIComponent(params.get("call"))}`));
    } else if (params.get("trace")) {
      $("#trace-input").value = params.get("trace");
      showTrace(await api(`/traces/${encodeURIComponent(params.get("trace"))}`));
    }
  } catch (e) {
    error.textContent = e.message;
  }
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("[data-trace], [data-call]");
  if (!link) return;
  event.preventDefault();
  location.hash = link.dataset.trace ? `trace=${link.dataset.trace}` : `call=${link.dataset.call}`;
});
$("#call-form").addEventListener("submit", (event) => {
  event.preventDefault();
  location.hash = `call=${$("#call-input").value.trim()}`;
});
$("#trace-open").addEventListener("click", () => {
  location.hash = `trace=${$("#trace-input").value.trim()}`;
});
$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("#key-input").value.trim();
  sessionStorage.setItem("voiceobs-token", token);
  connectFeed();
  refreshLists();
  openFromHash();
});
window.addEventListener("hashchange", openFromHash);

connectFeed();
refreshLists();
setInterval(refreshLists, 15000);
openFromHash();
