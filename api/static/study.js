// The study page: plots and a trial table fed by the JSON API, refreshed while the study runs.
// Every value from the database goes into the page through textContent or Plotly text that
// is escaped first, never through innerHTML.
"use strict";

const cfg = JSON.parse(document.getElementById("study-config").textContent);
const trials = new Map();          // number -> trial summary
let knownTotal = 0;
const table = { sort: "number", descending: false, offset: 0, limit: 50, filters: new URLSearchParams() };

const plotType = (() => {
  // Large studies draw faster in WebGL; headless browsers without it fall back to SVG.
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

function hoverText(t) {
  const lines = Object.keys(t.config).sort().map(k => `${escapeText(k)} = ${escapeText(t.config[k])}`);
  return [`trial ${t.number}`, `latency ${fmtSeconds(t.median_s)}`, `rel. L2 ${fmtNumber(t.rel_l2)}`]
    .concat(lines).join("<br>");
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function trialsURL(params) {
  return `${cfg.api}/trials?${params.toString()}`;
}

async function loadAllTrials() {
  // Pages are fetched in parallel: a study of 10,000 trials is two requests.
  const first = await getJSON(trialsURL(new URLSearchParams({ limit: cfg.page, offset: 0 })));
  const pages = [first];
  const rest = [];
  for (let offset = cfg.page; offset < first.total; offset += cfg.page) {
    rest.push(getJSON(trialsURL(new URLSearchParams({ limit: cfg.page, offset }))));
  }
  pages.push(...await Promise.all(rest));
  trials.clear();
  pages.forEach(p => p.items.forEach(t => trials.set(t.number, t)));
  knownTotal = first.total;
}

async function loadNewTrials(count) {
  // The newest rows by insertion order: trials of parallel workers land out of number order.
  const params = new URLSearchParams({ sort: "created", descending: "true", limit: count, offset: 0 });
  const page = await getJSON(trialsURL(params));
  page.items.forEach(t => trials.set(t.number, t));
}

function measured() {
  return [...trials.values()].filter(t => t.status === "ok" && t.median_s !== null && t.rel_l2 !== null);
}

// Log axes cannot show an exact zero error: such points sit at a floor, the hover has the truth.
const ERROR_FLOOR = 1e-12;
const PLOT_OPTIONS = { responsive: true, displaylogo: false, displayModeBar: "hover" };

function title(text) {
  return { text, x: 0.01, xanchor: "left", font: { size: 14 } };
}

function scatterTrace(points, name, marker, extra) {
  return Object.assign({
    type: plotType, mode: "markers", name, marker,
    x: points.map(t => t.median_s), y: points.map(t => Math.max(t.rel_l2, ERROR_FLOOR)),
    text: points.map(hoverText), hoverinfo: "text", customdata: points.map(t => t.number),
  }, extra || {});
}

function drawPareto(points) {
  const front = points.filter(t => t.on_front).sort((a, b) => a.median_s - b.median_s);
  const traces = [
    scatterTrace(points.filter(t => !t.on_front), "trials", { color: "#9aa5b8", size: 6, opacity: 0.7 }),
    scatterTrace(front, "Pareto front", { color: "#e4572e", size: 9 }, { mode: "lines+markers", line: { shape: "hv" } }),
  ];
  const layout = {
    title: title("Latency against error (Pareto front highlighted)"), margin: { t: 40, r: 10 },
    xaxis: { type: "log", title: { text: "median latency (s)" } },
    yaxis: { type: "log", title: { text: "relative L2 error" } }, hovermode: "closest", legend: { orientation: "h" },
  };
  return Plotly.react("pareto-plot", traces, layout, PLOT_OPTIONS);
}

function drawProgress(points) {
  // Only the trials that improved on every earlier one: the step line needs no other point.
  const ordered = [...points].sort((a, b) => a.number - b.number);
  const steps = [];
  ordered.forEach(t => { if (!steps.length || t.median_s < steps[steps.length - 1].median_s) steps.push(t); });
  const last = ordered[ordered.length - 1];
  const line = last && steps[steps.length - 1] !== last ? [...steps, { ...steps[steps.length - 1], number: last.number }] : steps;
  const traces = [
    scatterTrace(line, "best so far", { color: "#2457c5", size: 6 },
      { type: "scatter", mode: "lines+markers", line: { shape: "hv", width: 2 },
        x: line.map(t => t.number), y: line.map(t => t.median_s) }),
  ];
  const layout = {
    title: title("Best latency so far against trial number"), margin: { t: 40, r: 10 },
    xaxis: { title: { text: "trial number" } }, yaxis: { type: "log", title: { text: "median latency (s)" } },
    hovermode: "closest", showlegend: false,
  };
  return Plotly.react("progress-plot", traces, layout, PLOT_OPTIONS);
}

function paramNames() {
  const names = new Set();
  trials.forEach(t => Object.keys(t.config).forEach(k => names.add(k)));
  return [...names].sort();
}

function paramDiv(name, index) {
  const id = "param-" + index;
  let div = document.getElementById(id);
  if (!div) {
    div = document.createElement("div");
    div.className = "plot";
    div.id = id;
    document.getElementById("param-plots").appendChild(div);
  }
  return div;
}

function drawParams(points) {
  return Promise.all(paramNames().map((name, index) => {
    // A box per choice: its quartiles read at a glance, and it draws fast for 10,000 trials.
    const trace = { type: "box", name, boxpoints: false, marker: { color: "#2457c5" },
      x: points.map(t => String(t.config[name])), y: points.map(t => t.median_s), hoverinfo: "y" };
    const layout = {
      title: title(escapeText(name)), margin: { t: 36, r: 10, b: 40 }, showlegend: false,
      xaxis: { type: "category", categoryorder: "category ascending" }, yaxis: { type: "log", title: { text: "latency (s)" } },
    };
    return Plotly.react(paramDiv(name, index), [trace], layout, PLOT_OPTIONS);
  }));
}

function bindClicks() {
  const divs = [document.getElementById("pareto-plot"), document.getElementById("progress-plot"),
    ...document.querySelectorAll("#param-plots .plot")];
  divs.forEach(div => {
    if (div.dataset.bound) return;
    div.dataset.bound = "1";
    div.on("plotly_click", event => {
      const number = event.points[0].customdata;
      if (number !== undefined) window.location.href = `${cfg.trialBase}/${number}`;
    });
  });
}

async function drawPlots() {
  const points = measured();
  await Promise.all([drawPareto(points), drawProgress(points), drawParams(points)]);
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

async function loadTable() {
  const params = new URLSearchParams(table.filters);
  params.set("sort", table.sort);
  params.set("descending", String(table.descending));
  params.set("offset", table.offset);
  params.set("limit", table.limit);
  let page;
  try {
    page = await getJSON(trialsURL(params));
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
  document.getElementById("live-status").textContent =
    `${study.n_trials} trials · updated ${new Date().toLocaleTimeString()} · refreshing every ${cfg.pollSeconds} s`;
}

async function poll() {
  try {
    const study = await getJSON(cfg.api);
    const added = study.n_trials - knownTotal;
    if (added !== 0) {
      if (added < 0 || added > cfg.page) await loadAllTrials(); else await loadNewTrials(added);
      // The front moves with new trials: refetch it with them, then redraw.
      const front = await getJSON(`${cfg.api}/front`);
      const onFront = new Set(front.map(t => t.number));
      trials.forEach(t => { t.on_front = onFront.has(t.number); });
      knownTotal = study.n_trials;
      await Promise.all([drawPlots(), loadTable()]);
    }
    showSummary(study);
  } catch (error) {
    document.getElementById("live-status").textContent = `Refresh failed (${error.message}); retrying`;
  }
  setTimeout(poll, cfg.pollSeconds * 1000);
}

async function main() {
  bindTable();
  await Promise.all([loadAllTrials(), loadTable()]);
  const loaded = performance.now();
  await drawPlots();
  // Read by the browser tests and bench/api_load.py: milliseconds since navigation started.
  window.tunerTimings = { loaded, drawn: performance.now() };
  window.tunerReady = true;
  setTimeout(poll, 0);
}

main();
