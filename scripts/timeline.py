#!/usr/bin/env python3
"""Draws a `reactor --trace-events=json` trace as one self-contained HTML page.

    reactor --trace-events=json 2> trace.jsonl      # ... then talk to it, stop it
    scripts/timeline.sh trace.jsonl > timeline.html

Reads the trace (the reactor's whole stderr will do: lines that are not JSON objects, the
ordinary log lines, are skipped), and writes the page to stdout: HTML, CSS, script and data
in one file, nothing fetched from anywhere, nothing to build. Time runs left to right, one row
per token, each wakeup of epoll_wait a grey band; every record is one mark, with its line of
the trace on hover. Standard library only.
"""

import html
import json
import os
import re
import sys


def read_records(path):
    """The trace's records, in order; warnings for lines that look like JSON but are not."""
    records = []
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8", errors="replace")
    with stream:
        for number, line in enumerate(stream, 1):
            line = line.strip()
            if not line.startswith("{"):
                continue  # an ordinary log line
            try:
                record = json.loads(line)
            except ValueError as e:
                print(f"timeline: line {number}: not JSON ({e}), skipped", file=sys.stderr)
                continue
            if not isinstance(record, dict) or "kind" not in record:
                print(f"timeline: line {number}: not a trace record, skipped", file=sys.stderr)
                continue
            records.append(record)
    return records


def embed(records):
    """The records as JSON that is safe inside a <script> element: only ASCII, and no `<`,
    `>` or `&` anywhere (they can only be inside strings, where `\\u003c` means the same)."""
    text = json.dumps(records, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>inetloop timeline: __SOURCE__</title>
<style>
  body { font: 13px/1.4 system-ui, sans-serif; margin: 12px 16px; color: #222; }
  h1 { font-size: 17px; margin: 0 0 2px; }
  .sub { color: #555; margin: 0 0 6px; }
  #legend { display: flex; flex-wrap: wrap; gap: 2px 14px; margin: 4px 0 8px; }
  #legend span { display: inline-flex; align-items: center; gap: 4px; white-space: nowrap; }
  #controls { margin: 4px 0 8px; color: #444; }
  .line { display: flex; border: 1px solid #ccc; margin-bottom: 6px; }
  .labels { flex: none; background: #fafafa; border-right: 1px solid #ccc; }
  .scroll { overflow-x: auto; flex: 1; }
  #details { margin-top: 8px; min-height: 3.2em; padding: 6px 8px; background: #f4f6f8;
             border-left: 3px solid #89a; white-space: pre-wrap; font: 12px/1.4 monospace; }
  #empty { padding: 16px; background: #fff6d5; border: 1px solid #e0c060; display: none; }
  #errors:not(:empty) { color: #a00; background: #fee; padding: 6px; }
  .mark { cursor: default; }
  .mark:hover > :first-child { stroke: #000; stroke-width: 2; }
  text { font: 10px system-ui, sans-serif; fill: #333; }
  .rowlabel { font: 11px monospace; fill: #222; }
  .small { font-size: 9px; fill: #555; }
</style>
</head>
<body>
<h1>What the loop did: a <code>--trace-events=json</code> timeline</h1>
<p class="sub" id="summary">__SOURCE__</p>
<p class="sub">Time runs left to right. Each grey band is one wakeup of <code>epoll_wait</code>
(its number on top); the gaps between bands are the loop asleep (how long, on top). One row per
token (<code>#slot.generation</code>), each mark one record of the trace: hover for its line.
Red shading: output waiting for <code>WRITABLE</code>; orange: input left in the kernel
(backpressure); dashed: lingering after FIN.</p>
<div id="legend"></div>
<div id="controls"><label><input type="checkbox" id="linear"> true time scale (wakeups are
microseconds long: they collapse to lines)</label></div>
<div id="empty">This trace has no records. Run the reactor with <code>--trace-events=json</code>,
keep its stderr (<code>2&gt; trace.jsonl</code>), talk to it, then draw that file.</div>
<div id="chart"></div>
<div id="details">Hover over a mark to see its record.</div>
<p class="sub" id="count">drew <span id="drawn-count">0</span> marks for
<span id="record-count">0</span> records</p>
<pre id="errors"></pre>
<script>
  // Before anything else: every error of this page, and every console error or warning, is
  // shown in it (tests/timeline.rs reads them from there).
  window.timelineErrors = [];
  function pageError(message) {
    window.timelineErrors.push(String(message));
    document.getElementById("errors").textContent = window.timelineErrors.join("\n");
  }
  window.addEventListener("error", (e) => pageError(e.message));
  window.addEventListener("unhandledrejection", (e) => pageError("unhandled rejection: " + e.reason));
  for (const level of ["error", "warn"]) {
    const original = console[level].bind(console);
    console[level] = (...args) => { pageError("console." + level + ": " + args.join(" ")); original(...args); };
  }
</script>
<script type="application/json" id="trace-data">__DATA__</script>
<script>
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const ROW_H = 30, TOP = 44, BOTTOM = 26, STEP = 17, PAD = 24, LABEL_W = 250;

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const key in attrs) node.setAttribute(key, attrs[key]);
  if (parent) parent.appendChild(node);
  return node;
}
function text(parent, x, y, content, cls, anchor) {
  const node = el("text", { x: x, y: y, class: cls || "", "text-anchor": anchor || "middle" }, parent);
  node.textContent = content;
  return node;
}
function duration(us) {
  if (us >= 1e6) return (us / 1e6).toFixed(3) + " s";
  if (us >= 1000) return (us / 1000).toFixed(1) + " ms";
  return us + " µs";
}
function bytes(n) { return n < 1000 ? String(n) : Math.round(n / 1024) + "k"; }
function seconds(us) { return "+" + (us / 1e6).toFixed(6) + " s"; }

// The marks: a shape per kind of record, drawn around (0, 0).
const path = (d, fill, stroke, width) => (g) =>
  el("path", { d: d, fill: fill, stroke: stroke || fill, "stroke-width": width || 1 }, g);
const circle = (fill, stroke, dash) => (g) =>
  el("circle", { r: 6, fill: fill, stroke: stroke || fill, "stroke-width": 2,
                 "stroke-dasharray": dash || "none" }, g);
const star = (fill, stroke) => path(
  "M0,-8 L2.2,-2.6 L7.6,-2.5 L3.4,1 L4.8,6.5 L0,3.4 L-4.8,6.5 L-3.4,1 L-7.6,-2.5 L-2.2,-2.6 Z",
  fill, stroke, 1.3);
const STYLES = {
  wakeup:   { label: "wakeup (band)", draw: (g) => el("rect", { x: -7, y: -6, width: 14, height: 12, fill: "#e3e7ee", stroke: "#aab" }, g) },
  ev_read:  { label: "readable event", draw: circle("#2f6fd0") },
  ev_write: { label: "writable event", draw: circle("#f08c1a") },
  ev_both:  { label: "readable + writable", draw: circle("#8a4fd0") },
  ev_replay:{ label: "replayed (no new edge)", draw: circle("#fff", "#2f6fd0", "2,2") },
  ev_hup:   { label: "hang-up / error", draw: circle("#d03030") },
  accepted: { label: "accepted", draw: path("M-7,0 L7,0 M0,-7 L0,7", "none", "#11998e", 3.5) },
  read:     { label: "read / received", draw: path("M-6,-5 L6,-5 L0,6 Z", "#2a9d3a") },
  drained:  { label: "drained (WouldBlock, short read)", draw: path("M-2,-9 L2,-9 L2,9 L-2,9 Z", "#145c20") },
  eof:      { label: "read 0: peer's FIN", draw: path("M-6,-5 L6,-5 L0,6 Z", "#fff", "#2a9d3a", 2) },
  write:    { label: "wrote / sent", draw: path("M-6,5 L6,5 L0,-6 Z", "#f08c1a") },
  blocked:  { label: "write → WouldBlock (queued)", draw: path("M-5,-5 L5,-5 L5,5 L-5,5 Z", "#d03030") },
  no_room:  { label: "no room: not reading", draw: path("M-5,-5 L5,-5 L5,5 L-5,5 Z", "#fff", "#e07000", 2) },
  w_on:     { label: "output waits for WRITABLE", draw: path("M0,-7 L7,0 L0,7 L-7,0 Z", "#8a4fd0") },
  w_off:    { label: "output drained (no longer waiting)", draw: path("M0,-7 L7,0 L0,7 L-7,0 Z", "#fff", "#8a4fd0", 2) },
  fin:      { label: "sent FIN", draw: path("M-5,-6 L6,0 L-5,6 Z", "#222") },
  closed:   { label: "deregistered and closed", draw: path("M-5,-5 L5,5 M5,-5 L-5,5", "none", "#222", 3) },
  timer:    { label: "timer fired", draw: star("#e8b400", "#a07800") },
  timer_dropped: { label: "timer dropped (stale)", draw: star("#fff", "#c09000") },
  other:    { label: "other (refused, balancer, …)", draw: (g) => el("circle", { r: 3.5, fill: "#888" }, g) },
};
const EVENTS = { readable: "ev_read", writable: "ev_write", readable_writable: "ev_both",
                 replay: "ev_replay", hangup: "ev_hup", error: "ev_hup" };
const ACTIONS = { accepted: "accepted", read: "read", received: "read", short_read: "drained",
                  read_drained: "drained", recv_drained: "drained", accept_drained: "drained",
                  eof: "eof", wrote: "write", sent: "write", write_blocked: "blocked",
                  send_blocked: "blocked", queued: "blocked", no_room: "no_room",
                  writable_on: "w_on", writable_off: "w_off", fin: "fin", closed: "closed" };
function styleOf(r) {
  if (r.kind === "wakeup") return "wakeup";
  if (r.kind === "timer") return r.what === "fired" ? "timer" : "timer_dropped";
  if (r.kind === "event") return EVENTS[r.what] || "other";
  return ACTIONS[r.what] || "other";
}

function legend() {
  const box = document.getElementById("legend");
  for (const key in STYLES) {
    const item = document.createElement("span");
    const icon = el("svg", { width: 18, height: 18, viewBox: "-9 -9 18 18" }, item);
    STYLES[key].draw(el("g", {}, icon));
    item.appendChild(document.createTextNode(STYLES[key].label));
    box.appendChild(item);
  }
}

const records = JSON.parse(document.getElementById("trace-data").textContent);

// The entries: one per token, in order of first appearance, named by the first description seen.
const entries = new Map();
for (const r of records) {
  if (typeof r.token !== "string") continue;
  if (!entries.has(r.token)) entries.set(r.token, { desc: null });
  const entry = entries.get(r.token);
  if (!entry.desc && typeof r.desc === "string") entry.desc = r.desc;
}

function details(r) {
  const who = typeof r.token === "string" ? r.token + " " + (entries.get(r.token).desc || "") : "the loop";
  return seconds(r.t_us) + "  ·  wakeup #" + r.wakeup + "  ·  " + who + "\n" + r.text;
}
function hover(g, r) {
  el("title", {}, g).textContent = details(r);
  g.addEventListener("mouseenter", () => {
    document.getElementById("details").textContent = details(r) + "\n" + JSON.stringify(r);
  });
}

// Where each record goes across the whole trace: one step per record, and before each wakeup a
// gap that grows with how long the loop slept (compressed); or microseconds to pixels (true time).
function positions(linear) {
  const xs = [];
  if (linear) {
    const t0 = records.length ? records[0].t_us : 0;
    const span = Math.max(1, records.length ? records[records.length - 1].t_us - t0 : 1);
    const scale = Math.max(1000, records.length * STEP) / span;
    records.forEach((r, i) => { xs[i] = PAD + (r.t_us - t0) * scale; });
    return { xs: xs, width: PAD * 2 + span * scale };
  }
  let x = PAD;
  records.forEach((r, i) => {
    if (r.kind === "wakeup") x += 18 + Math.round(9 * Math.log10(1 + (r.slept_us || 0) / 100));
    xs[i] = x;
    x += STEP;
  });
  return { xs: xs, width: x + PAD };
}

// Everything to draw, in x across the whole trace: the wakeups' bands, each entry's life, and
// the spans that show output waiting for WRITABLE, input left in the kernel, and lingering.
function layout(linear) {
  const { xs, width } = positions(linear);
  const bands = [];
  let previousEnd = 0;
  records.forEach((r, i) => {
    if (r.kind !== "wakeup") return;
    let j = i;
    while (j + 1 < records.length && records[j + 1].kind !== "wakeup") j++;
    bands.push({ r: r, i: i, x0: xs[i] - STEP / 2, x1: xs[j] + STEP / 2, gap: previousEnd });
    previousEnd = xs[j] + STEP / 2;
  });
  const life = new Map(), open = new Map(), spans = [];
  records.forEach((r, i) => {
    if (typeof r.token !== "string") return;
    const x = xs[i];
    if (!life.has(r.token)) life.set(r.token, { from: x, to: x });
    life.get(r.token).to = x;
    if (!open.has(r.token)) open.set(r.token, {});
    const state = open.get(r.token);
    const close = (kind) => {
      if (state[kind] === undefined) return;
      spans.push({ token: r.token, from: state[kind], to: x, kind: kind });
      delete state[kind];
    };
    if (r.what === "writable_on" && state.writable === undefined) state.writable = x;
    if (r.what === "writable_off") close("writable");
    if (r.what === "no_room" && state.noRoom === undefined) state.noRoom = x;
    if (r.what === "read") close("noRoom");
    if (r.what === "fin") state.linger = x;
    if (r.what === "closed") { close("writable"); close("noRoom"); close("linger"); }
  });
  for (const [token, state] of open) {
    for (const kind in state) spans.push({ token: token, from: state[kind], to: width - PAD, kind: kind });
  }
  return { linear: linear, xs: xs, width: width, bands: bands, life: life, spans: spans };
}

// Where the trace is cut into lines that fit the page: before a wakeup when one is in reach,
// else before any record. Line k covers x from cuts[k] to cuts[k + 1].
function cutsFor(xs, width, room) {
  const cuts = [0];
  let start = 0, first = 0, wakeup = -1;
  for (let i = 0; i < records.length; i++) {
    if (records[i].kind === "wakeup" && i > first) wakeup = i;
    if (xs[i] + STEP - start > room && i > first) {
      const at = wakeup > first ? wakeup : i;
      start = xs[at - 1] + STEP / 2 + 1;
      cuts.push(start);
      first = at;
      wakeup = -1;
    }
  }
  cuts.push(width);
  return cuts;
}

const SPAN_FILL = { writable: "rgba(220,40,40,0.17)", noRoom: "rgba(240,140,20,0.25)" };

function drawLine(chart, geometry, a, b) {
  const { linear, xs, bands, life, spans } = geometry;
  const inLine = (x) => x >= a && x < b;
  const tokens = [...entries.keys()].filter((t) => life.get(t).from < b && life.get(t).to >= a);
  const rowOf = new Map(tokens.map((t, k) => [t, k]));
  const height = TOP + Math.max(tokens.length, 1) * ROW_H + BOTTOM;
  const left = 10, width = b - a + left + 10;
  const X = (x) => x - a + left;
  const clip = (x) => Math.min(Math.max(x, a), b);

  const line = document.createElement("div");
  line.className = "line";
  chart.appendChild(line);
  const labels = el("svg", { width: LABEL_W, height: height, class: "labels" }, line);
  text(labels, 8, TOP - 10, "token  entry", "small", "start");
  tokens.forEach((token, k) => {
    const label = token + "  " + (entries.get(token).desc || "");
    el("title", {}, text(labels, 8, TOP + k * ROW_H + ROW_H / 2 + 4, label, "rowlabel", "start")).textContent = label;
  });
  const scroll = document.createElement("div");
  scroll.className = "scroll";
  line.appendChild(scroll);
  const svg = el("svg", { width: Math.ceil(width), height: height }, scroll);
  const lanes = el("g", {}, svg), bandLayer = el("g", {}, svg), spanLayer = el("g", {}, svg);
  const marks = el("g", {}, svg), axis = el("g", {}, svg);
  tokens.forEach((token, k) => {
    const y = TOP + k * ROW_H;
    el("rect", { x: 0, y: y, width: width, height: ROW_H, fill: k % 2 ? "#f6f6f6" : "#fff" }, lanes);
    const { from, to } = life.get(token);
    el("line", { x1: X(clip(from)), x2: X(clip(to)), y1: y + ROW_H / 2, y2: y + ROW_H / 2, stroke: "#bbb" }, lanes);
  });

  let lastTime = -1e9;
  for (const band of bands) {
    if (band.x1 <= a || band.x0 >= b) continue;
    const x0 = X(clip(band.x0)), x1 = X(clip(band.x1));
    // The wakeup's record is drawn once, as the band of the line its record falls in.
    const own = inLine(xs[band.i]);
    const g = el("g", own ? { class: "mark", "data-kind": "wakeup" } : {}, bandLayer);
    el("rect", { x: x0, y: TOP - 16, width: Math.max(2, x1 - x0), height: height - TOP - BOTTOM + 16,
                 fill: band.r.wakeup % 2 ? "rgba(90,110,160,0.14)" : "rgba(90,110,160,0.08)",
                 stroke: "#b4bccc", "stroke-width": 0.6 }, g);
    if (!own) continue;
    text(g, (x0 + x1) / 2, TOP - 20, "#" + band.r.wakeup, "small");
    hover(g, band.r);
    if (band.r.slept_us >= 100 && band.gap >= a) {
      text(axis, (X(band.gap) + x0) / 2, TOP - 32, duration(band.r.slept_us), "small");
    }
    if (x0 - lastTime > 90) {
      text(axis, x0, height - 8, seconds(band.r.t_us), "small", "start");
      lastTime = x0;
    }
  }

  for (const span of spans) {
    if (span.to < a || span.from >= b || !rowOf.has(span.token)) continue;
    const y = TOP + rowOf.get(span.token) * ROW_H;
    const from = X(clip(span.from)), to = X(clip(span.to));
    if (span.kind === "linger") {
      el("line", { x1: from, x2: to, y1: y + ROW_H / 2, y2: y + ROW_H / 2, stroke: "#555", "stroke-dasharray": "4,3" }, spanLayer);
    } else {
      el("rect", { x: from, y: y + 3, width: Math.max(2, to - from), height: ROW_H - 6, rx: 3, fill: SPAN_FILL[span.kind] }, spanLayer);
    }
  }

  records.forEach((r, i) => {
    if (r.kind === "wakeup" || !inLine(xs[i])) return;
    const style = styleOf(r);
    const y = TOP + (rowOf.has(r.token) ? rowOf.get(r.token) : 0) * ROW_H + ROW_H / 2;
    const g = el("g", { class: "mark", "data-kind": r.kind, "data-style": style,
                        transform: "translate(" + X(xs[i]).toFixed(1) + "," + y + ")" }, marks);
    STYLES[style].draw(g);
    if (typeof r.bytes === "number" && !linear) text(g, 0, 18, bytes(r.bytes), "small");
    hover(g, r);
  });
}

function draw() {
  const linear = document.getElementById("linear").checked;
  const chart = document.getElementById("chart");
  chart.replaceChildren();
  const geometry = layout(linear);
  // The width a line's marks may take: the page's, less the labels, borders and margins.
  const room = Math.max(400, chart.clientWidth - LABEL_W - 4 - 20 - PAD - STEP);
  const cuts = cutsFor(geometry.xs, geometry.width, room);
  for (let k = 0; k + 1 < cuts.length; k++) drawLine(chart, geometry, cuts[k], cuts[k + 1]);
  const drawn = chart.querySelectorAll(".mark").length;
  document.getElementById("drawn-count").textContent = String(drawn);
  document.getElementById("record-count").textContent = String(records.length);
  console.log("timeline: drew " + drawn + " marks for " + records.length + " records");
}

function summary() {
  const wakeups = records.filter((r) => r.kind === "wakeup").length;
  const span = records.length ? records[records.length - 1].t_us - records[0].t_us : 0;
  document.getElementById("summary").textContent = document.getElementById("summary").textContent +
    ": " + records.length + " records, " + wakeups + " wakeups, " + entries.size + " tokens, over " + duration(span);
}

try {
  legend();
  summary();
  if (records.length === 0) document.getElementById("empty").style.display = "block";
  draw();
  document.getElementById("linear").addEventListener("change", draw);
} catch (e) {
  pageError(e && e.stack || e);
}
</script>
</body>
</html>
"""


def main():
    if len(sys.argv) != 2:
        print("usage: scripts/timeline.sh TRACE.jsonl > timeline.html", file=sys.stderr)
        return 2
    source = sys.argv[1]
    try:
        records = read_records(source)
    except OSError as e:
        print(f"timeline: {source}: {e.strerror}", file=sys.stderr)
        return 1
    values = {
        "DATA": embed(records),
        "SOURCE": html.escape("stdin" if source == "-" else os.path.basename(source)),
    }
    # One pass, so nothing inserted is ever scanned for a placeholder again.
    sys.stdout.write(re.sub(r"__(DATA|SOURCE)__", lambda m: values[m.group(1)], PAGE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
