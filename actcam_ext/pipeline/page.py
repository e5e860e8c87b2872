"""``actcam_ext.pipeline.page``: the static results page (``index.html``) of an output folder.

``write_index(out_dir, runs)`` writes one self-contained HTML file: the CSS, the script and
the results (as JSON in a ``<script type="application/json">`` block) are inside it; the
pictures are linked by paths relative to ``out_dir``, so the folder can be moved, opened
with ``file://`` or served as it is. The page loads nothing from the network: a
Content-Security-Policy allows only its own inline style and script (by hash), pictures
from the page's own origin and its inline (``data:``) icon.

``runs`` is a list of run dicts, one per method (``actcam demo`` writes three, ``actcam
explain`` and ``actcam batch`` one)::

    {"model": str, "method": str, "layer": str, "root": str (optional),
     "images": [{"path": str | None, "width": int, "height": int,
                 "thumbnail": str (optional), "sheet": str (optional),
                 "predictions": [{"class_id": int, "label": str, "score": float,
                                  "box": [x0, y0, x1, y1], "heatmap": str | None,
                                  "overlay": str | None}, ...]}, ...]}

Picture paths (``thumbnail``, ``sheet``, ``heatmap``, ``overlay``) are '/'-separated and
relative to ``out_dir``; ``path`` only names the image. The page shows one card per image:
the k-th record of a path in one run goes with the k-th record of the same path in every
other run (``None`` paths too, so the runs of one ``explain`` call over arrays line up).

This module imports only the standard library: it sits below the rest of the package.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import pathlib

__all__ = ["write_index", "runs_from_batch", "PAGE_SIZE"]

#: Cards per page: the page builds the DOM of the current page only.
PAGE_SIZE = 50


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def _text(value) -> str | None:
    return None if value is None else str(value)


def _number(value) -> float | None:
    # NaN/inf (a model gone wrong) and junk become null: JSON has no NaN, and the page sorts
    # missing scores last.
    if isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(value) -> int | None:
    f = _number(value)
    return int(f) if f is not None and f == int(f) else None


def _box(value) -> list | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    box = [_int(v) for v in value]
    return None if None in box else box


def _page_data(runs) -> dict:
    """The page's JSON: runs, and images grouped across runs.

    ``images[i] = {"n": name, "w", "h", "e": [[run index, sheet, thumbnail, predictions]]}``
    with ``predictions = [[class_id, label, score, box, heatmap, overlay], ...]``: arrays,
    not objects, because a 10,000-image page repeats these keys a hundred thousand times.
    """
    if not isinstance(runs, (list, tuple)):
        raise TypeError(f"runs must be a list of run dicts, got {type(runs).__name__}")
    out_runs, groups, order = [], {}, []
    for r, run in enumerate(runs):
        if not isinstance(run, dict) or not isinstance(run.get("images"), (list, tuple)):
            raise ValueError(f"run {r} must be a dict with an 'images' list")
        out_runs.append({"method": _text(run.get("method")) or f"run {r + 1}", "layer": _text(run.get("layer")),
                         "model": _text(run.get("model")), "root": _text(run.get("root"))})
        seen: dict = {}
        for i, rec in enumerate(run["images"]):
            if not isinstance(rec, dict):
                raise ValueError(f"run {r}, image {i} must be a dict")
            path = _text(rec.get("path"))
            k = seen[path] = seen.get(path, -1) + 1
            key = (path, k)
            if key not in groups:
                name = path if path is not None else f"image {k + 1}"
                groups[key] = {"n": name if k == 0 or path is None else f"{name} ({k + 1})",
                               "w": _int(rec.get("width")), "h": _int(rec.get("height")), "e": []}
                order.append(key)
            preds = []
            for p in rec.get("predictions") or []:
                if not isinstance(p, dict):
                    continue
                preds.append([_int(p.get("class_id")), _text(p.get("label")) or "", _number(p.get("score")),
                              _box(p.get("box")), _text(p.get("heatmap")), _text(p.get("overlay"))])
            groups[key]["e"].append([r, _text(rec.get("sheet")), _text(rec.get("thumbnail")), preds])
    return {"pageSize": PAGE_SIZE, "runs": out_runs, "images": [groups[k] for k in order]}


def _json_for_script(data) -> str:
    """JSON that cannot end its ``<script>`` element or open a comment there.

    ``<``, ``>`` and ``&`` are written as ``\\u003c`` etc. (JSON outside strings has none of
    them) and ``ensure_ascii`` escapes U+2028/U+2029 and every other non-ASCII character.
    """
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def write_index(out_dir, runs, *, title=None) -> pathlib.Path:
    """Write ``out_dir/index.html`` for ``runs`` (module docstring) and return its path.

    ``out_dir`` must exist. The page is written to a temporary file in ``out_dir`` and
    renamed over ``index.html``: a reader sees the old page or the new one, never half of
    one; its mode is 0666 less the umask, as for any new file. ``title`` defaults to
    "actcam results" plus the model name when all runs share one. Raises ``TypeError`` /
    ``ValueError`` when ``runs`` is not a list of dicts with an ``images`` list; missing or
    malformed optional fields (scores, boxes, picture paths) are shown as absent.
    """
    out = pathlib.Path(out_dir)
    if title is None:
        models = {str(r.get("model")) for r in runs if isinstance(r, dict) and r.get("model")} \
            if isinstance(runs, (list, tuple)) else set()
        title = "actcam results" + (f": {models.pop()}" if len(models) == 1 else "")
    page = _render(_page_data(runs), str(title))
    # Not mkstemp: its files are private (0600), and the page is an ordinary file that others
    # may serve. O_EXCL with mode 0666 lets the umask decide, without changing the process's
    # umask under other threads.
    while True:
        tmp = out / f".index.html.{os.urandom(6).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(page)
        final = out / "index.html"
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return final


def runs_from_batch(out_dir) -> list:
    """The runs of an ``actcam batch`` output: ``[{"model", "method", "layer", "root", "images"}]``.

    ``out_dir/run.json`` gives model, method, layer and root (the image folder as given on the
    command line); ``out_dir/results.jsonl`` gives the images, one record per line. Lines that
    are not a JSON object with a ``predictions`` list (a line cut short by a crash, a blank
    line) are skipped; an image whose path appeared on an earlier line is skipped too (the
    first record wins, as when ``actcam batch`` merges its parts). A missing results.jsonl
    gives no images. Raises ``FileNotFoundError`` without run.json and ``ValueError`` when
    run.json is not a JSON object.
    """
    out = pathlib.Path(out_dir)
    run_file = out / "run.json"
    try:
        head = json.loads(run_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{run_file} is not valid JSON: {exc}") from None
    if not isinstance(head, dict):
        raise ValueError(f"{run_file} must hold a JSON object, got {type(head).__name__}")
    images, seen = [], set()
    try:
        with open(out / "results.jsonl", encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(rec, dict) or not isinstance(rec.get("predictions"), list):
                    continue
                path = rec.get("path")
                if not (path is None or isinstance(path, str)) or path in seen:
                    continue
                seen.add(path)
                images.append(rec)
    except FileNotFoundError:
        pass
    return [{"model": head.get("model"), "method": head.get("method"), "layer": head.get("layer"),
             "root": head.get("root"), "images": images}]


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------

def _render(data: dict, title: str) -> str:
    runs = data["runs"]
    summary = "".join(
        "<li><span class=\"method\">{}</span>{}{}{}</li>".format(
            html.escape(r["method"]),
            f" · layer <code>{html.escape(r['layer'])}</code>" if r["layer"] else "",
            f" · {html.escape(r['model'])}" if r["model"] else "",
            f" · images under <code>{html.escape(r['root'])}</code>" if r["root"] else "")
        for r in runs)
    csp = ("default-src 'none'; img-src 'self' data:; "
           f"style-src {_csp_hash(_CSS)}; script-src {_csp_hash(_JS)}; base-uri 'none'; form-action 'none'")
    # One pass of str.format: text put in (a title, a label) is never searched for fields.
    # The template has no other braces; the CSS and the script come in as values.
    return _TEMPLATE.format(csp=html.escape(csp), title=html.escape(title), summary=summary,
                            total=len(data["images"]), css=_CSS, data=_json_for_script(data), js=_JS)


_CSS = """
:root { color-scheme: light dark; --fg: #1b1b1b; --muted: #5a5a5a; --bg: #fff; --card: #f6f6f6;
  --line: #d0d0d0; --accent: #0b57d0; --match: #fff3b0; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e8e8e8; --muted: #a8a8a8; --bg: #161616; --card: #222; --line: #444;
    --accent: #8ab4f8; --match: #4a4100; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header, main, #controls { padding: 0 1rem; max-width: 1400px; margin: 0 auto; }
h1 { font-size: 1.4rem; margin: 1rem 0 .25rem; overflow-wrap: anywhere; }
.runs { margin: 0 0 .5rem; padding-left: 1.2rem; color: var(--muted); }
.method { font-weight: 600; color: var(--fg); }
code { font-size: .9em; overflow-wrap: anywhere; }
a { color: var(--accent); }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
#controls { position: sticky; top: 0; z-index: 1; background: var(--bg);
  border-bottom: 1px solid var(--line); padding-top: .5rem; padding-bottom: .5rem; }
.fields { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: end; }
.field { display: flex; flex-direction: column; gap: .15rem; font-size: .85rem; color: var(--muted); }
input, select, button { font: inherit; color: inherit; background: var(--bg); border: 1px solid var(--line);
  border-radius: 4px; padding: .3rem .5rem; min-height: 2.2rem; }
input[type=search] { width: 16rem; max-width: 100%; }
button { cursor: pointer; }
button:disabled { cursor: default; opacity: .45; }
.status { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: center; margin-top: .4rem; }
#count { margin: 0; font-weight: 600; }
.pager { display: flex; gap: .35rem; align-items: center; flex-wrap: wrap; }
.pager .where { min-width: 7rem; text-align: center; color: var(--muted); }
#cards { list-style: none; margin: 1rem 0; padding: 0; display: grid; gap: 1rem; }
.card { display: grid; grid-template-columns: minmax(0, 240px) minmax(0, 1fr); gap: 1rem;
  background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: .75rem; }
.card h2 { font-size: 1.05rem; margin: 0; overflow-wrap: anywhere; }
.meta { margin: 0 0 .5rem; color: var(--muted); font-size: .85rem; }
.thumb img, .pred img { display: block; width: 100%; height: auto; background: var(--line); border-radius: 3px; }
.nopic { display: grid; place-items: center; aspect-ratio: 4 / 3; background: var(--line); color: var(--muted);
  border-radius: 3px; font-size: .85rem; }
.run { margin-top: .5rem; }
.run h3 { font-size: .95rem; margin: 0 0 .3rem; font-weight: normal; color: var(--muted); }
.preds { list-style: none; margin: 0; padding: 0; display: grid; gap: .6rem;
  grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); }
.pred { font-size: .85rem; border-radius: 4px; padding: .25rem; }
.pred.match { background: var(--match); }
.pred .label { font-weight: 600; overflow-wrap: anywhere; }
.pred .cid, .pred .box { color: var(--muted); }
.pred .score { font-variant-numeric: tabular-nums; }
.empty { padding: 2rem; text-align: center; color: var(--muted); }
@media (max-width: 640px) {
  .card { grid-template-columns: minmax(0, 1fr); }
  .preds { grid-template-columns: repeat(auto-fill, minmax(120px, 1fr)); }
}
"""

_JS = r"""
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("actcam-data").textContent);
  const runs = data.runs, images = data.images, PAGE = data.pageSize;
  const $ = (id) => document.getElementById(id);
  const fClass = $("f-class"), fMethod = $("f-method"), fSort = $("f-sort");
  const cards = $("cards"), count = $("count");
  const pagers = Array.from(document.querySelectorAll(".pager"));
  const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
  const SORTS = ["order", "score-desc", "score-asc", "name-asc", "name-desc"];
  const state = { q: "", m: "", s: "order", p: 1 };

  // Lower-cased labels once: filtering 10,000 cards on each keystroke stays cheap.
  images.forEach((im, i) => { im.i = i; im.lc = im.e.map((e) => e[3].map((p) => p[1].toLowerCase())); });

  runs.forEach((r, i) => {
    const same = runs.filter((o) => o.method === r.method).length > 1;
    const o = document.createElement("option");
    o.value = String(i);
    const detail = [r.layer, r.model].filter(Boolean).join(", ") || "run " + (i + 1);
    o.textContent = same ? `${r.method} (${detail})` : r.method;
    fMethod.appendChild(o);
  });

  // A picture path relative to the page: each segment percent-encoded, so '#', '?', '%' and
  // ':' in file names stay part of the path (never a fragment, a query or a URL scheme).
  const url = (p) => p.split("/").map(encodeURIComponent).join("/");

  function classTest(q) {
    q = q.trim();
    if (!q) return null;
    if (/^\d+$/.test(q)) { const id = Number(q); return (p) => p[0] === id; }
    const t = q.toLowerCase();
    return (p, lc) => lc.includes(t);
  }

  // The images to show, in order, each with its sort score: the best score among the
  // predictions that are shown (of the chosen method, matching the class filter).
  function select() {
    const test = classTest(state.q), m = state.m === "" ? -1 : Number(state.m), out = [];
    for (const im of images) {
      let shown = false, top = null;
      im.e.forEach((e, j) => {
        if (m >= 0 && e[0] !== m) return;
        if (!test) shown = true;
        e[3].forEach((p, k) => {
          if (test && !test(p, im.lc[j][k])) return;
          shown = true;
          if (p[2] !== null && (top === null || p[2] > top)) top = p[2];
        });
      });
      if (shown) out.push({ im, top });
    }
    const byScore = (dir) => (a, b) => {
      if (a.top === null || b.top === null) return (a.top === null) - (b.top === null) || a.im.i - b.im.i;
      return dir * (a.top - b.top) || a.im.i - b.im.i;
    };
    const byName = (dir) => (a, b) => dir * collator.compare(a.im.n, b.im.n) || a.im.i - b.im.i;
    if (state.s === "score-desc") out.sort(byScore(-1));
    else if (state.s === "score-asc") out.sort(byScore(1));
    else if (state.s === "name-asc") out.sort(byName(1));
    else if (state.s === "name-desc") out.sort(byName(-1));
    return { list: out, test, m };
  }

  function node(tag, attrs, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) n.setAttribute(k, v);
    for (const k of kids) if (k !== null && k !== undefined) n.append(k);  // strings become text nodes
    return n;
  }

  function picture(src, alt, w, h) {
    const img = document.createElement("img");
    img.loading = "lazy";  // before src: the browser then defers the fetch until it nears the view
    img.decoding = "async";
    img.alt = alt;
    if (w && h) { img.width = w; img.height = h; }  // reserves the box, so lazy pictures do not shift the page
    img.src = url(src);
    return img;
  }

  const fmtScore = (s) => (s === null ? "none" : s.toFixed(3));
  const fmtBox = (b) => (b ? `box [${b.join(", ")})` : "no box");

  function card({ im, top }, test, m) {
    const entries = im.e.filter((e) => m < 0 || e[0] === m);
    const li = node("li", { class: "card", "data-index": String(im.i),
                            "data-top-score": top === null ? "" : String(top) });
    // The card's picture: the record's thumbnail, else the first overlay shown; it links to
    // that overlay at full size.
    let over = null;
    for (const e of entries) {
      const p = e[3].find((q) => q[5]);
      if (p) { over = { run: runs[e[0]], p }; break; }
    }
    const thumbEntry = entries.find((e) => e[2]);
    const thumb = node("div", { class: "thumb" });
    if (thumbEntry || over) {
      const src = thumbEntry ? thumbEntry[2] : over.p[5];
      const alt = thumbEntry ? `${im.n}: thumbnail` : `${im.n}: ${over.run.method} overlay for ${over.p[1]}`;
      thumb.append(node("a", { href: url(over ? over.p[5] : src), title: "open the full-size picture" },
                        picture(src, alt, im.w, im.h)));
    } else {
      thumb.append(node("div", { class: "nopic" }, "no picture"));
    }
    const info = node("div", { class: "info" }, node("h2", { class: "name" }, im.n),
                      node("p", { class: "meta" }, im.w && im.h ? `${im.w} × ${im.h} px` : "size unknown"));
    for (const [j, e] of im.e.entries()) {
      if (m >= 0 && e[0] !== m) continue;
      const run = runs[e[0]];
      const h3 = node("h3", null, node("span", { class: "method" }, run.method));
      if (run.layer) h3.append(" · ", node("code", null, run.layer));
      if (e[1]) h3.append(" · ", node("a", { href: url(e[1]) }, "contact sheet"));
      const ul = node("ul", { class: "preds" });
      e[3].forEach((p, k) => {
        const match = test !== null && test(p, im.lc[j][k]);
        const li2 = node("li", { class: match ? "pred match" : "pred",
                                 "data-class-id": p[0] === null ? "" : String(p[0]),
                                 "data-score": p[2] === null ? "" : String(p[2]) });
        if (p[5]) {
          li2.append(node("a", { href: url(p[5]), title: "open the full-size overlay" },
                          picture(p[5], `${run.method} overlay for ${p[1]} (class ${p[0]}) on ${im.n}`, im.w, im.h)));
        }
        const text = node("div", { class: "pred-text" },
                          node("span", { class: "label" }, p[1] || "(no label)"), " ",
                          node("span", { class: "cid" }, p[0] === null ? "" : `#${p[0]}`), node("br"),
                          "score ", node("span", { class: "score", title: "softmax probability" }, fmtScore(p[2])),
                          node("br"),
                          node("span", { class: "box", title: "x0, y0, x1, y1 in image pixels (x1, y1 excluded)" },
                               fmtBox(p[3])));
        if (p[4]) text.append(node("br"), node("a", { href: url(p[4]) }, "heatmap"));
        li2.append(text);
        ul.append(li2);
      });
      if (!e[3].length) ul.append(node("li", { class: "pred" }, "no predictions"));
      info.append(node("section", { class: "run", "data-method": run.method, "aria-label": run.method }, h3, ul));
    }
    li.append(thumb, info);
    return li;
  }

  function writeHash() {
    const h = new URLSearchParams();
    if (state.q) h.set("q", state.q);
    if (state.m !== "") h.set("m", state.m);
    if (state.s !== "order") h.set("s", state.s);
    if (state.p > 1) h.set("p", String(state.p));
    const s = h.toString();
    // replaceState: filtering and paging are not new history entries, yet a reload or a
    // shared link keeps them.
    history.replaceState(null, "", s ? "#" + s : location.pathname + location.search);
  }

  function readHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    state.q = h.get("q") || "";
    const m = h.get("m");
    state.m = m !== null && /^\d+$/.test(m) && Number(m) < runs.length ? m : "";
    state.s = SORTS.includes(h.get("s")) ? h.get("s") : "order";
    state.p = Math.max(1, parseInt(h.get("p") || "1", 10) || 1);
    fClass.value = state.q; fMethod.value = state.m; fSort.value = state.s;
  }

  function render() {
    const { list, test, m } = select();
    const pages = Math.max(1, Math.ceil(list.length / PAGE));
    state.p = Math.min(state.p, pages);
    const start = (state.p - 1) * PAGE, shown = list.slice(start, start + PAGE);
    const frag = document.createDocumentFragment();
    for (const item of shown) frag.append(card(item, test, m));
    if (!shown.length) frag.append(node("li", { class: "empty" }, images.length ? "No image matches." : "No images."));
    cards.replaceChildren(frag);
    count.dataset.shown = String(list.length);
    count.dataset.total = String(images.length);
    count.textContent = `${list.length} of ${images.length} images` +
      (shown.length ? ` · showing ${start + 1}–${start + shown.length}` : "");
    for (const nav of pagers) {
      nav.querySelector(".where").textContent = `Page ${state.p} of ${pages}`;
      nav.querySelector("[data-go=first]").disabled = nav.querySelector("[data-go=prev]").disabled = state.p <= 1;
      nav.querySelector("[data-go=next]").disabled = nav.querySelector("[data-go=last]").disabled = state.p >= pages;
      nav.dataset.page = String(state.p);
      nav.dataset.pages = String(pages);
    }
    writeHash();
  }

  fClass.addEventListener("input", () => { state.q = fClass.value; state.p = 1; render(); });
  fMethod.addEventListener("change", () => { state.m = fMethod.value; state.p = 1; render(); });
  fSort.addEventListener("change", () => { state.s = fSort.value; state.p = 1; render(); });
  $("controls").addEventListener("submit", (ev) => ev.preventDefault());
  for (const nav of pagers) {
    nav.addEventListener("click", (ev) => {
      const go = ev.target.closest("button[data-go]");
      if (!go || go.disabled) return;
      const pages = Number(nav.dataset.pages);
      state.p = { first: 1, prev: state.p - 1, next: state.p + 1, last: pages }[go.dataset.go];
      render();
      // From the bottom pager, bring the new page's first card into view.
      if (nav.classList.contains("bottom")) $("controls").scrollIntoView({ block: "start" });
    });
  }
  window.addEventListener("hashchange", () => { readHash(); render(); });
  readHash();
  render();
  document.body.dataset.ready = "1";
})();
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="generator" content="actcam_ext">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<ul class="runs">{summary}</ul>
</header>
<form id="controls" role="search" aria-label="Filter and sort the images">
<div class="fields">
<div class="field"><label for="f-class">Class (label text or class id)</label>
<input id="f-class" type="search" autocomplete="off" spellcheck="false" placeholder="e.g. cat or 285"></div>
<div class="field"><label for="f-method">Method</label>
<select id="f-method"><option value="">all methods</option></select></div>
<div class="field"><label for="f-sort">Sort</label>
<select id="f-sort">
<option value="order">as written</option>
<option value="score-desc">top score, high to low</option>
<option value="score-asc">top score, low to high</option>
<option value="name-asc">name, A to Z</option>
<option value="name-desc">name, Z to A</option>
</select></div>
</div>
<div class="status">
<p id="count" role="status" aria-live="polite">{total} images</p>
<nav class="pager top" aria-label="Pages">
<button type="button" data-go="first" aria-label="First page">«</button>
<button type="button" data-go="prev" aria-label="Previous page">‹ Prev</button>
<span class="where"></span>
<button type="button" data-go="next" aria-label="Next page">Next ›</button>
<button type="button" data-go="last" aria-label="Last page">»</button>
</nav>
</div>
</form>
<main>
<noscript><p>The image list needs JavaScript.</p></noscript>
<ol id="cards" aria-label="Images"></ol>
<nav class="pager bottom" aria-label="Pages (bottom)">
<button type="button" data-go="first" aria-label="First page">«</button>
<button type="button" data-go="prev" aria-label="Previous page">‹ Prev</button>
<span class="where"></span>
<button type="button" data-go="next" aria-label="Next page">Next ›</button>
<button type="button" data-go="last" aria-label="Last page">»</button>
</nav>
</main>
<script type="application/json" id="actcam-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""
