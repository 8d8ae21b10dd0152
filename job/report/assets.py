"""The pages' CSS and JavaScript, inlined into every page (single self-contained files).

Kept as Python strings rather than package data so every install of the job
(editable, wheel, container image) has them without packaging configuration.
The scripts only add behaviour: sorting and filtering the table, opening a
step and filling it in on demand, following tree clicks. Everything they show
is set with ``textContent`` (never ``innerHTML``), so journal text stays text.
"""

from __future__ import annotations

BASE_CSS = r"""
:root{--fg:#1d2430;--muted:#5b6573;--line:#d8dde4;--bg:#fff;--soft:#f4f6f9;--bad:#c0392b;
--ok:#1e8449;--best:#b7950b;--link:#0b57d0;--mark:#fff3bf}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--fg);background:var(--bg)}
main{max-width:1280px;margin:0 auto;padding:18px 22px 60px}
h1{font-size:22px;margin:4px 0 2px}h2{font-size:17px;margin:26px 0 8px;padding-top:6px;
border-top:1px solid var(--line)}h3{font-size:14px;margin:14px 0 4px}
a{color:var(--link)}p{margin:6px 0}
.muted{color:var(--muted)}.small{font-size:12px}
.lede{color:var(--muted);margin:2px 0 12px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.cards.grid{display:grid;grid-template-columns:repeat(4,minmax(0,1fr))}.cards.grid .card{min-width:0}
.cards.cols-1{grid-template-columns:minmax(0,1fr)}.cards.cols-2{grid-template-columns:repeat(2,minmax(0,1fr))}
.cards.cols-3{grid-template-columns:repeat(3,minmax(0,1fr))}.cards.cols-5{grid-template-columns:repeat(5,minmax(0,1fr))}
@media (max-width:620px){.cards.cols-3,.cards.cols-4,.cards.cols-5{grid-template-columns:repeat(2,minmax(0,1fr))}
.cards>.card:last-child:nth-child(odd){grid-column:1/-1}}
.card{border:1px solid var(--line);border-radius:8px;padding:8px 14px;min-width:140px;background:var(--soft)}
.card b{display:block;font-size:22px;line-height:1.2}
.card span{color:var(--muted);font-size:12px}
svg.chart{max-width:100%;height:auto;display:block;margin:4px 0 10px;font-size:12px}
svg .lbl{fill:var(--fg)}svg .val{fill:var(--muted)}svg .tick{fill:var(--muted);font-size:10px}
svg .grid{stroke:#e6e9ee}svg .axis{stroke:#9aa3ae}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:0 28px}
.empty{color:var(--muted);font-style:italic}
.toolbar{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin:8px 0}
.toolbar input[type=search]{min-width:280px;padding:5px 8px;border:1px solid var(--line);border-radius:6px;font:inherit}
.toolbar select{padding:4px;font:inherit}
button{font:inherit;padding:4px 10px;border:1px solid var(--line);border-radius:6px;background:var(--soft);cursor:pointer}
button[aria-pressed=true]{background:#dce6f7;border-color:#9db4dc}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:4px 6px;text-align:left;vertical-align:top}
th{position:sticky;top:0;background:#eef1f5;z-index:1;white-space:nowrap}
th button{all:unset;cursor:pointer;font-weight:600}
th[aria-sort=ascending] button::after{content:" ▲"}th[aria-sort=descending] button::after{content:" ▼"}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.cause{overflow-wrap:anywhere}
td.nowrap{white-space:nowrap}
td.clip{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
#runs{table-layout:fixed;min-width:1220px}
#runs th{white-space:normal;vertical-align:bottom}
#runs th[data-k=started]{width:10.4em}#runs th[data-k=agent]{width:8.6em}#runs th[data-k=task]{width:12.4em}
#runs th[data-k=run]{width:10em}#runs th[data-k=steps]{width:4em}#runs th[data-k=buggy]{width:4.4em}
#runs th[data-k=valid]{width:5.6em}#runs th[data-k=best]{width:5.4em}#runs th[data-k=failures]{width:5.6em}
#runs th[data-k=result]{width:7em}#runs th[data-k=mode]{width:10.6em}
.agentbar{position:sticky;top:0;z-index:3;display:flex;flex-wrap:wrap;gap:12px;align-items:center;
margin:8px 0;padding:6px 0;background:var(--bg);border-bottom:1px solid var(--line)}
.agentbar select{padding:4px;font:inherit}
.answer{font-size:15px;background:#fff8e6;border:1px solid #f3d27a;border-radius:8px;padding:8px 12px}
tr:hover td{background:#f7f9fc}
.yes{color:var(--ok);font-weight:600}.no{color:var(--bad)}
.tablewrap{max-height:80vh;overflow:auto;border:1px solid var(--line);border-radius:6px}
code,pre{font:12px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace}
footer{margin-top:30px;color:var(--muted);font-size:12px}
"""

INDEX_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("runs-data").textContent);
  var COLS = D.cols, ROWS = D.rows, PAGE = 300;
  var K = {};
  COLS.forEach(function (c, i) { K[c.key] = i; });
  var hay = ROWS.map(function (r) {
    return COLS.filter(function (c) { return c.search; })
      .map(function (c) { var v = r[K[c.key]]; return v == null ? "" : String(v); })
      .join("\u0001").toLowerCase();
  });
  var body = document.getElementById("runs-body");
  var count = document.getElementById("runs-count");
  var more = document.getElementById("runs-more");
  var q = document.getElementById("runs-filter");
  var agent = document.getElementById("runs-agent");
  var noSolution = document.getElementById("runs-nosolution");
  var mode = document.getElementById("runs-mode");
  var state = { key: D.sort, dir: -1, view: [], shown: 0 };

  function cmp(a, b) {
    var i = K[state.key], x = ROWS[a][i], y = ROWS[b][i];
    var xn = x == null || x === "", yn = y == null || y === "";
    if (xn || yn) { return xn === yn ? a - b : (xn ? 1 : -1); }  // blanks last, either way
    if (typeof x === "number" && typeof y === "number") {
      return x === y ? a - b : (x < y ? -state.dir : state.dir);
    }
    var c = String(x).localeCompare(String(y), undefined, { numeric: true, sensitivity: "base" });
    return c === 0 ? a - b : c * state.dir;
  }

  function apply() {
    var terms = q.value.toLowerCase().split(/\s+/).filter(Boolean);
    var ag = agent.value, ns = noSolution.checked, md = mode ? mode.value : "";
    var view = [];
    for (var i = 0; i < ROWS.length; i++) {
      if (ag && ROWS[i][K.agent] !== ag) continue;
      if (md && ROWS[i][K.mode] !== md) continue;
      if (ns && ROWS[i][K.valid] === "yes") continue;
      var h = hay[i], ok = true;
      for (var t = 0; t < terms.length; t++) { if (h.indexOf(terms[t]) < 0) { ok = false; break; } }
      if (ok) view.push(i);
    }
    view.sort(cmp);
    state.view = view;
    state.shown = 0;
    body.textContent = "";
    draw();
    document.querySelectorAll("#runs thead th").forEach(function (th) {
      th.setAttribute("aria-sort", th.dataset.k === state.key ? (state.dir > 0 ? "ascending" : "descending") : "none");
    });
  }

  function plural(n, word, many) {
    return n.toLocaleString() + " " + (n === 1 ? word : many || word + "s");
  }

  function cell(tr, col, value, row) {
    var td = document.createElement("td");
    if (col.num) td.classList.add("num");
    if (col.key === "cause" || col.key === "verdict") td.classList.add("cause");
    if (col.nowrap) td.classList.add("nowrap");
    if (col.clip) {
      td.classList.add("clip");
      if (value != null && value !== "") td.title = String(value);
    }
    if (value == null || value === "") {
      td.textContent = col.num ? "–" : "";
    } else if (col.link && row[K[col.link]]) {
      var a = document.createElement("a");
      a.href = row[K[col.link]];
      a.textContent = value;
      if (col.title) a.title = row[K[col.title]] || "";
      td.appendChild(a);
      if (col.alt && row[K[col.alt]]) {
        var t = document.createElement("a");
        t.href = row[K[col.alt]];
        t.textContent = "txt";
        t.className = "small";
        td.appendChild(document.createTextNode(" "));
        td.appendChild(t);
      }
    } else {
      td.textContent = col.fmt === "pct" ? Math.round(value * 100) + "%"
        : col.fmt === "g4" ? String(Number(value.toPrecision(4))) : String(value);
      if (col.key === "valid") td.classList.add(value === "yes" ? "yes" : "no");
    }
    tr.appendChild(td);
  }

  function draw() {
    var end = Math.min(state.view.length, state.shown + PAGE);
    var frag = document.createDocumentFragment();
    for (var n = state.shown; n < end; n++) {
      var row = ROWS[state.view[n]], tr = document.createElement("tr");
      for (var c = 0; c < COLS.length; c++) { if (!COLS[c].hidden) cell(tr, COLS[c], row[c], row); }
      frag.appendChild(tr);
    }
    body.appendChild(frag);
    state.shown = end;
    count.textContent = state.view.length === ROWS.length
      ? plural(ROWS.length, "run")
      : state.view.length.toLocaleString() + " of " + plural(ROWS.length, "run") + " match";
    more.hidden = state.shown >= state.view.length;
    more.textContent = "Show more (" + (state.view.length - state.shown).toLocaleString() + " left)";
  }

  document.querySelectorAll("#runs thead th").forEach(function (th) {
    th.querySelector("button").addEventListener("click", function () {
      var k = th.dataset.k;
      state.dir = state.key === k ? -state.dir : (COLS[K[k]].num ? -1 : 1);
      state.key = k;
      apply();
    });
  });
  // The agent picker: filters the table and shows each by-agent section's copy for
  // that agent; the choice lives in the URL hash (#agent=NAME) so a link reproduces it.
  // The verdict charts link to "#filter:mode=M;agent=A;task=T": the table, filtered
  // (and the page switched to that agent, so picker and sections agree).
  function known(a) {
    for (var i = 0; i < agent.options.length; i++) { if (agent.options[i].value === a) return a; }
    return "";
  }
  function showAgent(a) {
    agent.value = a;
    document.querySelectorAll(".by-agent").forEach(function (s) { s.hidden = s.dataset.agent !== a; });
    document.body.dataset.agent = a;
    apply();
  }
  function fromHash(scroll) {
    var f = /^#filter:(.*)$/.exec(location.hash);
    if (f) {
      var p = {};
      f[1].split(";").forEach(function (kv) {
        var at = kv.indexOf("=");
        if (at > 0) {
          try { p[kv.slice(0, at)] = decodeURIComponent(kv.slice(at + 1)); } catch (e) { /* ignore */ }
        }
      });
      if (mode) mode.value = p.mode || "";
      q.value = p.task || "";
      noSolution.checked = false;
      showAgent(known(p.agent || ""));
      if (scroll) document.getElementById("runs-h").scrollIntoView();
      return;
    }
    var m = /^#agent=(.*)$/.exec(location.hash), a = "";
    try { a = m ? decodeURIComponent(m[1]) : ""; } catch (e) { a = ""; }
    showAgent(known(a));
  }
  agent.addEventListener("change", function () {
    var a = agent.value;
    if (a) location.hash = "agent=" + encodeURIComponent(a);
    else history.replaceState(null, "", location.pathname + location.search);
    showAgent(a);
  });
  window.addEventListener("hashchange", function () { fromHash(true); });
  q.addEventListener("input", apply);
  noSolution.addEventListener("change", apply);
  if (mode) mode.addEventListener("change", apply);
  more.addEventListener("click", draw);
  if ("IntersectionObserver" in window) {
    new IntersectionObserver(function (es) {
      if (es[0].isIntersecting && state.shown < state.view.length) draw();
    }, { root: document.getElementById("runs").closest(".tablewrap") }).observe(more);
  }
  fromHash(/^#filter:/.test(location.hash));
  document.body.dataset.ready = "1";
})();
"""

JOURNAL_CSS = r"""
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:8px 0}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0;overflow-wrap:anywhere}
.legend-inline span{display:inline-flex;align-items:center;gap:5px;margin-right:14px}
.dot{width:12px;height:12px;border-radius:50%;display:inline-block;border:2px solid #0003}
.dot.buggy{background:#f4c7c3}.dot.valid{background:#c8e6c9}.dot.best{background:#ffe082;border-color:var(--best)}
.dot.unknown{background:#e0e0e0}
.treebox{overflow:auto;max-height:62vh;border:1px solid var(--line);border-radius:6px;background:#fbfcfd}
svg.tree{display:block;font-size:10px}
svg.tree .edge{fill:none;stroke:#8d99a6;stroke-width:1.3}
svg.tree .edge.debug{stroke:#d98880;stroke-dasharray:4 3}
svg.tree circle{stroke:#0005;stroke-width:1.5}
svg.tree .buggy circle{fill:#f4c7c3}svg.tree .valid circle{fill:#c8e6c9}
svg.tree .best circle{fill:#ffe082;stroke:var(--best);stroke-width:3}
svg.tree .unknown circle{fill:#e0e0e0}
svg.tree .sn{text-anchor:middle;font-weight:600;fill:#1d2430;pointer-events:none}
svg.tree .mv{text-anchor:middle;fill:#1e6b3a;font-size:9px;pointer-events:none;
paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}
svg.tree a:hover circle,svg.tree a:focus circle{stroke:#0b57d0;stroke-width:3}
svg.tree a.sel circle{stroke:#0b57d0;stroke-width:4}
.steps .step{border:1px solid var(--line);border-left:5px solid #bbb;border-radius:6px;margin:6px 0;
scroll-margin-top:8px}
.steps .step.buggy{border-left-color:var(--bad)}.steps .step.valid{border-left-color:var(--ok)}
.steps .step.best{border-left-color:var(--best);background:#fffdf3}
.steps .step:target{outline:3px solid #9db4dc}
.steps .step>summary{cursor:pointer;padding:6px 10px;list-style-position:inside}
.steps .step>summary .err{color:var(--bad);font-weight:600;overflow-wrap:anywhere}
.steps .step>summary .det{color:var(--bad)}
.steps .step>summary .ok{color:var(--ok);font-weight:600}
.steps .body{padding:0 12px 10px}
.steps .part{margin:6px 0}.steps .part>summary{cursor:pointer;color:var(--muted);font-weight:600}
.steps .text{white-space:pre-wrap;overflow-wrap:anywhere;margin:4px 0}
.steps pre{background:var(--soft);border:1px solid var(--line);border-radius:4px;padding:8px;
overflow:auto;max-height:70vh;margin:4px 0;white-space:pre}
.steps pre .ln{display:block}
.steps pre .ln::before{content:attr(data-n);display:inline-block;width:3.2em;color:#9aa3ae;
text-align:right;margin-right:10px;user-select:none}
.steps pre .ln.hl{background:#fde2e1;outline:1px solid #f1948a}
.steps pre .tb{background:#fde2e1;color:#7b1e16;display:block}
.steps pre .cut{color:var(--muted);font-style:italic}
.steps .errbox{border:1px solid #f1948a;background:#fdf2f1;border-radius:6px;padding:6px 10px;margin:6px 0}
.steps .errbox b{color:var(--bad)}
.steps .errbox ol{margin:4px 0 0 0;padding-left:22px;font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}
.steps .rel a{margin-right:8px}
.f-buggy .step:not(.buggy){display:none}.f-valid .step:not(.valid):not(.best){display:none}
"""

JOURNAL_JS = r"""
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var META = JSON.parse(document.getElementById("steps-meta").textContent);
  var S = META.steps, CH = META.chunk, R = META.r, MAX_OUT = 200000, EST = 42;
  var bodies = {};

  function body(i) {
    var c = Math.floor(i / CH);
    if (!(c in bodies)) bodies[c] = JSON.parse(document.getElementById("body-" + c).textContent);
    return bodies[c][i - c * CH];
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function add(parent, text) { parent.appendChild(document.createTextNode(text)); }
  function part(title, open, content) {
    var d = el("details", "part");
    d.open = open;
    d.appendChild(el("summary", null, title));
    d.appendChild(content);
    return d;
  }
  function code(text, marks) {
    var pre = el("pre", "code"), lines = text.split("\n"), frag = document.createDocumentFragment();
    for (var i = 0; i < lines.length; i++) {
      var ln = el("span", marks.indexOf(i + 1) >= 0 ? "ln hl" : "ln", lines[i] + "\n");
      ln.setAttribute("data-n", String(i + 1));
      frag.appendChild(ln);
    }
    pre.appendChild(frag);
    return pre;
  }
  function output(text) {
    var pre = el("pre", "out");
    if (text.length > MAX_OUT) {
      pre.appendChild(el("span", "cut", "… " + (text.length - MAX_OUT).toLocaleString() + " earlier characters not shown …\n"));
      text = text.slice(text.length - MAX_OUT);
    }
    var at = text.lastIndexOf("Traceback (most recent call last):");
    if (at < 0) { add(pre, text); return pre; }
    // Highlight from the traceback header to the exception line (the first unindented line).
    var end = text.length, pos = text.indexOf("\n", at);
    while (pos >= 0 && pos + 1 < text.length) {
      var next = text.indexOf("\n", pos + 1), line = text.slice(pos + 1, next < 0 ? text.length : next);
      if (line.trim() && !/^\s/.test(line)) { end = next < 0 ? text.length : next + 1; break; }
      pos = next;
    }
    add(pre, text.slice(0, at));
    pre.appendChild(el("span", "tb", text.slice(at, end)));
    add(pre, text.slice(end));
    return pre;
  }
  function link(i) {
    var a = el("a", null, "step " + S[i].n);
    a.href = "#node-" + i;
    return a;
  }

  // --- the steps: summaries drawn a chunk at a time, bodies when opened ---
  var steps = document.getElementById("steps"), chunks = [];
  function summary(i) {
    var s = S[i], d = el("details", "step " + s.c), sm = el("summary");
    d.id = "node-" + i;
    d.setAttribute("data-i", String(i));
    sm.appendChild(el("b", null, "Step " + s.n));
    add(sm, " · " + s.g + (s.ps != null ? " of step " + s.ps : ""));
    if (s.e) {
      add(sm, " · ");
      sm.appendChild(el("span", "err", s.e));
      if (s.d) { add(sm, " "); sm.appendChild(el("span", "det", "→ " + s.d)); }
    } else if (s.c === "buggy") {
      add(sm, " · ");
      sm.appendChild(el("span", "err", s.r ? "buggy: " + s.r : "buggy (no exception, no review)"));
    }
    if (s.m != null) { add(sm, " · "); sm.appendChild(el("span", "ok", "metric " + s.m)); }
    if (s.c === "best") add(sm, " · ★ best");
    if (s.t) { add(sm, " · "); sm.appendChild(el("span", "muted", s.t)); }
    d.appendChild(sm);
    d.appendChild(el("div", "body"));
    return d;
  }
  function fill(c) {
    var ph = chunks[c];
    if (!ph || ph.dataset.done) return;
    ph.dataset.done = "1";
    var frag = document.createDocumentFragment();
    for (var i = c * CH; i < Math.min(S.length, (c + 1) * CH); i++) frag.appendChild(summary(i));
    ph.appendChild(frag);
    ph.style.minHeight = "";
  }
  for (var c = 0; c * CH < S.length; c++) {
    var ph = el("div", "chunk");
    ph.setAttribute("data-c", String(c));
    ph.style.minHeight = Math.min(CH, S.length - c * CH) * EST + "px";
    steps.appendChild(ph);
    chunks.push(ph);
  }
  var io = "IntersectionObserver" in window ? new IntersectionObserver(function (es) {
    es.forEach(function (e) { if (e.isIntersecting) { fill(Number(e.target.dataset.c)); io.unobserve(e.target); } });
  }, { rootMargin: "800px 0px" }) : null;
  chunks.forEach(function (ph, c) { if (io) io.observe(ph); else fill(c); });

  function render(det) {
    var box = det.querySelector(".body");
    if (!box || box.dataset.done) return;
    box.dataset.done = "1";
    var i = Number(det.dataset.i), b = body(i);
    if (b.e) {
      var err = el("div", "errbox");
      err.appendChild(el("b", null, b.e.t || "Error"));
      if (b.e.m) add(err, ": " + b.e.m);
      if (S[i].d) { err.appendChild(el("br")); err.appendChild(el("span", "det", "→ " + S[i].d)); }
      if (b.e.f && b.e.f.length) {
        var ol = el("ol");
        b.e.f.forEach(function (f) { ol.appendChild(el("li", null, f)); });
        err.appendChild(ol);
      }
      box.appendChild(err);
    }
    if (b.p) box.appendChild(part("Plan", true, el("div", "text", b.p)));
    if (b.c != null) box.appendChild(part("Code (" + b.c.split("\n").length + " lines)", false, code(b.c, b.h || [])));
    if (b.o != null) box.appendChild(part("Output", !!b.e, output(b.o)));
    if (b.a) box.appendChild(part("Analysis", true, el("div", "text", b.a)));
    var rel = el("p", "rel small");
    if (b.u != null) { add(rel, "Parent: "); rel.appendChild(link(b.u)); }
    if (b.k && b.k.length) {
      add(rel, (b.u != null ? " · " : "") + "Children: ");
      b.k.forEach(function (k) { rel.appendChild(link(k)); });
    }
    if (rel.childNodes.length) box.appendChild(rel);
  }
  steps.addEventListener("toggle", function (ev) {
    var t = ev.target;
    if (t.classList && t.classList.contains("step") && t.open) render(t);
  }, true);

  // --- the tree: nodes in (and near) view are drawn; the rest are just data ---
  var tbox = document.getElementById("treebox"), layer = document.getElementById("tree-nodes");
  var order = S.map(function (_, i) { return i; }).sort(function (a, b) { return S[a].x - S[b].x || a - b; });
  var xs = order.map(function (i) { return S[i].x; });
  var drawn = new Map(), selected = -1, queued = false;
  function svg(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function tip(s) {
    var t = ["Step " + s.n, s.g, s.c];
    if (s.m != null) t.push("metric " + s.m);
    if (s.e) t.push(s.e);
    return t.join(" · ");
  }
  function treeNode(i) {
    var s = S[i], a = svg("a", { href: "#node-" + i, "class": "tn " + s.c + (i === selected ? " sel" : ""), "data-i": i });
    var t = svg("title", {});
    t.textContent = tip(s);
    a.appendChild(t);
    a.appendChild(svg("circle", { cx: s.x, cy: s.y, r: R }));
    var n = svg("text", { x: s.x, y: s.y + 4, "class": "sn" });
    n.textContent = String(s.n);
    a.appendChild(n);
    if (s.m != null) {
      var m = svg("text", { x: s.x, y: s.y + R + 11, "class": "mv" });
      m.textContent = s.m;
      a.appendChild(m);
    }
    return a;
  }
  function first(v) {
    var lo = 0, hi = xs.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (xs[mid] < v) lo = mid + 1; else hi = mid; }
    return lo;
  }
  function paintTree() {
    queued = false;
    var pad = 300, L = tbox.scrollLeft - pad, Rt = tbox.scrollLeft + tbox.clientWidth + pad;
    var T = tbox.scrollTop - pad, B = tbox.scrollTop + tbox.clientHeight + pad, want = new Set();
    for (var k = first(L); k < xs.length && xs[k] <= Rt; k++) {
      var i = order[k];
      if (S[i].y >= T && S[i].y <= B) want.add(i);
    }
    drawn.forEach(function (node, i) { if (!want.has(i)) { node.remove(); drawn.delete(i); } });
    var frag = document.createDocumentFragment();
    want.forEach(function (i) { if (!drawn.has(i)) { var n = treeNode(i); drawn.set(i, n); frag.appendChild(n); } });
    layer.appendChild(frag);
  }
  function queue() { if (!queued) { queued = true; requestAnimationFrame(paintTree); } }
  tbox.addEventListener("scroll", queue, { passive: true });
  window.addEventListener("resize", queue);
  layer.addEventListener("click", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a") : null;
    if (a && a.getAttribute("href") === location.hash) { ev.preventDefault(); go(true); }
  });

  function select(i) {
    if (drawn.has(selected)) drawn.get(selected).classList.remove("sel");
    selected = i;
    if (drawn.has(i)) drawn.get(i).classList.add("sel");
  }
  function go(scroll) {
    var m = /^#node-(\d+)$/.exec(location.hash);
    if (!m || Number(m[1]) >= S.length) return;
    var i = Number(m[1]);
    fill(Math.floor(i / CH));
    var det = document.getElementById("node-" + i);
    if (getComputedStyle(det).display === "none") setFilter("all");
    det.open = true;
    render(det);
    select(i);
    if (scroll) det.scrollIntoView({ block: "start" });
  }
  window.addEventListener("hashchange", function () { go(true); });

  function setFilter(f) {
    steps.classList.remove("f-buggy", "f-valid");
    if (f !== "all") steps.classList.add("f-" + f);
    document.querySelectorAll("[data-filter]").forEach(function (b) {
      b.setAttribute("aria-pressed", b.dataset.filter === f ? "true" : "false");
    });
  }
  document.querySelectorAll("[data-filter]").forEach(function (b) {
    b.addEventListener("click", function () { setFilter(b.dataset.filter); });
  });

  paintTree();
  if (!io) chunks.forEach(function (_, c) { fill(c); });
  go(true);
  document.body.dataset.ready = "1";
})();
"""
