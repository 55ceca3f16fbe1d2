"""Time to the first plot (issue 19 item 5): what a new session's first script run sends, in which
order (:mod:`chestlab.dashboard.first`), the page's HTML asking for the first frame's JavaScript
(:mod:`chestlab.dashboard.assets`), and the warm-up's ready run (:func:`chestlab.dashboard.ready.take`):
mechanisms, not timings (benchmarks/bench_app.py measures those)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.testing.v1 import AppTest

from chestlab.dashboard import assets, first, ready

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"


def _msg(kind: str) -> ForwardMsg:
    m = ForwardMsg()
    if kind == "chart":
        m.delta.new_element.plotly_chart.spec = "{}"
    else:
        m.delta.new_element.markdown.body = kind
    return m


def _names(sent: list) -> list:
    return ["chart" if first._is_chart(m) else m.delta.new_element.markdown.body for m in sent]


# -- first.Hold: the message sink of a new session's first run ------------------------------------
def test_everything_after_the_first_chart_waits_for_the_browser() -> None:
    sent: list = []
    hold = first.Hold(sent.append, hold_s=60)
    for k in ("title", "metrics", "chart", "radio", "chart", "sidebar"):
        hold(_msg(k))
    assert _names(sent) == ["title", "metrics", "chart"]  # the first chart goes out alone
    assert not hold.released_by
    hold.drawn.set()  # the browser called the route: the kept messages go with the next one, in order
    hold(_msg("caption"))
    assert _names(sent) == ["title", "metrics", "chart", "radio", "chart", "sidebar", "caption"]
    assert hold.released_by == "browser"
    hold(_msg("late"))
    assert _names(sent)[-1] == "late"


def test_the_end_of_the_run_waits_for_the_browser_at_most_hold_s() -> None:
    import time

    sent: list = []
    hold = first.Hold(sent.append, hold_s=0.3)
    hold(_msg("chart"))
    hold(_msg("rest"))
    t0 = time.monotonic()
    hold.release()
    assert 0.2 <= time.monotonic() - t0 < 5
    assert _names(sent) == ["chart", "rest"] and hold.released_by == "timeout"
    # a click (rerun) does not wait
    sent2: list = []
    hold2 = first.Hold(sent2.append, hold_s=60)
    hold2(_msg("chart"))
    hold2(_msg("rest"))
    t0 = time.monotonic()
    hold2.release(interrupted=lambda: True)
    assert time.monotonic() - t0 < 1 and _names(sent2) == ["chart", "rest"]


def test_a_run_without_a_chart_is_not_held() -> None:
    sent: list = []
    hold = first.Hold(sent.append, hold_s=60)
    for k in ("title", "error"):
        hold(_msg(k))
    assert _names(sent) == ["title", "error"]
    hold.release()  # returns at once: nothing was kept
    assert hold.released_by == "end"


def test_the_route_releases_only_its_own_run() -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    class Ctx:
        def __init__(self) -> None:
            self.sent: list = []
            self._enqueue = self.sent.append

    ctx = Ctx()
    client = TestClient(Starlette(routes=first.routes()))
    try:
        with first.hold_after_first_chart(ctx) as token:
            assert token and ctx._enqueue is not ctx.sent.append
            ctx._enqueue(_msg("chart"))
            ctx._enqueue(_msg("rest"))
            assert client.post(first.ROUTE + "?t=not-" + token).status_code == 404
            assert _names(ctx.sent) == ["chart"]
            assert client.post(f"{first.ROUTE}?t={token}").status_code == 204
            ctx._enqueue(_msg("more"))
            assert _names(ctx.sent) == ["chart", "rest", "more"]
        assert ctx._enqueue == ctx.sent.append  # the run's own sink is back
        assert client.post(f"{first.ROUTE}?t={token}").status_code == 404  # a finished run's token
    finally:
        first._ROUTE_ON = False


def test_nothing_is_held_without_the_route() -> None:
    class Ctx:
        _enqueue = staticmethod(lambda m: None)

    assert not first.enabled()
    with first.hold_after_first_chart(Ctx()) as token:
        assert token is None


def test_the_page_s_first_run_sends_its_first_chart_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real script run of the page (AppTest), as on a server with the route: up to the first chart
    nothing else chart-like goes out; the rest of the first frame (the other charts, the sidebar's
    widgets) only when the browser answers or the hold ends; a second run is not held."""
    holds: list = []

    class Spy(first.Hold):
        def __init__(self, send: Any, hold_s: Any = None) -> None:
            self.log: list = []

            def rec(m: Any) -> None:
                t = m.WhichOneof("type")
                self.log.append("chart" if first._is_chart(m) else
                                (m.delta.new_element.WhichOneof("type") if t == "delta" and m.delta.WhichOneof("type") == "new_element" else t))
                send(m)

            super().__init__(rec, hold_s=1.0)
            self.flush_at: list = []
            holds.append(self)

        def _flush(self, why: str) -> None:
            self.flush_at.append(len(self.log))
            super()._flush(why)

    monkeypatch.setattr(first, "Hold", Spy)
    monkeypatch.setattr(first, "_ROUTE_ON", True)
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(holds) == 1
    hold = holds[0]
    assert hold.released_by == "timeout"  # no browser here: the hold ends after hold_s
    (i,) = hold.flush_at
    before, after = hold.log[:i], hold.log[i:]
    assert before.count("chart") == 1 and before[-1] == "chart"  # the first chart is the last thing sent before the hold
    assert after.count("chart") >= 2  # the others follow
    assert "slider" in after and "slider" not in before  # the sidebar's widgets are drawn last
    # the page is complete: as many charts as the same page without the hold
    monkeypatch.setattr(first, "_ROUTE_ON", False)
    plain = AppTest.from_file(str(APP), default_timeout=120).run()
    assert len(at.get("plotly_chart")) == len(plain.get("plotly_chart")) == hold.log.count("chart")
    # a second script run of the same session is not held
    at.run()
    assert len(holds) == 1


# -- assets: the page's HTML asks for the first frame's chunks ------------------------------------
def test_first_frame_chunks_are_streamlit_s_files() -> None:
    chunks = assets.first_frame_chunks()
    assert chunks and chunks[0] == assets.plotly_chunk() and chunks[0].startswith("PlotlyChart.")
    folder = Path(assets._js_dir())
    assert all((folder / c).is_file() for c in chunks)
    assert not any(c.startswith("BaseButton") for c in chunks)  # "Button" is that chunk only
    head = assets.head_html(chunks)
    assert head.count('rel="modulepreload"') == len(chunks) and f'href="./static/js/{chunks[0]}"' in head
    # the plotly chunk is evaluated when the websocket opens (a classic script: before Streamlit's module runs)
    assert head.count("<script>") == 1 and f'"./static/js/{chunks[0]}"' in head and "addEventListener('open'" in head
    assert "<script>" not in assets.head_html(chunks[1:])  # no plotly chunk: links only


def _serve(mw: Any, path: str, body: bytes, ctype: bytes = b"text/html; charset=utf-8", extra: tuple = ()) -> tuple:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *extra]})
        half = len(body) // 2
        await send({"type": "http.response.body", "body": body[:half], "more_body": True})
        await send({"type": "http.response.body", "body": body[half:], "more_body": False})

    out: list = []

    async def send(m: dict) -> None:
        out.append(m)

    async def receive() -> dict:
        return {"type": "http.request"}

    asyncio.run(mw(app)({"type": "http", "method": "GET", "path": path}, receive, send))
    headers = dict(out[0]["headers"])
    return headers, b"".join(m.get("body", b"") for m in out[1:])


def test_index_preload_adds_its_links_to_the_page_only() -> None:
    page = b"<html><head><title>x</title></head><body></body></html>"
    head = '<link rel="modulepreload" href="./static/js/PlotlyChart.x.js">'
    mw = lambda app: assets.IndexPreload(app, head)  # noqa: E731
    headers, body = _serve(mw, "/", page)
    assert body == page.replace(b"</head>", head.encode() + b"</head>")
    assert int(headers[b"content-length"]) == len(body)
    for path, ctype, extra in (("/static/js/index.js", b"application/javascript", ()), ("/_stcore/health", b"text/plain", ()),
                               ("/", b"text/html", ((b"content-encoding", b"gzip"),))):
        headers, body = _serve(mw, path, page, ctype, extra)
        assert body == page, path
    assert assets.inject(page, head) != page and assets.inject(assets.inject(page, head), head) == assets.inject(page, head)


# -- warm: the warm-up's ready run is the run a cold build gives ----------------------------------
def _first_steps(run: Any, n: int = 3) -> list:
    """The run's evaluation at step 0, its first ``n`` losses and a few parameter sums after them."""
    tr = run.trainer
    out: list = [sorted((k, float(v)) for k, v in tr.history[0].items() if isinstance(v, (int, float)))]
    out += [float(tr.train_step().loss) for _ in range(n)]
    out.append([float(p.detach().sum()) for p in list(tr.system.parameters())[:3]])
    return out


def test_the_warm_run_is_taken_once_and_equals_a_cold_build() -> None:
    import torch

    from chestlab.dashboard import runner
    from chestlab.dashboard.defaults import BASE

    torch.set_num_threads(1)
    cold_run = runner.build(BASE, use_warm=False)
    cold_rng = torch.get_rng_state()  # where a build leaves torch's global RNG
    cold = _first_steps(cold_run)
    kept = runner.build(BASE, use_warm=False)
    ready.keep(kept.trainer, torch.get_rng_state())
    torch.rand(1000)  # the server does other things between the warm-up and the first page
    other = BASE.replace(eta_e=0.0)
    assert ready.take(other) is None  # another config is built as before
    taken = runner.build(BASE, "A", label="x")
    assert torch.equal(torch.get_rng_state(), cold_rng)  # as if it had just been built
    assert taken.trainer is kept.trainer and taken.name == "A" and taken.label == "x"
    assert taken.built == runner.structural(BASE)
    assert _first_steps(taken) == cold  # same seed, same evaluation at step 0, same first steps
    again = runner.build(BASE)  # taken once: the next build is a new trainer
    assert again.trainer is not kept.trainer
    assert _first_steps(again) == cold
