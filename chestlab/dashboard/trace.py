"""Timestamps of what a click sets off on the server, for benchmarks (off unless ``CHESTLAB_TRACE``
names a file): one JSON line per event, ``{"t": <epoch s>, "ev": <name>, ...}``. The browser's
clock (``performance.timeOrigin + performance.now()``) is the same wall clock on the same machine,
so ``benchmarks/bench_app.py --trace`` lines a click up with what the server did about it.

Events: ``request_rerun`` (the server got a rerun request: a click, or the fragment's timer;
``fragment`` says which), ``interrupt`` (a running script stopped at a yield point to rerun),
``script`` (a script run starts), ``on_play`` (the Play/Pause callback), ``button`` (the Play/Pause
button sent), ``frag_start`` / ``trained`` / ``prepared`` / ``frag_end`` (the live fragment; ``timer``: a
timer redraw), and ``chart`` (one chart sent: ``key`` and ``mode``, draw / hold / patch)."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

PATH = os.environ.get("CHESTLAB_TRACE") or None
_lock = threading.Lock()
_installed = False


def on() -> bool:
    return PATH is not None


def event(ev: str, **kw: Any) -> None:
    if PATH is None:
        return
    line = json.dumps({"t": time.time(), "ev": ev, "thread": threading.get_ident(), **kw}, default=str)
    with _lock, open(PATH, "a") as fh:
        fh.write(line + "\n")


def install() -> None:
    """Hook Streamlit's script runner (once per process, only when tracing)."""
    global _installed
    if PATH is None or _installed:
        return
    _installed = True
    from streamlit.runtime import app_session
    from streamlit.runtime.scriptrunner import script_runner as sr

    S, R = app_session.AppSession, sr.ScriptRunner
    rerun, check = S.request_rerun, R._maybe_handle_execution_control_request

    def request_rerun(self: Any, client_state: Any) -> Any:
        # a click's rerun (no fragment id) makes a new script thread at once (runner.fastReruns) and asks
        # the running one to stop at its next yield point; a fragment's timer rerun waits for the running one
        event("request_rerun", fragment=bool(client_state is not None and client_state.fragment_id))
        return rerun(self, client_state)

    def maybe(self: Any) -> Any:
        try:
            return check(self)
        except sr.RerunException:
            event("interrupt", how="rerun")
            raise
        except sr.StopException:
            event("interrupt", how="stop")
            raise

    S.request_rerun, R._maybe_handle_execution_control_request = request_rerun, maybe
