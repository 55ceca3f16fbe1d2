"""Reproduce the CHEST paper's ablations (Tables 6-7) and figures, and the hard-negative paper's
Figs. 2-3, with the one training engine (:class:`chestlab.train.Trainer`).

The commands (``ablation``, ``fig3``, ``fig2``, ``hardneg-fig2``, ``hardneg-fig3``, ``tables``,
``dims``, ``hier``, ``hyphc``, ``hier-ratios``, ``unsup-pretrained``) and their options are listed by
``python -m chestlab.reproduce --help`` (:mod:`chestlab.reproduce.cli`).

Modules, one concept each:

- ``grids``    where an ablation grid runs (:class:`GridSpec`, :data:`GRIDS`) and its planned runs
               (:func:`grid_configs`); the rows themselves are :data:`chestlab.paper.ABLATION_ROWS`.
- ``runner``   resumable runs (:func:`train_run`, ``result.json``, :class:`RunMismatch`), the
               ablation loop (:func:`run_ablation`) and its outputs (:func:`summarize`,
               :func:`ablation_markdown`, :func:`write_ablation`: CSV, Markdown, PNG).
- ``papers``   the papers' figure commands (:func:`fig3`, :func:`fig2`, :func:`hardneg_fig2`,
               :func:`hardneg_fig3`: train, measure, then draw with :mod:`chestlab.viz.paper`) and
               :func:`tables`.
- ``hierarchy`` the hierarchy experiments ``dims`` and ``hier``.
- ``regularisers`` does each regulariser act? ``hyphc``, ``hier-ratios``, ``unsup-pretrained``, paired by
               seed with :mod:`~chestlab.reproduce.paired` (means, standard errors, paired differences).
- ``cli``      the command line (:func:`build_parser`, :func:`main`); ``python -m chestlab.reproduce``.

``ABLATION_ROWS``, ``TRAININGS``, ``PAPER_R1`` and ``AblationRow`` live in :mod:`chestlab.paper`;
they are re-exported here for older callers.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..paper import ABLATION_ROWS, PAPER_R1, TRAININGS, AblationRow

# The other names load their module on first use: ``python -m chestlab.reproduce`` imports this
# package before its ``__main__``, which must install its Ctrl-C handling before torch loads.
_WHERE = {
    **dict.fromkeys(("build_parser", "main"), "cli"),
    **dict.fromkeys(("HARDNEG_C", "HARDNEG_C_FULL", "HARDNEG_T", "HARDNEG_T_FULL", "fig2", "fig3", "hardneg_fig2",
                     "hardneg_fig3", "tables"), "papers"),
    **dict.fromkeys(("GRIDS", "GridSpec", "PlannedRun", "grid_configs"), "grids"),
    **dict.fromkeys(("RunMismatch", "ablation_markdown", "run_ablation", "summarize", "train_run", "write_ablation"),
                    "runner"),
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    # the old module's __all__
    "AblationRow",
    "ABLATION_ROWS",
    "GRIDS",
    "PAPER_R1",
    "GridSpec",
    "RunMismatch",
    "grid_configs",
    "run_ablation",
    "summarize",
    "ablation_markdown",
    "train_run",
    "main",
    # from chestlab.paper, as before
    "TRAININGS",
    # the old module's other public names
    "PlannedRun",
    "write_ablation",
    "fig3",
    "fig2",
    "hardneg_fig2",
    "hardneg_fig3",
    "tables",
    "HARDNEG_T",
    "HARDNEG_C",
    "HARDNEG_T_FULL",
    "HARDNEG_C_FULL",
    "build_parser",
]
