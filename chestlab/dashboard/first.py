"""The first chart first: a new session's first script run holds back what follows its first chart
until the browser has drawn that chart.

Why (measured, ``notes/first26.md``): the browser draws the charts that arrive together in *one*
task — Streamlit's frontend renders the first frame's elements, then plotly draws every chart of
that render before the page is painted. The server builds the first frame's 4–9 charts in ~1 s, the
browser is still busy starting up (its own code, plotly's 4.7 MB chunk), so they all arrive together
and the first chart appeared only when the last one was drawn: 2.8–9.5 s of plotly drawing on the
loaded 2-core machine, against 0.7–1.5 s for the first chart alone.

How: :func:`hold_after_first_chart` (``page.main`` wraps a new session's first script run in it)
replaces the run's message sink (``ScriptRunContext._enqueue``) by one that passes everything up to
and including the first plotly chart at once and keeps the messages after it. The page's first
element (:func:`chestlab.dashboard.page.preload_plotly`) carries a token; its script waits for the
first drawn chart (``.js-plotly-plot .main-svg``) and calls :data:`ROUTE` with it. The kept
messages go out, in order, with the first message the script sends after that call, or at the end of
the run — at the latest :data:`HOLD_S` seconds after the first chart was sent. The server goes on
building the other figures meanwhile; only their sending waits. Nothing changes without the route
(``app.py``'s ``st.App`` adds it: :func:`routes`; AppTest has none) or after the first run.
"""

from __future__ import annotations

import secrets
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

__all__ = ["ROUTE", "HOLD_S", "routes", "enabled", "signal", "hold_after_first_chart", "Hold"]

#: the path the browser calls when it has drawn the first chart (``?t=<token>``)
ROUTE = "/_chestlab/first-chart-drawn"
#: the longest the rest of the first frame waits for the browser's call, from the first chart's sending
HOLD_S = 8.0

_LOCK = threading.Lock()
_OPEN: dict[str, threading.Event] = {}  # token -> set when its browser has drawn the first chart
_ROUTE_ON = False


def signal(token: str) -> bool:
    """The browser drew the first chart of the run holding ``token``: let the rest go. False for an
    unknown token (a finished run's, or a made-up one)."""
    with _LOCK:
        ev = _OPEN.get(token)
    if ev is None:
        return False
    ev.set()
    return True


def routes() -> list:
    """The Starlette route of :data:`ROUTE` (for ``st.App(routes=...)``); from then on, sessions hold
    their first frame (:func:`enabled`)."""
    global _ROUTE_ON
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def drawn(request: Request) -> Response:
        return Response(status_code=204 if signal(request.query_params.get("t", "")) else 404)

    _ROUTE_ON = True
    return [Route(ROUTE, drawn, methods=["GET", "POST"])]


def enabled() -> bool:
    """True when the browser can call :data:`ROUTE` (the server is ``app.py``'s ``st.App``)."""
    return _ROUTE_ON


def _is_chart(msg: Any) -> bool:
    try:
        return msg.WhichOneof("type") == "delta" and msg.delta.WhichOneof("type") == "new_element" \
            and msg.delta.new_element.WhichOneof("type") == "plotly_chart"
    except AttributeError:
        return False


class Hold:
    """The message sink of one held script run: ``send`` (the run's own) gets every message up to
    the first chart at once, the later ones when :attr:`drawn` is set (checked at each message) or
    by :meth:`release`. Thread-safe (a spinner sends from its own thread)."""

    def __init__(self, send: Any, hold_s: Optional[float] = None) -> None:
        self.send, self.hold_s = send, HOLD_S if hold_s is None else hold_s
        self.drawn = threading.Event()
        self.kept: list = []
        self.chart_at: Optional[float] = None  # when the first chart was sent (time.monotonic)
        self.released_by = ""  # "browser", "timeout" or "end" (the run ended first)
        self._lock = threading.RLock()

    def __call__(self, msg: Any) -> None:
        with self._lock:
            if self.chart_at is None:
                if _is_chart(msg):
                    self.chart_at = time.monotonic()
                self.send(msg)
                return
            if not self.released_by:
                if self.drawn.is_set():
                    self._flush("browser")
                elif time.monotonic() - self.chart_at >= self.hold_s:
                    self._flush("timeout")
                else:
                    self.kept.append(msg)
                    return
            self.send(msg)

    def _flush(self, why: str) -> None:
        self.released_by = why
        kept, self.kept = self.kept, []
        for m in kept:
            self.send(m)

    def release(self, wait: bool = True, interrupted: Any = None) -> None:
        """Send what is kept: when the browser has drawn the first chart, or :attr:`hold_s` after
        it was sent (``wait``: block until then, or until ``interrupted()``: a click asked for a
        rerun), else at once."""
        if self.chart_at is not None and wait and not self.released_by:
            while not self.drawn.is_set() and time.monotonic() - self.chart_at < self.hold_s:
                if interrupted is not None and interrupted():
                    break
                self.drawn.wait(0.05)
            why = "browser" if self.drawn.is_set() else "timeout"
        else:
            why = "browser" if self.drawn.is_set() else "end"
        with self._lock:
            if not self.released_by:
                self._flush(why)


def _asked_to_stop(ctx: Any) -> bool:
    state = getattr(getattr(ctx, "script_requests", None), "_state", None)
    return state is not None and getattr(state, "name", "CONTINUE") != "CONTINUE"


@contextmanager
def hold_after_first_chart(ctx: Any, on: bool = True) -> Iterator[Optional[str]]:
    """Around a new session's first script run: yields the token the page's first element gives
    the browser (None when nothing is held: ``on`` False, no route, no script context). The kept
    messages go out before the run ends, also when it stops early (a rerun, an error)."""
    if not on or not enabled() or ctx is None or not callable(getattr(ctx, "_enqueue", None)):
        yield None
        return
    token = secrets.token_urlsafe(12)
    own = ctx._enqueue
    hold = Hold(own)
    with _LOCK:
        _OPEN[token] = hold.drawn
    ctx._enqueue = hold
    finished = False
    try:
        yield token
        finished = True
    finally:
        try:
            hold.release(wait=finished, interrupted=lambda: _asked_to_stop(ctx))
        finally:
            ctx._enqueue = own
            with _LOCK:
                _OPEN.pop(token, None)
