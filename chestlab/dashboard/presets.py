"""The loss presets of :data:`chestlab.paper.LOSS_PRESETS` on the page: the one the settings follow
(:func:`matching_preset`, what the sidebar's preset box shows), writing one into the settings
(:func:`apply_preset`) and the one a link names (:func:`find_preset`, ``preset=H+only``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from typing import Any, Optional

from chestlab.paper import LOSS_PRESETS

from .state import DashState
from .values import set_value

__all__ = ["NO_PRESET", "matching_preset", "apply_preset", "find_preset"]

#: What the preset box shows when the settings match no preset (changed by hand, or by a link)
NO_PRESET = "— none (settings changed) —"


def _preset_holds(preset: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    for key, want in preset.items():
        have = values.get(key)
        if key == "K" and want is None:  # "keep the current K, at least 2"
            if not (isinstance(have, int) and have >= 2):
                return False
        elif isinstance(want, float) and isinstance(have, (int, float)) and not isinstance(have, bool):
            if not math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif have != want:
            return False
    return True


def matching_preset(values: Mapping[str, Any], current: Optional[str] = None) -> str:
    """The loss preset the settings ``values`` follow: ``current`` while they still do, else the
    first that holds, else :data:`NO_PRESET` — so the preset box never names a preset the page no
    longer trains (e.g. "CHEST (paper)" after a link set ``loss=chest_hier``)."""
    if current in LOSS_PRESETS and _preset_holds(LOSS_PRESETS[current], values):
        return current
    return next((name for name, p in LOSS_PRESETS.items() if _preset_holds(p, values)), NO_PRESET)


def apply_preset(state: DashState, session: MutableMapping, name: str) -> None:
    """Write a loss preset of :data:`chestlab.paper.LOSS_PRESETS` into the values and widgets
    (``K=None``: keep the current K, at least 2). :data:`NO_PRESET` writes nothing."""
    if name not in LOSS_PRESETS:
        return
    for key, value in LOSS_PRESETS[name].items():
        if key == "K" and value is None:
            value = max(2, int(state.values.get("K", 2)))
        set_value(state, session, key, value)


def find_preset(name: str) -> Optional[str]:
    """The loss preset a URL names: its full name, or the short name in its parentheses, any case
    (``preset=H+only`` -> "Hyperbolic only (H only)")."""
    if name in LOSS_PRESETS:
        return name
    want = " ".join(name.lower().split())
    for full in LOSS_PRESETS:
        short = full[full.find("(") + 1: full.rfind(")")] if "(" in full and full.endswith(")") else ""
        if want in (full.lower(), short.lower()):
            return full
    return None
