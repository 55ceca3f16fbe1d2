"""The warm-up's ready run: a trainer of the page's default settings, built and evaluated at step 0
(never trained) by the server's warm-up (:func:`chestlab.dashboard.page.warm_up`, started by
:mod:`chestlab.dashboard.warm`) and taken by the first session that builds a run with these settings
(:func:`chestlab.dashboard.runner.build`) instead of building and evaluating it again (~0.5–1 s of
the first plot on the 2-core demo machine). Imports nothing of the dashboard (``runner`` and
``page`` both use it).
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["config_key", "keep", "take"]

_LOCK = threading.Lock()
#: ready trainers (built and evaluated at step 0, never trained), per config: the first session that
#: builds a run with that config takes it instead of building it (``runner.build``)
_READY: dict[str, tuple[Any, Any]] = {}


def config_key(cfg: Any) -> str:
    """A config's identity: every setting's value (``TrainConfig.to_dict``)."""
    import json

    return json.dumps(cfg.to_dict(), sort_keys=True, default=repr)


def keep(trainer: Any, rng_state: Any) -> None:
    """Keep ``trainer`` (just built and evaluated, never trained; ``rng_state``: torch's global RNG
    state right after that) for the first :func:`take` of its config."""
    with _LOCK:
        _READY[config_key(trainer.config)] = (trainer, rng_state)


def take(cfg: Any) -> Any:
    """The kept trainer of ``cfg`` (once; None when there is none), with torch's global RNG put back
    where its build left it: what follows is what would follow a build of ``cfg`` at this moment."""
    with _LOCK:
        got = _READY.pop(config_key(cfg), None)
    if got is None:
        return None
    import torch

    trainer, rng_state = got
    if rng_state is not None:
        torch.set_rng_state(rng_state)
    return trainer
