"""Results computed once and shipped: the lessons' expensive studies, read instead of retrained.

Lessons 00, 02, 04, 05, 06 and 07 each contain a study that takes minutes on a laptop CPU (disk against
plane over dimensions and seeds, a t × c sweep, an eight-seed HypHC study, an ablation and a grid of
margin runs behind a slider, H only against E only on the wide tree, CHEST against CHEST + HIER over
five paired seeds). Their full-mode
results are computed once, stored as JSON under ``chestlab/assets/results/`` (shipped with the
package) and read by the notebooks. Each file records

* ``params``: the arguments the computation ran with,
* ``version``: the version of the code that matters for it (bumped here when that code changes),
* ``command``: the command that regenerates it,
* ``result``: JSON only (numbers, strings, lists, dicts; NaN is stored as ``null``).

:func:`cached` returns a stored result only when its name, params and version all match; anything
else (missing file, other params, other version, unreadable file) is **stale** and is recomputed
(and stored, where the folder is writable). Nothing is unpickled: files are read with :func:`json.load`.

Regenerate from a shell (one at a time, each takes minutes)::

    python -m chestlab.results list
    python -m chestlab.results regenerate                 # every entry
    python -m chestlab.results regenerate lesson05_ablation
    python -m chestlab.results check lesson05_margins      # recompute, compare, store nothing
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "assets" / "results"


# ------------------------------------------------------------------------------------------------
# JSON in, JSON out
# ------------------------------------------------------------------------------------------------
def to_json(obj: Any) -> Any:
    """``obj`` as plain JSON values: numpy scalars and arrays become numbers and lists, tuples lists,
    non-finite floats ``None``. Raises TypeError for anything else (no silent ``repr``)."""
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_json(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:  # a torch scalar
        return to_json(obj.item())
    raise TypeError(f"not storable as JSON: {type(obj).__name__}")


def key(name: str, params: dict, version: str) -> str:
    """A short hash of what a result depends on: its name, params and code version."""
    blob = json.dumps({"name": name, "params": to_json(params), "version": version}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def path_of(name: str, folder: Optional[Path] = None) -> Path:
    return Path(folder or RESULTS_DIR) / f"{name}.json"


def read(name: str, *, params: dict, version: str, folder: Optional[Path] = None) -> Optional[Any]:
    """The stored result of ``name`` if it was computed with exactly ``params`` and ``version``;
    None when missing or stale."""
    p = path_of(name, folder)
    try:
        with open(p, encoding="utf-8") as fh:
            stored = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != key(name, params, version):
        return None
    if stored.get("params") != to_json(params) or stored.get("version") != version:
        return None
    return stored.get("result")


def write(name: str, result: Any, *, params: dict, version: str, folder: Optional[Path] = None,
          seconds: Optional[float] = None) -> Path:
    p = path_of(name, folder)
    p.parent.mkdir(parents=True, exist_ok=True)
    doc = {"name": name, "key": key(name, params, version), "version": version, "params": to_json(params),
           "command": f"python -m chestlab.results regenerate {name}",
           "seconds": None if seconds is None else round(seconds, 1), "result": to_json(result)}
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(p)
    return p


def cached(name: str, compute: Callable[..., Any], *, params: dict, version: str = "1",
           folder: Optional[Path] = None, store: bool = True) -> Any:
    """``compute(**params)``, read from ``folder/name.json`` when that file holds a result of the same
    ``params`` and ``version``; otherwise computed, stored (``store``; a read-only folder only warns)
    and returned. The value returned is always the JSON form (lists, not arrays; None, not NaN), so a
    fresh result and a stored one look the same to the caller."""
    hit = read(name, params=params, version=version, folder=folder)
    if hit is not None:
        return hit
    t0 = time.perf_counter()
    result = to_json(compute(**params))
    if store:
        try:
            write(name, result, params=params, version=version, folder=folder, seconds=time.perf_counter() - t0)
        except OSError as err:  # an installed, read-only package: use the result, keep going
            print(f"chestlab.results: could not store {name}: {err}", file=sys.stderr)
    return result


# ------------------------------------------------------------------------------------------------
# the lessons' studies
# ------------------------------------------------------------------------------------------------
def tree_sweep(branching: Sequence[int], dims: Sequence[int], seeds: Sequence[int], steps: int, lrs: Sequence[float]) -> list:
    """Lessons 00 §3 and 06 §5: :func:`chestlab.tree_embedding.dimension_sweep` of the complete tree of
    ``branching`` (Nickel & Kiela's loss, disk against plane at every dimension and seed), its rows as records."""
    from . import tree_embedding as te

    tree = te.Tree.complete(tuple(branching))
    return te.dimension_sweep(tree, list(dims), list(seeds), steps=steps, lrs=list(lrs)).to_dict("records")


def space_study(preset: str, dim: int, seeds: Sequence[int], steps: int, eval_max: int) -> list:
    """Lesson 06 §5: :func:`chestlab.lessons.space_runs` (H only against E only, seed by seed), its rows as
    records."""
    from .lessons import space_runs

    rows, _ = space_runs(preset, dim, list(seeds), steps, eval_max=eval_max)
    return rows.to_dict("records")


def umap_of_digits(steps: int, n: int, seed: int) -> dict:
    """Lesson 06 §1: the network of the lesson's first cell (``demo-digits``, batches of 5 × 6, ``steps``
    steps), its test embeddings (``max_n = n``: a fixed subset) and their UMAP to the disk
    (:func:`chestlab.viz.geometry.umap_disk`, ``seed``): the disk coordinates ``xy``, the samples'
    ``index`` and the mean ``d_H(0, x)`` of the embeddings (to check the notebook's network is the same)."""
    from . import poincare
    from .engine import Trainer
    from .settings import TrainConfig
    from .viz.geometry import umap_disk

    tr = Trainer(TrainConfig.preset("demo-digits", batch_size=30, eval_every=0))
    for _ in tr.run(steps):
        pass
    te = tr.embed("test", max_n=n)
    return {"xy": np.asarray(umap_disk(te["x_h"], tr.config.c, seed=seed)), "index": te["index"].tolist(),
            "mean_dist0": float(poincare.dist0(te["x_h"].double(), tr.config.c).mean())}


def hardneg_sweep(ts: Sequence[float], cs: Sequence[float], seeds: Sequence[int], steps: Optional[int] = None) -> list:
    """Lesson 02: :func:`chestlab.reproduce.hardneg_fig2` (the hard-negative paper's Fig. 2, t × c),
    its CSV rows as records."""
    import pandas as pd

    from .reproduce import hardneg_fig2

    with tempfile.TemporaryDirectory() as tmp:
        hardneg_fig2(Path(tmp), ts=ts, cs=cs, seeds=seeds, progress=False, **({"steps": steps} if steps else {}))
        return pd.read_csv(Path(tmp) / "hardneg_fig2.csv").to_dict("records")  # c: None for the sphere


def ablation(steps: int, seeds: Sequence[int], eval_max: int) -> list:
    """Lesson 05: :func:`chestlab.lessons.small_ablation` as records."""
    from . import lessons

    return lessons.small_ablation(steps=steps, seeds=tuple(seeds), eval_max=eval_max).to_dict("records")


def margin_run(eta_e: float, delta_h: float, steps: int, eval_max: int) -> dict:
    """Lesson 05: train ``demo-tree`` with η_E and δ_H for ``steps`` steps; the last batch's
    similarities (``tr.similarities()``), the last step's loss components and the test R@1 (H)."""
    from .engine import StepEvent, Trainer
    from .settings import TrainConfig

    tr = Trainer(TrainConfig.preset("demo-tree", eta_e=float(eta_e), delta_h=float(delta_h), eval_every=0,
                                    eval_train=False, eval_max=eval_max))
    last = None
    for ev in tr.run(steps):
        if isinstance(ev, StepEvent):
            last = ev
    sim = tr.similarities()
    return {"sim": {"step": sim.step, **{k: _float32_json(getattr(sim, k)) for k in ("h_pos", "h_neg", "e_pos", "e_neg")}},
            "components": dict(last.components), "r1": tr.history[-1]["test/H/R@1"]}


def _float32_json(a):
    """A float32 array as nested lists of the shortest decimals that read back as the same float32
    (``np.asarray(..., dtype=np.float32)`` restores it exactly, in half the characters of float64)."""
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float32)
    return np.array([float(str(x)) for x in a.ravel()], dtype=float).reshape(a.shape)


def grid_label(eta_e: float, delta_h: float) -> str:
    return f"eta_e={float(eta_e):g},delta_h={float(delta_h):g}"


def margin_grid(eta_es: Sequence[float], delta_hs: Sequence[float], steps: int, eval_max: int) -> dict:
    """Lesson 05: :func:`margin_run` at every (η_E, δ_H) of the grid, keyed by :func:`grid_label`."""
    return {grid_label(e, d): margin_run(e, d, steps, eval_max) for e in eta_es for d in delta_hs}


def similarity_event(run: dict):
    """A stored :func:`margin_run`'s similarities back as a :class:`~chestlab.engine.SimilarityEvent`
    (float32 arrays, as the trainer makes them)."""
    from .engine.events import SimilarityEvent

    s = run["sim"]
    arr = (lambda v: None if v is None else np.asarray(v, dtype=np.float32))
    return SimilarityEvent(s["step"], arr(s["h_pos"]), arr(s["h_neg"]), arr(s["e_pos"]), arr(s["e_neg"]))


def same_class_pair_most_similar(p, c: float) -> float:
    """Share of the HypHC triplets (anchor, proxy of its class, proxy of another class) whose most
    similar pair (Eq. 8) is the same-class pair; ``p``: (C, K, D) proxies."""
    import torch

    from . import poincare

    C, K, D = p.shape
    d = poincare.pairwise_dist(p.reshape(-1, D), p.reshape(-1, D), c).reshape(C, K, C, K)
    hits = total = 0
    for i in range(K):
        for j in range(K):
            if i != j:
                d_ij = d[torch.arange(C), i, torch.arange(C), j][:, None, None]  # (C, 1, 1)
                d_ik, d_jk = d[:, i], d[:, j]  # (C, C, K): to every proxy of every class
                other = ~torch.eye(C, dtype=torch.bool)[:, :, None].expand(C, C, K)
                hits += int(((d_ij < d_ik) & (d_ij < d_jk))[other].sum())
                total += int(other.sum())
    return hits / total


def hyphc_run(preset: str, tau: float, seed: int, steps: int) -> dict:
    """Lesson 04: train ``preset`` with τ for ``steps`` steps; the proxies' decoded tree ``Z``, its
    leaves' super-classes ``groups``, :func:`chestlab.hierarchy.tree_scores` against the true tree,
    Eq. 8's ω between the proxies, the class purity, τ·L_HypHC's share of the loss over the last 50
    steps and :func:`same_class_pair_most_similar`."""
    from .engine import Trainer
    from .hierarchy import decode, dendrogram_purity, hierarchy_of, tree_scores
    from .reproduce.regularisers import proxy_similarities
    from .settings import TrainConfig

    cfg = TrainConfig.preset(preset, tau=tau, seed=seed, steps=steps, eval_every=0, threads=1)
    tr = Trainer(cfg)
    steps_ = [ev for ev in tr.run(steps, eval_at_end=False) if ev.kind == "step"][-50:]  # the last 50 steps
    p = tr.proxies()["h"].double()
    C, K, D = p.shape
    leaves = np.repeat(np.arange(C), K)
    truth = hierarchy_of(tr.train_set)
    Z = decode(p.reshape(-1, D), cfg.c)
    out = dict(tree_scores(Z, leaves, truth))
    out.update(proxy_similarities(p, cfg.c))
    share = sum(tau * e.components["l_hyphc"] for e in steps_) / sum(e.loss for e in steps_)
    out.update({"class purity": dendrogram_purity(Z, leaves), "share": share,
                "same-class first": same_class_pair_most_similar(p, cfg.c), "Z": np.asarray(Z),
                "groups": truth.groups(1)[leaves]})
    return out


def hyphc_study(settings: dict, seeds: Sequence[int], steps: int) -> list:
    """Lesson 04: :func:`hyphc_run` for every setting ``name: [preset, τ > 0]``, τ in (0, τ > 0), and
    seed; one record per (setting, τ) with its ``runs`` in seed order."""
    return [{"setting": name, "tau": tau, "runs": [hyphc_run(preset, tau, s, steps) for s in seeds]}
            for name, (preset, tau_on) in settings.items() for tau in (0.0, float(tau_on))]


def hier_study(seeds: Sequence[int], steps: int, eval_max: int) -> dict:
    """Lesson 07 §6: :func:`chestlab.lessons.hier_arm` for every seed and arm (CHEST, CHEST + HIER):
    ``rows`` (one per arm and seed, for :func:`chestlab.lessons.paired_table`) and ``shares`` (η_HIER·L_HIER's
    share of the loss, one per seed), with the ``seeds``, ``steps`` and ``eval_max`` they were run with."""
    from .lessons import HIER_ARMS, hier_arm

    rows, shares = [], []
    for seed in seeds:
        for arm in HIER_ARMS:
            _, row, share = hier_arm(arm, seed, steps, eval_max=eval_max)
            rows.append(row)
            if share is not None:
                shares.append(share)
    return {"seeds": list(seeds), "steps": steps, "eval_max": eval_max, "rows": rows, "shares": shares}


def _hyphc_settings() -> dict:
    from .paper import PRESETS

    return {"paper: r = 2.3": ["demo-tree", 0.5],
            "demo-tree-hyphc: r = 1": ["demo-tree-hyphc", float(PRESETS["demo-tree-hyphc"]["tau"])]}


@dataclass(frozen=True)
class Entry:
    """A lesson's study: ``compute(**full)`` is shipped; ``compute(**fast)`` is what ``CHESTLAB_FAST=1``
    runs (computed each time, never stored, so CI keeps the computation path tested). Bump
    ``version`` when the code behind ``compute`` changes what it returns."""

    compute: Callable[..., Any]
    full: Callable[[], dict]
    fast: Callable[[], dict]
    version: str = "1"
    doc: str = field(default="")


def _hardneg_full() -> dict:
    from .reproduce import HARDNEG_C, HARDNEG_T

    return {"ts": list(HARDNEG_T), "cs": list(HARDNEG_C), "seeds": [0, 1, 2], "steps": None}


ENTRIES: dict[str, Entry] = {
    "lesson00_nk_sweep": Entry(
        tree_sweep, lambda: {"branching": [4, 4, 4], "dims": [2, 4, 8], "seeds": list(range(5)), "steps": 500,
                           "lrs": [0.03, 0.1, 0.3]},
        lambda: {"branching": [4, 4, 4], "dims": [2, 8], "seeds": list(range(5)), "steps": 150, "lrs": [0.03]},
        doc="lesson 00 §3: disk against plane at D = 2, 4, 8, 5 seeds (Nickel & Kiela's loss)"),
    "lesson02_hardneg_sweep": Entry(
        hardneg_sweep, _hardneg_full, lambda: {"ts": [0.05, 0.2], "cs": [0.1], "seeds": [0], "steps": 60},
        doc="lesson 02 §5: the t × c sweep (hard-negative paper, Fig. 2), 3 seeds"),
    "lesson04_hyphc_study": Entry(
        hyphc_study, lambda: {"settings": _hyphc_settings(), "seeds": list(range(8)), "steps": 600},
        lambda: {"settings": _hyphc_settings(), "seeds": [0], "steps": 100},
        doc="lesson 04 §6: does τ change the proxies' tree? 2 settings × 2 τ × 8 seeds"),
    "lesson05_fig3": Entry(
        margin_grid, lambda: {"eta_es": [0.0, 1.0], "delta_hs": [1.0], "steps": 600, "eval_max": 4000},
        lambda: {"eta_es": [0.0, 1.0], "delta_hs": [1.0], "steps": 150, "eval_max": 800},
        doc="lesson 05 §2: the Fig. 3 runs, η_E = 0 and 1"),
    "lesson05_margins": Entry(
        margin_grid, lambda: {"eta_es": [0.0, 1.0, 2.0], "delta_hs": [0.0, 1.0, 5.0, 10.0, 20.0], "steps": 300,
                              "eval_max": 4000},
        lambda: {"eta_es": [0.0, 1.0], "delta_hs": [1.0, 5.0], "steps": 60, "eval_max": 800},
        doc="lesson 05 §2: the slider's grid of margin runs (η_E × δ_H)"),
    "lesson05_ablation": Entry(
        ablation, lambda: {"steps": 300, "seeds": [0, 1, 2], "eval_max": 4000},
        lambda: {"steps": 40, "seeds": [0], "eval_max": 800},
        doc="lesson 05 §3: the small version of Tables 6–7, 3 seeds"),
    "lesson06_umap_disk": Entry(
        umap_of_digits, lambda: {"steps": 400, "n": 600, "seed": 0}, lambda: {"steps": 20, "n": 100, "seed": 0},
        doc="lesson 06 §1: UMAP of the unseen test digits to the disk (the lesson's network, 600 samples)"),
    "lesson06_wide_spaces": Entry(
        space_study, lambda: {"preset": "demo-tree-wide", "dim": 4, "seeds": list(range(5)), "steps": 400, "eval_max": 4000},
        lambda: {"preset": "demo-tree-wide", "dim": 4, "seeds": list(range(5)), "steps": 60, "eval_max": 1500},
        doc="lesson 06 §5: H only against E only on the wide tree, D = 4, 5 paired seeds"),
    "lesson06_wide_tree_fits": Entry(
        tree_sweep, lambda: {"branching": [4, 4, 4, 4], "dims": [4], "seeds": list(range(5)), "steps": 300, "lrs": [0.03]},
        lambda: {"branching": [4, 4, 4, 4], "dims": [4], "seeds": list(range(5)), "steps": 30, "lrs": [0.03]},
        doc="lesson 06 §5: the wide tree's 341 nodes fitted directly, disk against plane, D = 4, 5 seeds"),
    "lesson07_hier_study": Entry(
        hier_study, lambda: {"seeds": list(range(5)), "steps": 150, "eval_max": 4000},
        lambda: {"seeds": [0, 1, 2], "steps": 30, "eval_max": 1500},
        doc="lesson 07 §6: CHEST against CHEST + HIER on the wide tree, 5 paired seeds"),
}


def load(name: str, *, fast: Optional[bool] = None, folder: Optional[Path] = None, recompute: bool = False) -> Any:
    """A lesson's study ``name`` (see :data:`ENTRIES`): in full mode the shipped result (recomputed and
    stored if it is missing or stale); in fast mode (default: ``chestlab.lessons.FAST``) its small
    version, computed now and not stored. ``recompute=True`` (a lesson's ``RECOMPUTE`` switch) computes
    the full version now, whatever is shipped, and stores nothing: what a student runs to see the
    shipped numbers come out of the code (it takes minutes)."""
    e = ENTRIES[name]
    if fast is None:
        from .lessons import FAST as fast
    if fast:
        return to_json(e.compute(**e.fast()))
    if recompute:
        return to_json(e.compute(**e.full()))
    return cached(name, e.compute, params=e.full(), version=e.version, folder=folder)


def regenerate(name: str, *, folder: Optional[Path] = None) -> Path:
    """Recompute entry ``name`` in full and store it (whatever is stored)."""
    e = ENTRIES[name]
    params = e.full()
    t0 = time.perf_counter()
    result = e.compute(**params)
    return write(name, result, params=params, version=e.version, folder=folder, seconds=time.perf_counter() - t0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chestlab.results", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the entries and whether their stored result is current")
    g = sub.add_parser("regenerate", help="recompute entries in full and store them (all when none is named)")
    g.add_argument("names", nargs="*", metavar="NAME", help=", ".join(ENTRIES))
    g.add_argument("--folder", type=Path, default=None, help=f"where to store (default {RESULTS_DIR})")
    sub.choices["list"].add_argument("--folder", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for name, e in ENTRIES.items():
            ok = read(name, params=e.full(), version=e.version, folder=args.folder) is not None
            print(f"{name:24s} {'current' if ok else 'STALE or missing':17s} {e.doc}")
        return 0
    names = args.names or list(ENTRIES)
    unknown = [n for n in names if n not in ENTRIES]
    if unknown:
        ap.error(f"unknown entries {unknown}; known: {', '.join(ENTRIES)}")
    for name in names:
        t0 = time.perf_counter()
        p = regenerate(name, folder=args.folder)
        print(f"{name}: {time.perf_counter() - t0:.0f} s -> {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
