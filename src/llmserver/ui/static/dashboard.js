// The dashboard: one snapshot stream (GET /dashboard/events) drawn into tables and a chart,
// and the admin actions (load, unload, log level), each confirmed first. The server decides
// what a key may see and do; the page only leaves out what the snapshot does not hold.

import {authHeaders, call, errorOf, readEvents} from "./api.js";
import {usageChart} from "./chart.js";
import {byId, fill, h, num, show} from "./dom.js";

let lastSnapshot = null;
let levelShown = false;  // the log-level picker starts at the server's level, then is the user's

function pct(values) {
  if (!values) return "–";
  return `${num(values.p50)} / ${num(values.p90)} / ${num(values.p99)}`;
}

function confirmAction(text) {
  const dialog = byId("confirm");
  fill(byId("confirm-text"), text);
  return new Promise((resolve) => {
    const ok = byId("confirm-ok");
    const cancel = byId("confirm-cancel");
    const done = (answer) => {
      ok.removeEventListener("click", onOk);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      dialog.close();
      resolve(answer);
    };
    const onOk = () => done(true);
    const onCancel = () => done(false);
    ok.addEventListener("click", onOk);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
  });
}

async function act(question, path, options, describe) {
  if (!(await confirmAction(question))) return;
  const result = byId("action-result");
  try {
    const body = await call(path, options);
    fill(result, describe(body));
    result.dataset.ok = "true";
  } catch (err) {
    fill(result, `Refused: ${err.message}`);
    result.dataset.ok = "false";
  }
}

function modelActions(model) {
  const path = `/v1/models/${encodeURIComponent(model.id)}`;
  const load = h("button", {type: "button", class: "load"}, "Load");
  const unload = h("button", {type: "button", class: "unload"}, "Unload");
  load.addEventListener("click", () => act(`Load the model ${model.id}?`, `${path}/load`,
    {method: "POST"}, (card) => `${card.id}: ${card.state}`));
  unload.addEventListener("click", () => act(`Unload the model ${model.id}? Requests to it get 503 until it is loaded again.`,
    `${path}/unload`, {method: "POST"}, (card) => `${card.id}: ${card.state}`));
  return [load, " ", unload];
}

function replicas(model) {
  if (!model.replicas_total) return "–";
  const summary = `${model.replicas_healthy}/${model.replicas_total} healthy`;
  if (!model.replicas) return summary;
  return [summary, h("ul", {class: "replicas"}, model.replicas.map((r) =>
    h("li", {class: r.healthy ? "up" : "down"}, `${r.healthy ? "up" : "down"} ${r.url}`)))];
}

function memory(model) {
  if (!model.memory_bytes) return "–";
  const mib = model.memory_bytes / 2 ** 20;
  const text = mib >= 1024 ? `${(mib / 1024).toFixed(1)} GiB` : `${Math.round(mib)} MiB`;
  return model.memory_measured ? text : `~${text}`;
}

function modelRow(model, admin) {
  const state = h("span", {class: `state state-${model.state}`}, model.state);
  return h("tr", {"data-model": model.id},
    h("td", {class: "model-id"}, model.id,
      model.aliases.length ? h("div", {class: "hint"}, `aliases: ${model.aliases.join(", ")}`) : null,
      model.roles.length ? h("div", {class: "hint"}, `roles: ${model.roles.join(", ")}`) : null),
    h("td", {}, model.backend),
    h("td", {class: "state-cell"}, state, model.error ? h("div", {class: "error"}, model.error) : null),
    h("td", {class: "memory num", title: model.memory_measured ? "measured over its last load" : "estimated from its files"},
      memory(model)),
    h("td", {class: "slots num"}, `${model.slots_in_use} / ${model.slots}`),
    h("td", {class: "waiting num"}, String(model.waiting)),
    h("td", {class: "rate num"}, num(model.tokens_per_s, 1)),
    h("td", {class: "num"}, pct(model.ttft_ms)),
    h("td", {class: "num"}, pct(model.latency_ms)),
    h("td", {class: "num"}, String(model.requests)),
    h("td", {class: "num rejected"}, String(model.rejected_429)),
    h("td", {class: "num errors"}, String(model.errors)),
    h("td", {}, replicas(model)),
    admin ? h("td", {class: "actions"}, modelActions(model)) : null,
  );
}

function recentRow(item) {
  return h("tr", {class: item.status >= 400 ? "failed" : ""},
    h("td", {}, item.time.replace("T", " ").replace("+00:00", "")),
    h("td", {}, item.key_name === null ? "–" : item.key_name),
    h("td", {}, `${item.method} ${item.endpoint}`),
    h("td", {}, item.model === null ? "–" : item.model),
    h("td", {class: "num"}, String(item.status), item.error_code ? h("div", {class: "hint"}, item.error_code) : null),
    h("td", {class: "num"}, String(item.prompt_tokens)),
    h("td", {class: "num"}, String(item.completion_tokens)),
    h("td", {class: "num"}, num(item.ttft_ms)),
    h("td", {class: "num"}, num(item.latency_ms)),
  );
}

/** Rows per (key, model): today's and the whole period's counts. */
export function usageTotals(rows, today) {
  const totals = new Map();
  for (const row of rows) {
    const id = JSON.stringify([row.key_name, row.model]);
    let t = totals.get(id);
    if (!t) {
      t = {key_name: row.key_name, model: row.model, today: [0, 0, 0, 0], period: [0, 0, 0, 0]};
      totals.set(id, t);
    }
    const counts = [row.requests, row.prompt_tokens, row.completion_tokens, row.total_tokens];
    for (let i = 0; i < 4; i++) {
      t.period[i] += counts[i];
      if (row.day === today) t.today[i] += counts[i];
    }
  }
  return [...totals.values()].sort((a, b) => (a.key_name + a.model).localeCompare(b.key_name + b.model));
}

function usageRow(t) {
  return h("tr", {"data-key": t.key_name, "data-model": t.model},
    h("td", {}, t.key_name), h("td", {}, t.model),
    t.today.map((v) => h("td", {class: "num"}, String(v))),
    t.period.map((v) => h("td", {class: "num"}, String(v))),
  );
}

function batchRow(job) {
  const total = job.total || 0;
  const done = (job.completed || 0) + (job.failed || 0);
  const bar = h("progress", {max: String(total || 1), value: String(done)});
  return h("tr", {},
    h("td", {}, String(job.id)), h("td", {}, String(job.status)), h("td", {}, String(job.model || "–")),
    h("td", {}, bar, ` ${done}/${total}${job.failed ? ` (${job.failed} failed)` : ""}`),
    h("td", {}, String(job.created_at || "–")),
  );
}

/** Draw one snapshot. */
export function render(snap) {
  lastSnapshot = snap;
  const admin = snap.caller.admin;
  const server = snap.server;
  fill(byId("server-line"),
    `llmserver ${server.version} · up ${num(server.uptime_s / 60, 1)} min · default model ${server.default_model}`
    + ` · ${server.draining ? "draining" : server.ready ? "ready" : "not ready"}`);
  for (const node of document.querySelectorAll(".admin-only")) show(node, admin);
  fill(byId("models-table").tBodies[0], snap.models.map((m) => modelRow(m, admin)));
  fill(byId("window-note"), `Tokens/s over the last seconds; percentiles, 429s and errors over the last ${num(snap.window_s / 60)} minutes.`);
  if (admin && server.log_level) {
    fill(byId("log-level-now"), `now: ${server.log_level}`);
    if (!levelShown) byId("log-level").value = server.log_level;
    levelShown = true;
  }
  fill(byId("recent-table").tBodies[0], snap.recent.map(recentRow));
  fill(byId("usage-title"), admin ? "Usage by key and model" : "Your usage");
  const totals = usageTotals(snap.usage.rows, snap.usage.today);
  fill(byId("usage-table").tBodies[0], totals.length ? totals.map(usageRow)
    : h("tr", {}, h("td", {colspan: "10", class: "hint"}, "No usage yet.")));
  fill(byId("usage-chart"), usageChart(snap.usage.rows, snap.usage.today, snap.usage.days));
  const batches = Array.isArray(snap.batches) && snap.batches.length > 0;
  show(byId("batches"), batches);
  if (batches) fill(byId("batches-table").tBodies[0], snap.batches.map(batchRow));
}

/** Follow the snapshot stream until `signal` aborts; reconnect after a failure. */
export async function follow(signal, onSnapshot, onRefused) {
  const live = byId("live");
  while (!signal.aborted) {
    try {
      const response = await fetch("/dashboard/events?interval=1", {headers: authHeaders(), signal, cache: "no-store"});
      if (response.status === 401) {
        onRefused(await errorOf(response));
        return;
      }
      if (!response.ok) throw await errorOf(response);
      fill(live, "live");
      live.dataset.state = "live";
      await readEvents(response, (event, data) => {
        if (event !== "snapshot") return;
        const snap = JSON.parse(data);
        if (snap.error) throw new Error(snap.error.message);
        onSnapshot(snap);
      });
      fill(live, "the server closed the stream; reconnecting…");
    } catch (err) {
      if (signal.aborted) return;
      fill(live, `connection lost (${err.message}); reconnecting…`);
    }
    live.dataset.state = "reconnecting";
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

export function initDashboard() {
  byId("apply-log-level").addEventListener("click", () => {
    const level = byId("log-level").value;
    act(`Change the server's log level to ${level}?`, "/admin/log-level",
      {method: "PUT", body: {level}}, (body) => `log level: ${body.level}`);
  });
}

export function currentSnapshot() {
  return lastSnapshot;
}
