// The study page: plots and a trial table fed by the JSON API, refreshed while the study runs.
// Every value from the database goes into the page through textContent or Plotly text that
// is escaped first, never through innerHTML.
"use strict";

const cfg = JSON.parse(document.getElementById("study-config").textContent);
let knownTotal = cfg.trials;
const table = { sort: "number", descending: false, offset: 0, limit: 50, filters: new URLSearchParams() };
// A study over several template families: the family shown (its index in points.values.family),
// or null for all of them.
const view = { family: null, points: null };

const plotType = (() => {
  // Large studies draw faster in WebGL; browsers without it fall back to SVG.
  try { return document.createElement("canvas").getContext("webgl") ? "scattergl" : "scatter"; }
  catch (e) { return "scatter"; }
})();

function escapeText(value) {
  return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1e-3) return (s * 1e6).toFixed(1) + " µs";
  if (s < 1) return (s * 1e3).toFixed(3) + " ms";
  return s.toFixed(3) + " s";
}

function fmtNumber(x) { return x === null || x === undefined ? "–" : Number(x).toExponential(2); }

function configText(config) {
  return Object.keys(config).sort().map(k => `${k}=${config[k]}`).join(" ");
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function trialsURL(params) {
  return `${cfg.api}/trials?${params.toString()}`;
}

function tablePageURL() {
  const params = new URLSearchParams(table.filters);
  params.set("sort", table.sort);
  params.set("descending", String(table.descending));
  params.set("offset", table.offset);
  params.set("limit", table.limit);
  const family = view.family === null ? "" : view.points.values.family[view.family];
  if (family) params.append("param", `family=${family}`);
  return trialsURL(params);
}

// The measured trials as columns (GET .../points): number, median_s, rel_l2, front (numbers),
// and each config parameter as indices into its values.
const fetchPoints = () => getJSON(`${cfg.api}/points`);

function hoverTexts(points) {
  // Each parameter's "name = value" lines are escaped once per value, not once per trial.
  const names = Object.keys(points.config).sort();
  const lines = names.map(name => points.values[name].map(v => `<br>${escapeText(name)} = ${escapeText(v)}`));
  return points.number.map((number, i) => {
    let text = `trial ${number}<br>latency ${fmtSeconds(points.median_s[i])}<br>rel. L2 ${fmtNumber(points.rel_l2[i])}`;
    names.forEach((name, p) => { const v = points.config[name][i]; if (v !== null) text += lines[p][v]; });
    return text;
  });
}

// Log axes cannot show an exact zero error: such points sit at a floor, the hover has the truth.
const ERROR_FLOOR = 1e-12;
const PLOT_OPTIONS = { responsive: true, displaylogo: false, displayModeBar: "hover" };

function title(text) {
  return { text, x: 0.01, xanchor: "left", font: { size: 14 } };
}

// A trace of the points at `indices` (positions in the columns); a click opens the trial.
function scatterTrace(points, texts, indices, name, marker, extra) {
  return Object.assign({
    type: plotType, mode: "markers", name, marker,
    x: indices.map(i => points.median_s[i]), y: indices.map(i => Math.max(points.rel_l2[i], ERROR_FLOOR)),
    text: indices.map(i => texts[i]), hoverinfo: "text", customdata: indices.map(i => points.number[i]),
  }, extra || {});
}

// Trials of several precisions (a config parameter named precision: e4m3 against native, fast-exp
// against exact) show each point's precision by its marker's symbol, one legend entry each.
const PRECISION_SYMBOLS = ["circle", "diamond", "square", "triangle-up", "cross", "x"];

function precisionSymbols(points) {
  const values = points.values.precision, column = points.config.precision;
  if (!values || values.length < 2 || !column) return null;
  return { values, of: indices => indices.map(i => PRECISION_SYMBOLS[(column[i] ?? 0) % PRECISION_SYMBOLS.length]) };
}

function drawPareto(points, texts) {
  const onFront = new Set(points.front);
  const front = [], rest = [];
  points.number.forEach((number, i) => (onFront.has(number) ? front : rest).push(i));
  front.sort((a, b) => points.median_s[a] - points.median_s[b]);
  const marks = precisionSymbols(points);
  const symbols = indices => (marks ? { symbol: marks.of(indices) } : {});
  const traces = [
    scatterTrace(points, texts, rest, "trials", { color: "#9aa5b8", size: 6, opacity: 0.7, ...symbols(rest) }),
    scatterTrace(points, texts, front, "Pareto front", { color: "#e4572e", size: 9, ...symbols(front) },
                 { type: "scatter", mode: "lines+markers", line: { shape: "hv" } }),
  ];
  if (marks) {
    marks.values.forEach((value, k) => traces.push({
      type: "scatter", mode: "markers", x: [null], y: [null], name: `precision ${value}`, hoverinfo: "skip",
      marker: { symbol: PRECISION_SYMBOLS[k % PRECISION_SYMBOLS.length], color: "#182033", size: 8 },
    }));
  }
  const layout = {
    title: title("Latency against error (Pareto front highlighted)"), margin: { t: 40, r: 10 },
    xaxis: { type: "log", title: { text: "median latency (s)" } },
    yaxis: { type: "log", title: { text: "relative L2 error" } }, hovermode: "closest", legend: { orientation: "h" },
  };
  return Plotly.react("pareto-plot", traces, layout, PLOT_OPTIONS);
}

function drawProgress(points, texts) {
  // Only the trials that improved on every earlier one (the columns come in trial order),
  // the last best drawn on to the last trial: the step line needs no other point.
  const steps = [];
  points.median_s.forEach((s, i) => { if (!steps.length || s < points.median_s[steps[steps.length - 1]]) steps.push(i); });
  const x = steps.map(i => points.number[i]);
  const lastNumber = points.number[points.number.length - 1];
  if (steps.length && x[x.length - 1] !== lastNumber) { steps.push(steps[steps.length - 1]); x.push(lastNumber); }
  const traces = [
    scatterTrace(points, texts, steps, "best so far", { color: "#2457c5", size: 6 },
      { type: "scatter", mode: "lines+markers", line: { shape: "hv", width: 2 },
        x, y: steps.map(i => points.median_s[i]) }),
  ];
  const layout = {
    title: title("Best latency so far against trial number"), margin: { t: 40, r: 10 },
    xaxis: { title: { text: "trial number" } }, yaxis: { type: "log", title: { text: "median latency (s)" } },
    hovermode: "closest", showlegend: false,
  };
  return Plotly.react("progress-plot", traces, layout, PLOT_OPTIONS);
}

// The value at quantile q of ascending `sorted`, interpolated between neighbours.
function quantile(sorted, q) {
  const at = (sorted.length - 1) * q, low = Math.floor(at);
  return sorted[low] + (sorted[Math.min(low + 1, sorted.length - 1)] - sorted[low]) * (at - low);
}

// Per value of one parameter: its label, trial count and latency quartiles.
function latencySummary(points, name) {
  const groups = new Map();
  points.config[name].forEach((v, i) => {
    const key = v === null ? "–" : String(points.values[name][v]);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(points.median_s[i]);
  });
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true })).map(([label, times]) => {
    times.sort((a, b) => a - b);
    return { label, n: times.length, min: times[0], q1: quantile(times, 0.25), median: quantile(times, 0.5),
      q3: quantile(times, 0.75), max: times[times.length - 1] };
  });
}

const PARAM_PLOT_WIDTH = 300;  // px: as many columns of subplots as fit

function drawParams(points) {
  // One figure, a subplot per parameter: one plot's fixed costs instead of one per parameter.
  // Per value, a box of the middle half of the latencies, whiskers to the extremes and a
  // line at the median, drawn as error bars (the gl2d bundle has no box trace): a few shapes
  // per subplot however many trials there are.
  const div = document.getElementById("param-plots");
  const names = Object.keys(points.config).sort();
  const columns = Math.max(1, Math.min(names.length, Math.floor(div.clientWidth / PARAM_PLOT_WIDTH)));
  const rows = Math.max(1, Math.ceil(names.length / columns));
  const traces = [], annotations = [];
  const layout = { grid: { rows, columns, pattern: "independent", xgap: 0.15, ygap: 0.3 },
    margin: { t: 30, r: 10, b: 30, l: 60 }, height: 260 * rows, showlegend: false, hovermode: "closest", annotations };
  names.forEach((name, index) => {
    const k = index === 0 ? "" : String(index + 1);
    const stats = latencySummary(points, name);
    // Category values become tick labels, which Plotly reads as HTML (<a href> included).
    const x = stats.map(s => escapeText(s.label)), median = stats.map(s => s.median);
    const range = (low, high) => ({ type: "data", symmetric: false, array: stats.map(s => s[high] - s.median),
      arrayminus: stats.map(s => s.median - s[low]) });
    const hover = stats.map(s => `${escapeText(name)} = ${escapeText(s.label)} (${s.n} trials)<br>median ${fmtSeconds(s.median)}` +
      `<br>middle half ${fmtSeconds(s.q1)} – ${fmtSeconds(s.q3)}<br>range ${fmtSeconds(s.min)} – ${fmtSeconds(s.max)}`);
    traces.push(
      { type: "scatter", mode: "markers", x, y: median, xaxis: "x" + k, yaxis: "y" + k, marker: { size: 0.1 }, hoverinfo: "skip",
        error_y: { ...range("min", "max"), color: "#2457c5", thickness: 1, width: 6 } },
      { type: "scatter", mode: "markers", x, y: median, xaxis: "x" + k, yaxis: "y" + k, text: hover, hoverinfo: "text",
        marker: { symbol: "line-ew-open", size: 22, color: "#182033", line: { width: 2 } },
        error_y: { ...range("q1", "q3"), color: "rgba(36, 87, 197, 0.35)", thickness: 18, width: 0 } });
    layout["xaxis" + k] = { type: "category" };
    layout["yaxis" + k] = { type: "log", title: index % columns ? undefined : { text: "latency (s)" } };
    annotations.push({ text: escapeText(name), showarrow: false, xref: `x${k} domain`, yref: `y${k} domain`,
      x: 0, y: 1.02, xanchor: "left", yanchor: "bottom", font: { size: 14 } });
  });
  return Plotly.react(div, traces, layout, PLOT_OPTIONS);
}

function bindClicks() {
  ["pareto-plot", "progress-plot"].map(id => document.getElementById(id)).forEach(div => {
    if (div.dataset.bound) return;
    div.dataset.bound = "1";
    div.on("plotly_click", event => {
      const number = event.points[0].customdata;
      if (number !== undefined) window.location.href = `${cfg.trialBase}/${number}`;
    });
  });
}

// The trials of the family shown, with that family's own Pareto front; all trials when none is.
function shownPoints(points) {
  if (view.family === null || !points.config.family) return points;
  const keep = points.number.map((_, i) => i).filter(i => points.config.family[i] === view.family);
  const pick = column => keep.map(i => column[i]);
  const config = {};
  Object.keys(points.config).forEach(name => {
    if (keep.some(i => points.config[name][i] !== null)) config[name] = pick(points.config[name]);  // its own knobs
  });
  const shown = { number: pick(points.number), median_s: pick(points.median_s), rel_l2: pick(points.rel_l2),
    config, values: points.values };
  shown.front = paretoFront(shown);
  return shown;
}

// Trial numbers of the points no other point beats in both latency and error.
function paretoFront(points) {
  const order = points.number.map((_, i) => i).sort((a, b) =>
    points.median_s[a] - points.median_s[b] || points.rel_l2[a] - points.rel_l2[b]);
  const front = [];
  let best = Infinity;
  order.forEach(i => { if (points.rel_l2[i] < best) { front.push(points.number[i]); best = points.rel_l2[i]; } });
  return front;
}

// The family selector, shown once the trials hold more than one family.
function showFamilies(points) {
  const families = points.values.family || [];
  const label = document.getElementById("family-filter");
  const select = label.querySelector("select");
  if (families.length < 2 || select.options.length === families.length + 1) return;
  while (select.options.length > 1) select.remove(1);
  families.forEach((family, index) => select.add(new Option(family || "default", String(index))));
  select.value = view.family === null ? "" : String(view.family);
  label.hidden = false;
}

function bindFamilies() {
  document.querySelector("#family-filter select").addEventListener("change", event => {
    view.family = event.target.value === "" ? null : Number(event.target.value);
    table.offset = 0;
    loadTable();
    drawPlots(view.points);
  });
}

async function drawPlots(points) {
  view.points = points;
  showFamilies(points);
  const shown = shownPoints(points);
  const texts = hoverTexts(shown);
  await Promise.all([drawPareto(shown, texts), drawProgress(shown, texts), drawParams(shown)]);
  bindClicks();
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
}

function tableRow(t) {
  const row = document.createElement("tr");
  row.dataset.number = t.number;
  const link = document.createElement("a");
  link.href = `${cfg.trialBase}/${t.number}`;
  link.textContent = t.number;
  const first = document.createElement("td");
  first.className = "num";
  first.appendChild(link);
  row.appendChild(first);
  const status = document.createElement("span");
  status.className = `status status-${t.status}`;
  status.textContent = t.status;
  const statusCell = document.createElement("td");
  statusCell.appendChild(status);
  row.appendChild(statusCell);
  cell(row, fmtSeconds(t.median_s), "num");
  cell(row, t.q1_s === null ? "–" : fmtSeconds(t.q3_s - t.q1_s), "num");
  cell(row, fmtNumber(t.rel_l2), "num");
  cell(row, fmtSeconds(t.compile_time_s), "num");
  cell(row, t.on_front ? "yes" : "", t.on_front ? "front-yes" : "");
  cell(row, configText(t.config), "mono");
  row.addEventListener("click", () => { window.location.href = link.href; });
  return row;
}

async function loadTable(request) {
  let page;
  try {
    page = await (request || getJSON(tablePageURL()));
  } catch (error) {
    document.getElementById("page-info").textContent = `Filter not accepted: ${error.message}`;
    return;
  }
  const body = document.querySelector("#trial-table tbody");
  body.replaceChildren(...page.items.map(tableRow));
  const last = Math.min(page.offset + page.items.length, page.total);
  document.getElementById("page-info").textContent =
    page.total ? `${page.offset + 1}–${last} of ${page.total}` : "no trial matches";
  document.getElementById("prev-page").disabled = page.offset === 0;
  document.getElementById("next-page").disabled = last >= page.total;
  document.querySelectorAll("#trial-table th[data-sort]").forEach(th => {
    th.classList.toggle("sorted-asc", th.dataset.sort === table.sort && !table.descending);
    th.classList.toggle("sorted-desc", th.dataset.sort === table.sort && table.descending);
  });
}

function bindTable() {
  document.querySelectorAll("#trial-table th[data-sort]").forEach(th => th.addEventListener("click", () => {
    table.descending = table.sort === th.dataset.sort ? !table.descending : false;
    table.sort = th.dataset.sort;
    table.offset = 0;
    loadTable();
  }));
  document.getElementById("prev-page").addEventListener("click", () => {
    table.offset = Math.max(0, table.offset - table.limit); loadTable();
  });
  document.getElementById("next-page").addEventListener("click", () => { table.offset += table.limit; loadTable(); });
  document.getElementById("trial-filters").addEventListener("submit", event => {
    event.preventDefault();
    const form = new FormData(event.target);
    table.filters = new URLSearchParams();
    for (const [key, value] of form.entries()) if (value) table.filters.append(key, value);
    table.offset = 0;
    loadTable();
  });
}

function showSummary(study) {
  document.getElementById("counts").textContent =
    Object.keys(study.counts).sort().map(k => `${k}=${study.counts[k]}`).join(" ");
  document.getElementById("best-latency").textContent = fmtSeconds(study.best_latency_s);
  // A finished study is still watched (a new `tuner run` may resume it), but it does not say so.
  const state = study.running
    ? `${study.running} running · refreshing every ${cfg.pollSeconds} s`
    : "no trial running";
  document.getElementById("live-status").textContent =
    `${study.n_trials} trials · ${state} · updated ${new Date().toLocaleTimeString()}`;
}

async function poll() {
  try {
    const study = await getJSON(cfg.api);
    if (study.n_trials !== knownTotal) {
      const [points] = await Promise.all([fetchPoints(), loadTable()]);
      knownTotal = study.n_trials;
      await drawPlots(points);
    }
    showSummary(study);
  } catch (error) {
    document.getElementById("live-status").textContent = `Refresh failed (${error.message}); retrying`;
  }
  setTimeout(poll, cfg.pollSeconds * 1000);
}

async function main(firstPoints, firstTable) {
  bindTable();
  bindFamilies();
  let points;
  try {
    [points] = await Promise.all([firstPoints, loadTable(firstTable)]);
  } catch (error) {
    document.getElementById("live-status").textContent = `Loading failed (${error.message})`;
    return;
  }
  const loaded = performance.now();
  await drawPlots(points);
  // Read by the browser tests and bench/api_load.py: milliseconds since navigation started.
  window.tunerTimings = { loaded, drawn: performance.now() };
  window.tunerReady = true;
  setTimeout(poll, 0);
}

// This script runs from the page's head, before plotly.js: the data is asked for at once and
// arrives while the browser is still busy with plotly.js; the drawing waits for the document.
const firstPoints = fetchPoints();
const firstTable = getJSON(tablePageURL());
document.addEventListener("DOMContentLoaded", () => main(firstPoints, firstTable));
