"""``python -m chestlab.train``: train a run from a preset and ``--set key=value`` overrides, with a
progress bar, Ctrl-C/SIGTERM saving a checkpoint, ``--resume``, and one-line errors (exit 2) for
every bad value. ``--help`` is generated from the settings schema and the loss registry."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from .. import plugins, settings
from ..interrupts import DeferredInterrupt
from ..paper import PRESETS
from ..settings import ConfigError, SettingError, TrainConfig
from .checkpoint import WriteError
from .events import EvalEvent, StepEvent, TrainingDiverged
from .trainer import Trainer

__all__ = ["build_parser", "config_from_args", "main", "DeferredInterrupt", "OneLineParser", "bounded_int"]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, exit status 2 (argparse prints the whole usage)."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (see --help)\n")


def bounded_int(low: int, high: int):
    """An argparse ``type``: an integer in ``low..high``, else a one-line error with that range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; allowed: {low}..{high}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: {low}..{high}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The parser; its epilog lists every registered setting by group, with paper symbol and range."""
    from ..losses import list_losses

    presets = "\n".join(
        f"  {name:<17} {p.get('dataset')}, {p.get('backbone')}, {p.get('steps')} steps" for name, p in PRESETS.items()
    )
    parser = OneLineParser(
        prog="python -m chestlab.train",
        description="Train a metric-learning model in the Poincaré ball with a registered loss "
                    f"({', '.join(list_losses())}) and log every step.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"presets:\n{presets}\n\nsettings for --set key=value (live = may change during training; a setting of a "
               "section [NAME] may also be written NAME.key, and must be where sections share a key):\n"
               f"{settings.help_table()}\n\n"
               "examples:\n  python -m chestlab.train --preset demo-tree --out runs/tree\n"
               "  python -m chestlab.train --preset cars196 --data-root /data --set delta_h=1 --set delta_e=5\n"
               "  python -m chestlab.train --set loss=pair_ce --set pair_space=sphere --set t=0.1\n"
               "  python -m chestlab.train --plugin my_losses --set loss=centroid_pull\n"
               "  python -m chestlab.evaluate runs/tree",
    )
    parser.add_argument("--preset", default="demo-tree", choices=sorted(PRESETS), help="starting configuration (default demo-tree)")
    parser.add_argument("--data-root", help="folder holding the benchmark (CUB_200_2011/, cars_annos.mat, Ebay_*.txt, ...)")
    parser.add_argument("--steps", help="optimizer steps (overrides the preset)")
    parser.add_argument("--out", help="run folder for config.json, events.jsonl, steps.csv, eval.csv, checkpoint.pt")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any setting listed below (KEY: its name, or SECTION.name)")
    parser.add_argument("--device", help="auto | cpu | cuda")
    parser.add_argument("--weights", help="local backbone weights file (instead of the hub)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUT exactly where its checkpoint stopped; --set may change live settings only")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in OUT (only its own files are deleted)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    plugins.add_argument(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset (or, with ``--resume``, the run's own ``config.json``) with ``--set`` and the shortcut
    options applied; :class:`SettingError` / :class:`ConfigError` (one line) for anything wrong."""
    if args.resume:
        if not args.out:
            raise ConfigError("--resume needs --out RUN: the folder of the run to continue")
        cfg = _stored_config(Path(args.out))
    else:
        cfg = TrainConfig.preset(args.preset)
    overrides = settings.parse_assignments(args.set, loss=cfg.loss)  # a flat name of several losses: the run's
    for name in ("data_root", "steps", "device", "weights"):
        v = getattr(args, name)
        if v is not None:
            value = settings.get_setting(name).parse(v)
            if name in overrides and overrides[name] != value:
                option = "--" + name.replace("_", "-")
                raise ConfigError(f"{option} {v} and --set {name}={overrides[name]} disagree; give {name} once")
            overrides[name] = value
    return cfg.replace(**overrides)


def _stored_config(run: Path) -> TrainConfig:
    f = run / "config.json"
    if not f.is_file():
        raise ConfigError(f"--resume: {f} not found; is {run} a run folder made by --out? (start without --resume)")
    try:
        stored = json.loads(f.read_text())
        plugins.load_recorded(stored, run)
        return TrainConfig.from_dict(stored)
    except ValueError as err:
        raise ConfigError(f"--resume: {f} cannot be used: {err}") from None


def _init_distributed() -> bool:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        return True
    return False


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # before the parser: --help and --set loss=NAME see what the plug-ins register
        plugins.load_for_cli(argv)
    except plugins.PluginError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        problems = settings.check(cfg)
        errors = [p for p in problems if p.level == "error"]
        if errors:  # one line: the errors alone
            raise ConfigError("; ".join(p.message for p in errors))
        for p in problems:
            print(f"warning: {p.message}", file=sys.stderr)
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
    stop = DeferredInterrupt()
    try:
        with stop:
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
    except KeyboardInterrupt as err:
        code = 128 + getattr(err, "signum", stop.signum)  # 130 for Ctrl-C, 143 for SIGTERM
        _save_on_stop(trainer, "interrupted")
    except TrainingDiverged as err:
        print(f"\nerror: {err}", file=sys.stderr)
        code = 3
    except WriteError as err:  # a full disk: nothing more can be saved, the last checkpoint is intact
        code = 1
        print(f"\nerror: {err}; {_kept(trainer)}", file=sys.stderr)
    except Exception as err:  # a corrupt image ...: keep what was trained, say what happened
        code = 1
        _save_on_stop(trainer, f"stopped by {type(err).__name__}: {err}")
    finally:
        if bar is not None:
            bar.close()
        trainer.close()
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
        try:
            trainer.save_checkpoint()
        except WriteError as err:
            print(f"\n{why} at step {trainer.step_count}; {err}; {_kept(trainer)}", file=sys.stderr)
            return
        print(f"\n{why} at step {trainer.step_count}; checkpoint saved in {trainer.out_dir}. Continue with --resume.",
              file=sys.stderr)


def _kept(trainer: Trainer) -> str:
    if trainer.saved_step is None:
        return "no checkpoint was saved: free some space and train again"
    return f"the checkpoint of step {trainer.saved_step} is kept: free some space and continue with --resume"
