"""Benchmark: the dashboard (``app.py``, package ``chestlab.dashboard``) against its targets, on ``tree``.

Targets: first plot <= 4 s after the page opens on the 2-core CPU; >= 20 optimizer steps/s while the
page refreshes its plots at least once a second; no UI step blocks for more than 1 s (UMAP
excepted, which shows a progress bar).

Part 1 -- in process, no server: the pieces of one refresh of the live fragment (a training step, an
evaluation, each panel's figure built and serialised as Streamlit sends it), medians of repeats, and
the refresh budget they imply (the fragment trains for TRAIN_FRACTION of the 0.8-s refresh period,
then draws).

Part 2 -- end to end, when Chromium is installed: ``streamlit run app.py`` + headless Chromium over the
DevTools protocol (the helper of ``tests/test_app.py``), each page in a fresh browser profile (no
cached JavaScript):

* times are taken by the browser's clock (``performance.now()``, checked at every animation frame,
  so a time is the first frame that could show the change), not by polling over DevTools (which
  added up to 0.25 s of polling interval to each time before);
* first plot: from the start of the navigation to the first Plotly SVG on the page. ``streamlit run app.py``
  starts an ``st.App`` whose lifespan warms the server up in the background (torch, the engine,
  plotly, one default run: ``chestlab.dashboard.warm``), so it is measured on new server processes:
  the page (``/``) opened on a *ready* server (after its "warm-up done" line; ``--runs`` servers,
  median), a link with ``?play=1`` opened on a ready server (it starts training at once), and the
  page opened as soon as the server answers its health check (the warm-up still running: the page
  waits for its imports, then the warm-up stops). The time from starting the server to "warm-up
  done" is reported too;
* playing (that ``?play=1`` page) for ``--seconds``: the page's own step counter is read every 0.1 s; steps/s =
  steps gained / wall time, redraw interval = time between changes of the counter;
* UI block: the page's "Last redraw: ... in X s, then drawing in Y s" caption gives each fragment
  run's training and drawing time; a widget event waits at most for one training step (the loop
  yields to Streamlit between steps) or one drawing pass, so ``max(draw)`` bounds the block, and the
  time from clicking Pause to the first frame where the button reads "Play" is reported as the
  response time: the worst of several clicks (Play, then Pause after a varying while), so that
  clicks land mid-training, mid-drawing and between refreshes.

The load average is printed with the tables: on a shared 2-core machine the end-to-end numbers
depend on what else runs.

    .venv/bin/python benchmarks/bench_app.py            # both parts
    .venv/bin/python benchmarks/bench_app.py --quick    # fewer repeats, one run per case, 8 s of playing
    .venv/bin/python benchmarks/bench_app.py --first-plot --quick [--app-root ../before]   # first plot only, with its breakdown
    .venv/bin/python benchmarks/bench_app.py --trace    # + each Pause click's breakdown: the server's events
                                                        #   (CHESTLAB_TRACE) and the browser's long tasks
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as cm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore")


def _median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)


def part1(repeats: int) -> tuple[list[list[str]], dict]:
    import torch

    torch.set_num_threads(1)  # as the page does on CPU
    from chestlab.dashboard import defaults, runner
    from chestlab.dashboard.panels import PanelContext, curves, disk, hardneg, similarity
    from chestlab.dashboard.state import DashState
    from chestlab.engine import Trainer

    cfg = defaults.BASE  # the page's defaults
    t0 = time.perf_counter()
    tr = Trainer(cfg)
    first_build = (time.perf_counter() - t0) * 1000
    rebuild = _median_ms(lambda: Trainer(cfg), max(2, repeats // 4), warmup=0)
    step = _median_ms(tr.train_step, repeats * 5, warmup=5)
    evaluate = _median_ms(tr.evaluate, max(3, repeats // 2))
    run = runner.Run("A", tr, rows=[{"step": i, "loss": 1.0, "l_h": 0.5, "l_e": 0.4, "l_hyphc": 0.1} for i in range(1, 3001)])
    state = DashState(runs=[run])
    tr.history = tr.history * 30

    def ctx() -> PanelContext:  # a fresh per-redraw cache, as the page makes
        return PanelContext(state, {}, run)

    def hist() -> None:
        similarity.figure(ctx()).to_json()

    def disk_() -> None:
        c = ctx()
        disk.figure(c.disk_data("train"), grid=True, circles=True)[0].to_json()

    def curves_() -> None:
        curves.figure(ctx()).to_json()

    def hardneg_() -> None:
        c = ctx()
        hardneg.figure(c, c.disk_data("train"), cfg.t, cfg.t_e).to_json()

    parts = {"histograms": _median_ms(hist, repeats), "disk (600 pts + proxies, grid)": _median_ms(disk_, repeats),
             "curves (3000 steps)": _median_ms(curves_, repeats), "hard negatives": _median_ms(hardneg_, repeats)}
    draw = sum(parts.values())
    table = [["build Trainer (first / cached data)", f"{cm.fmt_ms(first_build)} / {cm.fmt_ms(rebuild)}"],
             ["train_step", cm.fmt_ms(step)], ["evaluate (≤ 600 per split, both splits)", cm.fmt_ms(evaluate)]]
    table += [[f"figure + JSON: {k}", cm.fmt_ms(v)] for k, v in parts.items()]
    table += [["all figures of one redraw", cm.fmt_ms(draw)]]
    budget = defaults.TRAIN_FRACTION * defaults.REFRESH_S * 1000  # ms of training per refresh
    # steps in the training budget, evaluations every eval_every steps included
    per_step = step + evaluate / cfg.eval_every
    predicted = budget / per_step / defaults.REFRESH_S
    return table, dict(step_ms=step, eval_ms=evaluate, draw_ms=draw, predicted_steps_s=predicted)


_STEP_JS = ("(() => { const m = [...document.querySelectorAll('[data-testid=stMetric]')]"
            ".find(e => e.innerText.startsWith('step')); return m ? m.innerText : ''; })()")
_CAP_JS = ("(() => { const c = [...document.querySelectorAll('[data-testid=stCaptionContainer]')]"
           ".find(e => e.innerText.startsWith('Last redraw')); return c ? c.innerText : ''; })()")


class _Server:
    """``streamlit run app.py`` in a new process (as the tests start it), its log and its start time."""

    def __init__(self, T: Any, tmp: Path, name: str, root: Any = None) -> None:
        self.T, self.port, self.log = T, T._free_port(), tmp / f"{name}.log"
        self.t0 = time.monotonic()
        self.trace = None
        if TRACE["on"]:  # the server's events (chestlab.dashboard.trace), read by _pause_clicks
            self.trace = tmp / f"{name}.trace.jsonl"
            os.environ["CHESTLAB_TRACE"] = str(self.trace)
        try:
            self.proc = T.start_server(self.port, self.log) if root is None else _start_server_at(Path(root), self.port, self.log)
        finally:
            os.environ.pop("CHESTLAB_TRACE", None)
        T._wait_http(f"http://127.0.0.1:{self.port}/_stcore/health", 60)
        self.health_s = time.monotonic() - self.t0

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Seconds from the server's start to its "warm-up done" line."""
        from chestlab.dashboard.warm import READY_LINE

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if READY_LINE in self.log.read_text(errors="replace"):
                return time.monotonic() - self.t0
            time.sleep(0.05)
        raise TimeoutError(f"no {READY_LINE!r} in the server log within {timeout:.0f} s")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(20)


_PAUSES = 6  # Pause clicks per run, at different moments of the refresh cycle
#: JS run in every page (``--trace``): the browser's long tasks (> 50 ms on the main thread), as [epoch ms, ms]
_LONGTASKS_JS = ("(() => { window.__longtasks = []; try { new PerformanceObserver(l => { for (const e of l.getEntries())"
                 " window.__longtasks.push([performance.timeOrigin + e.startTime, e.duration]); })"
                 ".observe({type: 'longtask', buffered: true}); } catch (e) {} })()")
#: ``--trace``: the server's event file (``chestlab.dashboard.trace``), set per server
TRACE: dict = {"on": False}


def _pause_clicks(T: Any, chrome: Any, timeout: float, trace_file: Any = None) -> tuple[list[float], list[dict]]:
    """Pause at several moments of the refresh cycle (mid-training, mid-drawing, waiting): Play
    again, let it play a varying while, click Pause. Returns the answer times (s) and, with a trace
    file, each click's breakdown (:func:`_breakdown`)."""
    pauses, clicks = [], []
    for k in range(_PAUSES):
        if k:
            chrome.click_and_time("Play", T.button_reads("Pause"), timeout, "Play to answer")
            time.sleep(0.5 + 0.8 * k / _PAUSES)  # spreads the clicks over the 0.8-s cycle
        pauses.append(chrome.click_and_time("Pause", T.button_reads("Play"), timeout, "Pause to answer"))
        clicks.append(chrome.js("[performance.timeOrigin + window.__clicked, performance.timeOrigin + window.__answered]"))
    if trace_file is None:
        return pauses, []
    import json

    time.sleep(0.5)
    events = [json.loads(line) for line in Path(trace_file).read_text().splitlines() if line.strip()]
    longtasks = chrome.js("window.__longtasks || []") or []
    Path(str(trace_file) + ".clicks.json").write_text(json.dumps({"clicks": clicks, "longtasks": longtasks}))
    return pauses, [_breakdown(c[0] / 1000, c[1] / 1000, events, longtasks) for c in clicks]


def _breakdown(click: float, answer: float, events: list, longtasks: list) -> dict:
    """Where one Pause click's time went (s after the click): the server got the rerun request,
    interrupted the running script, ran the callback and sent the button; the browser's main thread
    was busy in long tasks for ``busy`` s of the wait (the largest one: ``longest``)."""
    def first(ev: str, after: float, **match: Any) -> float:
        for e in events:
            if e["ev"] == ev and e["t"] >= after and all(e.get(k) == v for k, v in match.items()):
                return e["t"]
        return float("nan")

    req = first("request_rerun", click - 0.02, fragment=False)
    intr = first("interrupt", req, how="stop") if req == req else float("nan")  # the running script stops
    play = first("on_play", req, playing=False) if req == req else float("nan")
    button = first("button", play, label="Play") if play == play else float("nan")
    frag = [e for e in events if e["ev"] == "frag_start" and e["t"] < req]
    busy, longest = 0.0, 0.0
    for start, dur in longtasks:
        s, e = start / 1000, (start + dur) / 1000
        overlap = min(e, answer) - max(s, click)
        if overlap > 0:
            busy += overlap
            longest = max(longest, dur / 1000)
    charts = [e for e in events if e["ev"] == "chart" and click <= e["t"] <= answer]
    return dict(total=answer - click, request=req - click, interrupt=intr - click, on_play=play - click,
                button=button - click, browser_after_button=answer - button, busy=busy, longest=longest,
                charts_before_answer=len(charts), last_frag_timer=bool(frag) and frag[-1].get("full_run") is False)


def _breakdown_rows(tag: str, clicks: list[dict]) -> list[list[str]]:
    rows = []
    for i, b in enumerate(clicks):
        rows.append([f"{tag}click {i + 1}: total · server got it · interrupted · on_play · button sent · browser after button · "
                     "main thread busy (longest task) · charts sent before the answer",
                     f"{b['total']:.2f} · {b['request']:.2f} · {b['interrupt']:.2f} · {b['on_play']:.2f} · {b['button']:.2f} · "
                     f"{b['browser_after_button']:.2f} · {b['busy']:.2f} ({b['longest']:.2f}) · {b['charts_before_answer']}"])
    return rows


def _start_server_at(root: Path, port: int, log: Path) -> Any:
    """``streamlit run <root>/app.py`` with ``root`` first on the path (``--app-root``: the code of
    another checkout, for a before/after comparison on the same machine and browser)."""
    import subprocess

    cmd = [sys.executable, "-m", "streamlit", "run", str(root / "app.py"), "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.Popen(cmd, cwd=root, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True, env=env)


#: JS: the first-plot breakdown the browser saw (ms from the navigation's start): websocket open, the
#: plotly chunk's preload start/end, the first chart element and its SVG, the plotly chunk's fetch,
#: and the long tasks (> 50 ms of the main thread) before the first SVG
_BREAKDOWN_JS = r"""(() => { const r = {}; const res = performance.getEntriesByType('resource');
 const p = res.find(e => /PlotlyChart\./.test(e.name)); r.chunk = p ? [Math.round(p.startTime), Math.round(p.responseEnd)] : null;
 r.ws = window.__fpWs; r.preload = [window.__chestlabPreload, window.__chestlabPreloaded].map(x => x && Math.round(x));
 r.svg = window.__first_plot; r.long = (window.__fpLong || []).filter(x => x[0] < (r.svg || 1e9)).map(x => [Math.round(x[0]), Math.round(x[1])]);
 return r; })()"""
_BREAKDOWN_HOOK = r"""(() => { window.__fpLong = [];
 try { new PerformanceObserver(l => { for (const e of l.getEntries()) window.__fpLong.push([e.startTime, e.duration]); }).observe({type: 'longtask', buffered: true}); } catch (e) {}
 const W = window.WebSocket; window.WebSocket = function (u, p) { const s = p ? new W(u, p) : new W(u);
   s.addEventListener('open', () => { if (window.__fpWs === undefined) window.__fpWs = Math.round(performance.now()); }); return s; };
 window.WebSocket.prototype = W.prototype; Object.assign(window.WebSocket, W); })()"""


def first_plot_tables(args: Any) -> int:
    """``--first-plot``: the first plot alone (quiet, then with one core loaded), single page and
    compare link, each page on a new ready server (its first session, as a user opening the link
    after the server started); with the browser's breakdown. ``--app-root`` runs another checkout's
    ``app.py`` (before/after on one machine, back to back)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import test_app as T

    browser = T.find_browser()
    if browser is None:
        print("first plot: skipped (no chromium)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench_first_"))
    rows, checks, n = [], [], 0
    for loaded in ((False,) if args.no_loaded else (False, True)):
        tag = "one core loaded" if loaded else "quiet"
        busy = _busy_core() if loaded else None
        try:
            times: dict = {"single": [], "compare": []}
            for _ in range(max(1, args.runs if not args.quick else 1)):
                for what, path in (("single", "/"), ("compare", COMPARE_QUERY)):
                    n += 1
                    server = _Server(T, tmp, f"fp{n}", root=args.app_root)
                    try:
                        server.wait_ready()
                        load = _load()
                        chrome = T.Chromium(browser, tmp / f"pf{n}")
                        try:
                            chrome.call("Page.enable")
                            chrome.call("Page.addScriptToEvaluateOnNewDocument", source=_BREAKDOWN_HOOK)
                            chrome.stamp_on_load("__first_plot", T._PLOTS_JS)
                            chrome.goto(server.url(path))
                            chrome.wait_for("window.__first_plot !== undefined", 180, "the first plot", poll=0.05)
                            b = chrome.js(_BREAKDOWN_JS) or {}
                        finally:
                            chrome.close()
                    finally:
                        server.stop()
                    t = (b.get("svg") or float("nan")) / 1000
                    times[what].append(t)
                    big = sorted(b.get("long") or [], key=lambda x: -x[1])[:2]
                    rows.append([f"[{tag}] first plot, {what} {path} (s) — {load}; ws open {b.get('ws')} ms, plotly chunk fetched "
                                 f"{b.get('chunk')} ms, preload {b.get('preload')} ms, longest tasks before it {big} ms", f"{t:.1f}"])
            limit = 6.0 if loaded else 4.0
            worst = max(max(v) for v in times.values())
            checks.append((f"[{tag}] first plot ≤ {limit:g} s, single and compare", worst <= limit))
        finally:
            if busy is not None:
                os.killpg(busy.pid, signal.SIGTERM)
                busy.wait(10)
    notes = [f"{cm.verdict(ok)}  {name}" for name, ok in checks] + [f"code: {args.app_root or ROOT}", f"{_load()} at end"]
    print(cm.table(["## app.py first plot (streamlit + headless Chromium, fresh profile, server ready, tree)"], ["measure", "value"], rows, notes))
    return 0 if all(ok for _, ok in checks) else 1


def _first_plot(T: Any, browser: str, profile: Path, url: str) -> tuple[Any, float]:
    chrome = T.Chromium(browser, profile)
    try:
        chrome.stamp_on_load("__first_plot", T._PLOTS_JS)
        if TRACE["on"]:
            chrome.call("Page.addScriptToEvaluateOnNewDocument", source=_LONGTASKS_JS)
        chrome.goto(url)
        chrome.wait_for("window.__first_plot !== undefined", 180, "the first plot", poll=0.05)
        return chrome, chrome.js("window.__first_plot") / 1000  # the browser's clock, from the navigation's start
    except BaseException:
        chrome.close()  # not left running when the page does not answer
        raise


def part2(seconds: float, runs: int) -> tuple[list[list[str]], dict]:
    sys.path.insert(0, str(ROOT / "tests"))
    import test_app as T  # the DevTools helper

    browser = T.find_browser()
    if browser is None:
        return [["end to end", "skipped: no chromium (apt-get install -y chromium)"]], {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_app_"))
    out: dict = {}
    # 1) the page opened as soon as the server answers (the warm-up still running)
    server = _Server(T, tmp, "cold")
    try:
        chrome, out["first_plot_cold_s"] = _first_plot(T, browser, tmp / "profile_cold", server.url("/"))
        chrome.close()
    finally:
        server.stop()
    # 2) the page opened on a ready server, `runs` times, each with a new server; then a link with
    #    ?play=1 on one more, which goes on playing for the measurements below
    ready, warm = [], []
    for i in range(runs + 1):
        server = _Server(T, tmp, f"ready{i}")
        try:
            ready.append(server.wait_ready())
            playing = i == runs
            chrome, t = _first_plot(T, browser, tmp / f"profile{i}", server.url("/?play=1" if playing else "/"))
            if not playing:
                warm.append(t)
                chrome.close()
                continue
            out["first_plot_play_s"] = t
            try:
                chrome.wait_for(f"/\\d+/.test({_STEP_JS}) && parseInt({_STEP_JS}.split('\\n').pop()) > 0", 30, "training to start")
                samples, caps = [], []
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    txt = chrome.js(_STEP_JS) or ""
                    m = re.findall(r"\d+", txt)
                    if m:
                        samples.append((time.monotonic(), int(m[-1])))
                    cap = chrome.js(_CAP_JS) or ""
                    if cap and (not caps or caps[-1] != cap):
                        caps.append(cap)
                    time.sleep(0.1)
                (t_a, s_a), (t_b, s_b) = samples[0], samples[-1]
                out["steps_s"] = (s_b - s_a) / (t_b - t_a)
                changes = [t for (t, s), (_, s_prev) in zip(samples[1:], samples[:-1]) if s != s_prev]
                gaps = [b - a for a, b in zip(changes, changes[1:])]
                out["redraw_median_s"] = statistics.median(gaps) if gaps else float("nan")
                out["redraw_max_s"] = max(gaps) if gaps else float("nan")
                trains, draws = [], []
                for cap in caps:
                    m = re.search(r"in ([\d.]+) s, then drawing in ([\d.]+) s", cap)
                    if m:
                        trains.append(float(m.group(1)))
                        draws.append(float(m.group(2)))
                out["train_max_s"] = max(trains) if trains else float("nan")
                out["draw_max_s"] = max(draws) if draws else float("nan")
                out["draw_median_s"] = statistics.median(draws) if draws else float("nan")
                # Pause at several moments of the refresh cycle (mid-training, mid-drawing, waiting):
                # Play again, let it play a varying while, click Pause; the worst answer counts
                pauses, out["pause_breakdown"] = _pause_clicks(T, chrome, 30, server.trace)
                out["pause_response_s"] = max(pauses)
                out["pause_all"] = pauses
                out["stopped"] = chrome.js("document.body.innerText.includes('Training stopped')")
                chrome.screenshot(tmp / "bench_app.png")
            finally:
                chrome.close()
        finally:
            server.stop()
    out["first_plot_s"] = statistics.median(warm)
    out["ready_s"] = statistics.median(ready)
    shown = " / ".join(f"{t:.1f}" for t in warm)
    rows = [
        ["server start -> warm-up done (s)", f"{out['ready_s']:.1f}"],
        [f"first plot after opening the page, server ready (s){' — median of ' + shown if runs > 1 else ''}",
         f"{out['first_plot_s']:.1f}"],
        ["first plot, a link with ?play=1, server ready (s)", f"{out['first_plot_play_s']:.1f}"],
        ["first plot, page opened as soon as the server answers (s)", f"{out['first_plot_cold_s']:.1f}"],
        ["steps/s while playing (wall clock)", f"{out['steps_s']:.1f}"],
        ["redraw interval median / max (s)", f"{out['redraw_median_s']:.2f} / {out['redraw_max_s']:.2f}"],
        ["fragment run: training max (s)", f"{out['train_max_s']:.2f}"],
        ["fragment run: drawing median / max (s)", f"{out['draw_median_s']:.2f} / {out['draw_max_s']:.2f}"],
        [f"click Pause while playing -> page answers (s), worst of {len(out['pause_all'])}: "
         + " / ".join(f"{t:.2f}" for t in out["pause_all"]), f"{out['pause_response_s']:.2f}"],
    ] + _breakdown_rows("", out.get("pause_breakdown", []))
    out["screenshot"] = str(tmp / "bench_app.png")
    return rows, out


#: JS: the step each compare-mode column shows ("Run A: … · step N"), as [A, B] (null where absent)
_RUN_STEPS_JS = ("(() => { const t = document.body.innerText; const m = [t.match(/Run A:[^\\n]*?· step (\\d+)/), t.match(/Run B:[^\\n]*?· step (\\d+)/)];"
                 " return m.map(x => x ? parseInt(x[1]) : null); })()")
#: JS: [charts on the page, charts without a drawn SVG] (a chart being rebuilt from scratch is blank)
_BLANK_JS = ("(() => { const c = [...document.querySelectorAll('[data-testid=stPlotlyChart]')];"
             " return [c.length, c.filter(e => !e.querySelector('.main-svg')).length]; })()")
#: the compare-mode link the benchmark opens (the h-only scenario's pair: run B with η_E = 0)
COMPARE_QUERY = "/?cmp=eta_e:0"


def _busy_core() -> Any:
    """A process that keeps one core busy (the "one core loaded" rows); the caller stops it."""
    import subprocess

    return subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)


def part3(seconds: float, loaded: bool) -> tuple[list[list[str]], dict]:
    """Compare mode end to end on one ready server: first plot of the single page and of a
    compare link, then the compare link with ``play=1``: the steps runs A and B show (lock-step: the
    largest difference seen), samples with a blank chart, and the worst of six Pause clicks.
    ``loaded``: with one core kept busy by another process."""
    sys.path.insert(0, str(ROOT / "tests"))
    import test_app as T

    browser = T.find_browser()
    if browser is None:
        return [], {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_app_cmp_"))
    busy = _busy_core() if loaded else None
    out: dict = {"load": _load()}
    tag = "one core loaded" if loaded else "quiet"
    try:
        server = _Server(T, tmp, "cmp")
        try:
            server.wait_ready()
            chrome, out["first_plot_single_s"] = _first_plot(T, browser, tmp / "p_single", server.url("/"))
            chrome.close()
            chrome, out["first_plot_compare_s"] = _first_plot(T, browser, tmp / "p_cmp", server.url(COMPARE_QUERY))
            chrome.close()
            chrome, _ = _first_plot(T, browser, tmp / "p_play", server.url(COMPARE_QUERY + "&play=1"))
            try:
                chrome.wait_for(f"(({_RUN_STEPS_JS})[1] || 0) > 0", 60, "run B to train")
                diffs, blank, n = [], 0, 0
                end = time.monotonic() + seconds
                first = last = None
                while time.monotonic() < end:
                    a, b = chrome.js(_RUN_STEPS_JS) or [None, None]
                    if a is not None and b is not None:
                        diffs.append(abs(a - b))
                        first = first or (time.monotonic(), a)
                        last = (time.monotonic(), a)
                    total, empty = chrome.js(_BLANK_JS) or [0, 0]
                    n += 1
                    blank += bool(empty)
                    time.sleep(0.2)
                out["lockstep_max"] = max(diffs) if diffs else float("nan")
                out["blank"] = (blank, n)
                out["steps_s"] = (last[1] - first[1]) / (last[0] - first[0]) if first and last and last[0] > first[0] else float("nan")
                pauses, out["pause_breakdown"] = _pause_clicks(T, chrome, 60, server.trace)
                out["pause_all"] = pauses
                out["pause_response_s"] = max(pauses)
                chrome.screenshot(tmp / "bench_app_compare.png")
            finally:
                chrome.close()
        finally:
            server.stop()
    finally:
        if busy is not None:
            os.killpg(busy.pid, signal.SIGTERM)
            busy.wait(10)
    out["load_end"] = _load()
    rows = [
        [f"[{tag}] first plot, single page / compare link {COMPARE_QUERY} (s)",
         f"{out['first_plot_single_s']:.1f} / {out['first_plot_compare_s']:.1f}"],
        [f"[{tag}] compare, playing: steps/s (both runs step together)", f"{out['steps_s']:.1f}"],
        [f"[{tag}] compare: largest |step A − step B| on screen", f"{out['lockstep_max']}"],
        [f"[{tag}] compare: samples with a blank chart", f"{out['blank'][0]} of {out['blank'][1]}"],
        [f"[{tag}] compare: Pause -> page answers (s), worst of {len(pauses)}: " + " / ".join(f"{t:.2f}" for t in pauses),
         f"{out['pause_response_s']:.2f}"],
        [f"[{tag}] load average at start / end of this part", f"{out['load']} / {out['load_end']}"],
    ] + _breakdown_rows(f"[{tag}] compare ", out.get("pause_breakdown", []))
    return rows, out


def _load() -> str:
    return "load avg %.1f/%.1f/%.1f" % os.getloadavg() if hasattr(os, "getloadavg") else "load avg n/a"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats, one run per case and 8 s of playing")
    p.add_argument("--seconds", type=float, default=20.0, help="how long to play in the browser")
    p.add_argument("--runs", type=int, default=3, help="first plot on a ready server: this many servers, median")
    p.add_argument("--no-browser", action="store_true", help="part 1 only")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target FAILs")
    p.add_argument("--compare-only", action="store_true", help="only the compare-mode rows (quiet, then one core loaded)")
    p.add_argument("--no-loaded", action="store_true", help="compare-mode rows without the one-core-loaded repeat")
    p.add_argument("--first-plot", action="store_true", help="only the first-plot rows (quiet, then one core loaded), with their breakdown")
    p.add_argument("--app-root", default=None, help="with --first-plot: run the app.py of this checkout (a before/after comparison)")
    p.add_argument("--trace", action="store_true", help="each Pause click's breakdown: server events (CHESTLAB_TRACE) and "
                   "the browser's long tasks")
    args = p.parse_args()
    TRACE["on"] = args.trace
    if args.first_plot:
        return first_plot_tables(args)
    repeats = 5 if args.quick else 15
    seconds = 8.0 if args.quick else args.seconds
    runs = 1 if args.quick else max(1, args.runs)
    if args.compare_only:
        return compare_tables(seconds, args)
    rows1, r1 = part1(repeats)
    from chestlab.dashboard import defaults

    print(cm.table(["## app.py building blocks (in process, tree, 1 torch thread)"] + cm.env_lines("cpu", 1), ["piece", "median ms"], rows1,
                   [f"implied by these: ~{r1['predicted_steps_s']:.0f} steps/s at the default {defaults.REFRESH_S:g}-s refresh "
                    f"({defaults.TRAIN_FRACTION:.0%} of it training, an evaluation every {defaults.BASE.eval_every} steps); "
                    f"drawing {r1['draw_ms']:.0f} ms per refresh"]))
    print()
    ok_all = True
    if args.no_browser:
        return 0
    load0 = _load()
    rows2, r2 = part2(seconds, runs)
    if r2:
        checks = [
            ("first plot ≤ 4 s after the page opens (server ready)", r2["first_plot_s"] <= 4.0),
            ("first plot ≤ 10 s when the page opens with the server (warm-up still running)", r2["first_plot_cold_s"] <= 10.0),
            ("≥ 20 steps/s while playing", r2["steps_s"] >= 20),
            ("plots refresh at least once a second (median redraw interval ≤ 1 s)", r2["redraw_median_s"] <= 1.05),
            ("no UI block > 1 s (drawing max, Pause response)", max(r2["draw_max_s"], r2["pause_response_s"]) <= 1.0),
            ("training still running after the Play/Pause clicks (no 'Training stopped')", not r2["stopped"]),
        ]
        ok_all = all(ok for _, ok in checks)
        notes = [f"{cm.verdict(ok)}  {name}" for name, ok in checks]
        notes += [f"{load0} at start, {_load()} at end (2 cores: other processes slow every end-to-end number)",
                  f"screenshot: {r2['screenshot']}"]
    else:
        notes = []
    print(cm.table(["## app.py end to end (streamlit server + headless Chromium, tree, default refresh 0.8 s)"], ["measure", "value"], rows2, notes))
    print()
    ok_cmp = compare_tables(seconds, args) == 0
    return 1 if (args.strict and not (ok_all and ok_cmp)) else 0


def compare_tables(seconds: float, args: Any) -> int:
    """The compare-mode rows (quiet, then with one core loaded) and their checks."""
    rows, checks = [], []
    for loaded in ((False,) if args.no_loaded else (False, True)):
        r, out = part3(seconds, loaded)
        if not out:
            print("compare mode: skipped (no chromium)")
            return 0
        rows += r
        limit = 6.0 if loaded else 4.0
        tag = "one core loaded" if loaded else "quiet"
        checks += [
            (f"[{tag}] first plot ≤ {limit:g} s, single and compare", max(out["first_plot_single_s"], out["first_plot_compare_s"]) <= limit),
            (f"[{tag}] A and B show the same step (lock-step)", out["lockstep_max"] == 0),
            (f"[{tag}] Pause answers within 1 s, worst of {_PAUSES}", out["pause_response_s"] <= 1.0),
            (f"[{tag}] no sample with a blank chart", out["blank"][0] == 0),
        ]
    notes = [f"{cm.verdict(ok)}  {name}" for name, ok in checks]
    print(cm.table(["## app.py compare mode end to end (run B: η_E = 0; streamlit + headless Chromium, tree)"],
                   ["measure", "value"], rows, notes))
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
