r"""The dashboard (``make app`` = ``streamlit run app.py``) as a package of parts a test can call alone.

- :mod:`.state` — everything a browser session holds, in one typed object (:class:`DashState`,
  stored in ``st.session_state["dash"]``): the runs (trainer + step rows), the validated setting
  values behind the sidebar, the play flag, the last snapshot for the downloads, …
- the sidebar, generated from :func:`chestlab.settings.schema`, in parts that import only downwards
  (no cycle; ``tests/test_imports.py``):

  - :mod:`.text` — text from a link, a text box or an exception shown as written (``literal``,
    ``escape``, a refused value's one line);
  - :mod:`.defaults` — the page's defaults (``BASE``) and bounds, the settings it does not offer and why;
  - :mod:`.fields` — one setting and its widget's value: the widget kind (from its type / ``ui`` hint /
    choices), the value as the widget holds it and back, validated by the schema and the page;
  - :mod:`.values` — the validated setting values behind the sidebar: which are shown (the core
    groups plus only the chosen loss's section), reading the widgets, the run's config;
  - :mod:`.presets` — the loss presets of :mod:`chestlab.paper`;
  - :mod:`.compare` — compare mode's rules (which setting run B may change, and to what);
  - :mod:`.urlcodec` — the URL query (``?delta_h=5&preset=H+only&cmp=eta_e:0&play=1``), parsed with
    ``Setting.parse`` and written back;
  - :mod:`.widgets` — drawing the widgets (label = ``Setting.label``, help = ``Setting.help`` +
    ``Setting.allowed()``) and the sidebar;
  - :mod:`.scenarios` — the lecture scenarios (guided experiments).
- :mod:`.runner` — building runs (A, and B in compare mode), live settings, cross-setting rules
  (:func:`chestlab.settings.check`), training in time-boxed chunks.
- :mod:`.panels` — one module per panel (similarity histograms, Poincaré disk, curves, hard
  negatives, export, compare), each with ``TITLE`` and ``render(ctx, box)``.
- :mod:`.page` — the page: lays the panels out and runs the training fragment.
- :mod:`.warm` — the server's warm-up (torch, the engine, plotly) at start, so the first page
  opened does not pay for the imports.
- :mod:`.assets` — the page's HTML asks for the first frame's JavaScript at once (``app.py``'s middleware).
- :mod:`.first` — a new session's first chart goes out alone; the rest once the browser has drawn it.
- :mod:`.ready` — the warm-up's ready run of the default settings, for the first session.

Importing this package is cheap (no torch): ``app.py`` imports :mod:`.warm` when the server starts.
"""

from __future__ import annotations

import importlib
from typing import Any

_PARTS = ("state", "text", "defaults", "fields", "values", "presets", "compare", "urlcodec", "widgets", "scenarios",
          "runner", "panels", "page", "warm", "assets", "first", "ready")

__all__ = ["PAGE_CONFIG", *_PARTS, "main"]

#: ``st.set_page_config`` of the page (``app.py`` sets it first thing).
PAGE_CONFIG = dict(page_title="chestlab — live CHEST training", layout="wide", page_icon="🌀")


def __getattr__(name: str) -> Any:
    if name in _PARTS:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "main":
        return importlib.import_module(f"{__name__}.page").main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
