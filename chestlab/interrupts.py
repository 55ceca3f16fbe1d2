"""Ctrl-C and SIGTERM in the command-line programs (``python -m chestlab.train``, ``.evaluate``,
``.reproduce``).

- :class:`Interrupted`: the ``KeyboardInterrupt`` they raise, which knows its signal (the exit
  status is ``128 + signal``: 130 for Ctrl-C, 143 for SIGTERM).
- :class:`DeferredInterrupt`: while a run trains, the first signal finishes the current step with
  its evaluation and checkpoint, then stops; a second one stops at once.
- :func:`run_main`: a program's entry point. Until training starts (importing torch, building the
  datasets), a signal ends the program with one line instead of a traceback of whatever was loading.

This module imports nothing heavy: the entry points install its handlers before torch loads.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading

__all__ = ["Interrupted", "DeferredInterrupt", "run_main"]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM; ``signum`` says which."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__()
        self.signum = int(signum)


def _raise(signum, frame) -> None:
    raise Interrupted(signum)


def _unraisable(hook):
    """``sys.unraisablehook`` that sends an :class:`Interrupted` swallowed where Python ignores
    exceptions (a weakref callback of the import machinery, a ``__del__``) as its signal once more, so
    that it ends the program a moment later instead of being printed as "Exception ignored". The
    signal is sent from another thread: raised here, inside the hook, it would be swallowed again."""

    def unraisable(info) -> None:
        if isinstance(info.exc_value, Interrupted):
            import _thread
            import time

            def later(signum: int) -> None:  # once the hook has returned (start_new_thread does not wait)
                time.sleep(0.02)
                _thread.interrupt_main(signum)

            _thread.start_new_thread(later, (info.exc_value.signum,))
        else:
            hook(info)

    return unraisable


class DeferredInterrupt:
    """Ctrl-C / SIGTERM once: finish the current step with its evaluation and checkpoint, then stop
    (nothing is lost, the run resumes exactly). Twice: stop at once (:class:`Interrupted`)."""

    def __init__(self) -> None:
        self.requested = False
        self.signum = int(signal.SIGINT)  #: the signal that asked to stop (the exit status is 128 + it)
        self._old: dict = {}

    def __enter__(self) -> "DeferredInterrupt":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise Interrupted(signum)
        self.requested, self.signum = True, int(signum)
        print("\nstopping after this step (its evaluation and checkpoint); press Ctrl-C again to stop now",
              file=sys.stderr, flush=True)

    def __call__(self) -> bool:
        return self.requested


def run_main(module: str, message: str) -> int:
    """Import ``module`` and return its ``main()``, with SIGINT and SIGTERM raising
    :class:`Interrupted`; one that escapes ``main`` (start-up, before the program's own handling)
    prints ``message`` on one line and returns ``128 + signal``."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise)
    sys.unraisablehook = _unraisable(sys.unraisablehook)  # a signal that lands in a callback is not lost
    try:
        return importlib.import_module(module).main()
    except KeyboardInterrupt as err:
        print(f"\n{message}", file=sys.stderr, flush=True)
        return 128 + getattr(err, "signum", int(signal.SIGINT))
