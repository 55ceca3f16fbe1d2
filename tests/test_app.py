"""The dashboard (``app.py``): AppTest (every widget, steps, figures, URL settings, a property test)
and an end-to-end run in headless Chromium (server + browser + a click on Step + a screenshot).

The browser test needs Debian's ``chromium`` (``apt-get install -y chromium``). Outside CI it skips
with the reason when no browser is found; with the environment variable ``CI`` set it fails instead.
It drives Chromium over the DevTools protocol with tornado's websocket client (a Streamlit
dependency), so no extra package is needed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
TIMEOUT = 60  # the first run builds the tree dataset and imports torch


def _run(at: Any) -> AppTest:
    """Run the script (``at`` is the AppTest or a widget just set/clicked); no exception allowed."""
    at = at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    return at


def _page() -> AppTest:
    """A new session of the page with every sidebar section open: closed sections are lazy (their
    widgets are drawn only while open, see chestlab.dashboard.widgets.lazy_expander)."""
    from chestlab.dashboard.widgets import LAZY_SECTIONS

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    for key in LAZY_SECTIONS:
        at.session_state[key] = True
    return at


@pytest.fixture(scope="module")
def app() -> AppTest:
    """One loaded page shared by the cheap checks (loading it is the expensive part)."""
    return _run(_page())


def _charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def dash(at: AppTest) -> Any:
    """The session's typed state (``chestlab.dashboard.state.DashState``)."""
    return at.session_state["dash"]


# ------------------------------------------------------------------------------------------------
# AppTest
# ------------------------------------------------------------------------------------------------
def test_page_loads_with_figures(app: AppTest) -> None:
    assert not app.error, [e.value for e in app.error]
    assert dash(app).trainer is not None
    assert _charts(app) >= 2  # curves + disk before any step (no batch yet for the histograms)
    labels = {b.label for b in app.button}
    assert any("Play" in lab for lab in labels) and any("Step" in lab for lab in labels)
    assert any("Reset" in lab for lab in labels)
    assert {m.label for m in app.metric} >= {"steps / s", "device"}


def test_step_runs_and_draws_histograms(app: AppTest) -> None:
    before = dash(app).trainer.step_count
    _run(app.button(key="btn_step").click())
    tr = dash(app).trainer
    assert tr.step_count == before + app.session_state["step_n"]
    assert _charts(app) >= 4  # histograms + curves + disk + hard negatives
    assert not app.warning or all("diverged" not in w.value for w in app.warning)


def test_play_trains_in_the_fragment(app: AppTest) -> None:
    before = dash(app).trainer.step_count
    _run(app.button(key="btn_play").click())
    assert dash(app).playing
    assert dash(app).trainer.step_count > before
    _run(app.button(key="btn_play").click())  # pause again
    assert not dash(app).playing


def _alternative(options: list, value: Any) -> Any:
    return next((o for o in reversed(options) if o != value), value)


def test_every_widget_can_be_set() -> None:
    """Every sidebar/page widget is moved (sliders to both ends, every select/radio option), a step is
    run, and nothing raises: impossible combinations become messages on the page."""
    at = _run(_page())
    # open the compare controls and the benchmark folder field too, so they are exercised
    at.toggle(key="compare").set_value(True)
    _run(at)
    for end in ("max", "min"):
        for s in at.slider:
            s.set_value(getattr(s, end))
        _run(at.button(key="btn_step").click())
    seen = 0
    for w in list(at.selectbox) + list(at.radio):
        if w.key in ("w_dataset", "w_backbone", "w_device"):
            continue  # structural data/model choices are checked in test_structural_choices
        if w.disabled:
            continue  # shown greyed for the layout (run B's view follows run A's): no user can move it
        w.set_value(_alternative(list(w.options), w.value))
        seen += 1
    for t in at.toggle:
        t.set_value(not t.value)
    for n in at.number_input:
        n.set_value(n.value + 1 if n.max is None or n.value + 1 <= n.max else n.value)
    _run(at.button(key="btn_step").click())
    _run(at.button(key="btn_reset").click())
    if dash(at).trainer is not None:
        _run(at.button(key="btn_step").click())
    else:  # e.g. batch_size 128 with m_per_class 5: the build's reason is on the page (Step is disabled)
        assert at.error and "Reset" in at.error[0].value
    assert seen >= 8


@pytest.mark.parametrize("key,value", [("w_dataset", "shapes"), ("w_backbone", "cnn"), ("w_device", "cuda"),
                                       ("w_dataset", "cub200"), ("w_dim_h", 2), ("w_loss", "mix")])
def test_structural_choices(key: str, value: Any) -> None:
    """A structural change says "needs reset"; Reset either builds the run or explains on the page why
    it cannot (no CUDA here, no CUB folder, a CNN on vectors) -- never an exception."""
    at = _run(_page())
    widget = at.selectbox(key=key) if key != "w_loss" else at.radio(key=key)
    widget.set_value(value)
    _run(at)
    assert any("Needs reset" in w.value for w in at.warning)
    _run(at.button(key="btn_reset2").click())
    if dash(at).trainer is None:
        assert at.error, "a failed build must explain itself"
        assert "Reset" in at.error[0].value
    else:
        _run(at.button(key="btn_step").click())


def test_impossible_combo_is_explained_not_raised() -> None:
    at = _run(_page())
    at.slider(key="w_K").set_value(1)
    at.slider(key="w_tau").set_value(0.5)
    _run(at.button(key="btn_reset").click())
    # the rule of chestlab.settings.check, and what the page does about it
    assert any("needs K >= 2" in w.value and "the run keeps tau = 0" in w.value for w in at.warning)
    _run(at.button(key="btn_step").click())
    assert dash(at).trainer.step_count > 0


def test_extreme_settings_do_not_raise() -> None:
    at = _run(_page())
    at.slider(key="w_r").set_value(6.0)
    at.slider(key="w_c").set_value(2.0)
    at.slider(key="w_lambda_h").set_value(64.0)
    at.slider(key="w_delta_h").set_value(20.0)
    at.selectbox(key="w_lr").set_value(1.0)
    at.selectbox(key="w_lr_proxy").set_value(1.0)
    for _ in range(3):
        _run(at.button(key="btn_step").click())
    if dash(at).diverged:  # survived (grad clipping) or explained; never an exception
        assert any("Training stopped" in w.value for w in at.warning)


def test_divergence_is_a_warning_and_pauses() -> None:
    """TrainingDiverged (the trainer's NaN guard) becomes a warning with its advice, and Play stops."""
    from chestlab.train import TrainingDiverged

    at = _run(_page())
    tr = dash(at).trainer

    def boom() -> None:
        raise TrainingDiverged(tr.step_count, "training diverged at step 1: the loss became nan. Likely cause: lower r")

    tr.train_step = boom
    _run(at.button(key="btn_play").click())
    assert not dash(at).playing
    assert any("Training stopped" in w.value and "lower r" in w.value for w in at.warning)
    _run(at.button(key="btn_reset").click())  # Reset clears it
    assert not dash(at).diverged
    assert not any("Training stopped" in w.value for w in at.warning)


def test_presets_set_the_ablation_rows() -> None:
    at = _run(_page())
    at.selectbox(key="preset").set_value("Euclidean only (E only)")
    _run(at)
    assert at.slider(key="w_eta_h").value == 0.0 and at.slider(key="w_eta_e").value == 1.0
    assert at.slider(key="w_K").value == 1 and at.slider(key="w_tau").value == 0.0
    assert any("Needs reset" in w.value for w in at.warning)  # K is structural
    at.selectbox(key="preset").set_value("Pairwise CE — hyperbolic")
    _run(at.button(key="btn_reset").click())
    _run(at.button(key="btn_step").click())
    assert dash(at).trainer.config.loss == "pair_ce"


def test_url_restores_settings_and_is_written_back() -> None:
    at = _page()
    at.query_params.update({"c": "0.1", "delta_h": "5.0", "dim_h": "2", "preset": "H+Multi", "cmp": "eta_e:0"})
    _run(at)
    assert at.slider(key="w_c").value == pytest.approx(0.1)
    assert at.slider(key="w_delta_h").value == pytest.approx(5.0)
    assert at.selectbox(key="w_dim_h").value == 2
    assert at.slider(key="w_eta_e").value == 0.0  # from the preset
    tr = dash(at).trainer
    assert tr.config.dim_h == 2 and tr.config.c == pytest.approx(0.1)
    assert dash(at).trainer_b is not None  # compare mode from the link
    # a changed slider goes back into the URL
    at.slider(key="w_delta_e").set_value(5.0)
    _run(at)
    assert at.query_params.get("delta_e") in ("5.0", ["5.0"])


def test_bad_url_values_are_reported_not_raised() -> None:
    at = _page()
    at.query_params.update({"c": "-3", "dim_h": "7", "preset": "nope", "K": "abc"})
    _run(at)
    text = " ".join(w.value for w in at.warning)
    assert "c=-3" in text and "dim_h" in text and "preset" in text
    assert "`K=abc`: not a valid value; allowed: K >= 1" in text  # names its key; the link text in a code span
    assert dash(at).trainer is not None


def _texts(at: AppTest) -> str:
    return " | ".join(w.value for w in list(at.warning) + list(at.error))


def test_readme_link_applies_preset_then_settings_then_plays() -> None:
    """The README's link: the preset by its short name, then c overrides it, then play starts."""
    at = _page()
    at.query_params.update({"c": "0.1", "preset": "H only", "play": "1"})  # ?c=0.1&preset=H+only&play=1
    _run(at)
    assert "Ignored" not in _texts(at), _texts(at)
    assert at.selectbox(key="preset").value == "Hyperbolic only (H only)"
    v = dash(at).values
    assert (v["eta_h"], v["eta_e"], v["c"]) == (1.0, 0.0, pytest.approx(0.1))
    assert dash(at).playing
    _run(at)  # the first frame draws the new run; the next run trains
    assert dash(at).trainer.step_count > 0 and dash(at).trainer.config.c == pytest.approx(0.1)


@pytest.mark.parametrize("cmp,says", [
    ("lr:abc", ["cmp=lr:abc", "run B", "lr = `abc`", "allowed: lr > 0"]),  # the link's text in a code span
    ("delta_h:inf", ["cmp=delta_h:inf", "run B", "delta_h = inf", "allowed"]),
    ("dim_h:1000000", ["run B", "dim_h = 1000000", "dim_h <= 4096"]),  # the schema's bound
    ("K:0", ["run B", "K = 0", "K >= 1"]),
    ("M:1000000000", ["run B", "M = 1000000000", "M <= 100000"]),
    ("dim_e:100000000", ["run B", "dim_e <= 4096"]),
    ("nope:1", ["cmp=nope:1", "run B", "eta_e"]),
])
def test_bad_compare_urls_are_refused_with_key_value_and_range(cmp: str, says: list) -> None:
    """An invalid run B in the link: one warning naming it as run B's setting, the key, the value
    and the allowed range; compare mode stays off and run A is built and drawn."""
    at = _page()
    at.query_params.update({"cmp": cmp})
    _run(at)
    text = _texts(at)
    assert all(s in text for s in says), text
    assert dash(at).trainer is not None and dash(at).trainer_b is None and not at.toggle(key="compare").value
    assert _charts(at) >= 2


def test_compare_value_box_is_bounded_by_the_schema() -> None:
    at = _run(_page())
    at.toggle(key="compare").set_value(True)
    _run(at)
    box = at.number_input(key="cmp_value")
    assert box.min == 0.0 and box.max == 1e30  # eta_e in [0, 1e30] (live: any value the schema allows)
    at.selectbox(key="cmp_key").set_value("dim_h")
    _run(at)
    box = at.number_input(key="cmp_value")
    assert (box.min, box.max) == (2.0, 128.0)  # structural: what the sidebar offers
    assert 2.0 <= box.value <= 128.0 and dash(at).trainer_b is not None
    # the sidebar's own text box of dim_e is bounded by the schema too
    at.text_input(key="w_dim_e").set_value("100000000")
    _run(at)
    assert "dim_e = 100000000: out of range; allowed: dim_e >= 1 and dim_e <= 4096" in _texts(at)
    assert dash(at).values["dim_e"] == 64


def test_a_diverged_run_b_warns_and_keeps_its_plots() -> None:
    """?cmp=lr:1e9, Step: run B diverges -> a warning naming run B, what it changes and what
    diverged; its plots stay (its last good state); run A trains on; later reruns raise nothing."""
    at = _page()
    at.query_params.update({"cmp": "lr:1e9"})
    _run(at)
    _run(at.button(key="btn_step").click())
    text = _texts(at)
    assert "Training stopped for run B" in text and "lr = 1e+09" in text and "diverged" in text, text
    b = dash(at).run_b
    assert b.diverged and dash(at).run_a.diverged is None
    keys = {c.key for c in at.get("plotly_chart")}
    assert {"cur_B", "disk_B", "cur_A", "disk_A"} <= keys
    for _ in range(2):
        _run(at)
    _run(at.button(key="btn_step").click())  # run A alone goes on
    assert dash(at).trainer.step_count > b.trainer.step_count
    assert "Training stopped for run B" in _texts(at)


def test_nothing_to_train_in_run_b_is_said_in_one_line() -> None:
    """Preset E only (eta_H = 0, K = 1, tau = 0) with B: eta_E = 0 -> nothing trains in B: B is
    not built (it is not silently given other values) and the page says what to change."""
    at = _run(_page())
    at.selectbox(key="preset").set_value("Euclidean only (E only)")
    _run(at.button(key="btn_reset").click())
    at.toggle(key="compare").set_value(True)
    _run(at)
    text = _texts(at)
    assert "Run B not built" in text and "nothing trains" in text and "eta_e" in text, text
    assert dash(at).trainer_b is None
    _run(at.button(key="btn_step").click())
    assert dash(at).trainer.step_count == 10 and "Training stopped" not in _texts(at)


def test_a_step_that_cannot_train_is_explained_not_raw() -> None:
    """A trainer whose loss depends on no parameter (autograd's "does not require grad") stops with
    one line naming the settings to change, not the RuntimeError."""
    at = _run(_page())
    tr = dash(at).trainer

    def no_grad() -> None:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")

    tr.train_step = no_grad
    _run(at.button(key="btn_step").click())
    text = _texts(at)
    assert "Training stopped" in text and "nothing to train" in text and "RuntimeError" not in text, text


def test_vit_backbones_are_not_offered_on_the_page() -> None:
    """The page offers the backbones that build and train on it; a link asking for a ViT says why."""
    at = _page()
    at.query_params.update({"backbone": "vit_tiny_patch16_224"})
    _run(at)
    assert at.selectbox(key="w_backbone").options == ["mlp", "cnn"]
    text = _texts(at)
    assert "backbone=vit_tiny_patch16_224" in text and "not offered on this page" in text, text
    assert "chestlab.train" in at.selectbox(key="w_backbone").help
    assert dash(at).trainer.config.backbone == "mlp"


_SLIDERS = {
    "w_c": st.floats(0.0, 2.0), "w_r": st.floats(0.1, 6.0), "w_eta_h": st.floats(0.0, 2.0),
    "w_eta_e": st.floats(0.0, 2.0), "w_tau": st.floats(0.0, 2.0), "w_delta_h": st.floats(0.0, 20.0),
    "w_delta_e": st.floats(0.0, 20.0), "w_gamma_h": st.floats(0.1, 20.0), "w_gamma_e": st.floats(0.1, 20.0),
    "w_lambda_h": st.floats(1.0, 64.0), "w_gamma_hyp": st.floats(0.1, 5.0), "w_M": st.integers(1, 256),
}


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(values=st.fixed_dictionaries({k: v for k, v in _SLIDERS.items()}))
def test_property_random_sliders_then_step(app: AppTest, values: dict) -> None:
    """Random live-slider values, then a step: never an exception; trouble is a warning on the page."""
    for key, value in values.items():
        app.slider(key=key).set_value(round(value, 2) if isinstance(value, float) else value)
    _run(app.button(key="btn_step").click())
    if dash(app).diverged:
        assert any("Training stopped" in w.value for w in app.warning)
        _run(app.button(key="btn_reset").click())


# ------------------------------------------------------------------------------------------------
# end to end: streamlit server + headless Chromium
# ------------------------------------------------------------------------------------------------
def find_browser() -> Optional[str]:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


class Chromium:
    """Headless Chromium driven over the DevTools protocol (one page)."""

    def __init__(self, binary: str, profile: Path, size: tuple[int, int] = (1400, 1000)) -> None:
        self.size = size
        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--window-size={size[0]},{size[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        port_file = profile / "DevToolsActivePort"
        end = time.monotonic() + 30
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if time.monotonic() > end or self.proc.poll() is not None:
                raise RuntimeError("chromium did not start (no DevToolsActivePort)")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws_url = page["webSocketDebuggerUrl"]
        self.loop = asyncio.new_event_loop()
        self.ws = None
        self.msg_id = 0

    def call(self, method: str, **params: Any) -> dict:
        return self.loop.run_until_complete(self._call(method, params))

    async def _call(self, method: str, params: dict) -> dict:
        from tornado.websocket import websocket_connect

        if self.ws is None:
            self.ws = await websocket_connect(self.ws_url, max_message_size=256 * 1024 * 1024)
        self.msg_id += 1
        mid = self.msg_id
        await self.ws.write_message(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            raw = await asyncio.wait_for(self.ws.read_message(), 180)  # a loaded 2-core machine: the renderer may be busy for long
            if raw is None:
                raise RuntimeError("DevTools connection closed")
            msg = json.loads(raw)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float, what: str, poll: float = 0.25) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = self.js(expression)
            if value:
                return value
            time.sleep(poll)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")

    @staticmethod
    def _stamp_js(name: str, condition: str) -> str:
        # checked at every animation frame: the stamp is the first frame the browser could paint with it
        return (f"(() => {{ const f = () => {{ try {{ if ({condition}) {{ window[{json.dumps(name)}] = performance.now(); return; }} }}"
                f" catch (e) {{}} requestAnimationFrame(f); }}; requestAnimationFrame(f); }})()")

    def stamp_on_load(self, name: str, condition: str) -> None:
        """In pages opened from now on, ``window[name]`` = ``performance.now()`` (ms since the navigation
        started) at the first animation frame where the JS ``condition`` holds: a browser-side clock,
        free of the polling interval and the DevTools round trips of :meth:`wait_for`."""
        self.call("Page.enable")
        self.call("Page.addScriptToEvaluateOnNewDocument", source=self._stamp_js(name, condition))

    def click_and_time(self, text: str, condition: str, timeout: float, what: str) -> float:
        """Click the button labelled ``text``; seconds, by the browser's clock, until the first animation
        frame where the JS ``condition`` holds."""
        ok = self.js(f"""(() => {{ const b = [...document.querySelectorAll('button')].find(b => b.innerText.includes({json.dumps(text)}));
                         if (!b) return false; window.__answered = undefined; {self._stamp_js("__answered", condition)};
                         window.__clicked = performance.now(); b.click(); return true; }})()""")
        assert ok, f"no button labelled {text!r} on the page"
        self.wait_for("window.__answered !== undefined", timeout, what, poll=0.02)
        return (self.js("window.__answered - window.__clicked") or 0.0) / 1000

    def goto(self, url: str) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=self.size[0], height=self.size[1], deviceScaleFactor=1, mobile=False)
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def click_button(self, text: str) -> None:
        ok = self.js(f"""(() => {{ const b = [...document.querySelectorAll('button')].find(b => b.innerText.includes({json.dumps(text)}));
                         if (!b) return false; b.click(); return true; }})()""")
        assert ok, f"no button labelled {text!r} on the page"

    def screenshot(self, path: Path, full_page: bool = False) -> bytes:
        params: dict = {"format": "png"}
        if full_page:
            h = int(self.js("Math.max(document.body.scrollHeight, ...[...document.querySelectorAll('section.main, [data-testid=stMain] > div')].map(e => e.scrollHeight))") or self.size[1])
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": self.size[0], "height": max(h, self.size[1]), "scale": 1})
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        try:
            if self.ws is not None:
                # tornado's close makes a Future of the current loop: make it this client's (an earlier
                # test's asyncio.run() may have left the main thread with none)
                asyncio.set_event_loop(self.loop)
                try:
                    self.ws.close()
                finally:
                    asyncio.set_event_loop(None)
            self.loop.close()
        finally:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)


def start_server(port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    fh = open(log, "w")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


# Pixels of a Plotly plot: the similarity-histogram bars are drawn as SVG paths inside .js-plotly-plot.
_PLOTS_JS = "document.querySelectorAll('.js-plotly-plot .main-svg').length"


_HIST_JS = "document.querySelectorAll('.js-plotly-plot .bars path, .js-plotly-plot .barlayer path').length"


def button_reads(text: str) -> str:
    """JS: some button's label ends with ``text`` (the Play button reads "Pause" while playing)."""
    return f"[...document.querySelectorAll('button')].some(b => b.innerText.trim().endsWith({json.dumps(text)}))"


def _nonblank(png: bytes) -> float:
    """Fraction of pixels that differ from the most common colour (the background)."""
    from io import BytesIO

    from PIL import Image

    img = Image.open(BytesIO(png)).convert("L").resize((200, 150))
    hist = img.histogram()
    return 1.0 - max(hist) / sum(hist)


def browser_or_skip() -> str:
    """The browser's path; the test skips without one, and fails where ``CI`` is set."""
    browser = find_browser()
    if browser is None:
        reason = "no chromium/chrome on PATH: install Debian's chromium (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the browser test cannot run: {reason}")
        pytest.skip(reason)
    return browser


def test_end_to_end_in_headless_chromium(tmp_path: Path) -> None:
    browser = browser_or_skip()
    port = _free_port()
    server = start_server(port, tmp_path / "server.log")
    chrome = None
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health", 60)
        t0 = time.monotonic()
        chrome = Chromium(browser, tmp_path / "profile")
        chrome.stamp_on_load("__first_plot", _PLOTS_JS)
        chrome.goto(f"http://127.0.0.1:{port}/?delta_h=2.0")
        chrome.wait_for(_PLOTS_JS, 60, "the first plots")
        first_plot_s = time.monotonic() - t0
        chrome.wait_for("window.__first_plot !== undefined", 10, "the browser's stamp of the first plot", poll=0.05)
        by_browser = chrome.js("window.__first_plot") / 1000  # from the start of the navigation
        assert 0 < by_browser <= first_plot_s + 0.5
        chrome.wait_for("[...document.querySelectorAll('button')].some(b => b.innerText.includes('Step'))", 30, "the Step button")
        chrome.click_button("Step")
        chrome.wait_for(_HIST_JS, 60, "the similarity histograms after Step")
        time.sleep(1.0)  # let plotly finish laying out
        png = chrome.screenshot(tmp_path / "dashboard.png")
        assert _nonblank(png) > 0.05, "the screenshot is (nearly) blank"
        text = chrome.js("document.body.innerText")
        assert "Poincaré disk" in text and "Traceback" not in text
        assert first_plot_s < 30, f"first plot after {first_plot_s:.1f} s"
        # Play, then Pause while it trains: both answer (timed by the browser), and the run goes on
        # (two script threads stepping one model once stopped it here, see Run.lock)
        played = chrome.click_and_time("Play", button_reads("Pause"), 30, "Play to answer")
        time.sleep(1.5)
        paused = chrome.click_and_time("Pause", button_reads("Play"), 30, "Pause to answer")
        assert 0 < played < 30 and 0 < paused < 30
        assert "Training stopped" not in chrome.js("document.body.innerText")
        print(f"first plot {first_plot_s:.1f} s; screenshot {tmp_path / 'dashboard.png'}")
    finally:
        if chrome is not None:
            chrome.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)
