"""Evaluate a trained run: Recall@k and MAP@R in both spaces, in the layout of the paper's Tables 2–5.

    python -m chestlab.evaluate runs/tree            # test split (unseen classes)
    python -m chestlab.evaluate runs/tree --split train --json
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # before the imports below load torch: a Ctrl-C while starting is one line
    from .interrupts import run_main

    sys.exit(run_main("chestlab.evaluate", "interrupted: nothing was evaluated"))

import argparse
import json
from typing import Optional

from . import plugins
from .engine import Trainer
from .settings import SettingError, get_setting

__all__ = ["evaluate_run", "format_table", "main"]


def evaluate_run(run_dir: str, split: str = "test", device: Optional[str] = None, max_n: Optional[int] = None) -> dict:
    """Rebuild the run's trainer from ``run_dir`` and compute metrics on ``split`` with every sample
    (``max_n`` caps it). Returns ``{"step": s, "H": {"R@1": ..}, "E": {...}}``."""
    overrides = {"eval_max": max_n}
    if device:
        overrides["device"] = device
    tr = Trainer.from_run(run_dir, **overrides)
    ev = tr.evaluate((split,))
    out: dict = {"step": ev.step, "dataset": tr.config.dataset, "split": split}
    for key, value in ev.metrics.items():
        where, space, metric = key.split("/", 2)
        out.setdefault(space if where == split else f"{where}/{space}", {})[metric] = value
    return out


def format_table(result: dict) -> str:
    """Markdown table: one row per space (E: x^E with Euclidean distance, H: x^H with Poincaré distance),
    columns Recall@k (percent, as the paper prints) and MAP@R, then the hierarchy scores when present:
    Recall@1 at the super-class level (percent), mistake severity (mean LCA height of wrong top-1
    neighbours, lower is better) and the cophenetic correlation / purity of the class means' dendrogram
    (average linkage on the space's own distance, in both spaces)."""
    cols = [k for k in result["H"] if k.startswith("R@")] + ["MAP@R"]
    cols += [k for k in ("super_R@1", "severity", "cophenet", "purity") if k in result["H"]]
    head = f"| {result['dataset']} ({result['split']}, step {result['step']}) | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    names = {"E": "CHEST, Euclidean space (x^E)", "H": "CHEST, hyperbolic space (x^H)"}
    for space in ("E", "H"):
        vals = " | ".join(f"{100 * result[space][c]:.1f}" if "R@" in c or c == "MAP@R" else f"{result[space][c]:.3f}"
                          for c in cols)
        lines.append(f"| {names[space]} | {vals} |")
    return "\n".join(lines)


def _max_n_allowed() -> str:
    s = get_setting("eval_max")
    return f"an integer from {s.low:.0f} (a sample needs a neighbour) to {s.high:.0f}"


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # the run's own plug-ins (config.json's plugins) load in evaluate_run
        plugins.load_for_cli(argv)
    except plugins.PluginError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    p = argparse.ArgumentParser(prog="python -m chestlab.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run folder written by `python -m chestlab.train --out RUN_DIR`")
    p.add_argument("--split", default="test", help="test (unseen classes, default) or train")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--max-n", help=f"evaluate at most this many samples per split (default: all); {_max_n_allowed()}")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plugins.add_argument(p)
    args = p.parse_args(argv)
    try:
        max_n = None
        if args.max_n is not None:
            try:  # the bounds of the setting it stands for
                max_n = get_setting("eval_max").parse(args.max_n)
            except SettingError:
                raise ValueError(f"--max-n = {args.max_n}: allowed: {_max_n_allowed()}") from None
        device = get_setting("device").parse(args.device) if args.device is not None else None
        res = evaluate_run(args.run_dir, args.split, device, max_n)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2) if args.json else format_table(res))
    return 0

