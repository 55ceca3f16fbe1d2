"""The dashboard on a projector: headless Chromium at 1280×720 opens every lecture scenario from its
link, presses Step once, and checks that the chart of the panel the scenario names
(:data:`chestlab.dashboard.scenarios.PANELS`) lies inside the viewport without scrolling, and that
the title takes one line. Skips without a browser (fails with ``CI`` set), like the end-to-end test
of ``tests/test_app.py``, whose DevTools driver it uses. With ``CHESTLAB_SHOTS=DIR`` it saves one
screenshot per scenario as ``DIR/dash19-NAME.png``; ``CHESTLAB_SCENARIOS=a,b`` checks only those.

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


def _chart_js(key: str) -> str:
    """JS: the bounding box of the Plotly chart under the element keyed ``key`` (null until drawn)."""
    return (f"(() => {{ const e = document.querySelector({json.dumps('.st-key-' + key + ' .js-plotly-plot .main-svg')});"
            " if (!e) return null; const r = e.getBoundingClientRect();"
            " return r.height > 50 ? {top: r.top, bottom: r.bottom, left: r.left, right: r.right, h: innerHeight, w: innerWidth} : null; })()")


_TITLE_JS = ("(() => { const e = document.querySelector('h3.chestlab-title'); if (!e) return null;"
             " const lh = parseFloat(getComputedStyle(e).lineHeight) || 30; return {h: e.getBoundingClientRect().height, lh: lh,"
             " full: e.scrollWidth <= e.clientWidth + 1}; })()")


def test_every_scenario_shows_its_panel_at_1280x720(tmp_path: Path) -> None:
    browser = browser_or_skip()
    shots = Path(os.environ["CHESTLAB_SHOTS"]) if os.environ.get("CHESTLAB_SHOTS") else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    server = start_server(port, tmp_path / "server.log")
    chrome = None
    misses = []
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health", 120)
        chrome = Chromium(browser, tmp_path / "profile", size=SIZE)
        only = [n for n in os.environ.get("CHESTLAB_SCENARIOS", "").split(",") if n]  # a quicker look at a few
        for name, sc in scenarios.SCENARIOS.items():
            if only and name not in only:
                continue
            _, prefix = scenarios.PANELS[sc.panel]
            key = f"{prefix}_A" if (sc.compare is not None or sc.panel != "hardneg") else prefix
            chrome.goto(f"http://127.0.0.1:{port}/?scenario={name}")
            chrome.wait_for("[...document.querySelectorAll('button')].some(b => b.innerText.includes('Step') && !b.disabled)",
                            240, f"the Step button ({name})")
            time.sleep(0.5)
            chrome.click_button("Step")
            box = chrome.wait_for(_chart_js(key), 240, f"the chart {key} of scenario {name}")
            time.sleep(1.5)  # plotly's layout settles
            box = chrome.js(_chart_js(key)) or box
            chrome.screenshot(shots / f"dash19-{name}.png")
            title = chrome.js(_TITLE_JS)
            assert title and title["h"] < 1.6 * title["lh"] and title["full"], f"the title wraps or is cut: {title}"
            if not (box["top"] >= 0 and box["bottom"] <= box["h"] + 1 and box["left"] >= 0 and box["right"] <= box["w"] + 1):
                misses.append(f"{name}: {key} at top {box['top']:.0f}, bottom {box['bottom']:.0f} (viewport {box['w']}×{box['h']})")
        assert not misses, "named panel not in view at 1280×720: " + "; ".join(misses)
    finally:
        if chrome is not None:
            chrome.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)
