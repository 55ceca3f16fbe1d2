"""Reproduce the CHEST paper's ablations (Tables 6-7) and figures, and the hard-negative paper's
Figs. 2-3, with the one training engine (:class:`chestlab.train.Trainer`).

    python -m chestlab.reproduce ablation --grid toy                       # CPU, ~5-10 min
    python -m chestlab.reproduce ablation --grid cars196 --data-root /data # one GPU, see docs/reproduce.md
    python -m chestlab.reproduce fig3                                      # Fig. 3 histograms
    python -m chestlab.reproduce fig2 --run runs/shapes                    # Fig. 2 disk + retrieval
    python -m chestlab.reproduce hardneg-fig2 [--full]                     # R@1 over t, sphere vs c
    python -m chestlab.reproduce hardneg-fig3                              # w_ik over sorted negatives
    python -m chestlab.reproduce tables runs/tree                          # Tables 2-5 layout
    python -m chestlab.reproduce dims                                      # H vs E at D = 2..64, hierarchy kept?
    python -m chestlab.reproduce hier                                      # CHEST vs + HIER vs unsupervised
    python -m chestlab.reproduce hyphc                                     # does tau change the proxies' tree?
    python -m chestlab.reproduce hier-ratios                               # HIER with the authors' ratios
    python -m chestlab.reproduce unsup-pretrained                          # unsupervised from a pretrained net

Every training is a run folder (``config.json``, ``events.jsonl``, ``checkpoint.pt``) plus a
``result.json`` written atomically when it finishes. Re-running a command skips the runs that have a
``result.json`` and resumes an interrupted run from its last checkpoint, so a crash costs at most
one run (or ``checkpoint_every`` steps of it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

from .. import plugins
from ..engine.checkpoint import WriteError
from ..engine.cli import OneLineParser, bounded_int
from ..paper import ABLATION_ROWS, TRAININGS
from ..settings import get_setting, parse_assignments
from .papers import (HARDNEG_C, HARDNEG_C_FULL, HARDNEG_T, HARDNEG_T_FULL, fig2, fig3, hardneg_fig2, hardneg_fig3,
                     tables)
from .grids import GRIDS
from .hierarchy import DIM_PRESETS, DIMS, DIMS_DATASETS, default_jobs, dims, hier
from .regularisers import HYPHC_PRESET, HYPHC_RADII, HYPHC_TAUS, hier_ratios, hyphc, unsup_pretrained
from .runner import run_ablation

__all__ = ["build_parser", "main"]


def _bounds(key: str) -> tuple[int, int]:
    s = get_setting(key)
    return int(s.low), int(s.high)


# the sizes a command takes, bounded like the settings they stand for (seed, steps, batch_size, eval_max)
SEED, STEPS, BATCH, MAX_N = (bounded_int(*_bounds(k)) for k in ("seed", "steps", "batch_size", "eval_max"))


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = OneLineParser(prog="python -m chestlab.reproduce", description=__doc__, formatter_class=fmt)
    plugins.add_argument(p)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser, out: str, preset: Optional[str] = None) -> None:
        sp.add_argument("--out", default=out, help=f"output folder (default {out})")
        sp.add_argument("--data-root", help="folder holding a real benchmark (not needed for embedded data)")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        if preset is not None:
            sp.add_argument("--preset", default=preset, help=f"training preset (default {preset}); see chestlab.train --help")
            sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a training setting")

    rows = "\n".join(f"  {r.name:<15} {r.losses:<32} eta_h={r.eta_h:g} eta_e={r.eta_e:g} "
                     f"K={'K' if r.multi else 1} tau={r.tau:g} space={r.space}" for r in ABLATION_ROWS)
    a = sub.add_parser("ablation", formatter_class=fmt, help="Tables 6-7: the eleven rows x seeds",
                       description="Train the 8 trainings behind the 11 rows of Tables 6-7 for each seed, evaluate "
                       "each in its space(s), and write OUT/ablation.csv (every run x space), OUT/ablation.md "
                       "(the paper's layout, mean ± std) and OUT/ablation.png. Finished runs are skipped: re-run the "
                       "same command after a crash or Ctrl-C.",
                       epilog=f"rows (K = 10 for toy and cars196, 2 for inshop):\n{rows}\n\ntrainings for --only: "
                       f"{', '.join(TRAININGS)}")
    common(a, "runs/ablation-GRID")
    a.add_argument("--grid", required=True, choices=sorted(GRIDS), help="toy (embedded tree, CPU) | cars196 | inshop")
    a.add_argument("--seeds", type=SEED, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    a.add_argument("--steps", type=STEPS, help="optimizer steps per run (default: the grid's: toy 1500, Table 1 otherwise)")
    a.add_argument("--only", nargs="+", metavar="TRAINING", help="run only these trainings (e.g. H CHEST)")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a training setting in every run")

    f3 = sub.add_parser("fig3", formatter_class=fmt, help="Fig. 3: S_H histograms without / with L_E",
                        description=fig3.__doc__)
    common(f3, "runs/fig3", "demo-tree")
    f3.add_argument("--steps", type=STEPS, default=1800, help="the step of the histogram (paper: 1800 on Cars196)")
    f3.add_argument("--seed", type=SEED, default=0)
    f3.add_argument("--bins", type=bounded_int(1, 1000), default=50, help="histogram bins, 1..1000 (default 50)")

    f2 = sub.add_parser("fig2", formatter_class=fmt, help="Fig. 2: Poincaré-disk UMAP + retrieval examples",
                        description=fig2.__doc__)
    common(f2, "runs/fig2", "demo-shapes")
    f2.add_argument("--run", type=Path, help="use this trained run folder instead of training one")
    f2.add_argument("--steps", type=STEPS, help="training steps when no --run (default: the preset's)")
    f2.add_argument("--seed", type=SEED, default=0)
    f2.add_argument("--max-n", type=bounded_int(2, 20_000), default=2000, help="samples per split in the disk, 2..20000 (default 2000)")
    f2.add_argument("--queries", type=bounded_int(1, 64), default=4, help="retrieval examples, 1..64 (paper 4)")
    f2.add_argument("--top", type=bounded_int(1, 100), default=19, help="results per query, 1..100 (paper 19)")
    f2.add_argument("--projection", default="umap", choices=["umap", "tangent_pca"],
                    help="umap: UMAP with hyperboloid output, as the paper (slow the first time); tangent_pca: fast, linear")

    h2 = sub.add_parser("hardneg-fig2", formatter_class=fmt, help="hard-negative paper Fig. 2: R@1 over t, sphere vs c",
                        description=hardneg_fig2.__doc__ + "\n\nThe paper's exact t and c values did not survive in "
                        "our copy of its text; the defaults are our choice (see docs/reproduce.md).")
    common(h2, "runs/hardneg-fig2", "demo-tree")
    h2.add_argument("--full", action="store_true",
                    help=f"the full sweep: t in {HARDNEG_T_FULL}, c in {HARDNEG_C_FULL}, seeds 0 1 2 (GPU with real presets)")
    h2.add_argument("--t", type=float, nargs="+", help=f"temperatures (default {HARDNEG_T})")
    h2.add_argument("--c", type=float, nargs="+", help=f"curvatures (default {HARDNEG_C})")
    h2.add_argument("--seeds", type=SEED, nargs="+", help="seeds (default 0; --full: 0 1 2)")
    h2.add_argument("--steps", type=STEPS, help="steps per run (default 300 on demo-tree, else the preset's)")

    h3 = sub.add_parser("hardneg-fig3", formatter_class=fmt, help="hard-negative paper Fig. 3: w_ik over sorted negatives",
                        description=hardneg_fig3.__doc__)
    common(h3, "runs/hardneg-fig3", "demo-tree")
    h3.add_argument("--run", type=Path, help="take the batch from this trained run folder")
    h3.add_argument("--random", action="store_true", help="Gaussian features, no model")
    h3.add_argument("--steps", type=STEPS, default=300, help="steps of the pair_ce run trained when no --run (default 300)")
    h3.add_argument("--seed", type=SEED, default=0)
    h3.add_argument("--n", type=BATCH, default=64, help="batch size (default 64)")
    h3.add_argument("--t-sphere", type=float, default=0.1, help="temperature on the sphere (default 0.1)")
    h3.add_argument("--t", type=float, default=0.2, help="temperature in the ball (default 0.2)")
    h3.add_argument("--c", type=float, nargs="+", default=list(HARDNEG_C), help=f"curvatures (default {HARDNEG_C})")

    dm = sub.add_parser("dims", formatter_class=fmt,
                        help="H vs E at D = 2..64: R@1, super-class R@1, mistake severity, cophenetic corr., paired H − E",
                        description=dims.__doc__)
    common(dm, "runs/dims")
    dm.add_argument("--jobs", type=int, default=default_jobs(),
                    help=f"runs trained at once, one process and one thread each (default here {default_jobs()}: "
                         "one per CPU core, at most 4; 1 on a GPU); the results do not depend on it")
    dm.add_argument("--datasets", nargs="+", default=list(DIMS_DATASETS), choices=list(DIM_PRESETS),
                    help=f"default {' '.join(DIMS_DATASETS)}; wide: the 4 x 4 x 4 x 4 tree with equal edge lengths "
                         "(64-wide backbone); wide4: its preset as it is (4-wide backbone, use --dims 4)")
    dm.add_argument("--dims", type=bounded_int(*_bounds("dim_h")), nargs="+", default=list(DIMS), help=f"dimensions (default {DIMS})")
    dm.add_argument("--seeds", type=SEED, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    dm.add_argument("--steps", type=STEPS, help="steps per run (default: " + ", ".join(
        f"{k} {v['steps']}" for k, v in DIM_PRESETS.items()) + ")")

    hr = sub.add_parser("hier", formatter_class=fmt, help="CHEST vs CHEST + HIER vs the unsupervised method, on tree",
                        description=hier.__doc__)
    common(hr, "runs/hier")
    hr.add_argument("--seeds", type=SEED, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    hr.add_argument("--steps", type=STEPS, help="steps per run (default: each preset's)")

    hc = sub.add_parser("hyphc", formatter_class=fmt, help="does tau change the proxies' tree? (wide tree, r x tau x seeds)",
                        description=hyphc.__doc__)
    common(hc, "runs/hyphc", HYPHC_PRESET)
    hc.add_argument("--seeds", type=SEED, nargs="+", default=[0, 1, 2, 3, 4], help="seeds (default 0 1 2 3 4)")
    hc.add_argument("--radii", type=float, nargs="+", default=list(HYPHC_RADII), help=f"clipping radii r (default {HYPHC_RADII})")
    hc.add_argument("--taus", type=float, nargs="+", default=list(HYPHC_TAUS),
                    help=f"weights tau, 0 first: the changes are read against it (default {HYPHC_TAUS})")
    hc.add_argument("--steps", type=STEPS, help="steps per run (default: the preset's)")
    hr2 = sub.add_parser("hier-ratios", formatter_class=fmt, help="CHEST vs CHEST + HIER (kit's and authors' ratios), wide tree",
                         description=hier_ratios.__doc__)
    common(hr2, "runs/hier-ratios")
    hr2.add_argument("--seeds", type=SEED, nargs="+", default=[0, 1, 2, 3, 4], help="seeds (default 0 1 2 3 4)")
    hr2.add_argument("--steps", type=STEPS, help="steps per run (default: each preset's)")
    up = sub.add_parser("unsup-pretrained", formatter_class=fmt, help="the unsupervised method from a random and a pretrained net",
                        description=unsup_pretrained.__doc__)
    common(up, "runs/unsup-pretrained")
    up.add_argument("--seeds", type=SEED, nargs="+", default=[0, 1, 2, 3, 4], help="seeds (default 0 1 2 3 4)")
    up.add_argument("--pretrain-steps", type=bounded_int(*_bounds("pretrain_steps")), default=300,
                    help="steps of pretraining on other classes (default 300)")
    up.add_argument("--steps", type=STEPS, help="unsupervised steps per run (default: the preset's)")

    tb = sub.add_parser("tables", formatter_class=fmt, help="Tables 2-5 layout for a run (or every run of a folder)",
                        description=tables.__doc__)
    tb.add_argument("run_dir", type=Path, help="a run folder, or an output folder of this script")
    tb.add_argument("--split", default="test", help="test (unseen classes; In-shop: query -> gallery) or train")
    tb.add_argument("--device", help="auto | cpu | cuda")
    tb.add_argument("--max-n", type=MAX_N, help="evaluate at most this many samples")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # before the parser; --plugin may stand anywhere: it is taken out before the subcommand's parser
        plugins.load_for_cli(argv)
        argv = plugins.without_plugin_options(argv)
    except plugins.PluginError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    progress = not getattr(args, "quiet", False)
    try:
        if args.command == "ablation":
            out = Path(args.out.replace("GRID", args.grid))
            t0 = time.perf_counter()
            results = run_ablation(args.grid, out, args.seeds, steps=args.steps, data_root=args.data_root,
                                   trainings=args.only, overrides=parse_assignments(args.set), progress=progress)
            print((out / "ablation.md").read_text())
            print(f"{len(results)} runs in {out} ({time.perf_counter() - t0:.0f} s): ablation.csv, ablation.md, ablation.png")
        elif args.command == "fig3":
            paths = fig3(Path(args.out), preset=args.preset, steps=args.steps, seed=args.seed, data_root=args.data_root,
                         sets=args.set, bins=args.bins, progress=progress)
            print("wrote " + ", ".join(map(str, paths)))
        elif args.command == "fig2":
            paths = fig2(Path(args.out), run=args.run, preset=args.preset, steps=args.steps, seed=args.seed,
                         data_root=args.data_root, sets=args.set, max_n=args.max_n, queries=args.queries, top=args.top,
                         projection=args.projection, progress=progress)
            print("wrote " + ", ".join(map(str, paths)))
        elif args.command == "hardneg-fig2":
            ts = args.t or (HARDNEG_T_FULL if args.full else HARDNEG_T)
            cs = args.c or (HARDNEG_C_FULL if args.full else HARDNEG_C)
            seeds = args.seeds or ([0, 1, 2] if args.full else [0])
            paths = hardneg_fig2(Path(args.out), preset=args.preset, ts=ts, cs=cs, seeds=seeds, steps=args.steps,
                                 data_root=args.data_root, sets=args.set, progress=progress)
            print("wrote " + ", ".join(map(str, paths)))
        elif args.command == "hardneg-fig3":
            paths = hardneg_fig3(Path(args.out), run=args.run, preset=args.preset, steps=args.steps, seed=args.seed,
                                 random=args.random, n=args.n, t_sphere=args.t_sphere, t=args.t, cs=args.c,
                                 data_root=args.data_root, sets=args.set, progress=progress)
            print("wrote " + ", ".join(map(str, paths)))
        elif args.command in ("dims", "hier"):
            t0 = time.perf_counter()
            if args.command == "dims":
                dims(Path(args.out), datasets=args.datasets, dims=args.dims, seeds=args.seeds, steps=args.steps, progress=progress,
                     jobs=args.jobs)
            else:
                hier(Path(args.out), seeds=args.seeds, steps=args.steps, progress=progress)
            print((Path(args.out) / f"{args.command}.md").read_text())
            print(f"wrote {args.out}/{args.command}.csv, .md{', _paired.csv, .png' if args.command == 'dims' else ''} "
                  f"({time.perf_counter() - t0:.0f} s)")
        elif args.command in ("hyphc", "hier-ratios", "unsup-pretrained"):
            t0 = time.perf_counter()
            out = Path(args.out)
            if args.command == "hyphc":
                if args.taus[0] != 0:
                    raise ValueError(f"--taus {' '.join(map(str, args.taus))}: start with 0, the run each change is read against")
                hyphc(out, preset=args.preset, seeds=args.seeds, radii=args.radii, taus=args.taus, steps=args.steps,
                      progress=progress, **parse_assignments(args.set))
            elif args.command == "hier-ratios":
                hier_ratios(out, seeds=args.seeds, steps=args.steps, progress=progress)
            else:
                unsup_pretrained(out, seeds=args.seeds, pretrain_steps=args.pretrain_steps, steps=args.steps, progress=progress)
            stem = args.command.replace("-", "_")
            print((out / f"{stem}.md").read_text())
            print(f"wrote {out}/{stem}.csv, .md ({time.perf_counter() - t0:.0f} s)")
        elif args.command == "tables":
            print(tables(args.run_dir, split=args.split, device=args.device, max_n=args.max_n))
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM under python -m (chestlab.interrupts.run_main)
        print("\ninterrupted: finished runs are saved and the current one checkpointed; re-run the same command to "
              "continue where it stopped.", file=sys.stderr)
        return 128 + getattr(err, "signum", 2)
    except WriteError as err:  # a full disk: the runs' last checkpoints are intact
        print(f"error: {err}; free some space and re-run the same command to continue", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
