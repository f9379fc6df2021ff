/* Run page and source heat view of one plena-profile document (profiler/SCHEMA.md).
 *
 * Shared by the service's dashboard (api/dashboard) and the offline report (profiler/html.py), so
 * both draw the same charts from the same data.  Charts are Plotly (the `plotly` wheel's bundle);
 * this file only turns the document into Plotly traces and plain DOM.
 *
 *   PlenaView.renderRun(root, doc, {onSection(path)})   totals, error, charts, section table
 *   PlenaView.renderSource(root, doc)                  per-line heat view with foldable sections
 *   PlenaView.focusSection(sourceRoot, path)           open + scroll to a section's lines
 */
(function () {
  "use strict";

  const UNITS = ["matrix", "vector", "scalar-int", "scalar-fp", "dma", "control"];
  const UNIT_COLORS = {
    "matrix": "#1f77b4", "vector": "#2ca02c", "scalar-int": "#9467bd",
    "scalar-fp": "#8c564b", "dma": "#ff7f0e", "control": "#7f7f7f",
  };
  const SEP = " / ";
  const MAX_BAR_SECTIONS = 30;
  const MAX_OPCODES = 25;
  const LABEL_CHARS = 60;
  const PLOT_CONFIG = {displaylogo: false, responsive: true};

  function fmt(n) {
    if (n === null || n === undefined) return "–";
    if (typeof n !== "number") return String(n);
    if (Number.isInteger(n)) return n.toLocaleString("en-US");
    return n.toLocaleString("en-US", {maximumFractionDigits: 3});
  }

  function pct(x) {
    return (x === null || x === undefined) ? "–" : (100 * x).toFixed(x < 0.001 && x > 0 ? 3 : 1) + "%";
  }

  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = n, i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(v) : v.toFixed(1)) + " " + units[i];
  }

  function shortLabel(text) {
    return text.length > LABEL_CHARS ? text.slice(0, LABEL_CHARS - 1) + "…" : text;
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children || []) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function flatSections(sections) {
    const out = [];
    const walk = (nodes) => { for (const n of nodes) { out.push(n); walk(n.sections || []); } };
    walk(sections);
    return out;
  }

  // ------------------------------------------------------------------------------------ run view

  function totalsCards(doc) {
    const t = doc.totals;
    const cards = [
      ["cycles", "cycles", fmt(t.cycles)],
      ["instructions", "instructions", fmt(t.instructions)],
      ["hbm_bytes_read", "HBM read", bytes(t.hbm_bytes_read)],
      ["hbm_bytes_written", "HBM written", bytes(t.hbm_bytes_written)],
      ["macs", "matrix MACs", fmt(t.macs)],
      ["seconds", "simulated time", (t.seconds * 1e6).toFixed(3) + " µs"],
    ];
    if (doc.wall_seconds !== null && doc.wall_seconds !== undefined)
      cards.push(["wall_seconds", "host time", doc.wall_seconds.toFixed(3) + " s"]);
    return el("div", {class: "cards totals"}, cards.map(([key, label, value]) =>
      el("div", {class: "card", "data-key": key}, [
        el("div", {class: "card-value", text: value}), el("div", {class: "card-label", text: label})])));
  }

  function settingsLine(doc) {
    const s = doc.settings || {};
    const parts = ["MLEN", "VLEN", "BLEN", "HLEN"].filter((k) => s[k] !== undefined).map((k) => `${k} ${s[k]}`);
    parts.push(`HBM model ${s.hbm_model || (doc.hbm && doc.hbm.model) || "?"}`);
    parts.push(`sections: ${doc.sections_mode}`);
    return el("p", {class: "settings-line", text: parts.join(" · ")});
  }

  function errorBox(doc) {
    const e = doc.error;
    if (!e) return null;
    const where = [];
    if (e.pc !== null && e.pc !== undefined) where.push(`pc ${e.pc}`);
    if (e.line !== null && e.line !== undefined) where.push(`line ${e.line}`);
    if (e.opcode) where.push(e.opcode);
    return el("div", {class: "error-box", id: "run-error"}, [
      el("strong", {text: (doc.kind === "static" ? "The estimated run aborts: " : "The run aborted: ") + e.kind}),
      el("div", {class: "error-where", text: where.join(" · ")}),
      e.source ? el("pre", {class: "error-source", text: e.source}) : null,
      el("div", {class: "error-message", text: e.message}),
    ]);
  }

  function estimateBanner(doc) {
    if (doc.kind !== "static") return null;
    const est = doc.estimate || {};
    return el("div", {class: "estimate-banner", id: "estimate-banner"}, [
      el("strong", {text: "Static estimate — not a run. "}),
      el("span", {text: est.exact ? "Exact: a run gives the same numbers." :
        `Estimated: ${(est.estimated || []).join(", ") || "some totals"}.`}),
      el("ul", {}, (est.notes || []).map((n) => el("li", {text: n}))),
    ]);
  }

  function chartBox(id, title, note) {
    return el("section", {class: "chart-box"}, [
      el("h3", {text: title}), note ? el("p", {class: "note", text: note}) : null,
      el("div", {id: id, class: "chart"})]);
  }

  function sectionsBar(div, doc, onSection) {
    const top = doc.sections.slice(0, MAX_BAR_SECTIONS).slice().reverse();   // largest at the top
    const keys = top.map((s) => s.path.join(SEP));   // unique categories; ticks show them shortened
    const traces = UNITS.map((u) => ({
      type: "bar", orientation: "h", name: u, marker: {color: UNIT_COLORS[u]},
      y: keys, x: top.map((s) => (s.unit_cycles || {})[u] || 0), customdata: keys,
      hovertemplate: "%{customdata}<br>" + u + ": %{x:,} cycles<extra></extra>",
    }));
    const layout = {barmode: "stack", height: Math.max(260, 26 * top.length + 90),
      margin: {l: 10, r: 10, t: 30, b: 40}, xaxis: {title: {text: "cycles"}},
      yaxis: {automargin: true, type: "category", tickvals: keys, ticktext: keys.map(shortLabel)},
      legend: {orientation: "h", x: 0, y: 1.0, yanchor: "bottom"}};
    Plotly.newPlot(div, traces, layout, PLOT_CONFIG);
    if (onSection) div.on("plotly_click", (ev) => onSection(ev.points[0].customdata.split(SEP)));
  }

  function hierarchy(div, doc, onSection) {
    const ids = ["(program)"], labels = ["program"], parents = [""], values = [doc.totals.cycles];
    for (const s of flatSections(doc.sections)) {
      const key = s.path.join(SEP);
      ids.push(key);
      labels.push(shortLabel(s.name));
      parents.push(s.path.length > 1 ? s.path.slice(0, -1).join(SEP) : "(program)");
      values.push(s.cycles);
    }
    const trace = {type: "sunburst", ids, labels, parents, values, branchvalues: "total", maxdepth: 3,
      hovertemplate: "%{id}<br>%{value:,} cycles (%{percentRoot:.1%})<extra></extra>"};
    Plotly.newPlot(div, [trace], {height: 420, margin: {l: 0, r: 0, t: 0, b: 0}}, PLOT_CONFIG);
    if (onSection) div.on("plotly_sunburstclick", (ev) => {
      const id = ev.points[0].id;
      if (id && id !== "(program)") onSection(id.split(SEP));
      return true;
    });
  }

  function opcodesBar(div, doc) {
    const rows = Object.entries(doc.by_opcode).slice(0, MAX_OPCODES).reverse();
    const trace = {type: "bar", orientation: "h", y: rows.map(([mn]) => mn), x: rows.map(([, r]) => r.cycles),
      marker: {color: rows.map(([, r]) => UNIT_COLORS[r.unit] || "#333")},
      customdata: rows.map(([, r]) => [r.unit, r.instructions, pct(r.share)]),
      hovertemplate: "%{y} (%{customdata[0]})<br>%{x:,} cycles, %{customdata[2]}<br>" +
        "%{customdata[1]:,} instructions<extra></extra>"};
    Plotly.newPlot(div, [trace], {height: Math.max(240, 22 * rows.length + 80),
      margin: {l: 10, r: 10, t: 10, b: 40}, yaxis: {automargin: true}, xaxis: {title: {text: "cycles"}}},
    PLOT_CONFIG);
  }

  function unitsBar(div, doc) {
    const trace = {type: "bar", x: UNITS, y: UNITS.map((u) => doc.units[u].utilisation),
      marker: {color: UNITS.map((u) => UNIT_COLORS[u])},
      customdata: UNITS.map((u) => doc.units[u].busy_cycles),
      hovertemplate: "%{x}: %{y:.1%} busy (%{customdata:,} cycles)<extra></extra>"};
    Plotly.newPlot(div, [trace], {height: 260, margin: {l: 50, r: 10, t: 10, b: 40},
      yaxis: {tickformat: ".0%", range: [0, 1]}}, PLOT_CONFIG);
  }

  function peaksChart(div, doc) {
    const m = doc.matrix, h = doc.hbm;
    const gauge = (value, peak, title, domainX) => ({
      type: "indicator", mode: "gauge+number", value, domain: {x: domainX, y: [0, 1]},
      title: {text: title, font: {size: 13}}, number: {valueformat: ",.2f"},
      gauge: {axis: {range: [0, peak]}, bar: {color: "#1f77b4"}},
    });
    const traces = [
      gauge(m.macs_per_cycle, m.peak_macs_per_cycle,
        `matrix MACs/cycle (peak ${fmt(m.peak_macs_per_cycle)}, ${pct(m.utilisation)})`, [0, 0.45]),
      gauge(h.bytes_per_cycle, h.peak_bytes_per_cycle,
        `HBM bytes/cycle (peak ${fmt(h.peak_bytes_per_cycle)}, ${pct(h.utilisation)})`, [0.55, 1]),
    ];
    Plotly.newPlot(div, traces, {height: 240, margin: {l: 30, r: 30, t: 40, b: 10}}, PLOT_CONFIG);
  }

  function sectionsTable(doc, onSection) {
    const rows = flatSections(doc.sections);
    const head = el("tr", {}, ["section", "cycles", "share", "instructions", "HBM bytes", "MAC util.", "top unit"]
      .map((h) => el("th", {text: h})));
    const body = rows.map((s) => {
      const units = Object.entries(s.unit_cycles || {}).sort((a, b) => b[1] - a[1]);
      const name = el("a", {href: "#", class: "section-link", "data-path": s.path.join(SEP),
        style: `padding-left:${(s.path.length - 1) * 1.2}em`, text: s.name,
        onclick: (ev) => { ev.preventDefault(); if (onSection) onSection(s.path); }});
      return el("tr", {class: "section-row", "data-path": s.path.join(SEP)}, [
        el("td", {}, [name]), el("td", {class: "num", text: fmt(s.cycles)}), el("td", {class: "num", text: pct(s.share)}),
        el("td", {class: "num", text: fmt(s.instructions)}),
        el("td", {class: "num", text: fmt(s.hbm_bytes_read + s.hbm_bytes_written)}),
        el("td", {class: "num", text: pct(s.matrix_utilisation)}),
        el("td", {text: units.length && units[0][1] > 0 ? units[0][0] : "–"})]);
    });
    return el("table", {class: "data-table", id: "sections-table"}, [el("thead", {}, [head]), el("tbody", {}, body)]);
  }

  function renderRun(root, doc, opts) {
    opts = opts || {};
    const onSection = opts.onSection || null;
    root.replaceChildren(...[
      estimateBanner(doc), errorBox(doc), totalsCards(doc), settingsLine(doc),
      el("div", {class: "grid2"}, [
        chartBox("chart-sections", "Cycles by section and unit",
          `top ${Math.min(MAX_BAR_SECTIONS, doc.sections.length)} of ${doc.sections.length} sections; click a bar for its source lines`),
        chartBox("chart-hierarchy", "Section hierarchy", "cycles; click to zoom, the centre to go back"),
      ]),
      el("div", {class: "grid2"}, [
        chartBox("chart-opcodes", "Cycles by opcode", null),
        el("div", {}, [chartBox("chart-units", "Unit utilisation", "busy cycles / total cycles"),
          chartBox("chart-peaks", "Matrix MAC rate and HBM bandwidth against their peaks", null)]),
      ]),
      el("h3", {text: "Sections"}), sectionsTable(doc, onSection),
      doc.warnings && doc.warnings.length ?
        el("div", {class: "warnings"}, [el("h3", {text: "Warnings"}),
          el("ul", {}, doc.warnings.map((w) => el("li", {text: w})))]) : null,
    ].filter(Boolean));
    sectionsBar(document.getElementById("chart-sections"), doc, onSection);
    hierarchy(document.getElementById("chart-hierarchy"), doc, onSection);
    opcodesBar(document.getElementById("chart-opcodes"), doc);
    unitsBar(document.getElementById("chart-units"), doc);
    peaksChart(document.getElementById("chart-peaks"), doc);
  }

  // --------------------------------------------------------------------------------- source view

  const OPEN_ALL_BELOW_LINES = 600;
  const OPEN_SHARE = 0.05;
  const HOT_LINES = 15;

  function lineTable(src) {
    // Per line: counters summed over its pcs and the section id of its first pc.
    const n = src.lines.length;
    const count = new Float64Array(n), cycles = new Float64Array(n), hbm = new Float64Array(n);
    const section = new Int32Array(n).fill(-1);
    for (let pc = 0; pc < src.pc_line.length; pc++) {
      const i = src.pc_line[pc] - 1;
      count[i] += src.pc_count[pc];
      cycles[i] += src.pc_cycles[pc];
      hbm[i] += src.pc_hbm_bytes[pc];
      if (section[i] < 0) section[i] = src.pc_section[pc];
    }
    // Lines without an instruction (comments, blanks) belong to the next instruction's section.
    let next = -1;
    for (let i = n - 1; i >= 0; i--) {
      if (section[i] >= 0) next = section[i]; else section[i] = next;
    }
    let prev = -1;
    for (let i = 0; i < n; i++) { if (section[i] >= 0) prev = section[i]; else section[i] = prev; }
    return {count, cycles, hbm, section};
  }

  const MAX_BLOCKS = 1000;

  function blocksOf(table, n) {
    let blocks = [];
    for (let i = 0; i < n; i++) {
      const last = blocks[blocks.length - 1];
      if (last && last.section === table.section[i]) { last.end = i; }
      else blocks.push({section: table.section[i], start: i, end: i});
    }
    if (blocks.length > MAX_BLOCKS) {
      // Thousands of one-line sections (pc mode, machine code): fold runs of them into line ranges
      // so the page stays light; each range still opens on demand.
      const per = Math.ceil(blocks.length / MAX_BLOCKS);
      const merged = [];
      for (let k = 0; k < blocks.length; k += per) {
        const group = blocks.slice(k, k + per);
        merged.push({section: -1, start: group[0].start, end: group[group.length - 1].end,
          label: `lines ${group[0].start + 1}–${group[group.length - 1].end + 1} (${group.length} sections)`});
      }
      blocks = merged;
    }
    for (const b of blocks) {
      b.cycles = 0; b.count = 0;
      for (let i = b.start; i <= b.end; i++) { b.cycles += table.cycles[i]; b.count += table.count[i]; }
    }
    return blocks;
  }

  function lineRow(src, table, i, total, maxCycles) {
    const share = total ? table.cycles[i] / total : 0;
    const heat = maxCycles ? table.cycles[i] / maxCycles : 0;
    const row = el("div", {class: "src-line" + (table.count[i] ? "" : " src-idle"), id: `L${i + 1}`,
      "data-line": String(i + 1)}, [
      el("span", {class: "ln", text: String(i + 1)}),
      el("span", {class: "num cnt", text: table.count[i] ? fmt(table.count[i]) : ""}),
      el("span", {class: "num cyc", text: table.cycles[i] ? fmt(table.cycles[i]) : ""}),
      el("span", {class: "num shr", text: table.cycles[i] ? pct(share) : ""}),
      el("code", {text: src.lines[i]}),
    ]);
    if (heat > 0) row.style.background = `rgba(255, 90, 0, ${(0.08 + 0.62 * heat).toFixed(3)})`;
    return row;
  }

  function fillBlock(details) {
    if (details.dataset.filled) return;
    details.dataset.filled = "1";
    const st = details._state;
    const rows = [];
    for (let i = st.block.start; i <= st.block.end; i++) rows.push(lineRow(st.src, st.table, i, st.total, st.maxCycles));
    details.append(el("div", {class: "src-lines"}, rows));
  }

  function renderSource(root, doc) {
    const src = doc.source;
    if (!src) {
      root.replaceChildren(el("p", {class: "note", id: "no-source",
        text: "This profile has no source table (the program is too long or the profile predates it)."}));
      return;
    }
    const n = src.lines.length;
    const table = lineTable(src);
    const total = doc.totals.cycles;
    let maxCycles = 0;
    for (let i = 0; i < n; i++) maxCycles = Math.max(maxCycles, table.cycles[i]);
    const blocks = blocksOf(table, n);
    const openAll = n <= OPEN_ALL_BELOW_LINES;
    const blockEls = blocks.map((b) => {
      const path = b.label ? [b.label] : b.section >= 0 ? src.section_paths[b.section] : ["(no instructions)"];
      const share = total ? b.cycles / total : 0;
      const details = el("details", {class: "src-block", "data-path": path.join(SEP),
        "data-first-line": String(b.start + 1)}, [
        el("summary", {}, [
          el("span", {class: "blk-name", text: path.join(SEP)}),
          el("span", {class: "blk-meta", text: ` lines ${b.start + 1}–${b.end + 1} · ${fmt(b.cycles)} cycles · ${pct(share)}`}),
        ]),
      ]);
      details._state = {block: b, src, table, total, maxCycles};
      details.addEventListener("toggle", () => { if (details.open) fillBlock(details); });
      if (openAll || share >= OPEN_SHARE) { details.open = true; fillBlock(details); }
      return details;
    });
    const order = Array.from({length: n}, (_, i) => i).filter((i) => table.cycles[i] > 0)
      .sort((a, b) => table.cycles[b] - table.cycles[a]).slice(0, HOT_LINES);
    const hot = el("ol", {class: "hot-lines", id: "hot-lines"}, order.map((i) => el("li", {}, [
      el("a", {href: `#L${i + 1}`, "data-line": String(i + 1), text: `line ${i + 1}`,
        onclick: (ev) => { ev.preventDefault(); focusLine(root, i + 1); }}),
      el("span", {text: ` ${fmt(table.cycles[i])} cycles (${pct(total ? table.cycles[i] / total : 0)}), ` +
        `${fmt(table.count[i])}× `}),
      el("code", {text: src.lines[i].trim()}),
    ])));
    const toolbar = el("div", {class: "toolbar"}, [
      el("button", {type: "button", id: "expand-all", text: "expand all",
        onclick: () => blockEls.forEach((d) => { d.open = true; fillBlock(d); })}),
      el("button", {type: "button", id: "collapse-all", text: "collapse all",
        onclick: () => blockEls.forEach((d) => { d.open = false; })}),
      el("span", {class: "note", text: ` ${fmt(n)} lines, ${fmt(src.pc_line.length)} instructions, ${blocks.length} blocks`}),
    ]);
    const header = el("div", {class: "src-line src-head"}, ["line", "count", "cycles", "share", "source"]
      .map((h) => el("span", {text: h})));
    root._source = src;
    root.replaceChildren(el("h3", {text: "Hot lines"}), hot, toolbar, header,
      el("div", {class: "src-blocks", id: "src-blocks"}, blockEls));
  }

  function flash(node) {
    node.classList.remove("flash");
    void node.offsetWidth;   // restart the animation
    node.classList.add("flash");
    node.scrollIntoView({block: "center"});
  }

  function focusLine(root, line) {
    for (const d of root.querySelectorAll("details.src-block")) {
      const st = d._state;
      if (st && st.block.start + 1 <= line && line <= st.block.end + 1) {
        d.open = true; fillBlock(d);
        const row = d.querySelector(`#L${line}`);
        if (row) flash(row);
        return true;
      }
    }
    return false;
  }

  function focusSection(root, path) {
    const key = path.join(SEP);
    const blocks = Array.from(root.querySelectorAll("details.src-block")).filter((d) => {
      const p = d.dataset.path;
      return p === key || p.startsWith(key + SEP);
    });
    if (!blocks.length) {
      // The section's lines sit in a folded line range (see MAX_BLOCKS): go to its first line.
      const src = root._source;
      const ids = new Set();
      (src ? src.section_paths : []).forEach((p, i) => {
        const k = p.join(SEP);
        if (k === key || k.startsWith(key + SEP)) ids.add(i);
      });
      const pc = src ? src.pc_section.findIndex((id) => ids.has(id)) : -1;
      return pc >= 0 && focusLine(root, src.pc_line[pc]);
    }
    for (const d of blocks) { d.open = true; fillBlock(d); d.classList.add("focused"); }
    flash(blocks[0]);
    return true;
  }

  window.PlenaView = {renderRun, renderSource, focusSection, focusLine, fmt, pct, bytes, el, shortLabel,
    UNITS, UNIT_COLORS, SEP, PLOT_CONFIG, flatSections};
})();
