"""Everything one browser session of the dashboard holds, in one typed object.

Streamlit keeps a session's data in ``st.session_state``; the dashboard keeps *one* entry there,
``st.session_state["dash"]``, a :class:`DashState`. Widget values stay under their widget keys (that
is how Streamlit binds widgets), but the setting values behind the sidebar widgets live in
:attr:`DashState.values`, validated by the schema: a widget that is not drawn in a run (the settings
of a loss that is not chosen) loses its widget key, never its value.

Cheap to import (no torch): tests build a :class:`DashState` with fake trainers.
"""

from __future__ import annotations

import threading
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["Run", "DashState", "KEY", "get_state"]

#: The one ``st.session_state`` key the dashboard owns (besides its widgets' keys).
KEY = "dash"


@dataclass
class Run:
    """One training run of the page: run A (the sidebar's settings) or run B (compare mode: A with
    one setting changed, same seed and batches)."""

    name: str  #: "A" or "B"
    trainer: Any  #: a :class:`chestlab.engine.Trainer`
    rows: list[dict] = field(default_factory=list)  #: one row per step: loss, its parts, grad norm
    built: dict[str, Any] = field(default_factory=dict)  #: the structural settings it was built with
    label: str = ""  #: what the run changes, e.g. "eta_e = 0, everything else as A"
    #: why this run stopped (divergence, nothing to train, a failed step): it trains no more until
    #: Reset, and its panels show :attr:`good` (the other run of compare mode goes on)
    diverged: Optional[str] = None
    #: the last redraw's computations that succeeded (similarities, disk data per split): what a
    #: diverged run, whose parameters may be NaN, keeps showing
    good: dict = field(default_factory=dict)
    #: the figure last sent per chart key (re-sent unchanged while the run's charts are held, see
    #: :class:`chestlab.dashboard.page.HeldCharts`)
    sent: dict = field(default_factory=dict)
    #: per chart key: the page's layout fingerprint when the browser mounted the chart (it was
    #: drawn anew), and the redraw token of the figure it shows now (drawn or updated in place);
    #: a redraw whose chart has the same token holds it, see :func:`chestlab.dashboard.page.chart_turns`
    mounted: dict = field(default_factory=dict)
    shown: dict = field(default_factory=dict)
    #: the model's and loss's parameters at the last good redraw: a run whose update left them NaN
    #: is put back to them when it stops, so every panel can still draw it
    good_state: Optional[dict] = None
    #: held by a training step and by a redraw's computations on this run: with Streamlit's fast
    #: reruns a click starts a new script thread while the old one finishes its step, and two
    #: threads must not step one model at once (a backward would meet weights the other's update changed)
    lock: Any = field(default_factory=threading.RLock, repr=False, compare=False)
    #: an evaluation is due at the run's current step and not done yet (the page was interrupted
    #: between the runs' evaluations): :func:`chestlab.dashboard.runner.settle` does it
    eval_owed: bool = False


@dataclass
class DashState:
    """One session of the dashboard."""

    #: validated value of every setting the page knows (the sidebar's widgets mirror these)
    values: dict[str, Any] = field(default_factory=dict)
    #: the page's own options set in the sidebar (refresh period, steps per Step click), kept while
    #: their section is closed (Streamlit drops the state of a widget that is not drawn)
    view: dict[str, Any] = field(default_factory=dict)
    #: the runs drawn: ``[A]``, or ``[A, B]`` in compare mode; empty when the build failed
    runs: list[Run] = field(default_factory=list)
    #: (setting, value) run B was built with (or was refused for: see ``error_b``)
    built_cmp: Optional[tuple[str, Any]] = None
    #: why run B could not be built (run A is built and drawn alone)
    error_b: Optional[str] = None
    #: why the trainer could not be built (shown instead of the plots)
    error: Optional[str] = None
    #: why training stopped (TrainingDiverged or an exception of a step); cleared by Reset
    diverged: Optional[str] = None
    playing: bool = False
    #: steps asked for with the Step button, trained by the next fragment run
    pending_steps: int = 0
    want_reset: bool = False
    #: set by a full script run: the fragment then trains one step only, so a widget change answers fast
    full_run: bool = False
    #: the runs were just built and not drawn yet: their first frame is drawn before any training
    fresh: bool = False
    #: the last UMAP view of the disk: {"xy", "pxy", "labels", "super", "step", "split"}
    umap: Optional[dict] = None
    umap_requested: bool = False
    #: optimizer steps per second: of the last chunk, and wall clock while playing (drawing included)
    rate: float = 0.0
    rate_wall: float = 0.0
    #: (time, step) of the last redraw, for ``rate_wall``
    tick: Optional[tuple[float, int]] = None
    #: fragment runs so far, and every (run, chart key) drawn, in order: while playing, the charts
    #: are updated in turn, ``defaults.CHART_UPDATES`` per redraw
    redraws: int = 0
    #: the rerun is a Play/Pause click's: the redraw keeps the charts as the browser shows them
    #: (held, or updated in place: :func:`chestlab.dashboard.page.chart_turns`), none is mounted anew
    play_click: bool = False
    chart_order: list = field(default_factory=list)
    #: the last redraw: steps, training and drawing seconds
    timing: dict = field(default_factory=dict)
    #: the last redraw's data for the downloads, replaced whole at every redraw (never the live
    #: trainer, which may be mid-step when a download is clicked): config, rows, history, sim, disk
    snapshot: dict = field(default_factory=dict)
    #: the URL has been read (once per session) and the problems it had
    url_loaded: bool = False
    url_problems: list[str] = field(default_factory=list)

    # -- the runs ---------------------------------------------------------------------------------
    @property
    def run_a(self) -> Optional[Run]:
        return self.runs[0] if self.runs else None

    @property
    def run_b(self) -> Optional[Run]:
        return self.runs[1] if len(self.runs) > 1 else None

    @property
    def trainer(self) -> Any:
        """Run A's trainer (None before a successful build)."""
        return self.runs[0].trainer if self.runs else None

    @property
    def trainer_b(self) -> Any:
        """Run B's trainer (None outside compare mode)."""
        return self.runs[1].trainer if len(self.runs) > 1 else None

    @property
    def rows(self) -> list[dict]:
        return self.runs[0].rows if self.runs else []

    @property
    def rows_b(self) -> list[dict]:
        return self.runs[1].rows if len(self.runs) > 1 else []

    def drop_b(self) -> None:
        del self.runs[1:]
        self.built_cmp = None
        self.error_b = None

    def clear(self) -> None:
        """Forget the runs and everything measured on them (before a Reset)."""
        self.runs = []
        self.error = self.diverged = None
        self.umap = None
        self.rate = self.rate_wall = 0.0
        self.tick = None
        self.built_cmp = None
        self.error_b = None
        self.fresh = True


def get_state(session: MutableMapping) -> DashState:
    """The session's :class:`DashState` (made on first use). ``session``: ``st.session_state`` or,
    in tests, a dict."""
    state = session.get(KEY)
    if not isinstance(state, DashState):  # first use, or this module was reloaded (a new class)
        state = DashState()
        session[KEY] = state
    return state
