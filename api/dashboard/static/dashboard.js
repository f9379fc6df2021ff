/* PLENA dashboard pages: runs list, run page, source view, timeline, compare, new run, estimate.
 * Reads the service's JSON (the public /v1 API and /dashboard/api); charts of one profile are
 * drawn by PlenaView (profile_view.js, shared with the offline report). */
(function () {
  "use strict";
  const V = window.PlenaView;
  const {el, fmt, pct, bytes, SEP} = V;
  const page = document.body.dataset.page;
  const runId = document.body.dataset.runId;

  async function getJSON(url, options) {
    const resp = await fetch(url, options);
    let body = null;
    const text = await resp.text();
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = {detail: text}; }
    if (!resp.ok) {
      const err = new Error(typeof body?.detail === "string" ? body.detail : `HTTP ${resp.status}`);
      err.status = resp.status;
      err.body = body;
      throw err;
    }
    return body;
  }

  function showError(root, message) {
    root.replaceChildren(el("div", {class: "error-box", id: "page-error", text: message}));
  }

  function rendered() {
    if (document.body.dataset.rendered !== "1") performance.mark("plena-rendered");   // bench/bench_dashboard.py
    document.body.dataset.rendered = "1";
  }

  function settingsText(s) {
    if (!s) return "";
    if (s.problem) return "settings unreadable";
    const parts = ["MLEN", "VLEN", "BLEN"].filter((k) => s[k] !== null && s[k] !== undefined).map((k) => `${k} ${s[k]}`);
    if (s.hbm_model) parts.push(s.hbm_model);
    return parts.join(" · ") + (s.custom ? " (custom)" : "");
  }

  function localTime(iso) {
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString("en-GB", {hour12: false});
  }

  // ---------------------------------------------------------------------------------- runs list

  function runsPage() {
    const params = new URLSearchParams(location.search);
    const state = {
      program: params.get("program") || "", tag: params.get("tag") || "", status: params.get("status") || "",
      sort: params.get("sort") || "created_at", order: params.get("order") || "desc",
      offset: parseInt(params.get("offset") || "0", 10) || 0, limit: 50,
    };
    const form = document.getElementById("runs-filter");
    form.program.value = state.program; form.tag.value = state.tag; form.status.value = state.status;
    const tbody = document.querySelector("#runs-table tbody");
    const compareBtn = document.getElementById("compare-selected");
    const selected = new Set();

    function syncUrl() {
      const q = new URLSearchParams();
      for (const k of ["program", "tag", "status", "sort", "order"]) if (state[k]) q.set(k, state[k]);
      if (state.offset) q.set("offset", String(state.offset));
      history.replaceState(null, "", q.toString() ? `?${q}` : location.pathname);
    }

    async function load() {
      syncUrl();
      const q = new URLSearchParams({sort: state.sort, order: state.order, limit: String(state.limit),
        offset: String(state.offset)});
      for (const k of ["program", "tag", "status"]) if (state[k]) q.set(k, state[k]);
      let pageData;
      try { pageData = await getJSON(`/dashboard/api/runs?${q}`); }
      catch (e) { document.getElementById("runs-count").textContent = `the list failed: ${e.message}`; return; }
      tbody.replaceChildren(...pageData.items.map((r) => {
        const box = el("input", {type: "checkbox", class: "pick", "data-id": r.id});
        box.checked = selected.has(r.id);
        box.addEventListener("change", () => {
          if (box.checked) selected.add(r.id); else selected.delete(r.id);
          compareBtn.disabled = selected.size !== 2;
        });
        return el("tr", {class: "run-row", "data-id": r.id}, [
          el("td", {}, [box]),
          el("td", {text: localTime(r.created_at)}),
          el("td", {}, [el("a", {href: `/runs/${r.id}`, class: "run-link", text: r.program_name || "(unnamed)"})]),
          el("td", {}, [el("code", {text: r.program_sha256.slice(0, 12)})]),
          el("td", {text: r.tag || ""}),
          el("td", {text: settingsText(r.settings)}),
          el("td", {class: `status-${r.status}`, text: r.status + (r.error_kind ? ` (${r.error_kind})` : "")}),
          el("td", {class: "num", text: fmt(r.cycles)}),
          el("td", {class: "num", text: fmt(r.instructions)}),
          el("td", {class: "num", text: r.hbm_bytes_read === null ? "–" : bytes(r.hbm_bytes_read + r.hbm_bytes_written)}),
          el("td", {class: "num", text: r.wall_seconds === null ? "–" : r.wall_seconds.toFixed(3) + " s"}),
        ]);
      }));
      for (const th of document.querySelectorAll("#runs-table th.sortable")) {
        th.classList.toggle("sorted-asc", th.dataset.sort === state.sort && state.order === "asc");
        th.classList.toggle("sorted-desc", th.dataset.sort === state.sort && state.order === "desc");
      }
      const last = Math.min(pageData.offset + pageData.items.length, pageData.total);
      document.getElementById("runs-count").textContent = `${fmt(pageData.total)} runs`;
      document.getElementById("page-info").textContent =
        pageData.total ? `${fmt(pageData.offset + 1)}–${fmt(last)} of ${fmt(pageData.total)}` : "no runs";
      document.getElementById("page-prev").disabled = state.offset === 0;
      document.getElementById("page-next").disabled = last >= pageData.total;
      document.body.dataset.total = String(pageData.total);
      rendered();
      // Runs still queued or running: look again shortly (their rows fill in when they finish).
      clearTimeout(state.refresh);
      if (pageData.items.some((r) => r.status === "queued" || r.status === "running"))
        state.refresh = setTimeout(load, 2000);
    }

    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.program = form.program.value.trim(); state.tag = form.tag.value.trim(); state.status = form.status.value;
      state.offset = 0;
      load();
    });
    for (const th of document.querySelectorAll("#runs-table th.sortable")) {
      th.addEventListener("click", () => {
        if (state.sort === th.dataset.sort) state.order = state.order === "desc" ? "asc" : "desc";
        else { state.sort = th.dataset.sort; state.order = ["program_name", "program_sha256", "tag", "status"].includes(state.sort) ? "asc" : "desc"; }
        state.offset = 0;
        load();
      });
    }
    document.getElementById("page-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); load(); });
    document.getElementById("page-next").addEventListener("click", () => { state.offset += state.limit; load(); });
    compareBtn.addEventListener("click", () => {
      // Table order is newest first by default: the older run is A (before), the newer B (after).
      const ids = Array.from(document.querySelectorAll("#runs-table input.pick:checked")).map((b) => b.dataset.id);
      const picked = ids.length === 2 ? ids : Array.from(selected);
      location.href = `/compare?a=${picked[1]}&b=${picked[0]}`;
    });
    load();
  }

  // ----------------------------------------------------------------------------------- run page

  function follow(id, progressEl, done) {
    const es = new EventSource(`/v1/runs/${id}/events`);
    es.addEventListener("status", (ev) => { progressEl.textContent = `run ${id}: ${JSON.parse(ev.data).status}`; });
    es.addEventListener("progress", (ev) => {
      const p = JSON.parse(ev.data);
      progressEl.textContent = `run ${id}: running — ${fmt(p.instructions)} instructions, ${fmt(p.cycles)} cycles`;
    });
    es.addEventListener("done", () => { es.close(); done(); });
  }

  async function previousRunLink(run) {
    // The run of the same program just before this one: the usual A/B after a change.
    const q = new URLSearchParams({program: run.program_sha256, status: "succeeded", limit: "500"});
    const page = await getJSON(`/dashboard/api/runs?${q}`);
    const ids = page.items.map((r) => r.id);
    const prev = page.items[ids.indexOf(run.id) + 1];
    if (ids.includes(run.id) && prev) document.getElementById("link-compare").after(" · ",
      el("a", {href: `/compare?a=${prev.id}&b=${run.id}`, id: "link-previous",
        text: `compare with the previous run of this program (${prev.id.slice(0, 8)})`}));
  }

  async function runPage() {
    const root = document.getElementById("run-view");
    let run;
    try { run = await getJSON(`/v1/runs/${runId}`); } catch (e) { showError(root, e.message); return; }
    if (run.status === "queued" || run.status === "running") {
      root.replaceChildren(el("p", {class: "progress", id: "run-progress", text: `run ${run.status}…`}));
      follow(runId, root.firstChild, () => location.reload());
      return;
    }
    const meta = [`status ${run.status}`, run.tag ? `tag ${run.tag}` : null, `created ${localTime(run.created_at)}`,
      run.wall_seconds !== null ? `host time ${run.wall_seconds.toFixed(3)} s` : null,
      `sha256 ${run.program_sha256}`].filter(Boolean);
    document.getElementById("run-meta").textContent = meta.join(" · ");
    if (!run.links.profile) {
      const e = run.error || {kind: run.status, message: (run.issues || []).map((i) => i.msg).join("; ") || "no profile"};
      root.replaceChildren(el("div", {class: "error-box", id: "run-error"}, [
        el("strong", {text: `The run ${run.status}: ${e.kind}`}),
        el("div", {class: "error-where", text: [e.pc !== null && e.pc !== undefined ? `pc ${e.pc}` : null,
          e.line ? `line ${e.line}` : null, e.opcode].filter(Boolean).join(" · ")}),
        e.source ? el("pre", {class: "error-source", text: e.source}) : null,
        el("div", {class: "error-message", text: e.message}),
      ].filter(Boolean)));
      rendered();
      return;
    }
    if (!run.links.trace) document.getElementById("link-timeline").replaceWith(
      el("span", {class: "note", text: "no timeline (the run was started without trace)"}));
    const [doc] = await Promise.all([getJSON(run.links.profile), previousRunLink(run)]);
    V.renderRun(root, doc, {onSection: (path) => {
      location.href = `/runs/${runId}/source#section=${encodeURIComponent(path.join(SEP))}`;
    }});
    rendered();
  }

  // -------------------------------------------------------------------------------- source view

  async function sourcePage() {
    const root = document.getElementById("source-view");
    let doc;
    try { doc = await getJSON(`/v1/runs/${runId}/profile`); } catch (e) { showError(root, e.message); return; }
    V.renderSource(root, doc);
    const applyHash = () => {
      const h = decodeURIComponent(location.hash.slice(1));
      if (h.startsWith("section=")) V.focusSection(root, h.slice(8).split(SEP));
      else if (/^L\d+$/.test(h)) V.focusLine(root, parseInt(h.slice(1), 10));
    };
    window.addEventListener("hashchange", applyHash);
    applyHash();
    rendered();
  }

  // ----------------------------------------------------------------------------------- timeline

  function timelineTraces(view) {
    const traces = [];
    const color = (lane) => V.UNIT_COLORS[lane] || "#555";
    const unitLanes = view.lanes.filter((l) => l !== "sections");
    if (view.mode === "slices") {
      for (const s of view.slices) {
        if (!s.start.length) continue;
        const isSections = s.lane === "sections";
        traces.push({
          type: "bar", orientation: "h", name: s.lane, showlegend: false,
          base: s.start, x: s.start.map((v, i) => Math.max(s.end[i] - v, 0.5)),
          y: isSections ? s.depth.map((d) => `sections ${d}`) : s.start.map(() => s.lane),
          yaxis: isSections ? "y2" : "y",
          marker: {color: isSections ? s.depth.map((d) => ["#4c6ef5", "#748ffc", "#91a7ff", "#bac8ff"][d % 4]) :
            s.aggregated.map((a) => a ? "#bbbbbb" : color(s.lane)), line: {width: 0}},
          customdata: s.name.map((n, i) => [n, s.start[i], s.end[i]]),
          hovertemplate: "%{customdata[0]}<br>cycles %{customdata[1]:,}–%{customdata[2]:,}<extra>" + s.lane + "</extra>",
        });
      }
    } else {
      const centers = view.edges.slice(0, -1).map((e, i) => (e + view.edges[i + 1]) / 2);
      traces.push({
        type: "heatmap", x: centers, y: view.units.map((u) => u.lane), z: view.units.map((u) => u.busy),
        zmin: 0, zmax: 1, colorscale: [[0, "#f4f6fb"], [1, "#08306b"]], yaxis: "y", colorbar: {title: {text: "busy"}, len: 0.75, y: 0.38},
        hovertemplate: "%{y}: %{z:.0%} busy around cycle %{x:,.0f}<extra></extra>",
      });
      if (view.sections.length) traces.push({
        type: "bar", orientation: "h", showlegend: false, yaxis: "y2",
        base: view.sections.map((s) => s.start), x: view.sections.map((s) => s.end - s.start),
        y: view.sections.map(() => "sections 0"), marker: {color: "#748ffc", line: {color: "#fff", width: 1}},
        customdata: view.sections.map((s) => [s.name, s.start, s.end]),
        hovertemplate: "%{customdata[0]}<br>cycles %{customdata[1]:,}–%{customdata[2]:,}<extra>sections</extra>",
      });
      void unitLanes;
    }
    return traces;
  }

  async function timelinePage() {
    const div = document.getElementById("chart-timeline");
    const info = document.getElementById("timeline-info");
    let run;
    try { run = await getJSON(`/v1/runs/${runId}`); } catch (e) { showError(div, e.message); return; }
    if (!run.links.trace) {
      document.getElementById("trace-download").remove();
      showError(div, "This run has no trace: start it with trace: true (the dashboard's form does) to see its timeline.");
      rendered();
      return;
    }
    let busy = false;
    async function show(start, end) {
      const q = new URLSearchParams();
      if (start !== undefined) { q.set("start", String(Math.max(0, Math.floor(start)))); q.set("end", String(Math.ceil(end))); }
      const view = await getJSON(`/dashboard/api/runs/${runId}/timeline?${q}`);
      const unitLanes = view.lanes.filter((l) => l !== "sections").slice().reverse();
      const layout = {
        height: 520, margin: {l: 90, r: 20, t: 10, b: 40}, barmode: "overlay", bargap: 0.15,
        xaxis: {range: [view.start, view.end], title: {text: "cycle"}},
        yaxis: {domain: [0, 0.74], type: "category", categoryorder: "array", categoryarray: unitLanes, fixedrange: true},
        yaxis2: {domain: [0.78, 1], type: "category", fixedrange: true, autorange: "reversed"},
        dragmode: "zoom",
      };
      busy = true;
      await Plotly.react(div, timelineTraces(view), layout, V.PLOT_CONFIG);
      busy = false;
      div.dataset.mode = view.mode;
      info.textContent = `cycles ${fmt(view.start)}–${fmt(view.end)} of ${fmt(view.cycles)} · ` +
        (view.mode === "slices" ? `${fmt(view.slices_in_window)} slices drawn` :
          `${fmt(view.slices_in_window)} slices aggregated into ${view.edges.length - 1} bins per unit (zoom in for slices)`) +
        (view.note && view.note !== "exact timeline" ? ` · ${view.note}` : "");
      rendered();
    }
    await show();
    div.on("plotly_relayout", (ev) => {
      if (busy) return;
      if (ev["xaxis.range[0]"] !== undefined) show(ev["xaxis.range[0]"], ev["xaxis.range[1]"]);
      else if (ev["xaxis.autorange"]) show();
    });
    document.getElementById("timeline-reset").addEventListener("click", () => show());
  }

  // ------------------------------------------------------------------------------------ compare

  function deltaCell(d) {
    return el("td", {class: "num " + (d > 0 ? "pos" : d < 0 ? "neg" : ""), text: (d > 0 ? "+" : "") + fmt(d)});
  }

  function ratioText(r) { return r === null || r === undefined ? "new" : `${r.toFixed(3)}×`; }

  function deltaChart(div, rows, label) {
    const top = rows.filter((r) => r.delta_cycles !== 0).slice(0, 25).reverse();
    if (!top.length) { div.replaceChildren(el("p", {class: "note", text: "no cycle changes"})); return; }
    Plotly.newPlot(div, [{
      type: "bar", orientation: "h", y: top.map((r) => r.key), x: top.map((r) => r.delta_cycles),
      marker: {color: top.map((r) => r.delta_cycles > 0 ? "#d62728" : "#2ca02c")},
      customdata: top.map((r) => [r.cycles_a, r.cycles_b]),
      hovertemplate: "%{y}<br>A %{customdata[0]:,} → B %{customdata[1]:,} (%{x:+,})<extra></extra>",
    }], {height: Math.max(220, 24 * top.length + 70), margin: {l: 10, r: 10, t: 10, b: 40},
      xaxis: {title: {text: `${label}: cycles B − A`}},
      yaxis: {automargin: true, type: "category", tickvals: top.map((r) => r.key), ticktext: top.map((r) => V.shortLabel(r.key))}},
    V.PLOT_CONFIG);
  }

  function deltaTable(id, rows, first) {
    const head = el("tr", {}, [first, "A cycles", "B cycles", "Δ cycles", "B/A", "A instr.", "B instr.", "Δ instr."]
      .map((h, i) => el("th", {class: i ? "num" : "", text: h})));
    return el("table", {class: "data-table", id}, [el("thead", {}, [head]), el("tbody", {}, rows.map((r) =>
      el("tr", {"data-key": r.key}, [el("td", {class: "wrap", text: r.key}), el("td", {class: "num", text: fmt(r.cycles_a)}),
        el("td", {class: "num", text: fmt(r.cycles_b)}), deltaCell(r.delta_cycles),
        el("td", {class: "num", text: ratioText(r.ratio)}), el("td", {class: "num", text: fmt(r.instructions_a)}),
        el("td", {class: "num", text: fmt(r.instructions_b)}), deltaCell(r.delta_instructions)])))]);
  }

  function unmatched(id, title, rows) {
    return el("div", {id}, [el("h3", {text: `${title} (${rows.length})`}),
      rows.length ? el("ul", {}, rows.map((r) => el("li", {"data-key": r.key, text: `${r.key} — ${fmt(r.cycles)} cycles`})))
        : el("p", {class: "note", text: "none"})]);
  }

  async function comparePage() {
    const a = document.body.dataset.a, b = document.body.dataset.b;
    if (!a || !b) { rendered(); return; }
    const root = document.getElementById("compare-view");
    let c;
    try { c = await getJSON(`/dashboard/api/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`); }
    catch (e) { showError(root, e.status === 422 ? "run ids are 32 hex digits" : e.message); rendered(); return; }
    const runLink = (r, label) => el("span", {}, [`${label}: `, el("a", {href: `/runs/${r.id}`, class: `run-${label}`,
      text: `${r.program_name || "(unnamed)"} ${r.id.slice(0, 8)}`}), r.tag ? ` [${r.tag}]` : ""]);
    const totals = el("table", {class: "data-table", id: "compare-totals"}, [
      el("thead", {}, [el("tr", {}, ["total", "A", "B", "Δ", "B/A"].map((h, i) => el("th", {class: i ? "num" : "", text: h})))]),
      el("tbody", {}, Object.entries(c.totals).map(([k, t]) => el("tr", {"data-key": k}, [el("td", {text: k}),
        el("td", {class: "num", text: fmt(t.a)}), el("td", {class: "num", text: fmt(t.b)}), deltaCell(t.delta),
        el("td", {class: "num", text: ratioText(t.ratio)})])))]);
    root.replaceChildren(
      el("p", {}, [runLink(c.a, "A"), " → ", runLink(c.b, "B"),
        el("span", {class: "note", text: `  (sections: ${c.sections_mode.a} / ${c.sections_mode.b})`})]),
      totals,
      el("div", {class: "grid2"}, [
        el("section", {class: "chart-box"}, [el("h3", {text: "Sections with the largest change"}),
          el("div", {id: "chart-compare-sections", class: "chart"})]),
        el("section", {class: "chart-box"}, [el("h3", {text: "Opcodes with the largest change"}),
          el("div", {id: "chart-compare-opcodes", class: "chart"})]),
      ]),
      el("h3", {text: "Sections (matched by path), by |Δ cycles|"}), deltaTable("compare-sections-table", c.sections, "section"),
      el("div", {class: "grid2"}, [unmatched("only-a", "Only in A", c.only_a), unmatched("only-b", "Only in B", c.only_b)]),
      el("h3", {text: "Opcodes, by |Δ cycles|"}), deltaTable("compare-opcodes-table", c.opcodes, "opcode"),
    );
    deltaChart(document.getElementById("chart-compare-sections"), c.sections, "sections");
    deltaChart(document.getElementById("chart-compare-opcodes"), c.opcodes, "opcodes");
    rendered();
  }

  // ------------------------------------------------------------------------------ forms (upload)

  const IMAGE_FIELDS = {hbm: "hbm", fp_sram: "fpsram", int_sram: "intsram", vram: "vram"};

  function fieldOf(loc) {
    const [, first, second] = loc || [];
    if (first === "images" && IMAGE_FIELDS[second]) return IMAGE_FIELDS[second];
    if (first === "settings" && second === "overrides") return "overrides";
    if (first === "int_sram") return "intsram";
    return first || "body";
  }

  function clearErrors(form) { for (const e of form.querySelectorAll(".field-error")) e.textContent = ""; }

  function showFieldErrors(form, err) {
    const detail = err.body && err.body.detail;
    if (Array.isArray(detail)) {
      for (const issue of detail) {
        const slot = form.querySelector(`.field-error[data-field="${fieldOf(issue.loc)}"]`) ||
          form.querySelector('.field-error[data-field="body"]');
        slot.textContent = (slot.textContent ? slot.textContent + "\n" : "") + issue.msg;
      }
    } else {
      const slot = form.querySelector('.field-error[data-field="body"]');
      slot.textContent = typeof detail === "string" ? detail : (detail && detail.message) || err.message;
    }
  }

  function multipart(form, names) {
    const fd = new FormData();
    for (const name of names) {
      const input = form.elements[name];
      if (!input) continue;
      if (input.type === "file") { if (input.files.length) fd.append(name, input.files[0]); }
      else if (input.type === "checkbox") fd.append(name, input.checked ? "true" : "false");
      else if (input.value.trim()) fd.append(name, input.value.trim());
    }
    return fd;
  }

  async function newRunPage() {
    const progress = document.getElementById("run-progress");
    const exForm = document.getElementById("example-form");
    const select = document.getElementById("example-name");
    const examples = await getJSON("/dashboard/api/examples");
    select.replaceChildren(...examples.map((e) => el("option", {value: e.name,
      text: `${e.name} — ${e.description || e.program}`})));
    if (!examples.length) select.replaceChildren(el("option", {value: "", text: "no shipped examples found"}));
    exForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      document.getElementById("example-error").textContent = "";
      const fd = new FormData();
      if (exForm.tag.value.trim()) fd.append("tag", exForm.tag.value.trim());
      fd.append("sections", exForm.sections.value);
      try {
        const acc = await getJSON(`/dashboard/api/examples/${encodeURIComponent(select.value)}/runs`, {method: "POST", body: fd});
        follow(acc.id, progress, () => { location.href = `/runs/${acc.id}`; });
      } catch (e) {
        const d = e.body && e.body.detail;
        document.getElementById("example-error").textContent = Array.isArray(d) ? d.map((i) => i.msg).join("\n") : e.message;
      }
    });
    const form = document.getElementById("upload-form");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const fd = multipart(form, ["program", "settings", "hbm", "fpsram", "intsram", "vram", "overrides", "tag", "trace", "sections"]);
      progress.textContent = "uploading…";
      try {
        const acc = await getJSON("/v1/runs/files?async=true", {method: "POST", body: fd});
        follow(acc.id, progress, () => { location.href = `/runs/${acc.id}`; });
      } catch (e) {
        progress.textContent = "";
        showFieldErrors(form, e);
        form.dataset.failed = "1";
      }
    });
    rendered();
  }

  async function estimatePage() {
    const form = document.getElementById("estimate-form");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const view = document.getElementById("estimate-view"), source = document.getElementById("source-view");
      view.replaceChildren(el("p", {class: "note", text: "estimating…"}));
      try {
        const doc = await getJSON("/dashboard/api/estimate", {method: "POST", body: multipart(form, ["program", "settings", "intsram", "sections"])});
        V.renderSource(source, doc);
        V.renderRun(view, doc, {onSection: (path) => V.focusSection(source, path)});
        document.body.dataset.estimated = "1";
      } catch (e) {
        view.replaceChildren();
        showFieldErrors(form, e);
      }
    });
    rendered();
  }

  const PAGES = {runs: runsPage, run: runPage, source: sourcePage, timeline: timelinePage, compare: comparePage,
    new: newRunPage, estimate: estimatePage};
  Promise.resolve(PAGES[page] && PAGES[page]()).catch((e) => {
    const main = document.querySelector("main");
    main.append(el("div", {class: "error-box", id: "page-error", text: `The page failed: ${e.message}`}));
  });
})();
