"""Warm the server up when it starts, so the first page opened does not wait for the imports.

The first frame of the page needs torch (~1.5-2.5 s to import on the 2-core demo machine), the
optimizer's ``torch._dynamo`` (~1.3 s, imported when the first optimizer is built), the engine and
plotly. In a plain ``streamlit run`` all of it happens when the first browser session starts its
script. ``app.py`` therefore declares an ``st.App`` whose lifespan calls :func:`start` when the
server starts: a background thread imports all of it and builds the default run once (data caches,
first kernels, first figures), while the server already answers, then builds it once more and
keeps it (:mod:`.ready`): the first session whose run A has the default settings takes that trainer
(``runner.build``) instead of building and evaluating it. A session whose page opens before
the warm-up's imports are done waits for them (:func:`wait`) instead of importing the same modules
concurrently, and the warm-up stops there: the page builds and draws its own run.

This module imports nothing heavy itself.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Optional

__all__ = ["start", "wait", "is_ready", "seconds", "lifespan"]

_IMPORTED = threading.Event()  # torch, torch._dynamo and the page's modules are imported
_PAGE_ARRIVED = threading.Event()  # a page asked to go on: stop warming up (it warms itself up)
_LOCK = threading.Lock()
_STARTED = False
_SECONDS: Optional[float] = None
_ERROR: Optional[str] = None
#: The line the server prints when the warm-up is done (benchmarks/bench_app.py waits for it).
READY_LINE = "chestlab dashboard: warm-up done"


def _warm() -> None:
    global _SECONDS, _ERROR
    t0 = time.perf_counter()
    note = ""
    try:
        import torch  # noqa: F401
        import torch._dynamo  # noqa: F401  (what torch.optim imports when the first optimizer is built)

        from . import page

        _IMPORTED.set()
        # then build and draw the default run once (data caches, first kernels, plotly's validators),
        # unless a page is already waiting: from here on it would only compete with it for the CPU
        done = page.warm_up(should_stop=_PAGE_ARRIVED.is_set)
        note = "" if done else " (imports only: a page opened meanwhile)"
    except Exception as err:  # a broken environment shows itself on the page, with its traceback
        _ERROR = f"{type(err).__name__}: {err}"
    finally:
        _SECONDS = time.perf_counter() - t0
        _IMPORTED.set()
        status = f"failed ({_ERROR})" if _ERROR else "ok" + note
        sys.stderr.write(f"{READY_LINE} in {_SECONDS:.1f} s: {status}\n")
        sys.stderr.flush()


def start() -> None:
    """Start the warm-up thread (once per process)."""
    global _STARTED
    with _LOCK:
        if _STARTED:
            return
        _STARTED = True
    threading.Thread(target=_warm, name="chestlab-warm-up", daemon=True).start()


def is_ready() -> bool:
    """True when the page may go on at once: the warm-up's imports are done (or it never started,
    e.g. under AppTest)."""
    return not _STARTED or _IMPORTED.is_set()


def wait(timeout: float = 120.0) -> bool:
    """Called by a page: stop the warm-up at its next step, and block until its imports are done (at
    most ``timeout`` s), so the page does not import the same modules concurrently. True when they
    are done or the warm-up never started."""
    if not _STARTED:
        return True
    _PAGE_ARRIVED.set()
    return _IMPORTED.wait(timeout)


def seconds() -> Optional[float]:
    """How long the warm-up took (None before it ends or when it never ran)."""
    return _SECONDS


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """``st.App(..., lifespan=lifespan)``: warm up in the background while the server starts."""
    start()
    yield
