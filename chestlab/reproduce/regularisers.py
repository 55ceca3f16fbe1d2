r"""Does each regulariser act? Paired-seed studies of the terms the papers add to a metric loss.

- :func:`hyphc` — CHEST's HypHC term (Eq. 8–9) on the wide tree: does τ change the tree the
  proxies form, at the paper's clipping radius and at a smaller one? With the Eq. 8 similarities
  :math:`\omega = e^{-d_H}` between the proxies and the share of :math:`\tau L_{HypHC}` in the loss,
  which say why.
- :func:`hier_ratios` — HIER next to CHEST on the wide tree, with the kit's CPU-sized settings and
  with the authors' ratios (preset ``demo-tree-wide-hier``): does it change retrieval or the
  hierarchy of the embedding?
- :func:`unsup_pretrained` — the unsupervised method from a random network and from a network
  pretrained on other classes (``pretrain_steps``, as the paper starts from a pretrained one).

Every training goes through :func:`chestlab.reproduce.runner.train_run` (resumable run folders, one
``result.json`` each); the arms of a study share their seeds, and :mod:`chestlab.reproduce.paired`
reads the effect off the per-seed differences (mean ± standard error).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .. import poincare
from ..engine import Trainer
from ..settings import TrainConfig
from .paired import arm_summary, format_pm, markdown_table, paired_differences, write_csv
from .runner import train_run

__all__ = ["HYPHC_PRESET", "HYPHC_RADII", "HYPHC_TAUS", "HIER_ARMS", "UNSUP_PRESET", "proxy_similarities", "proxy_tree", "loss_share",
           "hierarchy_scores", "hyphc", "hier_ratios", "unsup_pretrained", "study_markdown"]

#: The data of the HypHC study, and its grid: the paper's r = 2.3 and the smaller r of demo-tree-hyphc;
#: tau = 0 (off), the paper's 0.5 and demo-tree-hyphc's 8.
HYPHC_PRESET = "demo-tree-wide"
HYPHC_RADII: tuple[float, ...] = (2.3, 1.0)
HYPHC_TAUS: tuple[float, ...] = (0.0, 0.5, 8.0)
#: What every study run evaluates: the test split once, at the end.
_EVAL = dict(eval_every=0, eval_train=False, eval_max=None)


def proxy_similarities(proxies_h: torch.Tensor, c: float) -> dict[str, float]:
    r"""Eq. 8's similarities :math:`\omega = e^{-d_H}` between the class proxies, the factor every term
    of Eq. 9 carries. ``proxies_h``: (C, K, D_H) proxies in the ball. Returns the quantiles over the
    pairs of distinct proxies — ``omega q10``, ``omega median``, ``omega q90`` — and the medians over the
    pairs of one class (``omega same``, the pair Eq. 9 asks to merge first; NaN when K = 1) and of two
    classes (``omega other``)."""
    p = proxies_h.detach().double().cpu()
    C, K, D = p.shape
    flat = p.reshape(C * K, D)
    leaves = np.repeat(np.arange(C), K)
    omega = torch.exp(-poincare.pairwise_dist(flat, flat, c)).numpy()
    iu = np.triu_indices(C * K, 1)
    w, same = omega[iu], (leaves[:, None] == leaves[None, :])[iu]
    return {"omega q10": float(np.quantile(w, 0.1)), "omega median": float(np.median(w)),
            "omega q90": float(np.quantile(w, 0.9)),
            "omega same": float(np.median(w[same])) if same.any() else math.nan,
            "omega other": float(np.median(w[~same]))}


def proxy_tree(proxies_h: torch.Tensor, c: float, hierarchy: Any) -> dict[str, float]:
    r"""The tree the class proxies form, and their Eq. 8 similarities.

    ``proxies_h``: (C, K, D_H) proxies in the ball; ``hierarchy``: the training classes' known tree.
    Returns the scores of the dendrogram decoded by average linkage on :math:`d_H`
    (:func:`chestlab.hierarchy.decode`, ``method="average"``) against the true tree — ``cophenet``
    (↑), ``purity`` of the super-classes (↑), ``class purity`` (↑: the K proxies of a class merge
    first), ``dasgupta`` (↓) — and :func:`proxy_similarities`."""
    from ..hierarchy import decode, dendrogram_purity, tree_scores

    p = proxies_h.detach().double().cpu()
    C, K, D = p.shape
    leaves = np.repeat(np.arange(C), K)
    Z = decode(p.reshape(C * K, D), c, method="average")
    out = dict(tree_scores(Z, leaves, hierarchy))
    out["class purity"] = dendrogram_purity(Z, leaves)
    out.update(proxy_similarities(p, c))
    return out


def loss_share(run_dir: Path, weight: float, part: str, last: int = 50) -> float:
    r""":math:`\sum weight \cdot part / \sum loss` over the last ``last`` steps of ``run_dir/steps.csv``:
    the share of a weighted part in the loss the optimizer saw."""
    with open(Path(run_dir) / "steps.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[-last:]
    total = sum(float(r["loss"]) for r in rows)
    return weight * sum(float(r[part]) for r in rows) / total if rows and total else math.nan


def _measure_hyphc(trainer: Trainer, run_dir: Path) -> dict:
    from ..hierarchy import hierarchy_of

    cfg = trainer.config
    tree = proxy_tree(trainer.proxies()["h"], cfg.c, hierarchy_of(trainer.train_set))
    return {"hyphc": {**tree, "share": loss_share(run_dir, cfg.tau, "l_hyphc")}}


#: The HypHC study's columns: (key, label, scale, format)
_HYPHC_COLUMNS = (("share", "τ·L_HypHC / L (%)", 100, ".2g"), ("omega same", "ω same class", 1, ".2g"),
                  ("omega median", "ω all pairs", 1, ".2g"), ("omega q10", "ω q10", 1, ".2g"), ("omega q90", "ω q90", 1, ".2g"),
                  ("cophenet", "cophenetic ↑", 1, ".3f"),
                  ("purity", "super-class purity ↑", 1, ".3f"), ("class purity", "class purity ↑", 1, ".3f"),
                  ("dasgupta", "Dasgupta ↓", 1, ".3f"), ("R@1", "R@1 H (%)", 100, ".1f"))
_HYPHC_DELTAS = ("cophenet", "purity", "class purity", "dasgupta", "R@1")


def hyphc(out: Path, *, preset: str = HYPHC_PRESET, seeds: Sequence[int] = range(5),
          radii: Sequence[float] = HYPHC_RADII, taus: Sequence[float] = HYPHC_TAUS, steps: Optional[int] = None,
          progress: bool = True, **overrides: Any) -> list[dict]:
    r"""Does τ change the tree CHEST's proxies form? For each clipping radius ``r``, τ and seed: train
    ``preset`` (the same seeds for every τ, so each seed's runs share their initialisation and batches),
    then score the proxies' tree and measure their Eq. 8 similarities (:func:`proxy_tree`), the share
    of τ·L_HypHC in the loss over the last 50 steps (:func:`loss_share`) and the test Recall@1 (H).
    ``overrides``: more settings for every run (e.g. a smaller test in ``data_options``).

    Writes ``hyphc.csv`` (one row per run) and ``hyphc.md`` (per r and τ: mean ± standard error over the
    seeds; per r and τ > 0: the change from τ = 0, seed by seed paired, mean ± standard error) and
    returns the rows."""
    out = Path(out)
    rows = []
    for r in radii:
        for tau in taus:
            for seed in seeds:
                cfg = TrainConfig.preset(preset, **{**_EVAL, "eval_hierarchy": False, **overrides}, r=r, tau=tau,
                                         seed=seed, **({"steps": steps} if steps else {}))
                res = train_run(cfg, out / f"r{r:g}_tau{tau:g}_seed{seed}", measure=_measure_hyphc,
                                desc=f"r={r:g} τ={tau:g} s{seed}", progress=progress)
                rows.append({"r": r, "tau": tau, "seed": seed, "R@1": res["metrics"].get("test/H/R@1", math.nan),
                             **res.get("hyphc", {})})
    write_csv(out / "hyphc.csv", rows)
    (out / "hyphc.md").write_text(hyphc_markdown(rows, preset=preset))
    return rows


def _summary_table(rows: Sequence[dict], by: tuple[str, str], columns: Sequence[tuple], label: Any = None
                   ) -> tuple[dict[tuple, list[dict]], list[list]]:
    """The rows grouped by the values of ``by`` and one table line per group: its label (``label(*key)``,
    else the key), the number of seeds, then each of ``columns`` ((key, label, scale, format)) as mean ±
    standard error."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in by), []).append(row)
    keys = [k for k, *_ in columns]
    table = []
    for key, rs in groups.items():
        s = arm_summary(rs, keys)
        table.append([*(label(*key) if label else key), len(rs)] + [format_pm(*s[k], scale, fmt) for k, _, scale, fmt in columns])
    return groups, table


def hyphc_markdown(rows: Sequence[dict], preset: str = HYPHC_PRESET) -> str:
    """The two tables of :func:`hyphc` from its rows."""
    groups, table = _summary_table(rows, ("r", "tau"), _HYPHC_COLUMNS, label=lambda r, tau: [f"{r:g}", f"{tau:g}"])
    text = (f"Per clipping radius r and τ (`{preset}`): mean ± standard error over the seeds. ω = e^(−d_H) (Eq. 8) "
            "between two proxies: the median over the pairs of one class, and the median and the 10 % and 90 % quantiles over all "
            "pairs of distinct proxies.\n\n")
    text += markdown_table(["r", "τ", "seeds", *(label for _, label, *_ in _HYPHC_COLUMNS)], table)
    deltas = []
    for (r, tau), rs in groups.items():
        base = groups.get((r, 0.0))
        if tau == 0 or base is None:
            continue
        cells = []
        for k in _HYPHC_DELTAS:
            d = paired_differences(base, rs, k)
            scale = 100 if k == "R@1" else 1
            cells.append(f"{format_pm(d['mean'], d['se'], scale, '.1f' if k == 'R@1' else '.3f', sign=True)} "
                         f"({d['up']} of {d['n']} up)")
        deltas.append([f"{r:g}", f"{tau:g}", *cells])
    text += ("\nThe change τ makes (τ minus τ = 0, same seed): mean ± standard error over the seeds, and in how many "
             "seeds it goes up.\n\n")
    text += markdown_table(["r", "τ", *(f"Δ {k}" for k in _HYPHC_DELTAS)], deltas)
    return text


# ------------------------------------------------------------------------------------------------
# HIER and the unsupervised method: retrieval and the embedding's hierarchy
# ------------------------------------------------------------------------------------------------
#: What :func:`hierarchy_scores` reports per space, and how the tables print it: (key, label, scale, format)
_SCORES = (("R@1", "R@1 (%)", 100, ".1f"), ("super_R@1", "super-class R@1 (%)", 100, ".1f"),
           ("severity", "mistake severity ↓", 1, ".2f"), ("cophenet", "cophenetic ↑", 1, ".3f"))


def hierarchy_scores(trainer: Trainer) -> dict[str, float]:
    """Recall@1, super-class Recall@1, mistake severity and the cophenetic correlation of the class
    means' dendrogram on the test split, in both spaces (``"H/R@1"``, ``"E/cophenet"``, …). Every
    dendrogram is decoded by average linkage on the space's own distance (``method="average"``), so
    the two spaces are scored alike."""
    from .. import metrics
    from ..hierarchy import hierarchy_metrics, hierarchy_of

    c = float(trainer.model.head.c)
    emb = trainer.embed("test")
    out = hierarchy_metrics(emb, hierarchy_of(trainer.test_set), c, method="average")
    for space, key, metric in (("H", "x_h", "poincare"), ("E", "x_e", "euclidean")):
        out[f"{space}/R@1"] = metrics.retrieval_metrics(emb[key], emb["labels"], (1,), metric, c)["R@1"]
    return out


def _measure_scores(trainer: Trainer, run_dir: Path) -> dict:
    return {"scores": hierarchy_scores(trainer)}


#: What every HIER / unsupervised run evaluates itself (the hierarchy is scored by :func:`hierarchy_scores`).
_SCORE_EVAL = dict(_EVAL, eval_hierarchy=False, ks=(1,))


def _study(out: Path, arms: dict[str, dict[str, Any]], seeds: Sequence[int], progress: bool) -> list[dict]:
    """Train (or, with ``steps = 0``, just build) each arm for each seed: ``arms`` maps a name to the
    settings of :meth:`TrainConfig.preset` (``preset`` included). One row per (arm, space, seed)."""
    rows = []
    for name, spec in arms.items():
        spec = dict(spec)
        preset = spec.pop("preset")
        built_only = spec.get("steps") == 0  # the network as built (and pretrained): nothing to train
        if built_only:
            spec["steps"] = 1
        for seed in seeds:
            cfg = TrainConfig.preset(preset, **{**_SCORE_EVAL, **spec}, seed=seed)
            if built_only:
                scores = hierarchy_scores(Trainer(cfg))
            else:
                slug = name.lower().replace(" + ", "_").replace(" ", "_").replace("(", "").replace(")", "")
                scores = train_run(cfg, out / f"{slug}_seed{seed}", measure=_measure_scores, desc=f"{name} s{seed}",
                                   progress=progress)["scores"]
            for space in ("H", "E"):
                rows.append({"arm": name, "space": space, "seed": seed,
                             **{k: scores.get(f"{space}/{k}", math.nan) for k, *_ in _SCORES}})
    return rows


def study_markdown(rows: Sequence[dict], comparisons: Sequence[tuple[str, str]]) -> str:
    """Per arm and space: mean ± standard error over the seeds; then each ``(arm, baseline)`` of
    ``comparisons``: the per-seed change, mean ± standard error, and in how many seeds it goes up."""
    groups, table = _summary_table(rows, ("arm", "space"), _SCORES)
    text = "Mean ± standard error over the seeds (test split, unseen classes).\n\n"
    text += markdown_table(["run", "space", "seeds", *(label for _, label, *_ in _SCORES)], table)
    deltas = []
    for arm, base in comparisons:
        for space in ("H", "E"):
            if (arm, space) not in groups or (base, space) not in groups:
                continue
            cells = []
            for k, _, scale, fmt in _SCORES:
                d = paired_differences(groups[(base, space)], groups[(arm, space)], k)
                cells.append(f"{format_pm(d['mean'], d['se'], scale, fmt, sign=True)} ({d['up']} of {d['n']} up)")
            deltas.append([f"{arm} − {base}", space, *cells])
    text += "\nPaired by seed (same initialisation and batches): the change, mean ± standard error, seeds up.\n\n"
    text += markdown_table(["change", "space", *(f"Δ {label}" for _, label, *_ in _SCORES)], deltas)
    return text


#: The arms of :func:`hier_ratios`: CHEST alone, with HIER at the kit's CPU-sized settings, and with
#: HIER at the authors' ratios.
HIER_ARMS: dict[str, dict[str, Any]] = {
    "CHEST": dict(preset="demo-tree-wide"),
    "CHEST + HIER (kit)": dict(preset="demo-tree-wide", loss="chest_hier"),
    "CHEST + HIER (authors' ratios)": dict(preset="demo-tree-wide-hier"),
}


def hier_ratios(out: Path, *, seeds: Sequence[int] = range(5), steps: Optional[int] = None, progress: bool = True,
                arms: Optional[Sequence[str]] = None, **overrides: Any) -> list[dict]:
    """HIER next to CHEST on the wide tree (:data:`HIER_ARMS`): the same seeds for every arm, each
    scored by :func:`hierarchy_scores`. Writes ``hier_ratios.csv``, ``hier_ratios.md`` (and the
    changes each HIER arm makes to CHEST, paired by seed) and returns the rows."""
    chosen = {k: dict(v, **overrides, **({"steps": steps} if steps else {})) for k, v in HIER_ARMS.items()
              if arms is None or k in arms}
    rows = _study(Path(out), chosen, seeds, progress)
    write_csv(Path(out) / "hier_ratios.csv", rows)
    comparisons = [(k, "CHEST") for k in chosen if k != "CHEST"]
    (Path(out) / "hier_ratios.md").write_text(study_markdown(rows, comparisons))
    return rows


#: The data and loss of :func:`unsup_pretrained`.
UNSUP_PRESET = "demo-tree-unsup"


def unsup_pretrained(out: Path, *, seeds: Sequence[int] = range(5), pretrain_steps: int = 300,
                     steps: Optional[int] = None, progress: bool = True, **overrides: Any) -> list[dict]:
    """The unsupervised method (:data:`UNSUP_PRESET`) from a random network and from one pretrained
    ``pretrain_steps`` steps on other classes (:mod:`chestlab.engine.pretrain`), against those
    networks before any unsupervised step: four arms, the same seeds. Writes ``unsup_pretrained.csv``
    and ``.md`` (with the changes the pretraining and the unsupervised loss each make, paired by seed)
    and returns the rows."""
    more = dict(overrides, **({"steps": steps} if steps else {}))
    arms = {
        "untrained": dict(preset=UNSUP_PRESET, **{**more, "steps": 0}),
        "unsupervised": dict(preset=UNSUP_PRESET, **more),
        "pretrained": dict(preset=UNSUP_PRESET, pretrain_steps=pretrain_steps, **{**more, "steps": 0}),
        "pretrained + unsupervised": dict(preset=UNSUP_PRESET, pretrain_steps=pretrain_steps, **more),
    }
    rows = _study(Path(out), arms, seeds, progress)
    write_csv(Path(out) / "unsup_pretrained.csv", rows)
    comparisons = [("unsupervised", "untrained"), ("pretrained", "untrained"), ("pretrained + unsupervised", "pretrained")]
    (Path(out) / "unsup_pretrained.md").write_text(study_markdown(rows, comparisons))
    return rows
