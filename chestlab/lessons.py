r"""Support code for the notebooks in ``notebooks/`` (as d2l's library behind its book).

The notebooks derive a formula, then check it numerically against :mod:`chestlab`, then let the
reader move sliders. What is shared and not part of the kit itself lives here, small and documented:

* run mode -- :data:`FAST` (environment variable ``CHESTLAB_FAST=1``: fewer steps, smaller data, so
  every notebook runs in well under a minute in CI) and :func:`pick`;
* checks -- :func:`verify` (print one line per check and fail loudly when it does not hold),
  :func:`gyro_checks` (the gyrogroup identities of Möbius addition);
* geometry to draw -- :func:`geodesic_arc`, :func:`hyperbolic_circle` (tensor versions of
  :mod:`chestlab.viz.geometry`'s), :func:`lca_point`; the drawing itself is :mod:`chestlab.viz`'s
  (:func:`chestlab.viz.mpl.disk_view`, :func:`chestlab.viz.mpl.draw_embedded_tree`,
  :func:`chestlab.viz.paper.retrieval_figure`, :func:`chestlab.viz.disk.disk_legend`,
  :func:`chestlab.viz.style.lecture_axes`);
* numerics -- :func:`precision_table` (float32 vs float64 near the boundary);
* toys -- :func:`hyphc_toy` (proxies trained by the HypHC term alone), :func:`small_ablation`
  (a few-step version of Tables 6-7), :func:`retrieval_examples` (queries and their neighbours, as
  :func:`chestlab.viz.paper.retrieval_figure` draws them);
* comparisons -- :func:`paired_table` (two spaces over the same seeds: the mean per-seed
  difference and its standard error), :func:`space_runs` (H-only and E-only networks, seed by seed),
  :func:`hier_arm` (one network of lesson 07's CHEST against CHEST + HIER).

Everything computes with the library's functions (``poincare``, ``losses``, ``train``); nothing
here re-implements a formula of the paper.
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from . import losses, paper, poincare, viz

__all__ = [
    "FAST",
    "pick",
    "verify",
    "gyration",
    "gyro_checks",
    "geodesic_arc",
    "hyperbolic_circle",
    "lca_point",
    "precision_table",
    "hyphc_toy",
    "ABLATION_ROWS",
    "small_ablation",
    "paired_table",
    "paired_verdict",
    "space_runs",
    "HIER_ARMS",
    "hier_arm",
    "retrieval_examples",
]

#: True when the environment variable ``CHESTLAB_FAST`` is set to a true value ("1", "true", "yes"):
#: the notebooks then train for fewer steps on less data (CI runs them this way).
FAST: bool = os.environ.get("CHESTLAB_FAST", "0").strip().lower() in ("1", "true", "yes", "on")


def pick(full: Any, fast: Any) -> Any:
    """``fast`` in fast mode (:data:`FAST`), ``full`` otherwise: ``steps = pick(600, 150)``."""
    return fast if FAST else full


# ------------------------------------------------------------------------------------------------
# numerical checks
# ------------------------------------------------------------------------------------------------
def refuses(check: Any, *wrongs: dict) -> None:
    """Show that an exercise's ``check`` fails on wrong answers: call ``check(**wrong)`` quietly (its
    lines hidden) for each ``wrong`` and raise ``RuntimeError`` if one is accepted (no ``AssertionError``),
    so a check that passes everything cannot ship."""
    import contextlib
    import io

    for wrong in wrongs:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                check(**wrong)
        except AssertionError:
            continue
        raise RuntimeError(f"{getattr(check, '__name__', 'the check')} accepted {wrong}")


def verify(label: str, got: Any, want: Any, *, rtol: float = 1e-9, atol: float = 1e-12) -> None:
    """Print ``✓ label  max|Δ| = ...``; raise ``AssertionError`` when ``got`` and ``want`` (tensors,
    arrays or numbers) are not close, so a notebook run in CI fails when the library and the
    derivation disagree. Returns nothing (a notebook cell ending with it shows only the line)."""
    _verify(label, got, want, rtol, atol)


def _verify(label: str, got: Any, want: Any, rtol: float, atol: float) -> float:
    g = torch.as_tensor(np.asarray(got.detach() if isinstance(got, Tensor) else got, dtype=np.float64))
    w = torch.as_tensor(np.asarray(want.detach() if isinstance(want, Tensor) else want, dtype=np.float64))
    g, w = torch.broadcast_tensors(g, w)
    err = float((g - w).abs().max()) if g.numel() else 0.0
    ok = bool(torch.allclose(g, w, rtol=rtol, atol=atol, equal_nan=False))
    print(f"{'✓' if ok else '✗'} {label:<58} max|Δ| = {err:.1e}")
    if not ok:
        raise AssertionError(f"{label}: max |got - want| = {err:.3e} exceeds rtol={rtol:g}, atol={atol:g}")
    return err


def gyration(a: Tensor, b: Tensor, z: Tensor, c: float) -> Tensor:
    r"""The gyration :math:`\mathrm{gyr}[a, b]z = \ominus(a\oplus b)\oplus(a\oplus(b\oplus z))`, the
    rotation that measures how far Möbius addition is from being associative (and commutative)."""
    add = poincare.mobius_add
    return add(-add(a, b, c), add(a, add(b, z, c), c), c)


def gyro_checks(x: Tensor, y: Tensor, z: Tensor, c: float, tol: float = 1e-10) -> list[tuple[str, float]]:
    """Check the gyrogroup identities of Möbius addition (Eq. 1) on float64 points and print one line
    each; returns ``(identity, max error)`` rows. Also prints how non-commutative and non-associative
    ``⊕`` is on these points, so the reader sees why the identities need the gyration."""
    add, n = poincare.mobius_add, lambda t: t.norm(dim=-1)
    rows = []
    checks = [
        ("left identity      0 ⊕ x = x", add(torch.zeros_like(x), x, c), x),
        ("left inverse       (-x) ⊕ x = 0", add(-x, x, c), torch.zeros_like(x)),
        ("left cancellation  (-x) ⊕ (x ⊕ y) = y", add(-x, add(x, y, c), c), y),
        ("gyrocommutative    x ⊕ y = gyr[x,y](y ⊕ x)", add(x, y, c), gyration(x, y, add(y, x, c), c)),
        ("left gyroassoc.    x ⊕ (y ⊕ z) = (x ⊕ y) ⊕ gyr[x,y]z", add(x, add(y, z, c), c), add(add(x, y, c), gyration(x, y, z, c), c)),
        ("gyr is an isometry ‖gyr[x,y]z‖ = ‖z‖", n(gyration(x, y, z, c)), n(z)),
        ("‖x ⊕ y‖ = ‖y ⊕ x‖", n(add(x, y, c)), n(add(y, x, c))),
    ]
    for label, got, want in checks:
        rows.append((label, _verify(label, got, want, tol, tol)))
    comm = float((add(x, y, c) - add(y, x, c)).norm(dim=-1).max())
    assoc = float((add(x, add(y, z, c), c) - add(add(x, y, c), z, c)).norm(dim=-1).max())
    print(f"  but ⊕ is not commutative: max ‖x⊕y − y⊕x‖ = {comm:.3f}; not associative: max ‖x⊕(y⊕z) − (x⊕y)⊕z‖ = {assoc:.3f}")
    return rows


# ------------------------------------------------------------------------------------------------
# geometry to draw
# ------------------------------------------------------------------------------------------------
def geodesic_arc(x: Tensor, y: Tensor, c: float, n: int = 100, full: bool = False) -> Tensor:
    r"""Points of the geodesic from ``x`` to ``y`` (2 points of the ball, (D,)), ``n`` of them, as
    :math:`\gamma(t) = \exp_x(t\,\log_x y)` (Eq. 3) -- constant speed, :math:`D(x, \gamma(t)) = t\,D(x, y)`.
    ``full=True``: the whole geodesic line, extended on both sides until it (almost) meets the
    boundary. Returns (n, D) in float64. (:func:`chestlab.viz.geometry.geodesic_arc` as a tensor.)"""
    return torch.from_numpy(viz.geodesic_arc(x, y, c, n, full))


def hyperbolic_circle(center: Tensor, radius: float, c: float, n: int = 120) -> Tensor:
    r"""The points at Poincaré distance ``radius`` from ``center`` (2-D), via
    :math:`\exp_z(u\,\rho/\lambda_z)` for unit vectors ``u`` (Eq. 3: a tangent vector ``v`` moves
    :math:`\lambda_z\|v\|` far). A Euclidean circle too, but not centred on ``center``. (n, 2).
    (:func:`chestlab.viz.geometry.hyperbolic_circle` as a tensor.)"""
    return torch.from_numpy(viz.hyperbolic_circle(center, radius, c, n))


def lca_point(a: Tensor, b: Tensor, c: float, n: int = 4001) -> Tensor:
    """The hyperbolic LCA of ``a`` and ``b`` (2 points, (D,)): the point of the full geodesic through
    them closest to the origin, found by dense sampling (the notebooks compare its depth with the
    closed form :func:`chestlab.poincare.lca_depth`). (D,) float64."""
    g = geodesic_arc(a, b, c, n=n, full=True)
    return g[poincare.dist0(g, c).argmin()]


# ------------------------------------------------------------------------------------------------
# float32 vs float64 near the boundary
# ------------------------------------------------------------------------------------------------
def precision_table(c: float = 1.0, tangent_norms: Sequence[float] = (1, 2.3, 4, 6, 8, 9, 10, 12), angle: float = 1e-2):
    r"""How float32 loses the geometry near the boundary. For each tangent norm ``s`` (before
    ``exp_0``), two points ``x = exp_0(s e_1)`` and ``y`` = the same rotated by ``angle``; returns a
    pandas DataFrame with the margin ``1 - sqrt(c)‖x‖`` as float32 stores it, the true distance
    ``D(x, y)`` (float64) and the relative error of the float32 distance. (The clipping radius ``r``
    caps ``s``: with ``r = 2.3`` every embedding stays in the first rows.)"""
    import pandas as pd

    rows = []
    for s in tangent_norms:
        out = {"‖v‖ (tangent)": s, "D(0, x) = 2‖v‖": 2 * s}
        for dt in (torch.float64, torch.float32):
            v1 = torch.tensor([s, 0.0], dtype=dt)
            v2 = torch.tensor([s * math.cos(angle), s * math.sin(angle)], dtype=dt)
            x, y = poincare.expmap0(v1, c), poincare.expmap0(v2, c)
            out[dt] = (float(1 - math.sqrt(c) * x.norm()), float(poincare.dist(x, y, c)))
        d64, d32 = out.pop(torch.float64)[1], out.pop(torch.float32)
        exact_margin = 1 - math.tanh(math.sqrt(c) * s)
        out.update({"1 − √c‖x‖ (exact)": exact_margin, "1 − √c‖x‖ (float32)": d32[0], "D(x, y) float64": d64,
                    "D(x, y) float32": d32[1], "rel. error float32": abs(d32[1] - d64) / d64})
        rows.append(out)
    return pd.DataFrame(rows).set_index("‖v‖ (tangent)")


# ------------------------------------------------------------------------------------------------
# a toy HypHC problem (notebook 04)
# ------------------------------------------------------------------------------------------------
def hyphc_toy(variant: str = "lca", steps: int = 200, *, C: int = 3, K: int = 3, c: float = 1.0, r: float = 2.3,
              gamma_hyp: float = 1.0, lr: float = 0.05, spread: float = 0.3, detach_similarity: bool = True,
              seed: int = 0) -> dict:
    r"""Train 2-D proxies with the HypHC term (Eq. 9) alone, as the CHEST head maps them
    (:math:`p = \exp_0(\operatorname{clip}_r(v))`), on all triplets (anchor, same-class proxy,
    other-class proxy) of ``C`` classes with ``K`` proxies each, with Adam on ``v``.
    ``detach_similarity`` is passed to :func:`chestlab.losses.hyphc_loss` (``True``: HypHC's constants).

    Returns ``{"snapshots": (steps + 1, C, K, 2), "loss", "lca_within", "lca_between", "dist_within",
    "dist_between", "norm", "consistent", "class_ordered", "nn_same_class"}`` (each (steps + 1,)): the
    proxies before each step, the loss, the mean LCA depth of same-class / different-class proxy pairs,
    their mean Poincaré distances, the mean ``D(0, p)`` (at most ``2 r``, the clipping radius), the
    fraction of triplets whose most similar (closest) pair has the deepest LCA ("consistent": the
    embedded tree agrees with the similarities, what Dasgupta's cost asks), the fraction whose
    same-class pair has the deepest LCA ("class_ordered") and the fraction of proxies whose nearest
    other proxy is of their own class ("nn_same_class": the class grouping). The proxies start
    grouped by class around ``C`` directions, as the proxy loss would leave them (noise ``spread``)."""
    g = torch.Generator().manual_seed(seed)
    # start as a proxy loss would leave them: each class around its own direction, with noise
    ang = torch.arange(C, dtype=torch.float64).repeat_interleave(K) * 2 * math.pi / C
    v = 0.8 * torch.stack([ang.cos(), ang.sin()], -1) + spread * torch.randn(C * K, 2, generator=g, dtype=torch.float64)
    v.requires_grad_(True)
    idx = torch.arange(C * K).view(C, K)
    trip = [(int(idx[a, i]), int(idx[a, j]), int(idx[b, k])) for a in range(C) for b in range(C) if a != b
            for i in range(K) for j in range(K) if i != j for k in range(K)]
    triplets = torch.tensor(trip)
    cls = torch.arange(C).repeat_interleave(K)
    same = (cls[:, None] == cls[None, :]) & ~torch.eye(C * K, dtype=torch.bool)
    diff = cls[:, None] != cls[None, :]
    opt = torch.optim.Adam([v], lr=lr)
    out: dict = {k: [] for k in ("snapshots", "loss", "lca_within", "lca_between", "dist_within", "dist_between", "norm",
                                  "consistent", "class_ordered", "nn_same_class")}

    def record(p: Tensor, loss: float) -> None:
        with torch.no_grad():
            d = poincare.pairwise_dist(p, p, c)
            lca = poincare.lca_depth(p[:, None], p[None, :], c)
            t = triplets
            out["snapshots"].append(p.view(C, K, 2).numpy().copy())
            out["loss"].append(loss)
            out["lca_within"].append(float(lca[same].mean()))
            out["lca_between"].append(float(lca[diff].mean()))
            out["dist_within"].append(float(d[same].mean()))
            out["dist_between"].append(float(d[diff].mean()))
            out["norm"].append(float(poincare.dist0(p, c).mean()))
            pairs = [(t[:, 0], t[:, 1]), (t[:, 0], t[:, 2]), (t[:, 1], t[:, 2])]
            L = torch.stack([lca[a, b] for a, b in pairs], -1)
            D = torch.stack([d[a, b] for a, b in pairs], -1)
            out["consistent"].append(float((L.argmax(-1) == D.argmin(-1)).double().mean()))
            out["class_ordered"].append(float((L.argmax(-1) == 0).double().mean()))
            nearest = (d + torch.diag(torch.full((C * K,), math.inf, dtype=d.dtype))).argmin(-1)
            out["nn_same_class"].append(float((cls[nearest] == cls).double().mean()))

    for step in range(steps + 1):
        p = poincare.expmap0(poincare.clip_features(v, r), c)
        loss = losses.hyphc_loss(p, triplets, c, gamma_hyp, variant=variant, detach_similarity=detach_similarity).mean()
        record(p.detach(), float(loss.detach()))
        if step < steps:
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: np.asarray(val) for k, val in out.items()}


# ------------------------------------------------------------------------------------------------
# a small version of Tables 6-7 (notebook 05)
# ------------------------------------------------------------------------------------------------
#: Rows of Tables 6-7, one per training: name, eta_H, eta_E, multi (K > 1), tau, evaluated spaces
#: with the paper's Cars196 R@1 for each (from :mod:`chestlab.paper`).
ABLATION_ROWS = tuple(
    (row.name.split(" (")[0].replace("+", " + "), row.eta_h, row.eta_e, row.multi, row.tau, spaces)
    for row, spaces in paper.training_rows("cars196")
)


def small_ablation(steps: int, seeds: Sequence[int] = (0,), *, preset: str = "demo-tree", K: int = 2,
                   rows: Sequence = ABLATION_ROWS, **overrides: Any):
    """Train every row of :data:`ABLATION_ROWS` for ``steps`` steps with :class:`chestlab.train.Trainer`
    (one run per row and seed) and return a pandas DataFrame of test (unseen-class) Recall@1 and
    MAP@R in the evaluated space(s), mean and std over seeds, next to the paper's Cars196 R@1.
    The full grid with more seeds and steps: ``python -m chestlab.reproduce ablation --grid toy``."""
    import pandas as pd

    from .engine import Trainer
    from .settings import TrainConfig

    records = []
    for name, eta_h, eta_e, multi, tau, spaces in rows:
        runs = []
        for seed in seeds:
            cfg = TrainConfig.preset(preset, eta_h=float(eta_h), eta_e=float(eta_e), K=K if multi else 1, tau=tau,
                                     steps=steps, eval_every=0, eval_train=False, seed=seed, **overrides)
            tr = Trainer(cfg)
            for _ in tr.run(steps):
                pass
            runs.append(tr.history[-1])
        for space, paper in spaces.items():
            r1 = np.array([100 * h[f"test/{space}/R@1"] for h in runs])
            mapr = np.array([100 * h[f"test/{space}/MAP@R"] for h in runs])
            records.append({"row": name, "space": space, "η_H": eta_h, "η_E": eta_e, "K": K if multi else 1, "τ": tau,
                            "R@1": r1.mean(), "R@1 std": r1.std(ddof=1) if len(r1) > 1 else float("nan"),
                            "MAP@R": mapr.mean(), "paper R@1 (Cars196)": paper})
    return pd.DataFrame(records)


# ------------------------------------------------------------------------------------------------
# paired comparisons of two spaces over seeds (notebooks 00 and 06)
# ------------------------------------------------------------------------------------------------
def paired_table(rows: Any, metrics: Sequence[str], *, a: str = "H", b: str = "E", by: Sequence[str] = (),
                 space: str = "space", seed: str = "seed"):
    r"""Compare space ``a`` with space ``b`` over the same seeds: ``rows`` (a pandas DataFrame or
    records) holds one row per (``by``..., ``space``, ``seed``); for each group of ``by`` and each
    metric, the per-seed differences :math:`\Delta_s = m_a(s) - m_b(s)` give

    .. math:: \bar\Delta = \frac1n\sum_s\Delta_s, \qquad \mathrm{s.e.} = \frac{\operatorname{std}(\Delta)}{\sqrt n}
              \ \ (\text{sample std}, n - 1),

    the standard error of the mean difference: an effect is visible when :math:`|\bar\Delta|` is
    several s.e. (pairing removes what the seed does to both spaces alike). Returns a DataFrame with
    the columns ``by``..., ``metric``, ``a``, ``b`` (the means), ``Δ``, ``s.e.``, ``n`` and
    ``a > b`` (in how many seeds). Seeds present in only one space are left out."""
    import pandas as pd

    df = pd.DataFrame(rows)
    out = []
    keys = list(by)
    groups = df.groupby(keys, sort=False) if keys else [((), df)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        A = g[g[space] == a].set_index(seed)
        B = g[g[space] == b].set_index(seed)
        common = A.index.intersection(B.index)
        for m in metrics:
            d = (A.loc[common, m] - B.loc[common, m]).to_numpy(dtype=float)
            n = len(d)
            out.append({**dict(zip(keys, key)), "metric": m, a: float(A.loc[common, m].mean()), b: float(B.loc[common, m].mean()),
                        "Δ": float(d.mean()) if n else math.nan,
                        "s.e.": float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
                        "n": n, f"{a} > {b}": int((d > 0).sum())})
    return pd.DataFrame(out)


def paired_verdict(table: Any, *, a: str = "H", b: str = "E", lower_is_better: Sequence[str] = ("severity",),
                   by: Sequence[str] = (), z: float = 2.0) -> str:
    r"""One Markdown line per row of :func:`paired_table`: the two means, the mean difference with its
    standard error, in how many seeds ``a`` is higher, and the reading -- "``a`` better" / "``b``
    better" when :math:`|\bar\Delta| > z` s.e. (``z`` = 2), else "no difference beyond {z} s.e.".
    ``lower_is_better`` names the metrics where the lower value wins (the mistake severity, a
    distortion); ``by``: the table's grouping columns, written before the metric."""
    lines = []
    for _, row in table.iterrows():
        d, se, n = row["Δ"], row["s.e."], int(row["n"])
        if se == se and abs(d) > z * se and d != 0:
            higher = a if d > 0 else b
            winner = higher if row["metric"] not in lower_is_better else (b if higher == a else a)
            reading = f"**{winner} better** ({abs(d) / se:.1f} s.e.)" if se > 0 else f"**{winner} better**"
        else:
            reading = f"no difference beyond {z:g} s.e."
        where = ", ".join(f"{k} = {row[k]}" for k in by)
        lines.append(f"* {where + ': ' if where else ''}**{row['metric']}**"
                     f"{' (lower is better)' if row['metric'] in lower_is_better else ''}: {a} {row[a]:.3f}, {b} {row[b]:.3f}; "
                     f"{a} − {b} = {d:+.3f} ± {se:.3f} ({a} higher in {int(row[f'{a} > {b}'])} of {n} seeds) → {reading}")
    return "\n".join(lines)


def space_runs(preset: str, dim: int, seeds: Sequence[int], steps: int, **overrides: Any):
    r"""Train, for every seed, an "H only" network (:math:`\eta_E = 0`, scored with :math:`d_H` on
    :math:`x^H`) and an "E only" one (:math:`\eta_H = 0`, scored with :math:`d_E` on :math:`x^E`, the head's
    :math:`W f + b`), both with head width :math:`D_H` = ``dim``, from ``preset``, with the same network,
    steps, seed and everything else (the arms of ``python -m chestlab.reproduce dims``,
    :data:`chestlab.reproduce.hierarchy.SPACE_ARMS`), and evaluate both on the unseen test classes with the
    hierarchy metrics. Returns ``(rows, trainers)``: a DataFrame with one row per (space, seed) --
    ``space``, ``seed``, R@1, MAP@R and the hierarchy metrics (``severity``, ``super_R@1``,
    ``cophenet``, ``purity``, ``dasgupta``: whatever the evaluator logs) -- and the trainers, keyed by
    ``(space, seed)``, for pictures. For :func:`paired_table`."""
    import pandas as pd

    from .engine import Trainer
    from .reproduce.hierarchy import SPACE_ARMS
    from .settings import TrainConfig

    rows, trainers = [], {}
    for seed in seeds:
        for space, kw in SPACE_ARMS.items():
            cfg = TrainConfig.preset(preset, **{**dict(eval_every=0, eval_train=False, eval_hierarchy=True),
                                                **overrides, **kw, "dim_h": dim, "tau": 0.0, "seed": seed})
            tr = Trainer(cfg)
            for _ in tr.run(steps):
                pass
            last = tr.history[-1]
            prefix = f"test/{space}/"
            rows.append({"space": space, "seed": seed,
                         **{k[len(prefix):]: float(v) for k, v in last.items() if k.startswith(prefix)}})
            trainers[(space, seed)] = tr
    return pd.DataFrame(rows), trainers


#: Lesson 07 §6: the two arms, CHEST (preset ``demo-tree-wide``) and CHEST + HIER (the kit's CPU-sized
#: HIER), as overrides of the preset.
HIER_ARMS: dict = {"CHEST": {}, "CHEST + HIER": {"loss": "chest_hier"}}


def hier_arm(arm: str, seed: int, steps: int, *, preset: str = "demo-tree-wide", eval_max: int = 4000):
    r"""Train one network of lesson 07's comparison: arm ``arm`` of :data:`HIER_ARMS` (CHEST or CHEST + HIER)
    from ``preset`` with ``seed`` for ``steps`` steps, evaluated on the unseen test classes with the
    hierarchy metrics. Returns ``(trainer, row, share)``: ``row`` holds ``arm``, ``seed`` and the test
    scores in :math:`H` (``R@1``, ``MAP@R``, ``super_R@1``, ``severity``, ``cophenet``, ``purity``, ...);
    ``share`` is :math:`\eta_{HIER} L_{HIER}` / total loss averaged over the last third of the steps (None
    for CHEST). Both arms of a seed start from the same network and draw the same batches.
    ``python -m chestlab.results regenerate lesson07_hier_study`` runs it for every arm and seed."""
    from .engine import Trainer
    from .settings import TrainConfig

    kw = HIER_ARMS[arm]
    tr = Trainer(TrainConfig.preset(preset, seed=seed, eval_every=0, eval_train=False, eval_hierarchy=True,
                                    eval_max=eval_max, **kw))
    events = list(tr.run(steps))
    last = tr.history[-1]
    row = {"arm": arm, "seed": seed, **{k[len("test/H/"):]: float(v) for k, v in last.items() if k.startswith("test/H/")}}
    share = None
    if "loss" in kw:  # the share of η_HIER·L_HIER in the total loss over the last third of the steps
        eta = tr.config.hier_weight  # 0.5, the paper's
        tail = [ev for ev in events if hasattr(ev, "components")][-max(steps // 3, 1):]
        share = float(np.mean([eta * ev.components["l_hier"] / ev.loss for ev in tail]))
    return tr, row, share


# ------------------------------------------------------------------------------------------------
# retrieval examples (notebook 06)
# ------------------------------------------------------------------------------------------------
def retrieval_examples(emb: Tensor, labels: Tensor, tiles: Sequence[Any], queries: Sequence[int], *, n: int = 9,
                       metric: str = "poincare", c: Optional[float] = None) -> list[dict]:
    """For each query index, its ``n`` nearest other items of ``emb`` (N, D) -- Poincaré distance
    (``metric="poincare"``, curvature ``c``) or Euclidean (``"euclidean"``) -- as the mappings that
    :func:`chestlab.viz.paper.retrieval_grid` draws: ``{"query": tile, "results": [(tile, same
    class?), ...], "labels": [...], "query_label": int}``. ``tiles[i]`` is what to draw for item ``i``
    (an image). :func:`chestlab.viz.paper.retrieval_figure` draws them with the query marked."""
    q = torch.as_tensor(list(queries))
    if metric == "poincare":
        d = poincare.pairwise_dist(emb[q].double(), emb.double(), float(c))
    elif metric == "euclidean":
        d = torch.cdist(emb[q].double(), emb.double())
    else:
        raise ValueError(f"metric = {metric!r}: choose 'poincare' or 'euclidean'")
    d[torch.arange(len(q)), q] = math.inf  # the query itself is not a result
    nn_idx = d.topk(n, largest=False).indices
    out = []
    for qi, row in zip(q.tolist(), nn_idx.tolist()):
        out.append({"query": tiles[qi], "results": [(tiles[j], bool(labels[j] == labels[qi])) for j in row],
                    "labels": [int(labels[j]) for j in row], "query_label": int(labels[qi])})
    return out
