"""The ablation grids of Tables 6 and 7 (the CHEST paper; see docs/reproduce.md): where a grid runs
(:class:`GridSpec`, :data:`GRIDS`) and its trainings x seeds as configs (:func:`grid_configs`).

The rows of the tables and the trainings behind them are :data:`chestlab.paper.ABLATION_ROWS` and
:data:`chestlab.paper.TRAININGS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ..paper import ABLATION_ROWS, TRAININGS
from ..settings import TrainConfig

__all__ = ["GridSpec", "GRIDS", "PlannedRun", "grid_configs"]


@dataclass(frozen=True)
class GridSpec:
    """Where a grid runs: a preset (Table 1 settings for the real ones), ``K`` of the Multi rows and
    settings changed for every run of the grid."""

    preset: str
    K_multi: int
    overrides: tuple[tuple[str, Any], ...] = ()
    checkpoint_every: int = 0
    description: str = ""


GRIDS: dict[str, GridSpec] = {
    # tree: hierarchical classes, 150+ steps/s on one CPU thread, so 8 trainings x 3 seeds fit in
    # minutes. K = 10 and the rest of Table 6's structure, at the demo-tree scale (D_E 64, D_H 16).
    "toy": GridSpec("demo-tree", 10, (("steps", 1500), ("eval_every", 250), ("eval_train", False), ("eval_max", None)),
                    description="embedded `tree` data (32 train / 32 unseen test classes), MLP, CPU"),
    # Table 1 settings via the presets (ViT-S/16, D = 384, paper's margins); checkpoints so that
    # a crash in a 30000-step In-shop run costs at most 1000 steps.
    "cars196": GridSpec("cars196", 10, checkpoint_every=1000, description="Cars196, ViT-S/16 (Table 6)"),
    "inshop": GridSpec("inshop", 2, checkpoint_every=1000, description="In-shop, ViT-S/16 (Table 7)"),
}


@dataclass
class PlannedRun:
    training: str
    seed: int
    run_id: str
    config: TrainConfig


def grid_configs(grid: str, seeds: Sequence[int] = (0, 1, 2), *, steps: Optional[int] = None,
                 data_root: Optional[str] = None, trainings: Optional[Sequence[str]] = None,
                 overrides: Optional[dict] = None) -> list[PlannedRun]:
    """The trainings of ``grid`` (all 8, or the named ones) for each seed, as configs."""
    if grid not in GRIDS:
        raise ValueError(f"--grid {grid!r}: choose one of {', '.join(GRIDS)}")
    spec = GRIDS[grid]
    wanted = list(TRAININGS if not trainings else trainings)
    unknown = [t for t in wanted if t not in TRAININGS]
    if unknown:
        raise ValueError(f"unknown training(s) {unknown}: choose from {', '.join(TRAININGS)}")
    first = {r.training: r for r in ABLATION_ROWS}
    plans = []
    for seed in seeds:
        for name in TRAININGS:
            if name not in wanted:
                continue
            row = first[name]
            kw = dict(spec.overrides)
            kw.update(row.settings(spec.K_multi), seed=int(seed), checkpoint_every=spec.checkpoint_every)
            if data_root is not None:
                kw["data_root"] = data_root
            kw.update(overrides or {})
            if steps is not None:
                kw["steps"] = steps
            plans.append(PlannedRun(name, int(seed), f"{row.slug}_seed{seed}", TrainConfig.preset(spec.preset, **kw)))
    return plans
