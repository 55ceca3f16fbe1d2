"""The dashboard on a projector: headless Chromium at 1280×720 opens every lecture scenario from its
link, presses Step once, and checks that the chart of the panel the scenario names
(:data:`chestlab.dashboard.scenarios.PANELS`) lies inside the viewport without scrolling, and that
the title takes one line; that every text of every chart on the page (ticks, legends, annotations,
titles: the plotly SVG's ``<text>`` elements) is drawn at least :data:`MIN_TEXT_PX` px high
(Chromium's computed ``font-size``), in compare mode (every scenario), in single mode (the page
without a scenario) and at 1920×1080 (one compare scenario); and that no chart is wider than the
column it sits in, nor a text of it outside its chart (cut), and that the sidebar's scenario box
shows its label uncut. Skips without a browser (fails with ``CI`` set), like the end-to-end test
of ``tests/test_app.py``, whose DevTools driver it uses. With ``CHESTLAB_SHOTS=DIR`` it saves one
screenshot per scenario as ``DIR/look19-NAME.png`` (``look19-single.png``,
``look19-NAME-1920.png``); ``CHESTLAB_SCENARIOS=a,b`` checks only those (the names ``single`` and
``wide`` pick the single-mode page and the 1920×1080 look).

Timeouts are generous (a loaded 2-core machine builds two runs per scenario): the test checks
*where* things are, not how fast they come."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from test_app import Chromium, _free_port, _wait_http, browser_or_skip, start_server

from chestlab.dashboard import scenarios

SIZE = (1280, 720)
WIDE = (1920, 1080)
#: the smallest chart text (px, Chromium's computed font-size) on a 1280×720 projector (issue 19)
MIN_TEXT_PX = 14
#: the compare scenario also looked at on a 1920×1080 screen
WIDE_SCENARIO = "mix-product"


def _chart_js(key: str) -> str:
    """JS: the bounding box of the Plotly chart under the element keyed ``key`` (null until drawn)."""
    return (f"(() => {{ const e = document.querySelector({json.dumps('.st-key-' + key + ' .js-plotly-plot .main-svg')});"
            " if (!e) return null; const r = e.getBoundingClientRect();"
            " return r.height > 50 ? {top: r.top, bottom: r.bottom, left: r.left, right: r.right, h: innerHeight, w: innerWidth} : null; })()")


_TITLE_JS = ("(() => { const e = document.querySelector('h3.chestlab-title'); if (!e) return null;"
             " const lh = parseFloat(getComputedStyle(e).lineHeight) || 30; return {h: e.getBoundingClientRect().height, lh: lh,"
             " full: e.scrollWidth <= e.clientWidth + 1}; })()")

#: JS: the sidebar's scenario selectbox (a text input: it cannot wrap) shows its label uncut
_SELECT_JS = ("(() => { const i = document.querySelector('.st-key-scenario input'); if (!i) return null;"
              " return {value: i.value, cut: i.scrollWidth > i.clientWidth + 1}; })()")

#: JS: every non-empty text of every plotly chart: its chart's key, text, computed font-size (px), and
#: whether it lies inside its chart; every chart: whether it lies inside its column (a chart whose
#: box is hidden, e.g. in a collapsed expander, has a zero box and is skipped for the geometry)
_TEXTS_JS = """(() => {
  const keyOf = e => { const k = e.closest('[class*="st-key-"]'); if (!k) return '?';
    const m = [...k.classList].find(c => c.startsWith('st-key-')); return m ? m.slice(7) : '?'; };
  const texts = [], charts = [];
  document.querySelectorAll('.js-plotly-plot').forEach(plot => {
    const svg = plot.querySelector('.main-svg'); if (!svg) return;
    const box = svg.getBoundingClientRect(), key = keyOf(plot), shown = box.width > 0 && box.height > 0;
    const col = plot.closest('[data-testid="stColumn"]');
    if (shown) { const c = col ? col.getBoundingClientRect() : {left: 0, right: innerWidth};
      charts.push({key: key, left: box.left, right: box.right, col_left: c.left, col_right: c.right}); }
    plot.querySelectorAll('svg text').forEach(t => {
      const s = (t.textContent || '').trim(); if (!s) return;
      const cs = getComputedStyle(t); if (cs.display === 'none' || cs.visibility === 'hidden' || cs.opacity === '0') return;
      const r = t.getBoundingClientRect();
      const inside = !shown || r.width === 0 || (r.left >= box.left - 1 && r.right <= box.right + 1 && r.top >= box.top - 1 && r.bottom <= box.bottom + 1);
      texts.push({key: key, text: s.slice(0, 48), px: parseFloat(cs.fontSize), inside: inside});
    });
  });
  return {texts: texts, charts: charts};
})()"""


#: JS: per shown plotly chart: whether its legend scrolls (plotly draws a ``rect.scrollbar`` in every legend,
#: 0 × 0 unless the entries overflow the legend's room), the boxes of its annotations (texts such as the
#: disk's "d_H = 2" labels, with their white box) and of its tick labels
_LAYOUT_JS = """(() => {
  const keyOf = e => { const k = e.closest('[class*="st-key-"]'); if (!k) return '?';
    const m = [...k.classList].find(c => c.startsWith('st-key-')); return m ? m.slice(7) : '?'; };
  const box = e => { const r = e.getBoundingClientRect(); return {l: r.left, t: r.top, r: r.right, b: r.bottom}; };
  const out = [];
  document.querySelectorAll('.js-plotly-plot').forEach(plot => {
    const svg = plot.querySelector('.main-svg'); if (!svg) return;
    const sb = svg.getBoundingClientRect(); if (!(sb.width > 0 && sb.height > 0)) return;
    const scroll = [...plot.querySelectorAll('.legend .scrollbar')].some(e => {
      const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; });
    const anns = [...plot.querySelectorAll('g.annotation')].map(g => {
      const t = g.querySelector('text'), s = t ? (t.textContent || '').trim() : '';
      const bg = g.querySelector('.annotation-text-g') || g; return s ? Object.assign({text: s.slice(0, 40)}, box(bg)) : null; })
      .filter(a => a && a.r > a.l);
    const ticks = [...plot.querySelectorAll('.xtick text, .ytick text')].filter(t => (t.textContent || '').trim())
      .map(t => Object.assign({text: t.textContent.trim()}, box(t))).filter(a => a.r > a.l);
    out.push({key: keyOf(plot), scroll: scroll, anns: anns, ticks: ticks});
  });
  return out;
})()"""


def _meet(a: dict, b: dict, gap: float = 0.0) -> bool:
    """Whether the boxes ``a`` and ``b`` (l, t, r, b in px) overlap, or come closer than ``gap`` px."""
    return min(a["r"], b["r"]) - max(a["l"], b["l"]) > -gap and min(a["b"], b["b"]) - max(a["t"], b["t"]) > -gap


#: the charts whose annotations are checked against their tick labels too: the disks (the hierarchy
#: panel's two-line subplot title over its dendrogram's top tick, compare mode, is not this file's: noted)
TICK_CHECKED = ("disk_",)


def chart_layout_problems(charts: list, tick_checked: tuple = TICK_CHECKED) -> list[str]:
    """What :data:`_LAYOUT_JS` found that is wrong: a legend that scrolls (entries out of view), two
    annotations of a chart that overlap or touch (the disk's "d_H = 3d_H = 2"), an annotation over a
    tick label (the disk's corner note on the y axis's "−1"; charts keyed ``tick_checked...`` only)."""
    out = []
    for ch in charts:
        ticks = ch["ticks"] if ch["key"].startswith(tick_checked) else []
        if ch["scroll"]:
            out.append(f"{ch['key']}: the legend scrolls (entries out of view)")
        anns = ch["anns"]
        for i, a in enumerate(anns):
            for b in anns[i + 1:]:
                if _meet(a, b):
                    out.append(f"{ch['key']}: annotations {a['text']!r} and {b['text']!r} meet")
            for t in ticks:
                if _meet(a, t):
                    out.append(f"{ch['key']}: annotation {a['text']!r} covers the tick label {t['text']!r}")
    return out


def chart_text_problems(found: dict, least: float = MIN_TEXT_PX) -> list[str]:
    """What :data:`_TEXTS_JS` found that is wrong: a text under ``least`` px, a text outside its chart, a
    chart wider than its column; one line each (by chart and size, at most a few texts per chart)."""
    out = []
    small: dict = {}
    for t in found["texts"]:
        if t["px"] < least - 0.01:
            small.setdefault((t["key"], t["px"]), []).append(t["text"])
        if not t["inside"]:
            out.append(f"{t['key']}: {t['text']!r} is cut (outside its chart)")
    for (key, px), words in sorted(small.items()):
        out.append(f"{key}: {len(words)} texts at {px:g} px (< {least} px), e.g. {words[:3]}")
    for c in found["charts"]:
        if c["left"] < c["col_left"] - 1 or c["right"] > c["col_right"] + 1:
            out.append(f"{c['key']}: chart x {c['left']:.0f}–{c['right']:.0f} overflows its column x {c['col_left']:.0f}–{c['col_right']:.0f}")
    return out


def _settle(chrome, seconds: float = 1.5) -> None:
    """Wait until the number of charts on the page stops changing (the panels below the named one come
    after it), then ``seconds`` for plotly's layout."""
    last, same = -1, 0
    end = time.monotonic() + 60
    while same < 4 and time.monotonic() < end:
        n = chrome.js("document.querySelectorAll('.js-plotly-plot .main-svg').length")
        same = same + 1 if n == last else 0
        last = n
        time.sleep(0.5)
    time.sleep(seconds)


def _looks(only: list[str]) -> list[tuple[str, str, str, tuple[int, int]]]:
    """(shot name, query, chart key to wait for, window size): every scenario at 1280×720, the page
    without a scenario (single mode), one compare scenario at 1920×1080."""
    out = [("single", "", "sim_A", SIZE)]  # first: from a scenario's page, "/" once hung the browser for a minute
    for name, sc in scenarios.SCENARIOS.items():
        _, prefix = scenarios.PANELS[sc.panel]
        key = f"{prefix}_A" if (sc.compare is not None or sc.panel != "hardneg") else prefix
        out.append((name, f"?scenario={name}", key, SIZE))
    sc = scenarios.SCENARIOS[WIDE_SCENARIO]
    out.append((f"{WIDE_SCENARIO}-1920", f"?scenario={WIDE_SCENARIO}", f"{scenarios.PANELS[sc.panel][1]}_A", WIDE))
    if only:
        out = [o for o in out if o[0] in only or ("wide" in only and o[3] == WIDE)]
    return out


def test_every_scenario_shows_its_panel_at_1280x720(tmp_path: Path) -> None:
    browser = browser_or_skip()
    shots = Path(os.environ["CHESTLAB_SHOTS"]) if os.environ.get("CHESTLAB_SHOTS") else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    server = start_server(port, tmp_path / "server.log")
    chrome = None
    misses, text_problems, sizes, labels = [], [], {}, {}
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health", 120)
        chrome = Chromium(browser, tmp_path / "profile", size=SIZE)
        only = [n for n in os.environ.get("CHESTLAB_SCENARIOS", "").split(",") if n]  # a quicker look at a few
        for name, query, key, size in _looks(only):
            chrome.size = size
            chrome.goto(f"http://127.0.0.1:{port}/{query}")
            chrome.wait_for("[...document.querySelectorAll('button')].some(b => b.innerText.includes('Step') && !b.disabled)",
                            240, f"the Step button ({name})")
            time.sleep(0.5)
            chrome.click_button("Step")
            box = chrome.wait_for(_chart_js(key), 240, f"the chart {key} of {name}")
            _settle(chrome)
            box = chrome.js(_chart_js(key)) or box
            chrome.screenshot(shots / f"look19-{name}.png")
            title = chrome.js(_TITLE_JS)
            assert title and title["h"] < 1.6 * title["lh"] and title["full"], f"the title wraps or is cut: {title}"
            if size == SIZE and not (box["top"] >= 0 and box["bottom"] <= box["h"] + 1 and box["left"] >= 0 and box["right"] <= box["w"] + 1):
                misses.append(f"{name}: {key} at top {box['top']:.0f}, bottom {box['bottom']:.0f} (viewport {box['w']}×{box['h']})")
            found = chrome.js(_TEXTS_JS)
            assert found and found["texts"], f"{name}: no chart text found"
            sizes[name] = (min(t["px"] for t in found["texts"]), len(found["texts"]), len(found["charts"]))
            text_problems += [f"{name}: {p}" for p in chart_text_problems(found)]
            layout = chrome.js(_LAYOUT_JS) or []
            text_problems += [f"{name}: {p}" for p in chart_layout_problems(layout)]
            labels[name] = sorted((round(a["r"] - a["l"]), round(a["b"] - a["t"])) for ch in layout
                                  if ch["key"].startswith("disk_") for a in ch["anns"])
            if query:  # the sidebar is drawn last: on a loaded machine it may still be on its way
                chrome.wait_for("!!document.querySelector('.st-key-scenario input')", 120, f"the scenario selectbox ({name})")
            picked = chrome.js(_SELECT_JS)
            if query and (not picked or picked["cut"]):
                text_problems.append(f"{name}: the scenario selectbox cuts its label: {picked}")
        print("smallest chart text (px), texts, charts:", sizes)
        print("the disks' annotation boxes (w, h px):", labels)
        assert not misses, "named panel not in view at 1280×720: " + "; ".join(misses)
        assert not text_problems, "chart text too small, cut, overlapping or scrolled:\n" + "\n".join(text_problems)
    finally:
        if chrome is not None:
            chrome.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)


def test_chart_text_problems_are_found() -> None:
    """The checker of the browser test on made-up measurements: each kind of problem is reported."""
    ok = {"texts": [{"key": "sim_A", "text": "0.5", "px": 14.0, "inside": True}],
          "charts": [{"key": "sim_A", "left": 10, "right": 400, "col_left": 10, "col_right": 400}]}
    assert chart_text_problems(ok) == []
    bad = {"texts": [{"key": "sim_A", "text": "0.5", "px": 10.0, "inside": True},
                     {"key": "sim_A", "text": "colour = super-clas", "px": 14.0, "inside": False}],
           "charts": [{"key": "hardneg_A", "left": 10, "right": 420, "col_left": 10, "col_right": 400}]}
    found = chart_text_problems(bad)
    assert len(found) == 3
    assert any("10 px" in p for p in found) and any("cut" in p for p in found) and any("overflows" in p for p in found)


def test_chart_layout_problems_are_found() -> None:
    """The layout checker on made-up measurements: a scrolling legend, two touching d_H labels, a note
    on a tick label are reported; labels apart and clear of the ticks are not."""
    tick = {"text": "−1", "l": 10, "t": 200, "r": 22, "b": 214}
    ok = [{"key": "disk_A", "scroll": False, "ticks": [tick],
           "anns": [{"text": "dH = 3", "l": 100, "t": 50, "r": 144, "b": 70},
                    {"text": "dH = 2", "l": 150, "t": 50, "r": 194, "b": 70}]}]
    assert chart_layout_problems(ok) == []
    assert chart_layout_problems([dict(bad_note := {"key": "hier_B", "scroll": False, "ticks": [tick],
                                                     "anns": [{"text": "title", "l": 5, "t": 195, "r": 90, "b": 215}]})]) == []
    assert len(chart_layout_problems([bad_note], tick_checked=("hier_",))) == 1
    bad = [{"key": "disk_B", "scroll": True, "ticks": [tick],
            "anns": [{"text": "dH = 3", "l": 100, "t": 50, "r": 144, "b": 70},
                     {"text": "dH = 2", "l": 143, "t": 52, "r": 187, "b": 72},
                     {"text": "dotted: dH = 1", "l": 20, "t": 205, "r": 98, "b": 225}]}]
    found = chart_layout_problems(bad)
    assert len(found) == 3, found
    assert any("scrolls" in p for p in found) and any("meet" in p for p in found) and any("tick" in p for p in found)
