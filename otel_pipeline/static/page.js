// The live page: reads /health, /stats and /trends every 2 s and draws them. No dependencies.
// Every value from the data goes through h`...` (HTML-escaped): hook and metric names come from users.
"use strict";

const REFRESH_MS = 2000;
const HISTORY = 90; // samples kept per chart (3 minutes at 2 s)

// -- escaping ---------------------------------------------------------------------------------

class Safe {
  constructor(html) { this.html = html; }
}
const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
function esc(value) { return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]); }
function piece(value) {
  if (value instanceof Safe) return value.html;
  if (Array.isArray(value)) return value.map(piece).join("");
  if (value === null || value === undefined || value === false) return "";
  return esc(value);
}
// A template whose interpolated values are escaped, unless they are Safe (made by h itself).
function h(strings, ...values) {
  let out = strings[0];
  values.forEach((value, i) => { out += piece(value) + strings[i + 1]; });
  return new Safe(out);
}

// -- numbers ------------------------------------------------------------------------------------

function num(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const abs = Math.abs(value);
  if (abs >= 1e9) return (value / 1e9).toFixed(1) + "G";
  if (abs >= 1e6) return (value / 1e6).toFixed(1) + "M";
  if (abs >= 1e4) return (value / 1e3).toFixed(1) + "k";
  if (Number.isInteger(value)) return String(value);
  return abs >= 100 ? value.toFixed(0) : abs >= 1 ? value.toFixed(2) : value.toPrecision(2);
}
function secs(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (value < 1e-3) return (value * 1e6).toFixed(0) + " µs";
  if (value < 1) return (value * 1e3).toFixed(value < 0.01 ? 2 : 1) + " ms";
  if (value < 120) return value.toFixed(2) + " s";
  return (value / 60).toFixed(1) + " min";
}
function bytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
  return (i ? value.toFixed(1) : String(value)) + " " + units[i];
}
// Unix seconds (a "last success", a timestamp) as a local time.
function when(seconds) { return new Date(seconds * 1000).toLocaleTimeString(); }
function isTime(key, v) { return typeof v === "number" && v > 1e9 && /last|time/.test(key); }
function pct(value) { return value === null || value === undefined ? "–" : (value * 100).toFixed(1) + "%"; }
function rate(value) { return value === null || value === undefined ? "–" : num(value) + "/s"; }

// -- reading /stats -----------------------------------------------------------------------------

function value(metrics, name) {
  const entry = metrics && metrics[name];
  return entry && "value" in entry ? entry.value : null;
}
// Sum of a metric's points by one attribute (counts for histograms).
function by(metrics, name, key) {
  const out = {};
  const entry = metrics && metrics[name];
  if (!entry) return out;
  for (const point of entry.points) {
    const k = point.attributes[key] === undefined ? "" : String(point.attributes[key]);
    out[k] = (out[k] || 0) + ("value" in point ? point.value : point.count);
  }
  return out;
}
// The points of a histogram (those matching `keep`) merged: count, sum, min, max, buckets.
function merged(metrics, name, keep) {
  const entry = metrics && metrics[name];
  if (!entry || entry.kind !== "histogram") return null;
  let out = null;
  for (const point of entry.points) {
    if (keep && !keep(point.attributes)) continue;
    if (!out) {
      out = { count: 0, sum: 0, min: Infinity, max: -Infinity, bounds: point.bounds || null, buckets: null };
    }
    out.count += point.count;
    out.sum += point.sum;
    if (point.min !== null && point.min < out.min) out.min = point.min;
    if (point.max !== null && point.max > out.max) out.max = point.max;
    const same = out.bounds && point.bounds && out.bounds.length === point.bounds.length &&
      out.bounds.every((b, i) => b === point.bounds[i]);
    if (same && point.buckets) {
      out.buckets = out.buckets ? out.buckets.map((c, i) => c + point.buckets[i]) : point.buckets.slice();
    } else {
      out.bounds = null; // points with other bounds: no percentiles, count and mean only
    }
  }
  if (out && !out.bounds) out.buckets = null;
  return out;
}
// The q-quantile from bucket counts, linear within the bucket, clamped to the observed min/max.
function quantile(hist, q) {
  if (!hist || !hist.count) return null;
  if (!hist.buckets) return null;
  const rank = q * hist.count;
  let seen = 0;
  for (let i = 0; i < hist.buckets.length; i += 1) {
    const count = hist.buckets[i];
    if (count > 0 && seen + count >= rank) {
      const low = Math.max(i === 0 ? hist.min : hist.bounds[i - 1], hist.min);
      const high = Math.min(i < hist.bounds.length ? hist.bounds[i] : hist.max, hist.max);
      return low + (Math.max(high, low) - low) * ((rank - seen) / count);
    }
    seen += count;
  }
  return hist.max;
}
function percentiles(hist) {
  if (!hist || !hist.count) return h`<span class="empty">none yet</span>`;
  const mean = hist.sum / hist.count;
  if (!hist.buckets) return h`mean ${secs(mean)}`;
  return h`p50 ${secs(quantile(hist, 0.5))} · p95 ${secs(quantile(hist, 0.95))} · p99 ${secs(quantile(hist, 0.99))}`;
}

// -- rates and charts -----------------------------------------------------------------------------

const history = new Map(); // chart key -> [values]
const previous = new Map(); // counter key -> [time, value] from the last /stats
let seenKeys = new Set();

function trend(trends, hook, name, metric) {
  const entry = trends && trends.hooks && trends.hooks[hook] && trends.hooks[hook][name] &&
    trends.hooks[hook][name][metric];
  return entry ? entry.rate : null;
}
// Per-second rate of a counter since the previous refresh (what /trends cannot split by attribute).
function since(key, time, total) {
  seenKeys.add(key);
  const before = previous.get(key);
  previous.set(key, [time, total]);
  if (!before || time <= before[0] || total < before[1]) return null;
  return (total - before[1]) / (time - before[0]);
}
function remember(key, sample) {
  seenKeys.add(key);
  let values = history.get(key);
  if (!values) { values = []; history.set(key, values); }
  if (sample !== null && sample !== undefined && Number.isFinite(sample)) values.push(sample);
  if (values.length > HISTORY) values.splice(0, values.length - HISTORY);
  return values;
}
function spark(values, label) {
  if (values.length < 2) {
    return h`<svg class="spark" viewBox="0 0 100 36" preserveAspectRatio="none" role="img" aria-label="${label}: collecting">
      <path class="base" d="M0,35L100,35" vector-effect="non-scaling-stroke"/></svg>`;
  }
  const top = (Math.max(...values) || 1) * 1.15;
  const step = 100 / (values.length - 1);
  const points = values.map((v, i) => [(i * step).toFixed(1), (35 - (v / top) * 33).toFixed(1)]);
  const line = "M" + points.map((p) => p.join(",")).join("L");
  const area = line + "L100,36L0,36Z";
  return h`<svg class="spark" viewBox="0 0 100 36" preserveAspectRatio="none" role="img"
    aria-label="${label}: last ${num(values[values.length - 1])}/s, max ${num(Math.max(...values))}/s"><title>${label}</title>
    <path class="area" d="${area}"/><path class="line" d="${line}" vector-effect="non-scaling-stroke"/></svg>`;
}
// A chart of a /trends 1-minute rate over the page's refreshes, with the three windows' values.
function trendChart(trends, hook, name, metric, label) {
  const rates = trend(trends, hook, name, metric);
  const values = remember(`${hook}\u0000${name}\u0000${metric}`, rates ? rates["1m"] : null);
  const windows = rates ? h`1m ${rate(rates["1m"])} · 5m ${rate(rates["5m"])} · 15m ${rate(rates["15m"])}` : "no rate yet";
  return h`<div class="details">${label}: ${windows}</div>${spark(values, label)}`;
}

// -- pieces --------------------------------------------------------------------------------------

function badge(status) { return h`<span class="badge ${String(status).replace(/[^a-z_]/g, "")}">${status}</span>`; }
function cell(key, shown) { return h`<b data-m="${key}">${shown}</b>`; }
function kv(items) {
  return h`<div class="kv">${items.filter((item) => item).map(([label, key, shown]) => h`<div>${cell(key, shown)}<span>${label}</span></div>`)}</div>`;
}
function bar(fraction) {
  const width = Math.max(0, Math.min(1, fraction || 0)) * 100;
  return h`<div class="bar" title="${pct(fraction)}"><i style="width:${width.toFixed(1)}%"></i></div>`;
}
function outcomes(counts) {
  const names = Object.keys(counts).sort();
  if (!names.length) return h`<span class="empty">none</span>`;
  return names.map((o) => h`<span>${o || "total"} <b>${num(counts[o])}</b></span> `);
}
function details(component) {
  return Object.keys(component).filter((k) => k !== "status").sort().map((k) => {
    const v = component[k];
    const shown = isTime(k, v) ? when(v) : typeof v === "number" ? num(v) : typeof v === "object" ? JSON.stringify(v) : String(v);
    return h`<span>${k}=${shown.length > 80 ? shown.slice(0, 80) + "…" : shown}</span> `;
  });
}
function section(title, body, wide) {
  return h`<section class="${wide ? "wide" : ""}"><h2>${title}</h2>${body}</section>`;
}
function names(group) { return Object.keys(group || {}).filter((n) => n !== "*" || Object.keys(group).length === 1); }

// -- sections -------------------------------------------------------------------------------------

function healthSection(health) {
  if (!health) return section("Health", h`<p class="empty">/health did not answer</p>`);
  const components = health.components || {};
  const rows = Object.keys(components).map((name) => h`<tr><td>${name}
    <div class="details">${details(components[name])}</div></td>
    <td data-m="health/${name}/status">${badge(components[name].status)}</td></tr>`);
  const omitted = health.omitted ? h`<p class="details">${num(health.omitted.components)} more components not listed</p>` : "";
  return section("Health", h`<div><span class="score" data-m="health/score">${health.score}</span> / 100
    <span data-m="health/status">${badge(health.status)}</span></div>
    <div class="scroll"><table><tr><th>component</th><th>status</th></tr>${rows}</table></div>${omitted}`, true);
}

function pipelinesSection(stats, trends, time) {
  const group = stats.hooks.pipeline;
  if (!group) return "";
  const blocks = names(group).map((name) => {
    const m = group[name];
    const finished = by(m, "pipeline.runs.finished", "outcome");
    const started = value(m, "pipeline.runs.started") || 0;
    const stageItems = by(m, "pipeline.stage.items", "pipeline.stage");
    const stageActive = by(m, "pipeline.stages.active", "pipeline.stage");
    const stageStarted = by(m, "pipeline.stages.started", "pipeline.stage");
    const stageNames = [...new Set([...Object.keys(stageStarted), ...Object.keys(stageItems)])].filter((s) => s);
    const rows = stageNames.map((stage) => {
      const ok = (m["pipeline.stages.finished"] ? m["pipeline.stages.finished"].points : [])
        .filter((p) => p.attributes["pipeline.stage"] === stage && p.attributes.outcome === "success")
        .reduce((total, p) => total + p.value, 0);
      const failed = (m["pipeline.stages.finished"] ? m["pipeline.stages.finished"].points : [])
        .filter((p) => p.attributes["pipeline.stage"] === stage && p.attributes.outcome !== "success")
        .reduce((total, p) => total + p.value, 0);
      const items = stageItems[stage] || 0;
      const itemsRate = since(`items\u0000${name}\u0000${stage}`, time, items);
      const duration = merged(m, "pipeline.stage.duration", (a) => a["pipeline.stage"] === stage);
      const active = stageActive[stage] || 0;
      return h`<tr><td>${stage}${active > 0 ? h` <span class="running">running</span>` : ""}</td>
        <td class="n" data-m="pipeline/${name}/${stage}/items">${num(items)}</td>
        <td class="n" data-m="pipeline/${name}/${stage}/rate">${rate(itemsRate)}</td>
        <td class="n">${num(ok)}${failed ? h` <span class="badge failure">${num(failed)} failed</span>` : ""}</td>
        <td>${bar(started ? ok / started : 0)}</td>
        <td class="details">${percentiles(duration)}</td></tr>`;
    });
    return h`<h3>${name}</h3>${kv([
      ["runs started", `pipeline/${name}/started`, num(started)],
      ["succeeded", `pipeline/${name}/success`, num(finished.success || 0)],
      ["failed", `pipeline/${name}/failure`, num(finished.failure || 0)],
      ["running now", `pipeline/${name}/active`, num(value(m, "pipeline.runs.active") || 0)],
    ])}<div class="details">run duration: ${percentiles(merged(m, "pipeline.run.duration"))}</div>
    ${trendChart(trends, "pipeline", name, "pipeline.runs.finished", "runs finished")}
    <div class="scroll"><table class="stages"><tr><th>stage</th><th class="n">items</th><th class="n">items/s</th>
    <th class="n">runs done</th><th>share of runs</th><th>duration</th></tr>${rows}</table></div>`;
  });
  return section("Pipelines", blocks, true);
}

function queuesSection(stats, trends) {
  const group = stats.hooks.queue;
  if (!group) return "";
  const blocks = names(group).map((name) => {
    const m = group[name];
    const processed = by(m, "queue.jobs.processed", "outcome");
    const workers = by(m, "queue.workers", "state");
    const oldest = Object.keys(m).filter((k) => k.includes("oldest"));
    const items = [
      m["queue.depth"] && ["depth", `queue/${name}/depth`, num(value(m, "queue.depth"))],
      m["queue.jobs.in_progress"] && ["in progress", `queue/${name}/in_progress`, num(value(m, "queue.jobs.in_progress"))],
      m["queue.jobs.enqueued"] && ["enqueued", `queue/${name}/enqueued`, num(value(m, "queue.jobs.enqueued"))],
    ];
    for (const o of Object.keys(processed).sort()) {
      items.push([`processed: ${o || "total"}`, `queue/${name}/processed/${o}`, num(processed[o])]);
    }
    if (m["queue.jobs.dequeued"]) items.push(["dequeued", `queue/${name}/dequeued`, num(value(m, "queue.jobs.dequeued"))]);
    for (const [metric, label] of [["queue.jobs.retried", "retried"], ["queue.jobs.dead_lettered", "dead-lettered"],
      ["queue.dead_letter.depth", "dead letters now"], ["queue.jobs.replayed", "replayed"]]) {
      if (m[metric]) items.push([label, `queue/${name}/${label}`, num(value(m, metric))]);
    }
    for (const metric of oldest) items.push(["oldest job", `queue/${name}/oldest`, secs(value(m, metric))]);
    if (m["queue.workers"]) items.push(["workers busy", `queue/${name}/workers`, `${num(workers.active || 0)} / ${num((workers.active || 0) + (workers.idle || 0))}`]);
    const utilization = value(m, "queue.utilization");
    const flow = ["queue.jobs.processed", "queue.jobs.dequeued", "queue.jobs.enqueued"].find((f) => m[f]) || "queue.jobs.enqueued";
    return h`<h3>${name}</h3>${kv(items)}
      ${utilization !== null ? h`<div class="details">capacity used ${pct(utilization)}</div>${bar(utilization)}` : ""}
      ${m["queue.job.wait_time"] ? h`<div class="details">wait: ${percentiles(merged(m, "queue.job.wait_time"))}</div>` : ""}
      ${m["queue.job.duration"] ? h`<div class="details">duration: ${percentiles(merged(m, "queue.job.duration"))}</div>` : ""}
      ${trendChart(trends, "queue", name, flow, flow.slice("queue.jobs.".length))}`;
  });
  return section("Queues", blocks);
}

function cachesSection(stats) {
  const parts = [];
  const caches = stats.hooks.cache || {};
  for (const name of names(caches)) {
    const m = caches[name];
    const hits = value(m, "cache.hits") || 0;
    const misses = value(m, "cache.misses") || 0;
    const ratio = value(m, "cache.hit_ratio") ?? (hits + misses ? hits / (hits + misses) : null);
    const limit = value(m, "cache.entries.limit");
    parts.push(h`<h3>cache ${name}</h3>${kv([
      ["hit ratio", `cache/${name}/hit_ratio`, pct(ratio)],
      ["hits", `cache/${name}/hits`, num(hits)],
      ["misses", `cache/${name}/misses`, num(misses)],
      m["cache.evictions"] && ["evictions", `cache/${name}/evictions`, num(value(m, "cache.evictions"))],
      m["cache.entries"] && ["entries", `cache/${name}/entries`, limit ? `${num(value(m, "cache.entries"))} / ${num(limit)}` : num(value(m, "cache.entries"))],
      m["cache.size"] && ["size", `cache/${name}/size`, bytes(value(m, "cache.size"))],
    ])}${bar(ratio)}`);
  }
  const dedups = stats.hooks.dedup || {};
  for (const name of names(dedups)) {
    const m = dedups[name];
    const checks = value(m, "dedup.checks") || 0;
    const duplicates = value(m, "dedup.duplicates") || 0;
    const ratio = value(m, "dedup.duplicate_ratio") ?? (checks ? duplicates / checks : null);
    parts.push(h`<h3>dedup ${name}</h3>${kv([
      ["duplicate ratio", `dedup/${name}/ratio`, pct(ratio)],
      ["checks", `dedup/${name}/checks`, num(checks)],
      ["duplicates", `dedup/${name}/duplicates`, num(duplicates)],
    ])}${bar(ratio)}`);
  }
  return parts.length ? section("Caches and dedup", parts) : "";
}

const BREAKER_STATES = ["closed", "open", "half_open"];
function breakersSection(stats) {
  const parts = [];
  const breakers = stats.hooks.circuit_breaker || {};
  const rows = names(breakers).map((name) => {
    const m = breakers[name];
    const state = BREAKER_STATES[value(m, "circuit_breaker.state")] || "unknown";
    return h`<tr><td>${name}</td><td data-m="breaker/${name}/state">${badge(state)}</td>
      <td>${outcomes(by(m, "circuit_breaker.calls", "outcome"))}</td>
      <td class="n">${num(value(m, "circuit_breaker.trips") || 0)}</td></tr>`;
  });
  if (rows.length) {
    parts.push(h`<div class="scroll"><table><tr><th>breaker</th><th>state</th><th>calls</th><th class="n">trips</th></tr>${rows}</table></div>`);
  }
  const pools = stats.hooks.connection_pool || {};
  for (const name of names(pools)) {
    const m = pools[name];
    const count = by(m, "db.client.connection.count", "db.client.connection.state");
    const max = value(m, "db.client.connection.max");
    const used = count.used || 0;
    parts.push(h`<h3>pool ${name}</h3>${kv([
      ["in use", `pool/${name}/used`, max ? `${num(used)} / ${num(max)}` : num(used)],
      ["idle", `pool/${name}/idle`, num(count.idle || 0)],
      ["waiting", `pool/${name}/pending`, num(value(m, "db.client.connection.pending_requests") || 0)],
      ["timeouts", `pool/${name}/timeouts`, num(value(m, "db.client.connection.timeouts") || 0)],
    ])}${bar(max ? used / max : value(m, "connection_pool.utilization"))}
    <div class="details">wait: ${percentiles(merged(m, "db.client.connection.wait_time"))}</div>
    <div class="details">use: ${percentiles(merged(m, "db.client.connection.use_time"))}</div>`);
  }
  return parts.length ? section("Breakers and pools", parts) : "";
}

function actionsSection(stats, trends) {
  const parts = [];
  const actions = stats.hooks.actions || {};
  const rows = names(actions).map((name) => {
    const m = actions[name];
    const executors = Object.keys(by(m, "actions.executed", "action.executor")).filter((e) => e);
    return h`<tr><td>${executors.length ? executors.join(", ") + " " : ""}${name}</td>
      <td data-m="actions/${name}/executed">${outcomes(by(m, "actions.executed", "outcome"))}</td>
      <td class="details">${percentiles(merged(m, "actions.duration"))}</td></tr>`;
  });
  if (rows.length) {
    parts.push(h`<div class="scroll"><table><tr><th>action</th><th>executed</th><th>duration</th></tr>${rows}</table></div>`);
  }
  const events = stats.hooks.events || {};
  for (const name of Object.keys(events)) {
    const m = events[name];
    const types = {};
    for (const point of (m["events.processed"] || { points: [] }).points) {
      const type = [point.attributes["event.source"], point.attributes["event.type"]].filter((x) => x !== undefined).join(" ") || name;
      types[type] = types[type] || {};
      const outcome = point.attributes.outcome || "total";
      types[type][outcome] = (types[type][outcome] || 0) + point.value;
    }
    const eventRows = Object.keys(types).sort().map((type) => h`<tr><td>${type}</td>
      <td data-m="events/${type}">${outcomes(types[type])}</td></tr>`);
    if (eventRows.length) {
      parts.push(h`<h3>events${name === "*" ? "" : " " + name}</h3><div class="scroll"><table>
        <tr><th>event</th><th>processed</th></tr>${eventRows}</table></div>
        <div class="details">in flight ${num(value(m, "events.in_flight") || 0)} · duration: ${percentiles(merged(m, "events.processing.duration"))}</div>
        ${trendChart(trends, "events", name, "events.processed", "events processed")}`);
    }
  }
  return parts.length ? section("Actions and events", parts) : "";
}

function resourcesSection(stats) {
  const m = stats.hooks.resources && stats.hooks.resources["*"];
  if (!m) return "";
  const cpu = by(m, "process.cpu.time", "cpu.mode");
  const io = by(m, "process.disk.io", "disk.io.direction");
  return section("Resources", kv([
    ["CPU", "resources/cpu", pct(value(m, "process.cpu.utilization"))],
    ["memory", "resources/memory", bytes(value(m, "process.memory.usage"))],
    ["virtual", "resources/virtual", bytes(value(m, "process.memory.virtual"))],
    ["threads", "resources/threads", num(value(m, "process.thread.count"))],
    ["open files", "resources/fds", num(value(m, "process.unix.file_descriptor.count"))],
    ["CPU time", "resources/cpu_time", secs(Object.values(cpu).reduce((a, b) => a + b, 0))],
    ["disk read", "resources/read", bytes(io.read ?? null)],
    ["disk written", "resources/write", bytes(io.write ?? null)],
  ]));
}

const SHOWN = new Set(["pipeline", "queue", "cache", "dedup", "circuit_breaker", "connection_pool", "actions", "events", "resources"]);
function otherSection(stats) {
  const rows = [];
  for (const hook of Object.keys(stats.hooks).sort()) {
    if (SHOWN.has(hook)) continue;
    for (const name of Object.keys(stats.hooks[hook])) {
      const metrics = stats.hooks[hook][name];
      for (const metric of Object.keys(metrics).sort()) {
        const e = metrics[metric];
        const shown = e.kind === "histogram" ? h`${num(e.count)} · ${percentiles(merged(metrics, metric))}` :
          isTime(metric, e.value) ? when(e.value) : num(e.value);
        rows.push(h`<tr><td>${hook}</td><td>${name}</td><td>${metric}</td><td data-m="${hook}/${name}/${metric}">${shown}</td></tr>`);
      }
    }
  }
  const collectors = stats.collectors || {};
  const collectorRows = Object.keys(collectors).sort().map((name) => {
    const c = collectors[name];
    const shown = c.value === undefined ? (c.error || "") : JSON.stringify(c.value);
    return h`<tr><td>${name}</td><td>${badge(c.status)}</td><td class="details" data-m="collector/${name}">${shown.length > 200 ? shown.slice(0, 200) + "…" : shown}</td></tr>`;
  });
  const omitted = stats.omitted ? h`<p class="details">names not listed: ${Object.keys(stats.omitted).map((k) => `${k} ${stats.omitted[k]}`).join(", ")}</p>` : "";
  const parts = [];
  if (collectorRows.length) parts.push(h`<h3>collectors</h3><div class="scroll"><table>${collectorRows}</table></div>`);
  if (rows.length) parts.push(h`<h3>other metrics</h3><div class="scroll"><table><tr><th>hook</th><th>name</th><th>metric</th><th>value</th></tr>${rows}</table></div>`);
  return parts.length || omitted ? section("More", [parts, omitted], true) : "";
}

// -- the loop -------------------------------------------------------------------------------------

async function getJSON(path) {
  const reply = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
  return reply.json(); // /health answers 503 with its JSON when unhealthy
}

function draw(health, stats, trends) {
  seenKeys = new Set();
  const service = (stats && stats.service) || (health && health.service) || "otel-pipeline";
  document.title = `${service} · ${health ? health.status : "?"}`;
  document.getElementById("service").textContent = service;
  const status = document.getElementById("status");
  status.textContent = health ? `${health.status} ${health.score}` : "unknown";
  status.className = `badge ${health ? String(health.status).replace(/[^a-z_]/g, "") : ""}`;
  const time = stats ? stats.time : Date.now() / 1000;
  const parts = [healthSection(health)];
  if (stats && stats.hooks) {
    parts.push(pipelinesSection(stats, trends, time), queuesSection(stats, trends), cachesSection(stats),
      breakersSection(stats), actionsSection(stats, trends), resourcesSection(stats), otherSection(stats));
  }
  document.getElementById("main").innerHTML = piece(parts);
  for (const key of [...history.keys()]) if (!seenKeys.has(key)) history.delete(key);
  for (const key of [...previous.keys()]) if (!seenKeys.has(key)) previous.delete(key);
  document.getElementById("updated").textContent = `updated ${new Date(time * 1000).toLocaleTimeString()}`;
}

async function refresh() {
  const [health, stats, trends] = await Promise.allSettled(["/health", "/stats", "/trends"].map(getJSON));
  const failed = [["/health", health], ["/stats", stats], ["/trends", trends]].filter(([, r]) => r.status === "rejected");
  document.getElementById("error").textContent = failed.length ? `cannot read ${failed.map(([p]) => p).join(", ")}` : "";
  try {
    draw(health.value, stats.value, trends.value);
  } catch (error) {
    document.getElementById("error").textContent = `cannot draw: ${error}`;
  }
  setTimeout(refresh, REFRESH_MS);
}

refresh();
