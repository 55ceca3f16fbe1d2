r"""The dashboard (``make app`` = ``streamlit run app.py``) as a package of parts a test can call alone.

- :mod:`.state` — everything a browser session holds, in one typed object (:class:`DashState`,
  stored in ``st.session_state["dash"]``): the runs (trainer + step rows), the validated setting
  values behind the sidebar, the play flag, the last snapshot for the downloads, …
- :mod:`.controls` — the sidebar generated from :func:`chestlab.settings.schema`: one widget per
  setting (the widget kind from its type / ``ui`` hint / choices, label = ``Setting.label``, help =
  ``Setting.help`` + ``Setting.allowed()``), the core groups plus only the chosen loss's section;
  every value validated by the schema; the URL query (``?delta_h=5&preset=H+only&play=1``) parsed
  with ``Setting.parse``; the loss presets of :mod:`chestlab.paper`.
- :mod:`.runner` — building runs (A, and B in compare mode), live settings, cross-setting rules
  (:func:`chestlab.settings.check`), training in time-boxed chunks.
- :mod:`.panels` — one module per panel (similarity histograms, Poincaré disk, curves, hard
  negatives, export, compare), each with ``TITLE`` and ``render(ctx, box)``.
- :mod:`.page` — the page: lays the panels out and runs the training fragment.
- :mod:`.warm` — the server's warm-up (torch, the engine, plotly) at start, so the first page
  opened does not pay for the imports.

Importing this package is cheap (no torch): ``app.py`` imports :mod:`.warm` when the server starts.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["PAGE_CONFIG", "state", "controls", "runner", "panels", "page", "warm", "main"]

#: ``st.set_page_config`` of the page (``app.py`` sets it first thing).
PAGE_CONFIG = dict(page_title="chestlab — live CHEST training", layout="wide", page_icon="🌀")


def __getattr__(name: str) -> Any:
    if name in ("state", "controls", "runner", "panels", "page", "warm"):
        return importlib.import_module(f"{__name__}.{name}")
    if name == "main":
        return importlib.import_module(f"{__name__}.page").main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
