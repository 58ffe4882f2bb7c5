// cerflow's live web view. Hand-written, no dependencies, no build step: embedded in
// the binary with include_str!. It renders the documents of /api/v1/stream (server-sent
// events, one per evaluation); it computes nothing the deriver has not published, it
// only filters, formats and draws.
"use strict";

(function () {
  const main = document.getElementById("main");
  const conn = document.getElementById("conn");
  const meta = document.getElementById("meta");
  const params = new URLSearchParams(location.search);
  const onJourney = /\/journey$/.test(location.pathname);
  const journeyName = params.get("name") || "";
  const filters = {
    q: params.get("q") || "",
    cohort: params.get("cohort") || "",
    window: params.get("window") || "",
  };
  let doc = null;
  let lastEventAt = 0;
  let streamOpen = false;

  // ------------------------------------------------------------------ formatting

  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ESC[c]);
  }
  function pct(v, digits) {
    if (v === null || v === undefined) return "–";
    return (v * 100).toFixed(digits === undefined ? 2 : digits) + "%";
  }
  function num(v, digits) {
    if (v === null || v === undefined) return "–";
    return Number(v).toFixed(digits === undefined ? 2 : digits);
  }
  function money(v, currency) {
    if (v === null || v === undefined) return "–";
    return Number(v).toFixed(2) + (currency ? " " + esc(currency) : "");
  }
  function cohortText(c) {
    return Object.keys(c || {})
      .map((k) => k + "=" + c[k])
      .join(", ");
  }
  const STATUS = { failing: "Failing", warning: "Warning", exhausted: "Budget spent", ok: "OK" };
  function badge(s) {
    return '<span class="badge s-' + esc(s) + '">' + esc(STATUS[s] || s) + "</span>";
  }
  // The SLIs of a row: whatever the journey has objectives for, so a new kind of SLI
  // shows without a change here.
  function slis(row) {
    return Object.keys(row.objectives || {});
  }
  function windowOf(row, w) {
    return (row.windows || []).find((x) => x.window === w) || null;
  }
  function budgetCell(row) {
    const parts = slis(row)
      .filter((s) => row.budget_remaining && s in row.budget_remaining)
      .map((s) => {
        const v = row.budget_remaining[s];
        return '<span class="' + (v <= 0 ? "bad" : "") + '">' + esc(s) + " " + pct(v, 1) + "</span>";
      });
    return parts.join("<br>") || "–";
  }
  function sliCell(w, row) {
    if (!w) return "–";
    const parts = slis(row)
      .filter((s) => w[s] !== null && w[s] !== undefined)
      .map((s) => esc(s) + " " + pct(w[s]));
    return parts.join("<br>") || '<span class="muted">no requests</span>';
  }
  // Burn rates over the shortest SLO window that has any.
  function burnCell(row) {
    const windows = (doc && doc.burn_windows) || Object.keys(row.burn_rates || {});
    for (const bw of windows) {
      const m = (row.burn_rates || {})[bw];
      if (m && Object.keys(m).length) {
        return (
          Object.keys(m)
            .map((s) => '<span class="' + (m[s] >= 1 ? "bad" : "") + '">' + esc(s) + " ×" + num(m[s], 1) + "</span>")
            .join("<br>") +
          '<br><span class="muted">over ' +
          esc(bw) +
          "</span>"
        );
      }
    }
    return "–";
  }
  function alertsCell(row) {
    const a = row.alerts || [];
    if (!a.length) return '<span class="muted">none</span>';
    return a.map((x) => esc(x.severity) + ": " + esc(x.sli)).join("<br>");
  }
  function usersCell(w) {
    if (!w || w.users === null || w.users === undefined || !w.users) return "–";
    return esc(w.users_affected) + " of " + esc(w.users) + " (" + pct(w.users_affected_ratio, 1) + ")";
  }
  function journeyLink(name) {
    return (
      '<a data-key="j:' + esc(name) + '" href="journey?name=' + encodeURIComponent(name) + '">' + esc(name) + "</a>"
    );
  }

  // ------------------------------------------------------------------ charts (SVG)

  const COLOURS = ["#0b57d0", "#b3261e", "#146c2e", "#7a3e9d", "#8a5300", "#00696e", "#444"];
  const DASHES = ["", "6 3", "2 3", "8 3 2 3", "1 2", "10 4", "4 4"];

  // series: [{name, points: [[t_ms, v|null]...]}]; opts: {label, yMin, yMax, limit, fmt}
  function chart(series, opts) {
    const W = 440, H = 170, L = 46, R = 10, T = 10, B = 24;
    const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null && p[1] !== undefined));
    if (!all.length) {
      return '<p class="muted">' + esc(opts.label) + ": no data yet.</p>";
    }
    const ts = all.map((p) => p[0]);
    let t0 = Math.min(...ts), t1 = Math.max(...ts);
    if (t1 === t0) { t0 -= 1000; t1 += 1000; }
    const vs = all.map((p) => p[1]);
    let y0 = opts.yMin !== undefined ? Math.min(opts.yMin, ...vs) : Math.min(...vs);
    let y1 = opts.yMax !== undefined ? Math.max(opts.yMax, ...vs) : Math.max(...vs);
    if (opts.limit !== undefined) { y0 = Math.min(y0, opts.limit); y1 = Math.max(y1, opts.limit); }
    if (y1 === y0) { y1 = y0 + 1; }
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
    const fmt = opts.fmt || ((v) => num(v, 2));
    let out = '<figure><svg class="chart" role="img" width="' + W + '" height="' + H + '" viewBox="0 0 ' + W + " " + H + '"';
    const last = series
      .map((s) => {
        const p = s.points.filter((q) => q[1] !== null && q[1] !== undefined);
        return p.length ? s.name + " " + fmt(p[p.length - 1][1]) : null;
      })
      .filter(Boolean)
      .join(", ");
    out += ' aria-label="' + esc(opts.label + ". Latest: " + last) + '">';
    for (const v of [y0, (y0 + y1) / 2, y1]) {
      out += '<line class="grid" x1="' + L + '" x2="' + (W - R) + '" y1="' + y(v) + '" y2="' + y(v) + '"/>';
      out += '<text x="' + (L - 4) + '" y="' + (y(v) + 4) + '" text-anchor="end">' + esc(fmt(v)) + "</text>";
    }
    if (opts.limit !== undefined) {
      out += '<line class="limit" x1="' + L + '" x2="' + (W - R) + '" y1="' + y(opts.limit) + '" y2="' + y(opts.limit) + '"/>';
    }
    const tl = (t) => new Date(t).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
    out += '<text x="' + L + '" y="' + (H - 6) + '">' + esc(tl(t0)) + "</text>";
    out += '<text x="' + (W - R) + '" y="' + (H - 6) + '" text-anchor="end">' + esc(tl(t1)) + "</text>";
    series.forEach((s, i) => {
      let d = "", pen = false;
      for (const p of s.points) {
        if (p[1] === null || p[1] === undefined) { pen = false; continue; }
        d += (pen ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1);
        pen = true;
      }
      const one = s.points.filter((p) => p[1] !== null && p[1] !== undefined);
      if (one.length === 1) {
        out += '<circle cx="' + x(one[0][0]) + '" cy="' + y(one[0][1]) + '" r="3" fill="' + COLOURS[i % 7] + '"/>';
      }
      out += '<path d="' + d + '" fill="none" stroke="' + COLOURS[i % 7] + '" stroke-width="2" stroke-dasharray="' + DASHES[i % 7] + '"/>';
    });
    out += "</svg><figcaption>" + esc(opts.label) + "</figcaption>";
    out += '<ul class="legend">' + series.map((s, i) =>
      '<li><span style="border-color:' + COLOURS[i % 7] + '"></span>' + esc(s.name) + "</li>").join("") + "</ul>";
    // style attributes are not allowed by the page's CSP; the legend uses classes below.
    return out.replace(/ style="border-color:(#[0-9a-f]+)"/g, (_, c) => ' class="c' + COLOURS.indexOf(c) + '"') + "</figure>";
  }

  function spark(points, idx) {
    const W = 120, H = 28;
    const p = points.map((q) => [q.t_ms, q.v[idx]]).filter((q) => q[1] !== null && q[1] !== undefined);
    if (p.length < 1) return "";
    const t0 = p[0][0], t1 = Math.max(p[p.length - 1][0], t0 + 1);
    const x = (t) => 2 + ((t - t0) / (t1 - t0)) * (W - 4);
    const y = (v) => 2 + (1 - Math.max(0, Math.min(1, v))) * (H - 4);
    const d = p.map((q, i) => (i ? "L" : "M") + x(q[0]).toFixed(1) + " " + y(q[1]).toFixed(1)).join("");
    return '<svg class="spark" width="' + W + '" height="' + H + '" aria-hidden="true"><path d="' + d +
      '" fill="none" stroke="#0b57d0" stroke-width="2"/>' + (p.length === 1 ? '<circle cx="' + x(p[0][0]) + '" cy="' + y(p[0][1]) + '" r="2.5" fill="#0b57d0"/>' : "") + "</svg>";
  }

  // ------------------------------------------------------------------ pages

  function overallTable(d) {
    let h = '<table id="overall"><caption>Overall score per window</caption><thead><tr>' +
      '<th scope="col">Window</th><th scope="col" class="num">Score</th><th scope="col">Last hour (' +
      esc(d.trend_slot_seconds) + " s slots, lowest shown)</th></tr></thead><tbody>";
    d.overall.forEach((o, i) => {
      h += '<tr><th scope="row">' + esc(o.window) + '</th><td class="num">' + pct(o.score) + "</td><td>" +
        spark(d.trend, i) + "</td></tr>";
    });
    return h + "</tbody></table>";
  }

  function filterControls(d) {
    const options = new Set();
    for (const c of d.cohorts) {
      for (const k of Object.keys(c.cohort)) options.add(k + "=" + c.cohort[k]);
    }
    const opts = [...options].sort();
    let h = '<form class="filters" role="search" id="filters">';
    h += '<div><label for="f-q">Journey name contains</label><input id="f-q" type="search" autocomplete="off" value="' + esc(filters.q) + '"></div>';
    h += '<div><label for="f-cohort">Cohort value</label><select id="f-cohort"><option value="">all (journeys as a whole)</option>';
    for (const o of opts) {
      h += '<option value="' + esc(o) + '"' + (o === filters.cohort ? " selected" : "") + ">" + esc(o) + "</option>";
    }
    h += "</select></div>";
    h += '<div><label for="f-window">Window for SLIs, users, value</label><select id="f-window">';
    for (const w of d.windows) {
      h += '<option value="' + esc(w) + '"' + (w === currentWindow(d) ? " selected" : "") + ">" + esc(w) + "</option>";
    }
    return h + "</select></div></form>";
  }

  function currentWindow(d) {
    return d.windows.includes(filters.window) ? filters.window : d.windows[0];
  }

  function rowsTable(d, rows, withCohort) {
    const w = currentWindow(d);
    const anyUsers = rows.some((r) => (r.windows || []).some((x) => x.users));
    const anyValue = rows.some((r) => (r.windows || []).some((x) => x.value_at_risk !== undefined && x.value_at_risk !== null));
    let h = '<table id="journeys"><caption>' + (withCohort ? "Cohorts" : "Journeys") +
      ", worst error budget first (" + rows.length + ")</caption><thead><tr>";
    h += '<th scope="col">Journey</th>' + (withCohort ? '<th scope="col">Cohort</th>' : "");
    h += '<th scope="col">Status</th><th scope="col">Error budget left</th>';
    for (const x of d.windows) h += '<th scope="col" class="num">Score ' + esc(x) + "</th>";
    h += '<th scope="col">SLIs (' + esc(w) + ')</th><th scope="col">Burn rate</th><th scope="col">Active alerts</th>';
    if (anyUsers) h += '<th scope="col">Users affected (' + esc(w) + ")</th>";
    if (anyValue) h += '<th scope="col" class="num">Value at risk (' + esc(w) + ")</th>";
    const open = d.open_incidents || [];
    if (open.length) h += '<th scope="col">Open incident</th>';
    h += "</tr></thead><tbody>";
    for (const r of rows) {
      const cw = windowOf(r, w);
      h += '<tr data-status="' + esc(r.status) + '" data-journey="' + esc(r.journey) + '">';
      h += '<th scope="row">' + journeyLink(r.journey) + "</th>";
      if (withCohort) h += "<td>" + esc(cohortText(r.cohort)) + "</td>";
      h += "<td>" + badge(r.status) + "</td><td>" + budgetCell(r) + "</td>";
      for (const x of d.windows) {
        const ww = windowOf(r, x);
        h += '<td class="num">' + pct(ww && ww.score) + "</td>";
      }
      h += "<td>" + sliCell(cw, r) + "</td><td>" + burnCell(r) + "</td><td>" + alertsCell(r) + "</td>";
      if (anyUsers) h += "<td>" + usersCell(cw) + "</td>";
      if (anyValue) h += '<td class="num">' + money(cw && cw.value_at_risk, r.currency) + "</td>";
      if (open.length) {
        const i = open.find((x) => x.journey === r.journey);
        h += '<td class="incident">' + (i ? '<span class="badge s-failing">Open</span> since ' + esc(when(i.start_unix_nano)) +
          " (" + secs(i.duration_seconds) + ")" : '<span class="muted">none</span>') + "</td>";
      }
      h += "</tr>";
    }
    if (!rows.length) {
      h += '<tr><td colspan="' + (5 + d.windows.length + (withCohort ? 1 : 0)) + '">No journey matches.</td></tr>';
    }
    return h + "</tbody></table>";
  }

  function renderOverview(d) {
    const q = filters.q.toLowerCase();
    const byName = (r) => !q || r.journey.toLowerCase().includes(q);
    let rows, withCohort = false;
    if (filters.cohort) {
      const i = filters.cohort.indexOf("=");
      const k = filters.cohort.slice(0, i), v = filters.cohort.slice(i + 1);
      rows = d.cohorts.filter((r) => r.cohort[k] === v && byName(r));
      withCohort = true;
    } else {
      rows = d.journeys.filter(byName);
    }
    let h = "<h1>Customer experience</h1>" + overallTable(d);
    h += "<h2>Journeys</h2>";
    if (!document.getElementById("filters")) {
      main.innerHTML = h + filterControls(d) + '<div id="rows"></div>';
      wireFilters();
    } else {
      document.getElementById("head").innerHTML = h;
      refreshCohortOptions(d);
    }
    document.getElementById("rows").innerHTML =
      rowsTable(d, rows, withCohort) +
      (d.cohorts_omitted ? '<p class="muted">' + esc(d.cohorts_omitted) + " more cohorts are not listed (the worst 1000 are).</p>" : "");
  }

  function refreshCohortOptions(d) {
    const sel = document.getElementById("f-cohort");
    const have = new Set([...sel.options].map((o) => o.value));
    for (const c of d.cohorts) {
      for (const k of Object.keys(c.cohort)) {
        const o = k + "=" + c.cohort[k];
        if (!have.has(o)) {
          have.add(o);
          sel.add(new Option(o, o));
        }
      }
    }
  }

  function wireFilters() {
    // The head (overall table) is re-rendered on each event; the form is kept, so
    // typing and focus are never interrupted by an update.
    const form = document.getElementById("filters");
    const head = document.createElement("div");
    head.id = "head";
    while (main.firstChild !== form) head.appendChild(main.firstChild);
    main.insertBefore(head, form);
    form.addEventListener("submit", (e) => e.preventDefault());
    const update = () => {
      filters.q = document.getElementById("f-q").value;
      filters.cohort = document.getElementById("f-cohort").value;
      filters.window = document.getElementById("f-window").value;
      const p = new URLSearchParams();
      for (const k of ["q", "cohort", "window"]) if (filters[k]) p.set(k, filters[k]);
      history.replaceState(null, "", location.pathname + (p.toString() ? "?" + p : ""));
      if (doc) render(doc);
    };
    for (const id of ["f-q", "f-cohort", "f-window"]) {
      document.getElementById(id).addEventListener("input", update);
      document.getElementById(id).addEventListener("change", update);
    }
  }

  function windowsTable(d, r) {
    const keys = slis(r);
    const anyUsers = r.windows.some((x) => x.users);
    const anyValue = r.windows.some((x) => x.value_at_risk !== undefined && x.value_at_risk !== null);
    let h = '<table id="windows"><caption>Every window</caption><thead><tr><th scope="col">Window</th>' +
      '<th scope="col" class="num">Requests</th><th scope="col" class="num">Errors</th><th scope="col" class="num">Slow</th>' +
      '<th scope="col" class="num">Incorrect</th><th scope="col" class="num">Score</th>';
    for (const s of keys) h += '<th scope="col" class="num">' + esc(s) + "</th>";
    for (const s of keys) h += '<th scope="col" class="num">Burn ' + esc(s) + "</th>";
    if (anyUsers) h += '<th scope="col">Users affected</th>';
    if (anyValue) h += '<th scope="col" class="num">Value at risk</th>';
    h += "</tr></thead><tbody>";
    for (const w of r.windows) {
      h += '<tr><th scope="row">' + esc(w.window) + '</th><td class="num">' + esc(w.requests) + '</td><td class="num">' +
        esc(w.errors) + '</td><td class="num">' + esc(w.slow) + '</td><td class="num">' + esc(w.incorrect) +
        '</td><td class="num">' + pct(w.score) + "</td>";
      for (const s of keys) h += '<td class="num">' + pct(w[s]) + "</td>";
      for (const s of keys) {
        const b = (w.burn_rate || {})[s];
        h += '<td class="num' + (b >= 1 ? " bad" : "") + '">' + (b === undefined ? "–" : "×" + num(b, 2)) + "</td>";
      }
      if (anyUsers) h += "<td>" + usersCell(w) + "</td>";
      if (anyValue) h += '<td class="num">' + money(w.value_at_risk, r.currency) + "</td>";
      h += "</tr>";
    }
    return h + "</tbody></table>";
  }

  function budgetTable(d, r) {
    let h = '<table id="budget"><caption>Error budget over the SLO period</caption><thead><tr><th scope="col">SLI</th>' +
      '<th scope="col" class="num">Objective</th><th scope="col" class="num">Budget left</th>';
    for (const bw of d.burn_windows) h += '<th scope="col" class="num">Burn ' + esc(bw) + "</th>";
    h += "</tr></thead><tbody>";
    for (const s of slis(r)) {
      const b = (r.budget_remaining || {})[s];
      h += '<tr><th scope="row">' + esc(s) + '</th><td class="num">' + pct(r.objectives[s], 3) + '</td><td class="num' +
        (b <= 0 ? " bad" : "") + '">' + pct(b, 1) + "</td>";
      for (const bw of d.burn_windows) {
        const v = ((r.burn_rates || {})[bw] || {})[s];
        h += '<td class="num' + (v >= 1 ? " bad" : "") + '">' + (v === undefined ? "–" : "×" + num(v, 2)) + "</td>";
      }
      h += "</tr>";
    }
    return h + "</tbody></table>";
  }

  function cohortTable(d, rows) {
    let h = '<table id="cohorts"><caption>Cohorts, worst error budget first (' + rows.length + ")</caption><thead><tr>" +
      '<th scope="col">Cohort</th><th scope="col">Status</th><th scope="col">Error budget left</th>';
    for (const x of d.windows) h += '<th scope="col" class="num">Score ' + esc(x) + "</th>";
    h += '<th scope="col">Burn rate</th><th scope="col">Active alerts</th><th scope="col">Users affected (' + esc(d.windows[0]) + ")</th></tr></thead><tbody>";
    for (const r of rows) {
      h += '<tr data-status="' + esc(r.status) + '"><th scope="row">' + esc(cohortText(r.cohort)) + "</th><td>" + badge(r.status) +
        "</td><td>" + budgetCell(r) + "</td>";
      for (const x of d.windows) {
        const w = windowOf(r, x);
        h += '<td class="num">' + pct(w && w.score) + "</td>";
      }
      h += "<td>" + burnCell(r) + "</td><td>" + alertsCell(r) + "</td><td>" + usersCell(windowOf(r, d.windows[0])) + "</td></tr>";
    }
    if (!rows.length) h += '<tr><td colspan="' + (6 + d.windows.length) + '">This journey has no cohorts.</td></tr>';
    return h + "</tbody></table>";
  }

  function when(unixNano) {
    if (unixNano === null || unixNano === undefined) return "–";
    return new Date(unixNano / 1e6).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  function secs(v) {
    if (v === null || v === undefined) return "–";
    return v < 60 ? num(v, 1) + " s" : v < 3600 ? num(v / 60, 1) + " min" : num(v / 3600, 1) + " h";
  }
  function ms(v) {
    return v === null || v === undefined ? "–" : num(v * 1000, 0) + " ms";
  }

  // What the journey's failed requests are blamed on, per window: a dependency whose
  // call under them failed, or the journey itself ("self"), largest share first.
  function blameTable(d, r) {
    const names = [];
    for (const w of r.windows) for (const b of w.blame || []) if (!names.includes(b.dependency)) names.push(b.dependency);
    if (!names.length) {
      return '<p id="no-blame" class="muted">No failed request blamed on anything in any window (blame needs whole traces).</p>';
    }
    const first = r.windows[0];
    const failures = (w, n) => ((w && w.blame) || []).find((b) => b.dependency === n);
    names.sort((a, b) => ((failures(first, b) || {}).failures || 0) - ((failures(first, a) || {}).failures || 0));
    let h = '<table id="blame"><caption>Failed requests blamed on, per window (largest share of ' + esc(first.window) +
      ' first)</caption><thead><tr><th scope="col">Blamed on</th>';
    for (const w of r.windows) h += '<th scope="col" class="num">Failures ' + esc(w.window) + '</th><th scope="col" class="num">Share ' + esc(w.window) + "</th>";
    h += "</tr></thead><tbody>";
    for (const n of names) {
      h += '<tr data-dependency="' + esc(n) + '"><th scope="row">' + esc(n === "self" ? "self (the journey itself)" : n) + "</th>";
      for (const w of r.windows) {
        const b = failures(w, n);
        h += '<td class="num">' + (b ? esc(b.failures) : "0") + '</td><td class="num">' + (b ? pct(b.share, 1) : "–") + "</td>";
      }
      h += "</tr>";
    }
    return h + "</tbody></table>";
  }

  function dependencyTable(d, r) {
    const deps = d.dependencies || [];
    if (!deps.length) return '<p id="no-dependencies" class="muted">No dependency seen in this journey\'s traces.</p>';
    const ws = d.windows;
    let h = '<table id="dependencies"><caption>Dependencies called under the journey, most failed calls in ' + esc(ws[0]) +
      ' first</caption><thead><tr><th scope="col">Dependency</th>';
    for (const w of ws) h += '<th scope="col" class="num">Calls ' + esc(w) + '</th><th scope="col" class="num">Failed ' + esc(w) +
      '</th><th scope="col" class="num">Availability ' + esc(w) + "</th>";
    h += '<th scope="col" class="num">p50 ' + esc(ws[0]) + '</th><th scope="col" class="num">p99 ' + esc(ws[0]) + "</th></tr></thead><tbody>";
    for (const dep of deps) {
      h += '<tr data-dependency="' + esc(dep.dependency) + '"><th scope="row">' + esc(dep.overflow ? "other dependencies (over the limit)" : dep.dependency) + "</th>";
      for (const w of ws) {
        const x = (dep.windows || []).find((y) => y.window === w);
        h += '<td class="num">' + (x ? esc(x.calls) : "–") + '</td><td class="num' + (x && x.errors ? " bad" : "") + '">' + (x ? esc(x.errors) : "–") +
          '</td><td class="num">' + pct(x && x.availability) + "</td>";
      }
      const x0 = (dep.windows || [])[0] || { latency_s: [] };
      // latency_s follows the snapshot's quantiles: p50, p90, p95, p99.
      h += '<td class="num">' + ms(x0.latency_s[0]) + '</td><td class="num">' + ms(x0.latency_s[3]) + "</td></tr>";
    }
    return h + "</tbody></table>";
  }

  function incidentTable(d) {
    const list = d.incidents || [];
    if (!list.length) return '<p id="no-incidents" class="muted">No incident of this journey since cerflow started (or in its checkpoint).</p>';
    let h = '<table id="incidents"><caption>Incidents, open first, then the most recent</caption><thead><tr>' +
      '<th scope="col">Started</th><th scope="col">Status</th><th scope="col">Ended</th><th scope="col" class="num">Duration</th>' +
      '<th scope="col" class="num">Time to detect</th><th scope="col" class="num">Peak burn rate</th>' +
      '<th scope="col" class="num">Users affected</th><th scope="col" class="num">Value at risk</th></tr></thead><tbody>';
    const cur = d.journey && d.journey.currency;
    for (const i of list) {
      const open = i.end_unix_nano === null || i.end_unix_nano === undefined;
      h += '<tr data-open="' + open + '"><th scope="row">' + esc(when(i.start_unix_nano)) + "</th><td>" +
        (open ? '<span class="badge s-failing">Open</span>' : '<span class="badge s-ok">Closed</span>') + "</td><td>" +
        (open ? "–" : esc(when(i.end_unix_nano))) + '</td><td class="num">' + secs(i.duration_seconds) + '</td><td class="num">' +
        secs(i.time_to_detect_seconds) + '</td><td class="num">' + (i.peak_burn_rate === null || i.peak_burn_rate === undefined ? "–" : "×" + num(i.peak_burn_rate, 1)) +
        '</td><td class="num">' + (i.users_affected === null || i.users_affected === undefined ? "–" : esc(i.users_affected)) +
        '</td><td class="num">' + money(i.value_at_risk, cur) + "</td></tr>";
    }
    return h + "</tbody></table>";
  }

  // The journey's deployments (a new value of deployments.version_key), published on its
  // row as `deployments`: pending first, then judged ones, newest first.
  const RESULT = { regressed: ["failing", "Regressed"], ok: ["ok", "OK"], pending: ["warning", "Pending"], superseded: ["wait", "Superseded"] };
  function deploymentTable(d, r) {
    const list = r.deployments || [];
    if (!Array.isArray(list) || !list.length) return '<p id="no-deployments" class="muted">No deployments seen for this journey.</p>';
    let h = '<table id="deployments"><caption>Deployments, pending first, then the newest</caption><thead><tr>' +
      '<th scope="col">Version</th><th scope="col">Previous</th><th scope="col">Result</th><th scope="col">Started</th>' +
      '<th scope="col">Judged</th><th scope="col" class="num">Requests (new / previous)</th>' +
      '<th scope="col" class="num">Availability (new / previous)</th><th scope="col" class="num">Score (new / previous)</th>' +
      '<th scope="col" class="num">Score drop</th><th scope="col">Compared with</th></tr></thead><tbody>';
    for (const x of list) {
      const f = x.figures || {}, p = x.previous_figures || {};
      const [cls, text] = RESULT[x.result] || ["wait", String(x.result)];
      h += '<tr data-result="' + esc(x.result) + '"><th scope="row">' + esc(x.version) + "</th><td>" + esc(x.previous_version || "–") +
        '</td><td><span class="badge s-' + cls + '">' + esc(text) + "</span></td><td>" + esc(when(x.start_unix_nano)) + "</td><td>" +
        esc(when(x.end_unix_nano)) + '</td><td class="num">' + esc(f.requests ?? "–") + " / " + esc(p.requests ?? "–") +
        '</td><td class="num">' + pct(f.availability) + " / " + pct(p.availability) + '</td><td class="num">' + pct(f.score) + " / " +
        pct(p.score) + '</td><td class="num' + (x.result === "regressed" ? " bad" : "") + '">' +
        (x.score_drop === null || x.score_drop === undefined ? "–" : pct(x.score_drop)) + "</td><td>" +
        esc(x.baseline === "before" ? "the previous version just before" : x.baseline === "same_span" ? "the previous version meanwhile" : x.baseline || "–") +
        "</td></tr>";
    }
    return h + "</tbody></table>";
  }

  function renderJourney(d) {
    const r = d.journey;
    let h = '<p><a href="./" data-key="back">← All journeys</a></p>';
    if (!r) {
      main.innerHTML = h + "<h1>" + esc(journeyName) + '</h1><p id="missing">cerflow has no journey of this name (yet).</p>';
      return;
    }
    h += "<h1>" + esc(r.journey) + " " + badge(r.status) + "</h1>";
    h += '<p class="muted">Weight ' + esc(r.weight) + ". Active alerts: " + alertsCell(r).replace(/<br>/g, ", ") + "</p>";
    h += windowsTable(d, r);
    h += "<h2>Cohorts</h2>" + cohortTable(d, d.cohorts);
    h += '<h2 id="h-dependencies">Dependencies and blame</h2>' + blameTable(d, r) + dependencyTable(d, r);
    h += '<h2 id="h-incidents">Incidents</h2>' + incidentTable(d);
    h += '<h2 id="h-deployments">Deployments</h2>' + deploymentTable(d, r);
    h += "<h2>Error budget and burn rates</h2>" + budgetTable(d, r);
    h += '<div class="charts">';
    const keys = slis(r);
    h += chart(
      keys.map((s) => ({ name: s, points: d.budget.map((p) => [p.t_ms, p.remaining[s] === undefined ? null : p.remaining[s]]) })),
      { label: "Error budget left over the SLO period (events up to each point)", yMin: 0, yMax: 1, limit: 0, fmt: (v) => pct(v, 0) },
    );
    for (const s of keys) {
      const cols = d.burn_keys.map((k, i) => [k, i]).filter(([k]) => k[1] === s);
      const series = cols.map(([k, i]) => ({ name: k[0], points: d.burn_trend.map((p) => [p.t_ms, p.v[i]]) }));
      h += chart(series, { label: "Burn rate of " + s + " per SLO window, last hour (highest per " + d.trend_slot_seconds + " s)", yMin: 0, limit: 1, fmt: (v) => "×" + num(v, 1) });
    }
    h += chart(
      d.windows.map((w, i) => ({ name: w, points: d.score_trend.map((p) => [p.t_ms, p.v[i]]) })),
      { label: "Score per window, last hour (lowest per " + d.trend_slot_seconds + " s)", yMin: 0, yMax: 1, fmt: (v) => pct(v, 0) },
    );
    h += "</div>";
    main.innerHTML = h;
  }

  function render(d) {
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;
    meta.textContent = "config " + d.version + " · evaluated " + new Date(d.time_unix_ms).toLocaleTimeString();
    document.title = (onJourney ? journeyName + " · " : "") + "cerflow";
    if (onJourney) renderJourney(d);
    else renderOverview(d);
    if (focused) {
      const el = main.querySelector('[data-key="' + CSS.escape(focused) + '"]');
      if (el) el.focus();
    }
    main.dataset.rendered = String(d.time_unix_ms);
  }

  // ------------------------------------------------------------------ live

  function setConn(kind, text) {
    if (conn.dataset.kind === kind && conn.textContent === text) return;
    conn.className = "conn conn-" + kind;
    conn.dataset.kind = kind;
    conn.textContent = text;
  }

  function connect() {
    const url = "api/v1/stream" + (onJourney ? "?journey=" + encodeURIComponent(journeyName) : "");
    const es = new EventSource(url);
    es.addEventListener("open", () => { streamOpen = true; });
    es.addEventListener("snapshot", (e) => {
      lastEventAt = Date.now();
      streamOpen = true;
      try {
        doc = JSON.parse(e.data);
      } catch (err) {
        setConn("down", "cerflow sent data this page cannot read: " + err.message);
        return;
      }
      render(doc);
      setConn("live", "Live");
    });
    es.addEventListener("error", () => {
      // EventSource reconnects by itself; the page says so meanwhile.
      streamOpen = false;
      setConn("down", "cerflow is unreachable; retrying. The figures below are from " +
        (lastEventAt ? new Date(lastEventAt).toLocaleTimeString() : "nowhere yet") + ".");
    });
  }

  // No event for two evaluation intervals plus 2 s while the stream is open: cerflow
  // answers but evaluates no more (the deriver is stuck or the data does not move).
  setInterval(() => {
    if (!doc || !streamOpen) return;
    const limit = 2 * (doc.interval_ms || 1000) + 2000;
    const age = Date.now() - lastEventAt;
    if (age > limit) {
      setConn("stale", "Data is stale: no new evaluation for " + Math.round(age / 1000) + " s.");
    }
  }, 500);

  connect();
})();
