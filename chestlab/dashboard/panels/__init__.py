"""The dashboard's panels, one module each, with one interface.

A panel module has

- ``TITLE`` — what it shows;
- ``SLOT`` — where a run's panels go: ``"left"`` / ``"right"`` (the two columns of a run, stacked in
  compare mode), ``"below"`` (full width under them), or ``"page"`` (once per page, not per run);
- ``render(ctx, box)`` — draws into ``box``: ``st``, a Streamlit container, or any object with the
  same methods (``markdown``, ``plotly_chart``, ``columns``, ``container``, ``expander``, widgets…),
  so a test can call it without a Streamlit server and record what it draws;
- optionally ``available(ctx) -> bool`` — whether it is drawn for this run (default: always).

A panel never raises on the page: :func:`draw_run` shows a panel that fails as one line in its place
(:func:`cannot_draw`); a failure from an invalid state (NaN/inf, points outside the ball) stops the
run with its reason, as a diverged step does.

``ctx`` is a :class:`PanelContext`: the session's :class:`~chestlab.dashboard.state.DashState`, the
widget values (``session``), the run drawn, and a per-redraw cache so that panels share what they
compute (the disk's embeddings feed the hard-negative panel and the export snapshot).

:data:`RUN_PANELS` are drawn for every run, in this order, then the panels plug-ins add with
:func:`register_panel` (docs/extending.md: a panel in a file of its own, no edit inside the package).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, Optional

from ..state import DashState, Run
from .chart import MODEBAR_PX, PLOTLY_CONFIG, modebar_room

__all__ = ["PanelContext", "RUN_PANELS", "PAGE_PANELS", "register_panel", "run_panels", "PLOTLY_CONFIG", "MODEBAR_PX", "modebar_room", "draw_run", "available",
           "cannot_draw"]

@dataclass
class PanelContext:
    """What a panel draws from."""

    state: DashState
    #: widget values: ``st.session_state`` on the page, a dict in tests
    session: MutableMapping
    #: the run drawn (None for the page-level panels)
    run: Optional[Run] = None
    #: one run on the page (full width) or two side by side (compare mode)
    wide: bool = True
    #: the page's URL query (the share link)
    query: dict = field(default_factory=dict)
    #: shared by the panels of all runs during one redraw (e.g. the disk's view options, chosen by run A)
    shared: dict = field(default_factory=dict)
    #: this run's computations during one redraw (similarities, disk data)
    cache: dict = field(default_factory=dict)

    @property
    def primary(self) -> bool:
        """Run A (or a page-level panel): the one that draws the shared view controls."""
        return self.run is None or self.run.name == "A"

    @property
    def name(self) -> str:
        return self.run.name if self.run is not None else ""

    @property
    def trainer(self) -> Any:
        return self.run.trainer if self.run is not None else None

    def similarities(self) -> Any:
        """The last batch's similarity event (None before a step, or for a loss without class
        similarities)."""
        if "sim" not in self.cache:
            tr = self.trainer
            self.cache["sim"] = tr.similarities() if tr is not None and tr.last_output is not None else None
        return self.cache["sim"]

    def disk_data(self, split: str) -> dict:
        """Embeddings of ``split`` projected to the disk, with the proxies (:func:`.disk.data`)."""
        key = ("disk", split)
        if key not in self.cache:
            from .disk import data

            self.cache[key] = data(self.trainer, split)
        return self.cache[key]


from . import compare, curves, disk, export, hardneg, hierarchy, similarity  # noqa: E402

#: Drawn for every run, in this order, into their ``SLOT``.
RUN_PANELS: tuple[Any, ...] = (similarity, curves, disk, hardneg, hierarchy)
#: Drawn once per page (by :mod:`chestlab.dashboard.page`, where their controls belong).
PAGE_PANELS: tuple[Any, ...] = (compare, export)
#: Panels of plug-ins (:func:`register_panel`), drawn after the built-in ones.
_PLUGIN_PANELS: list[Any] = []
_SLOTS = ("left", "right", "below")


def register_panel(panel: Any) -> Any:
    """Add ``panel`` (a module or any object with ``TITLE``, ``SLOT`` in ``left``/``right``/``below`` and
    ``render(ctx, box)``; optionally ``available(ctx)``) to the panels drawn for every run, after the
    built-in ones: what a plug-in module (``CHESTLAB_PLUGINS=my_panel make app``) calls when it is
    imported. Returns ``panel`` (usable as a class decorator); registering it again changes nothing."""
    title = getattr(panel, "TITLE", None)
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"panel {panel!r}: TITLE must be a non-empty string (what it shows)")
    if getattr(panel, "SLOT", None) not in _SLOTS:
        raise ValueError(f"panel {title!r}: SLOT = {getattr(panel, 'SLOT', None)!r}; allowed: one of {', '.join(_SLOTS)}")
    if not callable(getattr(panel, "render", None)):
        raise ValueError(f"panel {title!r}: it needs a render(ctx, box) function")
    if panel not in _PLUGIN_PANELS and panel not in RUN_PANELS:
        _PLUGIN_PANELS.append(panel)
    return panel


def run_panels() -> tuple[Any, ...]:
    """The panels drawn for every run, in order: :data:`RUN_PANELS`, then those of plug-ins."""
    return RUN_PANELS + tuple(_PLUGIN_PANELS)


def available(panel: Any, ctx: PanelContext) -> bool:
    fn = getattr(panel, "available", None)
    return True if fn is None else bool(fn(ctx))


def draw_run(ctx: PanelContext, box: Any, panels: Optional[tuple[Any, ...]] = None) -> None:
    """Draw a run's panels (``panels``, default :func:`run_panels`) into ``box``: two columns (left 3 : right 2) and a full-width part below
    when the run is alone on the page, one column otherwise."""
    if ctx.wide:
        left, right = box.columns([3, 2])
        slots = {"left": left, "right": right, "below": box}
    else:
        slots = {"left": box, "right": box, "below": box}
    for panel in run_panels() if panels is None else panels:
        if available(panel, ctx):
            slot = slots.get(panel.SLOT, box)
            try:
                panel.render(ctx, slot)
            except Exception as err:  # a panel never raises: one line in its place says why
                slot.warning(cannot_draw(ctx, panel, err))


def cannot_draw(ctx: PanelContext, panel: Any, err: Exception) -> str:
    """The line shown in place of ``panel`` when it failed with ``err``. An invalid state (the run's
    parameters non-finite, or the library's checks of NaN/inf and of points outside the ball) stops
    the run with :func:`chestlab.dashboard.runner.explain` 's reason; anything else is a bug, logged
    to the server log as an error. The exception's text is never shown."""
    from .. import runner

    run = ctx.run
    title = panel.TITLE.split(" — ")[0]
    if run is not None:
        text = str(err)
        invalid = "NaN or inf" in text or "outside the Poincaré ball" in text
        if not run.diverged and (invalid or not runner.finite(run.trainer)):
            runner.stop(ctx.state, run, runner.explain(run, err))
        if run.diverged:
            runner.LOG.warning("panel %s failed on stopped run %s", getattr(panel, "__name__", panel), run.name, exc_info=err)
            return f"⚠ {title}: cannot draw run {run.name}'s current state — {run.diverged.rstrip('.')}."
    runner.LOG.error("panel %s failed", getattr(panel, "__name__", panel), exc_info=err)
    return f"⚠ {title}: cannot be drawn for this state (details in the server log)."
