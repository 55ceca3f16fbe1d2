"""The training engine, in parts: builders (:mod:`.build`), the :class:`Trainer` and its loop
(:mod:`.trainer`) with the parts it is made of -- device, DDP and AMP set-up (:mod:`.device`), the
per-step batches (:mod:`.feed`), live settings (:mod:`.live`), the run folder and ``config.json``
(:mod:`.run_folder`), resuming from a checkpoint (:mod:`.resume`), where events go (:mod:`.record`),
what a step reports besides its loss (:mod:`.reports`) --, the :class:`Evaluator` (:mod:`.evaluator`),
checkpoints and atomic writes (:mod:`.checkpoint`), typed events and the run logger (:mod:`.events`),
the run folder's lock (:mod:`.lock`) and the command line (:mod:`.cli`)."""

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
