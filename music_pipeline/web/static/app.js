// The explorer's pages: plain JS over the JSON API (/api/...), hash routes, one <audio> player.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);

// h("a", {href: "#"}, "text", child…): DOM building without innerHTML (titles are file names)
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, params = {}) {
  const qs = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== ""));
  const url = "/api/" + path + (qs.toString() ? "?" + qs : "");
  const resp = await fetch(url);
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

const fmt = (x, d = 2) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
const titleOf = (relpath) => relpath.split("/").pop().replace(/\.[^.]+$/, "");
const trackHref = (key) => "#/track/" + encodeURIComponent(key);

// ---------------------------------------------------------------- the player and its queue
const player = {
  audio: null,
  queue: [], // [{track, title}]
  pos: -1,
  play(list, i = 0) {
    this.queue = list;
    this.pos = i;
    this.load();
  },
  load() {
    const item = this.queue[this.pos];
    if (!item) return;
    listening.leave(this.audio);
    listening.current = item.track;
    this.audio.src = "/audio/" + encodeURIComponent(item.track);
    this.audio.play().catch((e) => console.warn("play refused:", e));
    const np = $("#now-playing");
    np.replaceChildren(...[h("a", { href: trackHref(item.track) }, item.title || item.track),
      this.queue.length > 1 ? h("span", { class: "muted" }, `  ${this.pos + 1}/${this.queue.length}`) : null].filter(Boolean));
    np.classList.remove("muted");
  },
  step(d) {
    if (this.pos + d >= 0 && this.pos + d < this.queue.length) {
      this.pos += d;
      this.load();
    }
  },
};

function playButton(list, i, label = "▶") {
  return h("button", { class: "play", title: "play", "data-track": list[i].track, onclick: (e) => { e.preventDefault(); player.play(list, i); } }, label);
}

// rows of tracks: ▶ title (label, level) score
function trackList(items, opts = {}) {
  const list = items.map((r) => ({ track: r.track, title: r.title || titleOf(r.relpath) }));
  const ol = h("ol", { class: "tracks" });
  items.forEach((r, i) => {
    ol.append(h("li", {},
      playButton(list, i),
      h("a", { href: trackHref(r.track), class: "title" }, list[i].title),
      r.label ? h("span", { class: "tag" }, r.label) : null,
      r.level ? h("span", { class: "level level-" + r.level }, r.level) : null,
      r.camelot ? h("span", { class: "tag camelot", title: r.key }, r.camelot) : null,
      opts.extra ? opts.extra(r) : null,
      r.score !== undefined ? h("span", { class: "score", title: opts.scoreTitle || "cosine similarity" }, fmt(r.score, 3)) : null));
  });
  return ol;
}

function playAllButton(items, label = "▶ play all") {
  const list = items.map((r) => ({ track: r.track, title: r.title || titleOf(r.relpath) }));
  return h("button", { class: "play-all", onclick: () => player.play(list, 0) }, label);
}

function downloads(kind, params) {
  const qs = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== ""));
  return h("span", { class: "downloads" }, "download: ",
    h("a", { href: `/api/${kind}.m3u8?${qs}`, download: "", class: "dl-m3u8" }, "M3U8"), " · ",
    h("a", { href: `/api/${kind}.xspf?${qs}`, download: "", class: "dl-xspf" }, "XSPF"));
}

function errorBox(e) {
  return h("p", { class: "error" }, String(e.message || e));
}

// ---------------------------------------------------------------- search as you type
function attachSearch(input, list, onPick) {
  let timer = null, seq = 0, results = [];
  const close = () => { list.hidden = true; };
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const q = input.value.trim();
      const mine = ++seq;
      if (!q) { close(); return; }
      try {
        const body = await api("search", { q, limit: 12 });
        if (mine !== seq) return; // a newer keystroke answered first
        results = body.results;
        list.replaceChildren(...(results.length ? results.map((r, i) => h("li", { class: "result", "data-track": r.track, onmousedown: (e) => { e.preventDefault(); onPick(r); close(); } },
          h("span", { class: "title" }, r.title),
          r.label ? h("span", { class: "tag" }, r.label) : null,
          r.level ? h("span", { class: "level level-" + r.level }, r.level) : null)) : [h("li", { class: "muted" }, "no match")]));
        list.hidden = false;
      } catch (e) {
        list.replaceChildren(h("li", { class: "error" }, e.message));
        list.hidden = false;
      }
    }, 120);
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && results.length && !list.hidden) { onPick(results[0]); close(); }
    if (e.key === "Escape") close();
  });
  input.addEventListener("blur", () => setTimeout(close, 150));
}

// an input that picks one track (for compare, radio seed, path ends)
function trackPicker(placeholder, initial, onPick) {
  const input = h("input", { type: "search", placeholder, autocomplete: "off", class: "picker" });
  const list = h("ol", { class: "dropdown", hidden: true });
  const box = h("div", { class: "searchbox" }, input, list);
  box.key = null;
  const set = (r) => { box.key = r.track; input.value = r.title; if (onPick) onPick(r); };
  attachSearch(input, list, set);
  // resolves once the initial track (a key from the URL) is filled in, or found missing
  box.ready = initial ? api("search", { q: initial, limit: 1 }).then((b) => { if (b.results[0] && b.results[0].track === initial) set(b.results[0]); }).catch(() => {}) : Promise.resolve();
  return box;
}

// ---------------------------------------------------------------- the map
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
  "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363"];
const LEVEL_COLOURS = { Easy: "#2ca02c", Medium: "#ff9f1c", Hard: "#d62728" };
const NONE_COLOUR = "#bbbbbb";

let mapData = null;
async function loadMap() {
  if (!mapData) mapData = await api("map");
  return mapData;
}

function drawMap(container, data, colourBy, highlight) {
  const pts = data.points;
  const n = pts.track.length;
  const canvas = h("canvas", { id: "map", "aria-label": "map of the library" });
  const tip = h("div", { class: "tooltip", hidden: true });
  const legend = h("div", { class: "legend" });
  container.replaceChildren(h("div", { class: "map-wrap" }, canvas, tip), legend);
  const cssW = container.clientWidth || 900, cssH = Math.max(360, Math.min(640, Math.round(cssW * 0.62)));
  const dpr = window.devicePixelRatio || 1;
  canvas.width = cssW * dpr; canvas.height = cssH * dpr;
  canvas.style.width = cssW + "px"; canvas.style.height = cssH + "px";
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
  for (let i = 0; i < n; i++) {
    minX = Math.min(minX, pts.x[i]); maxX = Math.max(maxX, pts.x[i]);
    minY = Math.min(minY, pts.y[i]); maxY = Math.max(maxY, pts.y[i]);
  }
  const pad = 16, sx = (cssW - 2 * pad) / ((maxX - minX) || 1), sy = (cssH - 2 * pad) / ((maxY - minY) || 1);
  const px = (i) => pad + (pts.x[i] - minX) * sx;
  const py = (i) => cssH - pad - (pts.y[i] - minY) * sy;
  const values = colourBy === "level" ? pts.level : colourBy === "playlist" ? pts.playlist || [] : pts.label;
  const order = (v) => (colourBy === "level" && v in LEVEL_COLOURS ? Object.keys(LEVEL_COLOURS).indexOf(v) : 99);
  const cats = [...new Set(values.map((v) => v || "(none)"))].sort((a, b) => order(a) - order(b) || (a < b ? -1 : a > b ? 1 : 0));
  const colour = (v) => (!v ? NONE_COLOUR : colourBy === "level" ? LEVEL_COLOURS[v] || NONE_COLOUR : PALETTE[cats.indexOf(v) % PALETTE.length]);
  const r = n > 5000 ? 2 : n > 500 ? 3.5 : 6;
  for (let i = 0; i < n; i++) {
    ctx.beginPath();
    ctx.fillStyle = colour(values[i]);
    ctx.globalAlpha = n > 5000 ? 0.6 : 0.85;
    ctx.arc(px(i), py(i), r, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.globalAlpha = 1;
  if (highlight) {
    const i = pts.track.indexOf(highlight);
    if (i >= 0) {
      ctx.beginPath(); ctx.lineWidth = 3; ctx.strokeStyle = "#000";
      ctx.arc(px(i), py(i), r + 5, 0, 2 * Math.PI); ctx.stroke();
    }
  }
  for (const c of cats) legend.append(h("span", { class: "swatch-item" }, h("span", { class: "swatch", "data-colour": colour(c === "(none)" ? null : c) }), c));
  legend.querySelectorAll(".swatch").forEach((s) => { s.style.background = s.dataset.colour; });
  const nearest = (ev) => {
    const rect = canvas.getBoundingClientRect();
    const x = ev.clientX - rect.left, y = ev.clientY - rect.top;
    let best = -1, bestD = (r + 6) ** 2;
    for (let i = 0; i < n; i++) {
      const d = (px(i) - x) ** 2 + (py(i) - y) ** 2;
      if (d < bestD) { bestD = d; best = i; }
    }
    return best;
  };
  canvas.addEventListener("mousemove", (ev) => {
    const i = nearest(ev);
    canvas.style.cursor = i >= 0 ? "pointer" : "default";
    if (i < 0) { tip.hidden = true; return; }
    tip.replaceChildren(h("b", {}, pts.title[i]), h("br"), `${pts.label[i] || "unlabelled"} · ${pts.level[i] || "no PDI level"}`,
      pts.playlist && pts.playlist[i] ? h("br") : null, pts.playlist && pts.playlist[i] ? `playlist: ${pts.playlist[i]}` : null);
    tip.style.left = px(i) + 12 + "px"; tip.style.top = py(i) + 8 + "px";
    tip.hidden = false;
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
  canvas.addEventListener("click", (ev) => {
    const i = nearest(ev);
    if (i < 0) return;
    player.play([{ track: pts.track[i], title: pts.title[i] }]);
    location.hash = trackHref(pts.track[i]);
  });
  // for tests and scripts: where a track's point is, in CSS pixels from the canvas's top-left
  window.mapPoint = (key) => { const i = pts.track.indexOf(key); return i < 0 ? null : { x: px(i), y: py(i), width: cssW, height: cssH }; };
}

async function mapView(view, current) {
  const sel = h("select", { id: "colour-by" }, h("option", { value: "label" }, "colour: label"), h("option", { value: "level" }, "colour: PDI level"),
    h("option", { value: "playlist" }, "colour: playlist"));
  const holder = h("div", { class: "map-holder" });
  const note = h("p", { class: "muted small" });
  view.replaceChildren(h("section", {}, h("h2", {}, "The library map ", sel), note, holder,
    h("p", { class: "muted small" }, "Each point is a track; nearby points sound alike. Click a point to play it and open its page.")));
  try {
    const data = await loadMap();
    if (!current()) return;
    note.textContent = `${data.count} tracks — ${data.note}`;
    const draw = () => drawMap(holder, data, sel.value);
    sel.addEventListener("change", draw);
    draw();
  } catch (e) { holder.replaceChildren(errorBox(e)); }
}

// ---------------------------------------------------------------- the track page
function bars(probabilities) {
  const table = h("table", { class: "bars" });
  for (const [label, p] of Object.entries(probabilities)) {
    const bar = h("span", { class: "bar" });
    bar.style.width = Math.round(p * 100) + "%";
    table.append(h("tr", {}, h("td", {}, label), h("td", { class: "barcell" }, bar), h("td", { class: "num" }, fmt(p))));
  }
  return table;
}

// the other copies of this recording in the library (the build's duplicate_groups); none: no card
function duplicatesSection(copies) {
  if (!copies || !copies.length) return document.createDocumentFragment();
  return h("section", { class: "card", id: "duplicates" }, h("h3", {}, "Also in the library as"),
    h("p", { class: "muted small" }, `${copies[0].kind}: never offered as a neighbour of this track`),
    trackList(copies, { extra: (r) => h("span", { class: "muted small" }, r.relpath) }));
}

function genreSection(g) {
  const s = h("section", { class: "card", id: "genre" }, h("h3", {}, "Genre"));
  if (!g.available) return s.appendChild(h("p", { class: "muted" }, g.reason)), s;
  s.append(h("p", {}, "Predicted ", h("b", {}, g.label), h("span", { class: "muted" }, ` (model ${g.model})`)), bars(g.probabilities));
  if (g.explanation) s.append(h("p", { class: "explanation" }, g.explanation.text));
  for (const n of g.notes || []) s.append(h("p", { class: "muted small" }, n));
  if (g.cross_validated) {
    const cv = g.cross_validated;
    s.append(h("p", { class: "small" }, `Cross-validated (${cv.probability_source}): ${cv.first} ${fmt(cv.p_first)}, then ${cv.second} ${fmt(cv.p_second)}`));
  }
  return s;
}

function difficultySection(d) {
  const s = h("section", { class: "card", id: "difficulty" }, h("h3", {}, "Difficulty (PDI)"));
  if (!d.available) return s.appendChild(h("p", { class: "muted" }, d.reason)), s;
  s.append(h("p", {}, h("span", { class: "level big level-" + d.level }, d.level), ` PDI ${fmt(d.pdi, 3)}`,
    h("span", { class: "muted" }, ` (levels cut at ${d.thresholds.map((t) => fmt(t, 3)).join(" and ")}; structural ${fmt(d.structural)}, intensity ${fmt(d.intensity)})`)));
  if (d.explanation) s.append(h("p", { class: "explanation" }, d.explanation));
  s.append(h("ul", { class: "reasons" }, d.reasons.map((r) => h("li", {}, r))));
  if (d.out_of_range && d.out_of_range.length) s.append(h("p", { class: "muted small" }, "outside the library's range: " + d.out_of_range.join(", ")));
  return s;
}

function compareSection(key) {
  const out = h("div", { class: "compare-out" });
  const picker = trackPicker("compare with… (type a title)", null, async (r) => {
    out.replaceChildren(h("p", { class: "muted" }, "comparing…"));
    try {
      const c = await api("compare", { a: key, b: r.track });
      const table = h("table", { class: "groups" }, h("tr", {}, h("th", {}, "group"), h("th", {}, "cosine"), h("th", {}, "percentile"), h("th", {}, "")));
      for (const g of c.groups) table.append(h("tr", { class: "verdict-" + g.verdict }, h("td", {}, g.group), h("td", { class: "num" }, fmt(g.cosine, 3)), h("td", { class: "num" }, fmt(g.percentile, 0)), h("td", {}, g.verdict)));
      out.replaceChildren(
        h("p", {}, `cosine ${fmt(c.cosine, 3)}`, c.percentile !== null ? ` — percentile ${fmt(c.percentile, 0)} among random pairs of this library` : "",
          " ", playButton([{ track: r.track, title: r.title }], 0, "▶ play it")),
        table,
        h("p", { class: "small" }, `agree: ${c.agree.join(", ") || "none"}; differ: ${c.differ.join(", ") || "none"}`),
        h("p", { class: "small muted" }, "largest differences: " + c.differences.map((d) => `${d.feature} (z ${fmt(d.z_a)} vs ${fmt(d.z_b)})`).join("; ")));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  });
  return h("section", { class: "card", id: "compare" }, h("h3", {}, "Compare"), picker, out);
}

// other performances of the same composition (another instrument, tempo or key), loaded after the page
function versionsSection(key) {
  const out = h("div", { class: "results" }, h("p", { class: "muted" }, "aligning harmonic sequences…"));
  api("versions/" + encodeURIComponent(key)).then((r) => {
    if (!r.available) { out.replaceChildren(h("p", { class: "muted small" }, r.reason)); return; }
    out.replaceChildren(r.results.length ? trackList(r.results, { scoreTitle: "version score (higher: more of the harmony shared)" })
      : h("p", { class: "muted" }, "no other track to compare with"));
  }).catch((e) => out.replaceChildren(errorBox(e)));
  return h("section", { class: "card", id: "versions" }, h("h3", {}, "Other versions"),
    h("p", { class: "muted small" }, "the same composition played otherwise: instrument, tempo or key (highest score first)"), out);
}

async function trackView(view, key, current) {
  view.replaceChildren(h("p", { class: "muted" }, "loading…"));
  let t;
  try { t = await api("track/" + encodeURIComponent(key)); } catch (e) { if (current()) view.replaceChildren(errorBox(e)); return; }
  if (!current()) return; // the reader has moved on to another page meanwhile
  const tr = t.track;
  const me = [{ track: tr.track, title: tr.title }];
  const mapBox = h("div", { class: "map-holder small-map" });
  view.replaceChildren(
    h("section", { class: "track-head" },
      h("h2", {}, playButton(me, 0, "▶ play"), " ", tr.title),
      h("p", { class: "muted" }, [tr.label ? `label ${tr.label}` : "unlabelled", tr.level ? `PDI level ${tr.level}` : null,
        tr.tempo_bpm ? `${fmt(tr.tempo_bpm, 0)} BPM` : null,
        t.music_key ? `${t.music_key.key} (${t.music_key.camelot}, confidence ${fmt(t.music_key.confidence)})` : null, tr.duration_s ? `${Math.floor(tr.duration_s / 60)}:${String(Math.round(tr.duration_s % 60)).padStart(2, "0")}` : null,
        tr.relpath].filter(Boolean).join(" · ")),
      h("p", {}, h("a", { href: `#/radio?seed=${encodeURIComponent(tr.track)}` }, "radio from here"), " · ",
        h("a", { href: `#/path?from=${encodeURIComponent(tr.track)}` }, "a path from here to…"), " · ",
        h("span", { class: "muted small" }, "key " + tr.track))),
    h("div", { class: "grid" },
      h("section", { class: "card", id: "similar" }, h("h3", {}, "Five nearest ", playAllButton(t.similar.results)), trackList(t.similar.results),
        downloads("similar", { track: tr.track, n: 5 })),
      h("section", { class: "card", id: "diverse" }, h("h3", {}, `Five diverse neighbours `, playAllButton(t.diverse.results)),
        h("p", { class: "muted small" }, `MMR re-ranking (λ = ${t.diverse.diverse}): similar to this track, different from each other`),
        trackList(t.diverse.results))),
    h("div", { class: "grid" }, genreSection(t.genre), difficultySection(t.difficulty)),
    duplicatesSection(t.duplicates),
    versionsSection(tr.track),
    compareSection(tr.track),
    h("section", { class: "card" }, h("h3", {}, "On the map"), mapBox));
  loadMap().then((data) => drawMap(mapBox, data, "label", tr.track)).catch((e) => mapBox.replaceChildren(errorBox(e)));
}

// ---------------------------------------------------------------- radio and path
function queryParams() {
  const q = location.hash.split("?")[1] || "";
  return Object.fromEntries(new URLSearchParams(q));
}

function toggledSlider(name, label, min, max, step, value, initial) {
  const on = initial !== undefined && initial !== "";
  const check = h("input", { type: "checkbox", id: name + "-on", checked: on });
  const range = h("input", { type: "range", id: name, min, max, step, value: on ? initial : value });
  const out = h("output", {}, range.value);
  range.addEventListener("input", () => { out.value = range.value; check.checked = true; });
  const box = h("label", { class: "slider" }, check, ` ${label} `, range, out);
  box.value = () => (check.checked ? range.value : null);
  return box;
}

// "harmonic" (DJ mix): each step Camelot-compatible and within ±6 % of the tempo before it
function harmonicBox(initial) {
  const check = h("input", { type: "checkbox", id: "harmonic" });
  check.checked = initial === "1";
  const box = h("label", { title: "each step Camelot-compatible with the one before and within ±6 % of its tempo (half/double time allowed)" }, check, " harmonic mix");
  box.value = () => (check.checked ? "1" : null);
  return box;
}

async function radioView(view, current) {
  const p = queryParams();
  const info = await api("info").catch(() => ({}));
  if (!current()) return;
  const [lo, hi] = info.bpm_range || [60, 180];
  const seed = trackPicker("seed track… (type a title)", p.seed);
  const length = h("input", { type: "number", id: "length", min: 1, max: 200, value: p.length || 15 });
  const bpm = toggledSlider("bpm", "tempo", Math.floor(lo), Math.ceil(hi), 1, Math.round((lo + hi) / 2), p.bpm);
  const energy = toggledSlider("energy", "energy (library percentile)", 0, 1, 0.05, 0.5, p.energy);
  const harmonic = harmonicBox(p.harmonic);
  const out = h("div", { class: "results" });
  const go = async () => {
    if (!seed.key) { out.replaceChildren(h("p", { class: "error" }, "pick a seed track first")); return; }
    const params = { seed: seed.key, length: length.value, bpm: bpm.value(), energy: energy.value(), harmonic: harmonic.value() };
    out.replaceChildren(h("p", { class: "muted" }, "walking…"));
    try {
      const r = await api("radio", params);
      const all = [{ track: r.query.track, relpath: r.query.relpath, label: r.query.label, title: titleOf(r.query.relpath) }, ...r.results];
      out.replaceChildren(
        h("p", {}, playAllButton(all, "▶ play the radio"), " ", downloads("radio", params),
          r.results.length < Number(length.value) ? h("span", { class: "muted" }, ` only ${r.results.length} tracks fit the filters`) : null),
        trackList(r.results, { extra: (x) => h("span", { class: "muted small" }, `${fmt(x.tempo_bpm, 0)} BPM · energy ${fmt(x.energy)}${x.camelot ? ` · ${x.key} (${x.camelot})` : ""}`), scoreTitle: "step score" }));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  };
  view.replaceChildren(h("section", { class: "card" }, h("h2", {}, "Radio"),
    h("p", { class: "muted small" }, "A playlist that walks from the seed through similar tracks, never repeating, held near the seed. Tick a control to filter by tempo (± 8 BPM) or energy (± 0.15)."),
    h("div", { class: "form" }, seed, h("label", {}, "tracks ", length), bpm, energy, harmonic, h("button", { id: "go", onclick: go }, "Make radio")), out));
  if (p.seed) seed.ready.then(() => { if (seed.key) go(); });
}

async function pathView(view, current) {
  const p = queryParams();
  const a = trackPicker("from track A…", p.from), b = trackPicker("to track B…", p.to);
  const length = h("input", { type: "number", id: "path-length", min: 1, max: 200, value: p.length || 8 });
  const harmonic = harmonicBox(p.harmonic);
  const out = h("div", { class: "results" });
  const go = async () => {
    if (!a.key || !b.key) { out.replaceChildren(h("p", { class: "error" }, "pick both ends first")); return; }
    const params = { from: a.key, to: b.key, length: length.value, harmonic: harmonic.value() };
    out.replaceChildren(h("p", { class: "muted" }, "finding the way…"));
    try {
      const r = await api("path", params);
      const ends = (q) => ({ track: q.track, relpath: q.relpath, label: q.label, title: titleOf(q.relpath) });
      const all = [ends(r.from), ...r.results, ends(r.to)];
      out.replaceChildren(
        h("p", {}, playAllButton(all, "▶ play the path"), " ", downloads("path", params),
          h("span", { class: "muted small" }, ` cos(A, B) = ${fmt(r.cosine, 3)}`)),
        trackList(all.map((x, i) => ({ ...x, t: i === 0 ? 0 : i === all.length - 1 ? 1 : x.t })),
          { extra: (x) => h("span", { class: "muted small" }, x.from_similarity !== undefined ? `t ${fmt(x.t)} · like A ${fmt(x.from_similarity)} · like B ${fmt(x.to_similarity)}` : x.t === 0 ? "A" : "B") }));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  };
  view.replaceChildren(h("section", { class: "card" }, h("h2", {}, "A path from A to B"),
    h("p", { class: "muted small" }, "Waypoints evenly spaced on the way from A to B in the similarity space; at each, the nearest unused track that also sounds like the one picked before; played in order of progress from A towards B."),
    h("div", { class: "form" }, a, b, h("label", {}, "tracks between ", length), harmonic, h("button", { id: "go", onclick: go }, "Find the path")), out));
  if (p.from && p.to) Promise.all([a.ready, b.ready]).then(() => { if (a.key && b.key) go(); });
}

// ---------------------------------------------------------------- listening: events and "For you"
// The listener is a name chosen on the page (kept in this browser); every play, skip and like is
// sent to /api/events as JSON. Leaving a track before its end records a play of the seconds heard.
const listening = {
  current: null,
  user() { return localStorage.getItem("mp_user") || ""; },
  setUser(name) { localStorage.setItem("mp_user", name.trim()); $("#listener").value = name.trim(); },
  async send(event, track, extra = {}) {
    const user = this.user();
    if (!user || !track) return;
    try {
      await fetch("/api/events", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ user, track, event, ...extra }) });
    } catch (e) { console.warn("event not recorded:", e); }
  },
  leave(audio, finished = false) { // the track in the player is left (another started, skipped, ended)
    if (!this.current || !audio) return;
    const heard = audio.currentTime || 0;
    if (finished || heard >= 1) this.send("play", this.current, { seconds_played: Math.round(heard * 10) / 10, finished });
    this.current = null;
  },
  skip(audio) {
    if (!this.current) return;
    this.send("skip", this.current, { seconds_played: Math.round((audio.currentTime || 0) * 10) / 10 });
    this.current = null;
    player.step(1);
  },
  like() { this.send("like", this.current || (player.queue[player.pos] || {}).track); },
};

function forYouView(view, current) {
  const p = Object.fromEntries(new URLSearchParams(location.hash.split("?")[1] || ""));
  const name = h("input", { type: "text", placeholder: "your name", value: p.user || listening.user(), id: "foryou-user" });
  const out = h("div");
  const show = async (radio) => {
    const user = name.value.trim();
    if (!user) { out.replaceChildren(h("p", { class: "muted" }, "choose a listener name first")); return; }
    listening.setUser(user);
    out.replaceChildren(h("p", { class: "muted" }, "listening to what you played…"));
    try {
      const r = await api(radio ? "listener-radio" : "recommend", radio ? { user, length: 20 } : { user, n: 20 });
      if (!current()) return;
      const items = r.results.map((x) => ({ ...x, title: x.title }));
      out.replaceChildren(
        h("p", {}, playAllButton(items, radio ? "▶ play your radio" : "▶ play all"),
          h("span", { class: "muted small" }, ` ${r.evidence ? r.evidence.positive_tracks + " tracks you played count" : ""}`)),
        trackList(items, { scoreTitle: "recommendation score", extra: (x) => h("span", { class: "muted small why" }, x.why) }));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  };
  view.replaceChildren(h("section", { class: "card" }, h("h2", {}, "For you"),
    h("p", { class: "muted small" }, "Tracks you have not played, from what you played, skipped and liked, what other listeners played, and how the tracks sound (never their names). Play, skip and ♥ in the player bar to teach it."),
    h("div", { class: "form" }, h("label", {}, "listener ", name),
      h("button", { id: "foryou-go", onclick: () => show(false) }, "Recommend"),
      h("button", { id: "foryou-radio", onclick: () => show(true) }, "Radio for me")), out));
  if (name.value) show(false);
}

async function playlistsView(view, current) {
  const out = h("div", { class: "results" }, h("p", { class: "muted" }, "loading…"));
  view.replaceChildren(h("section", { class: "card" }, h("h2", {}, "Playlists"),
    h("p", { class: "muted small" }, "The library grouped by sound alone (never by file or folder names), each group named from what sets it apart — the pretrained tagger's tags, the tempo, the difficulty level — and ordered so that each track leads to one like it. Colour the map by playlist to see them."),
    out));
  try {
    const r = await api("playlists");
    if (!current()) return;
    if (!r.playlists.length) { out.replaceChildren(h("p", { class: "muted" }, r.note || "no playlists")); return; }
    out.replaceChildren(...r.playlists.map((p, i) => h("section", { class: "playlist" },
      h("h3", {}, `${i + 1}. ${p.name} `, h("span", { class: "muted small" }, `${p.tracks.length} tracks`)),
      h("p", { class: "muted small why" }, p.why),
      h("p", {}, playAllButton(p.tracks, "▶ play"), " ",
        h("span", { class: "downloads" }, "download: ",
          h("a", { href: `/api/playlists/${i + 1}.m3u8`, download: "", class: "dl-m3u8" }, "M3U8"), " · ",
          h("a", { href: `/api/playlists/${i + 1}.xspf`, download: "", class: "dl-xspf" }, "XSPF"))),
      trackList(p.tracks))));
  } catch (e) { out.replaceChildren(errorBox(e)); }
}

// ---------------------------------------------------------------- routing
let viewSeq = 0;
function route() {
  const view = $("#view");
  const mine = ++viewSeq;
  const current = () => mine === viewSeq; // async views draw nothing once a newer route has begun
  const [path] = location.hash.replace(/^#/, "").split("?");
  const m = path.match(/^\/track\/(.+)$/);
  window.scrollTo(0, 0);
  if (m) return trackView(view, decodeURIComponent(m[1]), current);
  if (path === "/radio") return radioView(view, current);
  if (path === "/path") return pathView(view, current);
  if (path === "/foryou") return forYouView(view, current);
  if (path === "/playlists") return playlistsView(view, current);
  return mapView(view, current);
}

document.addEventListener("DOMContentLoaded", () => {
  player.audio = $("#player");
  player.audio.addEventListener("ended", () => { listening.leave(player.audio, true); player.step(1); });
  $("#skip").addEventListener("click", () => listening.skip(player.audio));
  $("#like").addEventListener("click", () => listening.like());
  $("#listener").value = listening.user();
  $("#listener").addEventListener("change", (e) => listening.setUser(e.target.value));
  $("#prev").addEventListener("click", () => player.step(-1));
  $("#next").addEventListener("click", () => player.step(1));
  attachSearch($("#search"), $("#search-results"), (r) => { location.hash = trackHref(r.track); $("#search").value = ""; $("#search").blur(); });
  api("info").then((i) => { $("#library-info").textContent = `${i.tracks} tracks · ${i.search} search` +
    (i.duplicates && i.duplicates.groups ? ` · ${i.duplicates.groups} duplicate groups (${i.duplicates.extra_copies} extra copies)` : ""); }).catch(() => {});
  window.addEventListener("hashchange", route);
  route();
});
