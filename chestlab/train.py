"""Train from the command line, and the engine's public names in one import.

Command line::

    python -m chestlab.train --preset demo-tree --steps 300 --out runs/tree
    python -m chestlab.train --preset cub200 --data-root /data --set delta_h=20 --set delta_e=1
    torchrun --nproc_per_node=2 -m chestlab.train --preset demo-tree --out runs/ddp
    python -m chestlab.train --plugin my_losses --set loss=centroid_pull   # a plug-in (docs/extending.md)

The settings are declared in :mod:`chestlab.settings` (and in each loss's ``Settings``), the presets
in :mod:`chestlab.paper`, the engine lives in :mod:`chestlab.engine`.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # before the imports below load torch: a Ctrl-C while starting is one line
    from .interrupts import run_main

    sys.exit(run_main("chestlab.engine.cli", "interrupted while starting: nothing was trained or written"))

from .engine import (
    CheckpointEvent,
    EvalEvent,
    Event,
    RunLogger,
    SimilarityEvent,
    StepEvent,
    Trainer,
    TrainingDiverged,
    resolve_device,
)
from .engine.cli import build_parser, config_from_args, main
from .paper import PRESETS
from .settings import TrainConfig, check, live_keys

__all__ = [
    "TrainConfig", "PRESETS", "Trainer", "StepEvent", "EvalEvent", "SimilarityEvent", "CheckpointEvent", "Event",
    "TrainingDiverged", "RunLogger", "resolve_device", "check", "live_keys", "build_parser", "config_from_args", "main",
]


def __getattr__(name: str):
    if name == "LIVE_KEYS":  # computed: a plug-in loss registered later adds its live settings
        return live_keys()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

