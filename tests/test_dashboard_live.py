"""Compare mode that keeps up (issue 19 §2): the mechanisms, not the timings.

* A click (Pause, or any widget) stops training at the next step check: Streamlit raises its rerun
  exception at the page's yield point, which ``runner.train_chunk`` calls after every step of all runs
  and between the runs' evaluations. Checked in a real Streamlit script run (``AppTest``), with a
  rerun requested the way the server does when a click arrives, from inside a training step.
* While playing, a timer redraw updates the drawn charts in place: the same Streamlit element (the
  figure it mounted) is sent again and the new figure goes to ``Plotly.react`` through one hidden
  element (:func:`chestlab.dashboard.page.send_patches`). Checked on ``HeldCharts`` with a recording
  box, and end to end in headless Chromium: the very SVG nodes drawn before survive several redraws
  while the charts' data grows (a remounted chart would be new nodes, blank until drawn).
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from chestlab.dashboard import page

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = textwrap.dedent("""
    import types
    import streamlit as st
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    from streamlit.runtime.scriptrunner_utils.script_requests import RerunData
    from chestlab.dashboard import page, runner
    from chestlab.dashboard.state import DashState, Run

    CLICK_AT, WHERE, EVERY = {click_at}, {where!r}, {every}

    class Fake:
        # a trainer that counts; the "click" arrives while run A is in step CLICK_AT (or its evaluation)
        def __init__(self, name, log):
            self.name, self.log, self.step_count, self.history = name, log, 0, []
            self.config = types.SimpleNamespace(eval_every=EVERY)
        def _click(self, where):
            if self.name == "A" and self.step_count == CLICK_AT and where == WHERE:
                get_script_run_ctx().script_requests.request_rerun(RerunData())
        def train_step(self):
            self.step_count += 1
            self.log.append((self.name, "step", self.step_count))
            self._click("step")
            return types.SimpleNamespace(step=self.step_count, loss=1.0, components={{}}, grad_norm=1.0)
        def evaluate(self):
            self.log.append((self.name, "eval", self.step_count))
            self.history.append({{"step": self.step_count}})
            self._click("eval")

    if "log" not in st.session_state:
        log = []
        st.session_state["log"] = log
        state = DashState(runs=[Run("A", Fake("A", log)), Run("B", Fake("B", log))])
        st.session_state["state"] = state
        runner.train_chunk(state, budget_s=60.0, max_steps=40, between_steps=page._yield_point)
        st.session_state["finished"] = True  # never reached when the click interrupts the chunk
    else:
        st.session_state["reruns"] = st.session_state.get("reruns", 0) + 1
""")


def _run(click_at: int, where: str, every: int = 0) -> Any:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string(_SCRIPT.format(click_at=click_at, where=where, every=every), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_click_during_a_step_stops_training_at_the_next_step_check() -> None:
    at = _run(click_at=3, where="step")
    log, state = at.session_state["log"], at.session_state["state"]
    assert "finished" not in at.session_state  # the chunk (40 steps, 60 s) was cut short ...
    assert at.session_state["reruns"] == 1  # ... by the rerun the click asked for
    # ... right after both runs took the step the click arrived in: lock-step, nothing more
    assert [r.trainer.step_count for r in state.runs] == [3, 3]
    assert log[-2:] == [("A", "step", 3), ("B", "step", 3)]


def test_a_click_during_an_evaluation_waits_for_that_evaluation_only() -> None:
    """An evaluation due at step 3 (eval_every = 3): the click arrives during A's; B's evaluation is
    not done before the rerun (the click waits for one evaluation, not two) but is owed, and done
    first by the next chunk or ``runner.settle``."""
    from chestlab.dashboard import runner

    at = _run(click_at=3, where="eval", every=3)
    log, state = at.session_state["log"], at.session_state["state"]
    assert "finished" not in at.session_state and at.session_state["reruns"] == 1
    assert log[-3:] == [("A", "step", 3), ("B", "step", 3), ("A", "eval", 3)]
    a, b = state.runs
    assert (a.eval_owed, b.eval_owed) == (False, True)
    runner.settle(state)
    assert log[-1] == ("B", "eval", 3) and not b.eval_owed
    assert [h["step"] for h in b.trainer.history] == [3]  # at the step it was due, once


# ------------------------------------------------------------------------------------------------
# charts updated in place
# ------------------------------------------------------------------------------------------------
class _Box:
    """Records ``plotly_chart`` calls (figure sent per key) and ``html`` bodies."""

    def __init__(self) -> None:
        self.sent: dict = {}
        self.bodies: list = []

    def plotly_chart(self, fig: Any, *a: Any, key: Any = None, **k: Any) -> None:
        self.sent[key] = fig

    def container(self, **k: Any) -> "_Box":
        return self

    def html(self, body: str, **k: Any) -> None:
        self.bodies.append(body)


def _fig(y: list) -> Any:
    import plotly.graph_objects as go

    return go.Figure(go.Scatter(x=list(range(len(y))), y=y, name="loss <b>L</b>"), layout=dict(title="t", uirevision="u"))


def test_held_charts_send_the_mounted_figure_and_patch_the_new_one() -> None:
    sent: dict = {}
    patches: list = []
    first, second, third = _fig([1, 2]), _fig([1, 2, 3]), _fig([1, 2, 3, 4])
    box = _Box()
    page.HeldCharts(box, sent, "patch", patches=patches).plotly_chart(first, key="cur_A")
    assert box.sent["cur_A"] is first and patches == []  # never drawn under this key: drawn
    box = _Box()
    page.HeldCharts(box, sent, "patch", patches=patches).plotly_chart(second, key="cur_A")
    assert box.sent["cur_A"] is first  # the element the browser mounted, unchanged (same element id)
    assert patches == [("cur_A", second)]  # the new figure goes to the browser as a patch
    box = _Box()
    page.HeldCharts(box, sent, "hold", patches=patches).plotly_chart(third, key="cur_A")
    assert box.sent["cur_A"] is first and len(patches) == 1  # held: nothing new
    box = _Box()
    page.HeldCharts(box, sent, False, patches=patches).plotly_chart(third, key="cur_A")
    assert box.sent["cur_A"] is third and sent["cur_A"] is third  # drawn anew (a full redraw)


def test_the_patch_script_carries_the_new_data_and_no_markup() -> None:
    """The patch element: the new figure's data and layout (no template: the browser keeps the themed
    one it drew), and no "<" anywhere in the script (the browser's sanitiser drops a script whose text
    looks like markup, e.g. "<b>" in a trace name)."""
    box = _Box()
    page.send_patches(box, [("cur_A", _fig([5.0, 6.0, 7.0]))])
    (body,) = box.bodies
    script = body.split("<script>", 1)[1].rsplit("</script>", 1)[0]
    assert "<" not in script and "Plotly" in script and ".react(" in script
    figs = json.loads(script.split("const figs=", 1)[1].split(";\nconst q=", 1)[0])
    assert figs["cur_A"]["data"][0]["y"] == [5.0, 6.0, 7.0] and figs["cur_A"]["data"][0]["name"] == "loss <b>L</b>"
    assert "template" not in figs["cur_A"]["layout"] and figs["cur_A"]["layout"]["uirevision"] == "u"
    box = _Box()
    page.send_patches(box, [])  # drawn at every redraw, empty too: it never moves what comes before it
    assert len(box.bodies) == 1


def test_timer_redraws_patch_in_turn_and_full_redraws_draw() -> None:
    from chestlab.dashboard.defaults import CHART_UPDATES
    from chestlab.dashboard.state import DashState, Run

    state = DashState()
    run = Run("A", None)
    keys = [f"k{i}" for i in range(CHART_UPDATES + 2)]
    hold = page.chart_turns(state, run, timer=True)
    assert [hold(k) for k in keys] == [False] * len(keys)  # first seen: drawn
    for redraw in range(3):
        state.redraws += 1
        hold = page.chart_turns(state, run, timer=True)  # one per redraw (it decides each chart once)
        modes = [hold(k) for k in keys]
        assert sorted(set(modes)) == ["hold", "patch"] and modes.count("patch") == CHART_UPDATES
    assert page.chart_turns(state, run, timer=False) is False  # a full redraw without a layout fingerprint draws every chart
    run.diverged = "stopped"
    assert page.chart_turns(state, run, timer=True) is True  # a stopped run holds its charts


# ------------------------------------------------------------------------------------------------
# end to end: the same SVG nodes survive the redraws while playing
# ------------------------------------------------------------------------------------------------
_MARK_JS = ("(() => { const s = [...document.querySelectorAll('.js-plotly-plot .main-svg')]; s.forEach(e => e.__live = 1);"
            " const gd = document.querySelector('.st-key-cur_A .js-plotly-plot');"
            " window.__marked = {n: s.length, patches: window.__chestlabPatches || 0,"
            " points: gd && gd.data ? gd.data.reduce((a, t) => a + (t.x ? t.x.length : 0), 0) : -1}; return window.__marked; })()")
_CHECK_JS = ("(() => { const m = window.__marked; const s = [...document.querySelectorAll('.js-plotly-plot .main-svg')];"
             " const gd = document.querySelector('.st-key-cur_A .js-plotly-plot');"
             " return {n: s.length, kept: s.filter(e => e.__live).length, patches: (window.__chestlabPatches || 0) - m.patches,"
             " points: gd && gd.data ? gd.data.reduce((a, t) => a + (t.x ? t.x.length : 0), 0) : -1, was: m.points}; })()")


@pytest.mark.parametrize("query", ["/?play=1", "/?cmp=eta_e:0&play=1"], ids=["single", "compare"])
def test_playing_updates_the_drawn_charts_in_place_in_chromium(tmp_path: Path, query: str) -> None:
    """Marks every drawn chart's SVG, lets the page play until several in-place updates reached the
    browser, and checks the marked nodes are all still there (no chart was remounted) while the loss
    curve's chart holds more points. A window with a full rerun (which draws every chart anew, e.g.
    a rerun the browser asks for while the page is still loading) is retried, at most 4 times."""
    import os
    import signal

    from test_app import Chromium, _free_port, _wait_http, browser_or_skip, start_server

    browser = browser_or_skip()
    port = _free_port()
    server = start_server(port, tmp_path / "server.log")
    chrome = None
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health", 120)
        chrome = Chromium(browser, tmp_path / "profile")
        chrome.goto(f"http://127.0.0.1:{port}{query}")
        chrome.wait_for("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3", 240, "the first charts")
        chrome.wait_for("(window.__chestlabPatches || 0) >= 1", 240, "a first in-place update")
        seen = []
        for _ in range(4):
            chrome.js(_MARK_JS)
            end = time.monotonic() + 240
            res = chrome.js(_CHECK_JS)
            while time.monotonic() < end and (res["patches"] < 3 or res["points"] <= res["was"]):  # the
                # updates go to a few charts in turn: wait until the loss curve's chart had one too
                time.sleep(0.3)
                res = chrome.js(_CHECK_JS)
            seen.append(res)
            if res["patches"] >= 3 and res["kept"] == res["n"] and res["points"] > res["was"]:
                break
        res = seen[-1]
        assert res["patches"] >= 3, seen  # updates reached the browser ...
        assert res["n"] >= 3 and res["kept"] == res["n"], seen  # ... and no chart was drawn anew
        assert res["points"] > res["was"] > 0, seen  # the loss curve grew in place
    finally:
        if chrome is not None:
            chrome.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)
