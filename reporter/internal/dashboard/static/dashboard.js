// Alumini dashboard: reads the API with the API key kept in sessionStorage
// (gone when the tab closes), draws headline numbers, a chart, top lists,
// custom events with their goals and properties, and a funnel.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const KEY = "alumini.apiKey";
  const TABLES = [
    ["page", "Top pages"], ["source", "Sources"], ["search_term", "Search terms"],
    ["utm_campaign", "Campaigns"], ["browser", "Browsers"], ["os", "Operating systems"],
    ["device", "Devices"], ["country", "Countries"],
  ];
  // event is the custom event chosen in the events panel, prop the property
  // its values are broken down by, funnel the steps last drawn.
  const state = { filters: [], timer: null, chart: null, event: "", prop: "", funnel: null };
  // GOALS is how many of the top custom events the goals panel shows, each
  // one aggregate request: a refresh stays within the API's rate burst.
  const GOALS = 5;
  const params = new URLSearchParams(location.search);
  // Without ?tz= the API answers in the client's own time zone (the
  // registry's time_zone), which the chart then uses too.
  const tz = params.get("tz");

  async function api(path, q) {
    const url = new URL(path, location.origin);
    for (const [k, v] of q) url.searchParams.append(k, v);
    const res = await fetch(url, { headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY) } });
    const body = await res.json().catch(() => ({ error: "bad response" }));
    if (!res.ok) { const e = new Error(body.error || res.statusText); e.status = res.status; throw e; }
    return body;
  }

  function rangeQuery() {
    const q = tz ? [["tz", tz]] : [];
    const p = $("period").value;
    if (p === "custom" && $("from").value && $("to").value) { q.push(["from", $("from").value], ["to", $("to").value]); }
    else if (p !== "custom") q.push(["period", p]);
    for (const f of state.filters) q.push(["filter", f.dim + ":is:" + f.value]);
    return q;
  }

  const fmt = {
    bounce_rate: (v) => v + "%",
    visit_duration: (v) => { const m = Math.floor(v / 60), s = Math.round(v % 60); return m ? m + "m " + s + "s" : s + "s"; },
    views_per_visit: (v) => String(v),
  };
  const show = (k, v) => (fmt[k] ? fmt[k](v) : Number(v).toLocaleString("en-US"));

  function renderHeadline(agg) {
    for (const el of document.querySelectorAll("[data-metric]")) {
      const k = el.dataset.metric, v = agg.results[k], prev = agg.comparison ? agg.comparison[k] : undefined;
      el.textContent = show(k, v);
      el.dataset.value = v;
      const ch = $(k + "-change");
      if (prev === undefined) { ch.textContent = ""; continue; }
      if (prev === 0) { ch.textContent = v ? "new vs previous period" : "no change"; continue; }
      const pct = Math.round(((v - prev) / prev) * 100);
      ch.textContent = (pct > 0 ? "▲ +" : pct < 0 ? "▼ " : "") + pct + "% vs previous period";
    }
  }

  // A large site's reports count a sample of its visitors (sample_rate
  // below 1) and scale up: say so, as the numbers are estimates then.
  function renderSample(rate) {
    const el = $("sampled");
    el.hidden = !(rate < 1);
    el.textContent = el.hidden ? "" : "Estimated from a sample of 1 in " + Math.round(1 / rate) + " visitors.";
  }

  function renderChart(ts) {
    const pts = ts.results.points;
    const xs = pts.map((p) => Date.parse(p.time) / 1000);
    const data = [xs, pts.map((p) => p.visitors), pts.map((p) => p.pageviews)];
    const el = $("chart");
    const width = Math.max(300, el.clientWidth || 800);
    if (state.chart) state.chart.destroy();
    state.chart = new uPlot({
      width, height: 260, tzDate: (t) => uPlot.tzDate(new Date(t * 1e3), ts.tz || "UTC"),
      series: [{}, { label: "Visitors", stroke: "#0b5cad", width: 2 }, { label: "Page views", stroke: "#b35900", width: 2 }],
      axes: [{}, {}],
    }, data, el);
    el.dataset.points = String(pts.length);
  }

  function renderTable(dim, title, rows) {
    const t = document.createElement("table");
    t.id = "top-" + dim;
    const cap = t.createCaption(); cap.textContent = title;
    const head = t.createTHead().insertRow();
    for (const [h, cls] of [[title.replace(/^Top (.)/, (_, c) => c.toUpperCase()), ""], ["Visitors", "num"], ["Page views", "num"]]) {
      const th = document.createElement("th"); th.scope = "col"; th.textContent = h; if (cls) th.className = cls; head.appendChild(th);
    }
    const body = t.createTBody();
    if (!rows.length) { const c = body.insertRow().insertCell(); c.colSpan = 3; c.textContent = "No data"; }
    for (const r of rows) {
      const tr = body.insertRow();
      const b = document.createElement("button");
      b.type = "button"; b.textContent = r.value === "" ? "(none)" : r.value;
      b.title = "Filter by this " + dim;
      b.addEventListener("click", () => { state.filters.push({ dim, value: r.value }); refresh(); });
      tr.insertCell().appendChild(b);
      const v = tr.insertCell(); v.className = "num"; v.textContent = r.visitors.toLocaleString("en-US");
      const p = tr.insertCell(); p.className = "num"; p.textContent = r.pageviews.toLocaleString("en-US");
    }
    return t;
  }

  function renderFilters() {
    const box = $("filters"); box.textContent = "";
    for (const [i, f] of state.filters.entries()) {
      const b = document.createElement("button"); b.type = "button";
      b.textContent = f.dim + " is " + (f.value || "(none)") + " ✕";
      b.setAttribute("aria-label", "Remove filter " + f.dim + " is " + f.value);
      b.addEventListener("click", () => { state.filters.splice(i, 1); refresh(); });
      box.appendChild(b);
    }
  }

  async function refresh() {
    $("error").textContent = "";
    renderFilters();
    const q = rangeQuery();
    try {
      const [agg, ts, rt, events, ...tables] = await Promise.all([
        api("/api/v1/stats/aggregate", q.concat([["compare", "previous_period"]])),
        api("/api/v1/stats/timeseries", q),
        api("/api/v1/stats/realtime", []),
        api("/api/v1/stats/breakdown", q.concat([["dimension", "event_name"], ["limit", "10"]])),
        ...TABLES.map(([d]) => api("/api/v1/stats/breakdown", q.concat([["dimension", d], ["limit", "10"]]))),
      ]);
      $("client").textContent = "Site: " + agg.client_id;
      renderHeadline(agg);
      renderSample(agg.sample_rate);
      renderChart(ts);
      $("realtime").textContent = rt.results.current_visitors + " current visitors";
      const box = $("tables"); box.textContent = "";
      TABLES.forEach(([d, title], i) => box.appendChild(renderTable(d, title, tables[i].results.rows)));
      renderEvents(events.results.rows);
      await Promise.all([renderGoals(q, events.results.rows), renderProps(), renderFunnel()]);
      document.body.dataset.loaded = String(Date.now());
    } catch (e) {
      if (e.status === 401) { logout(e.message); return; }
      $("error").textContent = e.message;
    }
  }

  // rowsInto replaces a table's body with rows of cells; a cell is text, or
  // [text, onclick] for a button that filters.
  function rowsInto(table, rows, empty) {
    const body = table.tBodies[0]; body.textContent = "";
    if (!rows.length) { const c = body.insertRow().insertCell(); c.colSpan = table.tHead.rows[0].cells.length; c.textContent = empty; }
    for (const cells of rows) {
      const tr = body.insertRow();
      cells.forEach((cell, i) => {
        const td = tr.insertCell();
        if (i > 0) td.className = "num";
        if (!Array.isArray(cell)) { td.textContent = cell; return; }
        const b = document.createElement("button"); b.type = "button";
        b.textContent = cell[0]; b.title = cell[2]; b.addEventListener("click", cell[1]);
        td.appendChild(b);
      });
    }
    return body;
  }
  const num = (v) => Number(v).toLocaleString("en-US");

  // chooseEvent filters the report to one custom event and makes it the
  // event whose properties the properties panel breaks down.
  function chooseEvent(name) {
    state.event = name;
    if (!state.filters.some((f) => f.dim === "event_name" && f.value === name)) state.filters.push({ dim: "event_name", value: name });
    refresh();
  }

  function renderEvents(rows) {
    const body = rowsInto($("top-events"), rows.map((r) => [[r.value, () => chooseEvent(r.value), "Filter by this event"], num(r.visitors), num(r.events)]), "No custom events");
    [...body.rows].forEach((tr, i) => tr.classList.toggle("chosen", rows[i] !== undefined && rows[i].value === state.event));
  }

  // A goal is a custom event: its conversions are the visitors who sent
  // it, its rate their share of all visitors (the API's goal=).
  async function renderGoals(q, events) {
    const names = events.slice(0, GOALS).map((r) => r.value);
    const aggs = await Promise.all(names.map((n) => api("/api/v1/stats/aggregate", q.concat([["goal", n]]))));
    rowsInto($("goals"), names.map((n, i) => [[n, () => chooseEvent(n), "Filter by this goal"],
      num(aggs[i].results.conversions), aggs[i].results.conversion_rate + "%"]), "No goals: send custom events");
  }

  async function renderProps() {
    $("chosen-event").textContent = state.event || "an event";
    $("prop-hint").hidden = state.event !== "";
    if (!state.event || !state.prop) { rowsInto($("prop-breakdown"), [], state.event ? "Name a property" : "No event chosen"); return; }
    const q = rangeQuery();
    if (!state.filters.some((f) => f.dim === "event_name" && f.value === state.event)) q.push(["filter", "event_name:is:" + state.event]);
    const dim = "prop:" + state.prop;
    const res = await api("/api/v1/stats/breakdown", q.concat([["dimension", dim], ["limit", "10"]]));
    rowsInto($("prop-breakdown"), res.results.rows.map((r) => [[r.value === "" ? "(none)" : r.value,
      () => { state.filters.push({ dim, value: r.value }); refresh(); }, "Filter by this value"], num(r.visitors), num(r.events)]),
    "No " + state.event + " event has " + state.prop);
  }

  async function renderFunnel() {
    const box = $("funnel"); box.textContent = "";
    if (!state.funnel) return;
    // Event and property filters keep only the rows of one event, which
    // would leave a funnel's page steps empty; its steps name the events.
    const q = rangeQuery().filter(([k, v]) => !(k === "filter" && (v.startsWith("event_name:") || v.startsWith("prop:"))))
      .concat(state.funnel.steps.map((st) => ["step", st]), [["window", state.funnel.window]]);
    const res = await api("/api/v1/stats/funnel", q);
    res.results.steps.forEach((st, i) => {
      const li = document.createElement("li");
      li.dataset.visitors = st.visitors; li.dataset.rate = st.conversion_rate;
      const name = document.createElement("span"); name.className = "step";
      name.textContent = (i + 1) + ". " + st.kind + ": " + st.value; name.title = name.textContent;
      const track = document.createElement("div"); track.className = "track";
      const bar = document.createElement("div"); bar.className = "bar";
      bar.style.width = Math.min(100, st.conversion_rate) + "%";
      track.appendChild(bar);
      const figs = document.createElement("span"); figs.className = "figures";
      figs.textContent = num(st.visitors) + " visitors · " + st.conversion_rate + "%" +
        (i > 0 ? " · −" + num(st.drop_off) + " (" + st.drop_off_rate + "%)" : "");
      li.append(name, track, figs);
      box.appendChild(li);
    });
  }

  // onSubmit runs a panel's form without reloading the page, showing the
  // API's error (a bad funnel step) where the report shows errors.
  function onSubmit(form, fn) {
    $(form).addEventListener("submit", async (ev) => {
      ev.preventDefault(); $("error").textContent = "";
      try { await fn(); document.body.dataset.loaded = String(Date.now()); } catch (e) { $("error").textContent = e.message; }
    });
  }
  onSubmit("prop-form", () => { state.prop = $("prop-key").value.trim(); return renderProps(); });
  onSubmit("funnel-form", () => {
    const steps = $("funnel-steps").value.split(",").map((x) => x.trim()).filter(Boolean);
    state.funnel = { steps, window: $("funnel-window").value };
    return renderFunnel();
  });

  function schedule() {
    clearInterval(state.timer);
    if ($("autorefresh").checked) state.timer = setInterval(refresh, 60000);
  }

  function showReport() {
    $("login").hidden = true; $("report").hidden = false; $("logout").hidden = false;
    refresh(); schedule();
  }
  function logout(msg) {
    sessionStorage.removeItem(KEY); clearInterval(state.timer);
    $("login").hidden = false; $("report").hidden = true; $("logout").hidden = true;
    $("login-error").textContent = msg || ""; $("client").textContent = "";
  }

  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $("apikey").value.trim()); $("apikey").value = "";
    showReport();
  });
  $("logout").addEventListener("click", () => logout(""));
  $("period").addEventListener("change", () => { $("custom-range").hidden = $("period").value !== "custom"; refresh(); });
  $("from").addEventListener("change", refresh);
  $("to").addEventListener("change", refresh);
  $("autorefresh").addEventListener("change", schedule);
  if (params.get("period")) $("period").value = params.get("period");
  if (params.get("from") && params.get("to")) {
    $("period").value = "custom"; $("from").value = params.get("from"); $("to").value = params.get("to");
    $("custom-range").hidden = false;
  }
  if (sessionStorage.getItem(KEY)) showReport();
})();
