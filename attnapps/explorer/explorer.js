// attnapps attention explorer: renders report.html's embedded data, or (data-mode="serve") the served demo.
// Data format: attnapps/explorer/__init__.py. No libraries, no network (the demo talks to its own server only).
"use strict";
(function () {
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  };
  const fmt = (v) => typeof v === "number" ? (Math.abs(v) >= 1000 || Number.isInteger(v) ? String(v) : v.toPrecision(4)) : String(v);
  const shade = (a) => `rgba(255, 80, 0, ${Math.min(1, a).toFixed(3)})`;

  // ---- metrics and learning curves
  function metricsTable(metrics) {
    const t = el("table", {class: "metrics"}, el("tr", {}, el("th", {text: "metric"}), el("th", {text: "value"})));
    for (const [k, v] of Object.entries(metrics)) t.append(el("tr", {}, el("td", {text: k}), el("td", {text: fmt(v)})));
    return t;
  }
  function chart(name, pts) {
    const W = 320, H = 180, P = 34, NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("class", "chart");
    const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]).filter(Number.isFinite);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const sx = x => P + (W - P - 8) * (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5);
    const sy = y => H - P + 14 - (H - P - 8) * (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5);
    const add = (tag, attrs, text) => { const e = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text) e.textContent = text; svg.append(e); };
    add("polyline", {points: pts.filter(p => Number.isFinite(p[1])).map(p => `${sx(p[0])},${sy(p[1])}`).join(" "),
                     fill: "none", stroke: "#06c", "stroke-width": 1.5});
    add("text", {x: P, y: 12}, `${name}  (${fmt(y0)} .. ${fmt(y1)})`);
    add("text", {x: P, y: H - 4}, `update ${x0} .. ${x1}`);
    return svg;
  }

  // ---- one explained example
  function rowOf(view, head, i) {  // attention row i of a view: one head, or the head average
    const hs = head === "avg" ? view.heads : [view.heads[head]];
    const n = hs[0][i].length, out = new Array(n).fill(0);
    for (const h of hs) for (let j = 0; j < n; j++) out[j] += h[i][j] / 1000 / hs.length;
    return out;
  }
  function renderExample(ex, idx) {
    const card = el("div", {class: "example", "data-index": idx});
    if (ex.label) { card.classList.add(ex.label.gold == null ? "nolabel" : (ex.label.gold === ex.label.pred ? "right" : "wrong"));
                    card.dataset.gold = ex.label.gold ?? ""; }
    card.append(el("h3", {dir: "auto", text: ex.title || `example ${idx + 1}`}));
    if (ex.label) {
      const probs = el("div", {class: "probs"});
      for (const [lab, p] of Object.entries(ex.label.probs || {}))
        probs.append(el("div", {}, el("span", {class: "lab", text: lab}),
                        el("span", {class: "bar", style: `width:${Math.max(1, Math.round(p * 160))}px`}), p.toFixed(3)));
      card.append(el("div", {text: `predicted: ${ex.label.pred}` + (ex.label.gold != null ? `   gold: ${ex.label.gold}` : "")}), probs);
    }
    if (ex.text != null && !ex.label) card.append(el("div", {class: "output-text", dir: "auto", text: ex.text}));
    const views = ex.views || [];
    const state = {view: 0, head: "avg", row: 0};
    const controls = el("div", {class: "controls"});
    const vsel = el("select", {class: "view"}), hsel = el("select", {class: "head"});
    views.forEach((v, i) => vsel.append(el("option", {value: i, text: v.name})));
    const body = el("div", {class: "body"});
    const fillHeads = () => {
      hsel.replaceChildren(el("option", {value: "avg", text: "average of heads"}));
      views[state.view].heads.forEach((_, h) => hsel.append(el("option", {value: h, text: `head ${h + 1}`})));
      hsel.value = "avg"; state.head = "avg";
      hsel.parentElement && (hsel.parentElement.style.display = views[state.view].heads.length > 1 ? "" : "none");
    };
    vsel.addEventListener("change", () => { state.view = +vsel.value; state.row = 0; fillHeads(); draw(); });
    hsel.addEventListener("change", () => { state.head = hsel.value === "avg" ? "avg" : +hsel.value; paint(); });
    if (views.length) {
      controls.append(el("label", {}, "view ", vsel), el("label", {}, "head ", hsel));
      card.append(controls); fillHeads();
      if (views.length === 1) vsel.parentElement.style.display = "none";
    }
    card.append(body);
    let paint = () => {};
    function tokens(name, cls) {
      // the tokens' own box takes its direction from their first strong character (dir="auto"): an Arabic or
      // Hebrew row runs right to left; each token is a bidi isolate with its own direction (CSS .tok)
      const toks = (ex.seqs[name] || []).map((t, i) => el("span", {class: `tok ${cls}`, "data-i": i, text: t}));
      const line = el("div", {class: "seq", "data-seq": name}, el("span", {class: "seqname", text: name}),
                      el("div", {class: "toks", dir: "auto"}, ...toks));
      return [line, toks];
    }
    function draw() {
      body.replaceChildren();
      if (!views.length) { for (const name of Object.keys(ex.seqs)) body.append(tokens(name, "")[0]); return; }
      const v = views[state.view];
      let qToks, kToks = null, canvas = null, cells = null;
      if (v.q === v.k) { const [line, toks] = tokens(v.q, "q k"); body.append(line); qToks = kToks = toks; }
      else {
        let line; [line, qToks] = tokens(v.q, "q"); body.append(line);
        if (v.k === "image") {
          const [R, C] = ex.image.grid, box = el("div", {class: "imgbox"});
          canvas = el("canvas", {class: "overlay"});
          const grid = el("table", {class: "grid"}); cells = [];
          for (let r = 0; r < R; r++) { const tr = el("tr"); for (let c = 0; c < C; c++) {
            const td = el("td", {class: "cell", "data-i": r * C + c}); cells.push(td); tr.append(td); } grid.append(tr); }
          box.append(canvas, grid); body.append(box);
        } else { let kl; [kl, kToks] = tokens(v.k, "k"); body.append(kl); }
      }
      qToks.forEach((t, i) => { const pick = () => { state.row = i; paint(); };
                                t.addEventListener("mouseenter", pick); t.addEventListener("click", pick); });
      const img = canvas ? new Image() : null;
      paint = () => {
        const row = rowOf(v, state.head, Math.min(state.row, qToks.length - 1));
        qToks.forEach((t, i) => t.classList.toggle("active", i === state.row));
        const max = Math.max(1e-9, ...row);
        if (kToks) kToks.forEach((t, j) => { const a = j < row.length ? row[j] : 0;
          t.style.background = shade(a / max); t.title = a.toFixed(3); t.dataset.w = a.toFixed(4); });
        if (cells) { cells.forEach((c, j) => { c.style.background = shade(row[j] / max); c.title = row[j].toFixed(3); c.dataset.w = row[j].toFixed(4); });
                     if (img.complete) overlay(canvas, img, row, ex.image.grid); }
      };
      if (img) { img.onload = paint; img.src = ex.image.src; }
      paint();
    }
    function overlay(canvas, img, row, [R, C]) {  // the image, and the attention upsampled over it
      const W = Math.max(img.naturalWidth, 1), H = Math.max(img.naturalHeight, 1), s = 256 / Math.max(W, H);
      canvas.width = Math.round(W * s); canvas.height = Math.round(H * s);
      const ctx = canvas.getContext("2d"); ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      const small = document.createElement("canvas"); small.width = C; small.height = R;
      const sctx = small.getContext("2d"), data = sctx.createImageData(C, R), max = Math.max(1e-9, ...row);
      // dim what was not attended (as in Show, Attend and Tell's figures): the attended regions stay bright
      for (let j = 0; j < R * C; j++) { data.data.set([0, 0, 0, Math.round(190 * (1 - row[j] / max))], 4 * j); }
      sctx.putImageData(data, 0, 0); ctx.imageSmoothingEnabled = true; ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
    }
    draw();
    if (ex.copy) {  // a copying decoder: which output tokens came from which source token
      const qs = ex.seqs[ex.copy.q] || [], ks = ex.seqs[ex.copy.k] || [];
      const took = ex.copy.p.map((p, i) => [p, i]).filter(([p]) => p >= 0.5);
      const mean = ex.copy.p.reduce((a, b) => a + b, 0) / Math.max(1, ex.copy.p.length);
      card.append(el("div", {class: "copy", dir: "auto", text: took.length
        ? "copied (P(copy) ≥ 0.5): " + took.map(([p, i]) => `${qs[i]} ← ${ks[ex.copy.from[i]]} (${fmt(p)})`).join(", ")
        : `nothing copied: P(copy) < 0.5 at every token (mean ${fmt(mean)})`}));
    }
    if (ex.nbest && ex.nbest.length > 1) {
      const ol = el("ol", {class: "nbest"}); ex.nbest.forEach(([t, s]) => ol.append(el("li", {}, el("bdi", {text: t}), `   (${fmt(s)})`)));
      card.append(el("div", {class: "nbest", text: "beam hypotheses:"}), ol);
    }
    if (ex.refs && ex.refs.length) {
      const ul = el("ul", {class: "refs"}); ex.refs.forEach(r => ul.append(el("li", {dir: "auto", text: r})));
      card.append(el("div", {class: "refs", text: "references:"}), ul);
    }
    return card;
  }
  function renderExamples(box, examples) {
    box.replaceChildren(...examples.map(renderExample));
  }
  function filters(box, examples) {
    if (!examples.some(e => e.label && e.label.gold != null)) return null;
    const verdict = el("select", {class: "verdict"}, ...["all", "right", "wrong"].map(v => el("option", {value: v, text: v})));
    const golds = [...new Set(examples.filter(e => e.label).map(e => e.label.gold))];
    const cls = el("select", {class: "klass"}, el("option", {value: "", text: "every class"}),
                   ...golds.map(g => el("option", {value: g, text: `gold ${g}`})));
    const apply = () => box.querySelectorAll(".example").forEach(c => {
      const ok = (verdict.value === "all" || c.classList.contains(verdict.value)) && (!cls.value || c.dataset.gold === cls.value);
      c.style.display = ok ? "" : "none"; });
    verdict.addEventListener("change", apply); cls.addEventListener("change", apply);
    return el("div", {class: "filters"}, el("label", {}, "show ", verdict), el("label", {}, "class ", cls));
  }

  // ---- report.html
  function report(app, data) {
    app.append(el("h1", {text: data.title || "attnapps run"}));
    for (const n of data.notes || []) app.append(el("p", {class: "note", text: n}));
    const ex = el("div", {class: "examples"});
    if ((data.examples || []).length) {
      app.append(el("h2", {text: "Attention, example by example"}),
                 el("p", {class: "note", text: "Hover or click a token of the query row to shade what it attended to."}));
      const f = filters(ex, data.examples); if (f) app.append(f);
      app.append(ex); renderExamples(ex, data.examples);
    }
    if (data.curves && Object.keys(data.curves).length) {
      const c = el("div", {class: "charts"});
      for (const [k, pts] of Object.entries(data.curves)) if (pts.length) c.append(chart(k, pts));
      app.append(el("h2", {text: "Learning curves"}), c);
    }
    if (data.metrics) app.append(el("h2", {text: "Metrics"}), metricsTable(data.metrics));
  }

  // ---- the served demo: GET /v1/runs, POST /v1/<task>/predict
  async function serve(app) {
    app.append(el("h1", {text: "attnapps: attention, live"}));
    const error = el("div", {class: "error", role: "alert"}), out = el("div", {class: "examples"});
    let runs = [];
    try { runs = (await (await fetch("v1/runs")).json()).runs; } catch (e) { error.textContent = `cannot list runs: ${e}`; }
    const rsel = el("select", {class: "run", name: "run"});
    runs.forEach(r => rsel.append(el("option", {value: r.id, text: `${r.id} (${r.task})`})));
    const text = el("textarea", {class: "text", name: "text", dir: "auto", placeholder: "type a sentence or a prompt"});
    const file = el("input", {type: "file", class: "image", name: "image", accept: "image/*"});
    const opts = el("div", {class: "form options"});
    const go = el("button", {type: "submit", class: "go", text: "run"});
    const form = el("form", {class: "predict"}, el("div", {class: "form"}, el("label", {}, "run ", rsel)), text, file, opts,
                    el("div", {class: "form"}, go), error);
    const info = el("div", {class: "note"});
    const current = () => runs.find(r => r.id === rsel.value);
    const refresh = () => {
      const r = current(); if (!r) return;
      const image = r.input === "image"; text.style.display = image ? "none" : ""; file.style.display = image ? "" : "none";
      opts.replaceChildren(...Object.entries(r.options).map(([k, v]) => el("label", {}, `${k} `, el("input", {name: k, value: v, size: 6, class: "opt"}))));
      info.textContent = Object.entries(r.metrics || {}).filter(([k]) => k.startsWith("test.")).map(([k, v]) => `${k} ${fmt(v)}`).join(" · ");
    };
    rsel.addEventListener("change", refresh);
    form.addEventListener("submit", async (e) => {
      e.preventDefault(); error.textContent = ""; const r = current(); if (!r) { error.textContent = "no run loaded"; return; }
      const options = {}; opts.querySelectorAll("input").forEach(i => { options[i.name] = i.value; });
      let req;
      if (r.input === "image") {
        if (!file.files.length) { error.textContent = "choose an image file first"; return; }
        const fd = new FormData(); fd.append("image", file.files[0]);
        for (const [k, v] of Object.entries(options)) fd.append(k, v);
        req = {method: "POST", body: fd};
      } else {
        req = {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({text: text.value, options})};
      }
      go.disabled = true;
      try {
        const resp = await fetch(`v1/${encodeURIComponent(r.task)}/predict?run=${encodeURIComponent(r.id)}`, req);
        const body = await resp.json();
        if (!resp.ok) { error.textContent = body.error ? body.error.message : `HTTP ${resp.status}`; out.replaceChildren(); }
        else renderExamples(out, body.examples);
      } catch (err) { error.textContent = `request failed: ${err}`; }
      finally { go.disabled = false; }
    });
    app.append(form, info, out); refresh();
  }

  const app = document.getElementById("app");
  if (document.body.dataset.mode === "serve") serve(app);
  else report(app, JSON.parse(document.getElementById("data").textContent));
})();
