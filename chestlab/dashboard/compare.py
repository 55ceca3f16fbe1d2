"""Compare mode's rules: run B = run A with one numeric setting changed. Which settings run B may
change (:func:`compare_keys`), the values it may take (:func:`compare_range`) and the check of one
(:func:`check_compare`). The compare panel (:mod:`.panels.compare`) draws its controls with them;
a link sets it with ``cmp=SETTING:VALUE`` (:mod:`.urlcodec`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from chestlab.settings import Setting, SettingError, schema

from .defaults import PAGE_RANGE
from .fields import options_of
from .values import shown_keys

__all__ = ["COMPARE_FIRST", "compare_keys", "compare_range", "check_compare"]

#: Settings offered first for compare mode (run B = run A with one of them changed); then every
#: other numeric setting the sidebar shows.
COMPARE_FIRST = ("eta_e", "eta_h", "tau", "c", "delta_h", "delta_e", "gamma_h", "r", "K", "dim_h", "lr")


def compare_keys(values: Mapping[str, Any]) -> list[str]:
    """Settings run B may change: the numeric settings the sidebar shows, :data:`COMPARE_FIRST` first."""
    sch = schema()
    numeric = [k for k in shown_keys(values) if sch[k].type in (int, float)]
    return [k for k in COMPARE_FIRST if k in numeric] + [k for k in numeric if k not in COMPARE_FIRST]


def compare_range(s: Setting) -> tuple[Optional[float], Optional[float]]:
    """The values run B may take for setting ``s`` (the bounds of the compare value box): the
    schema's range; for a structural or an integer setting also the sidebar's range (slider ends,
    smallest and largest option): it sizes the model, the data or the work of a step, and a value
    outside what the sidebar offers can take minutes or all the memory (``dim_h = 1e6``,
    ``M = 1e9`` triplets). A live real value (a rate, a weight, a margin) may be anything the schema
    allows: the worst it does is diverge, which the page reports (``lr = 1e9``)."""
    lo = s.low
    hi = s.high
    if s.name in PAGE_RANGE:
        lo, hi = PAGE_RANGE[s.name]
    elif not s.live or s.type is int:
        ends: list[float] = []
        if "lo" in s.ui and "hi" in s.ui:
            ends = [s.ui["lo"], s.ui["hi"]]
        else:
            opts = [o for o in (options_of(s) or []) if isinstance(o, (int, float)) and not isinstance(o, bool)]
            ends = [min(opts), max(opts)] if opts else []
        if ends:
            lo = ends[0] if lo is None else max(lo, ends[0])
            hi = ends[1] if hi is None else min(hi, ends[1])
    return lo, hi


def check_compare(s: Setting, value: Any) -> Any:
    """Run B's ``value`` of setting ``s``, validated by the schema and inside :func:`compare_range`,
    or :class:`SettingError` (one line: key, value, allowed range)."""
    value = s.validate(value)
    lo, hi = compare_range(s)
    if value is None:  # a nullable setting's "none" (lr_head: as lr): run B's value box holds a number
        bounds = f"a number from {lo:g} to {hi:g}" if lo is not None and hi is not None else "a number"
        raise SettingError(s.name, value, f"{bounds} for run B on this page", "run B needs a number")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = (f"from {lo:g} to {hi:g}" if lo is not None and hi is not None else f">= {lo:g}" if lo is not None
                  else f"<= {hi:g}")
        raise SettingError(s.name, value, f"{s.name} {bounds} for run B on this page", "out of range")
    return value
