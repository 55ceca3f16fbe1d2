"""The training engine, in parts: builders (:mod:`.build`), the :class:`Trainer` (:mod:`.trainer`),
the :class:`Evaluator` (:mod:`.evaluator`), checkpoints and atomic writes (:mod:`.checkpoint`), typed
events and the run logger (:mod:`.events`), the run folder's lock (:mod:`.lock`) and the command line
(:mod:`.cli`)."""

from .build import (
    System,
    create_criterion,
    create_datasets,
    create_model,
    create_optimizer,
    euclid_space,
    in_memory,
    resolve_device,
    validate,
)
from .checkpoint import atomic_save
from .evaluator import Evaluator
from .events import CheckpointEvent, EvalEvent, Event, RunLogger, SimilarityEvent, StepEvent, TrainingDiverged
from .trainer import Trainer

__all__ = [
    "System", "create_criterion", "create_datasets", "create_model", "create_optimizer", "euclid_space", "in_memory",
    "resolve_device", "validate", "atomic_save", "Evaluator", "CheckpointEvent", "EvalEvent", "Event", "RunLogger",
    "SimilarityEvent", "StepEvent", "TrainingDiverged", "Trainer",
]
