"""``python -m chestlab.train``: train a run from a preset and ``--set key=value`` overrides, with a
progress bar, Ctrl-C/SIGTERM saving a checkpoint, ``--resume``, and one-line errors (exit 2) for
every bad value. ``--help`` is generated from the settings schema and the loss registry."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from .. import settings
from ..paper import PRESETS
from ..settings import ConfigError, SettingError, TrainConfig
from .events import EvalEvent, StepEvent, TrainingDiverged
from .trainer import Trainer

__all__ = ["build_parser", "config_from_args", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints the whole usage)
        self.exit(2, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser; its epilog lists every registered setting by group, with paper symbol and range."""
    from ..losses import list_losses

    presets = "\n".join(
        f"  {name:<17} {p.get('dataset')}, {p.get('backbone')}, {p.get('steps')} steps" for name, p in PRESETS.items()
    )
    parser = _Parser(
        prog="python -m chestlab.train",
        description="Train a metric-learning model in the Poincaré ball with a registered loss "
                    f"({', '.join(list_losses())}) and log every step.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"presets:\n{presets}\n\nsettings for --set key=value (live = may change during training):\n"
               f"{settings.help_table()}\n\n"
               "examples:\n  python -m chestlab.train --preset demo-tree --out runs/tree\n"
               "  python -m chestlab.train --preset cars196 --data-root /data --set delta_h=1 --set delta_e=5\n"
               "  python -m chestlab.train --set loss=pair_ce --set pair_space=sphere --set t=0.1\n"
               "  python -m chestlab.evaluate runs/tree",
    )
    parser.add_argument("--preset", default="demo-tree", choices=sorted(PRESETS), help="starting configuration (default demo-tree)")
    parser.add_argument("--data-root", help="folder holding the benchmark (CUB_200_2011/, cars_annos.mat, Ebay_*.txt, ...)")
    parser.add_argument("--steps", help="optimizer steps (overrides the preset)")
    parser.add_argument("--out", help="run folder for config.json, events.jsonl, steps.csv, eval.csv, checkpoint.pt")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any setting listed below")
    parser.add_argument("--device", help="auto | cpu | cuda")
    parser.add_argument("--weights", help="local backbone weights file (instead of the hub)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUT exactly where its checkpoint stopped; --set may change live settings only")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in OUT (only its own files are deleted)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset (or, with ``--resume``, the run's own ``config.json``) with ``--set`` and the shortcut
    options applied; :class:`SettingError` / :class:`ConfigError` (one line) for anything wrong."""
    overrides = settings.parse_assignments(args.set)
    for name in ("data_root", "steps", "device", "weights"):
        v = getattr(args, name)
        if v is not None:
            overrides[name] = settings.get_setting(name).parse(v)
    if args.resume:
        if not args.out:
            raise ConfigError("--resume needs --out RUN: the folder of the run to continue")
        cfg = _stored_config(Path(args.out))
    else:
        cfg = TrainConfig.preset(args.preset)
    return cfg.replace(**overrides)


def _stored_config(run: Path) -> TrainConfig:
    f = run / "config.json"
    if not f.is_file():
        raise ConfigError(f"--resume: {f} not found; is {run} a run folder made by --out? (start without --resume)")
    try:
        return TrainConfig.from_dict(json.loads(f.read_text()))
    except ValueError as err:
        raise ConfigError(f"--resume: {f} cannot be used: {err}") from None


class DeferredInterrupt:
    """Ctrl-C / SIGTERM once: finish the current step with its evaluation and checkpoint, then stop
    (nothing is lost, the run resumes exactly). Twice: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict = {}

    def __enter__(self) -> "DeferredInterrupt":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step (its evaluation and checkpoint); press Ctrl-C again to stop now",
              file=sys.stderr, flush=True)

    def __call__(self) -> bool:
        return self.requested


def _init_distributed() -> bool:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        return True
    return False


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        problems = settings.check(cfg)
        for p in problems:
            if p.level != "error":
                print(f"warning: {p.message}", file=sys.stderr)
        errors = [p for p in problems if p.level == "error"]
        if errors:
            raise ConfigError("; ".join(p.message for p in errors))
    except (SettingError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    started = _init_distributed()
    try:
        trainer = Trainer(cfg, out_dir=args.out, resume=args.resume, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        if started:
            dist.destroy_process_group()
        return 2
    rank0 = trainer.rank == 0
    bar = None
    if rank0 and not args.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=trainer.step_count, desc=cfg.dataset, unit="step", dynamic_ncols=True)
    code = 0
    try:
        with DeferredInterrupt() as stop:
            for ev in trainer.run(should_stop=stop):
                if bar is None:
                    continue
                if isinstance(ev, StepEvent):
                    bar.update(1)
                    bar.set_postfix(loss=f"{ev.loss:.3f}", refresh=False)
                elif isinstance(ev, EvalEvent):
                    shown = {k.replace("test/", ""): f"{v:.3f}" for k, v in ev.metrics.items()
                             if k.startswith("test/") and ("R@1" in k or "MAP" in k)}
                    bar.write(f"step {ev.step}: " + "  ".join(f"{k} {v}" for k, v in shown.items()))
        if stop.requested and trainer.step_count < trainer.config.steps:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        code = 130
        _save_on_stop(trainer, "interrupted")
    except TrainingDiverged as err:
        print(f"\nerror: {err}", file=sys.stderr)
        code = 3
    except Exception as err:  # a corrupt image, a full disk ...: keep what was trained, say what happened
        code = 1
        _save_on_stop(trainer, f"stopped by {type(err).__name__}: {err}")
    finally:
        if bar is not None:
            bar.close()
        if started:
            dist.destroy_process_group()
    if code == 0 and rank0 and trainer.history:
        last = trainer.history[-1]
        print(" ".join(f"{k}={v:.4f}" for k, v in last.items() if k != "step"))
    return code


def _save_on_stop(trainer: Trainer, why: str) -> None:
    if trainer.rank != 0:
        return
    if trainer.out_dir is None:
        print(f"\n{why} at step {trainer.step_count} (no --out: nothing saved)", file=sys.stderr)
    elif not trainer.consistent:
        print(f"\n{why} inside an optimizer update; the last checkpoint is kept. Continue with --resume.", file=sys.stderr)
    else:
        trainer.save_checkpoint()
        print(f"\n{why} at step {trainer.step_count}; checkpoint saved in {trainer.out_dir}. Continue with --resume.",
              file=sys.stderr)
