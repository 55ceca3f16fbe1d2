"""Tests for chestlab.metrics against independent oracles.

* pytorch-metric-learning's ``AccuracyCalculator`` (``precision_at_1`` = Recall@1,
  ``mean_average_precision_at_r`` = MAP@R) over PML's own distances, and over a Poincaré distance
  written here with geoopt — chestlab's geometry is not used by the oracle;
* a brute-force numpy oracle (full distance matrix + argsort) for Recall@k with k > 1;
* small cases worked out by hand;
* chunking invariance, a one-pass check, memory checks (no N × N tensor, bounded peak RSS) and
  the error messages.

The oracle comparisons run in float64 on points that are exactly representable in float32: PML
casts its inputs to float32, and near-ties at the 1e-7 level would otherwise let float32 rounding
reorder neighbours differently in the two implementations.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import geoopt.manifolds.stereographic.math as gmath
from pytorch_metric_learning.distances import BaseDistance, CosineSimilarity, LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

from chestlab import metrics, poincare
from chestlab.metrics import map_at_r, recall_at_k, retrieval_metrics

CURVATURES = (0.1, 0.5, 1.0, 2.0)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def clustered(seed: int, n: int = 300, dim: int = 8, n_classes: int = 10, spread: float = 1.2):
    """Gaussian class clusters (so the metrics are far from 0 and 1) plus one lone query.

    Returns float64 embeddings that are exact float32 values, and int64 labels.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, n_classes, (n - 1,), generator=g)
    centers = torch.randn(n_classes, dim, generator=g, dtype=torch.float64)
    x = centers[labels] + spread * torch.randn(n - 1, dim, generator=g, dtype=torch.float64)
    # one label that occurs once: a lone query, skipped by both metrics
    x = torch.cat([x, torch.randn(1, dim, generator=g, dtype=torch.float64)])
    labels = torch.cat([labels, torch.tensor([n_classes])])
    return x.float().double(), labels


def in_ball(seed: int, c: float, n: int = 300, dim: int = 8, n_classes: int = 10):
    """Clustered points mapped into the ball of curvature -c by geoopt's expmap0."""
    x, labels = clustered(seed, n, dim, n_classes, spread=0.8)
    # tangent vectors of norm ~ 1/sqrt(c)..3/sqrt(c): spread from the centre to near the boundary
    v = x / math.sqrt(c) / math.sqrt(dim) * 1.5
    y = gmath.expmap0(v, k=torch.tensor(-c, dtype=torch.float64)).float().double()
    assert bool((c * y.pow(2).sum(1) < 1).all())
    return y, labels


# --------------------------------------------------------------------------------------------
# oracles
# --------------------------------------------------------------------------------------------
class _Float64:
    """Mixin: evaluate a PML distance in float64 (PML hands it float32 tensors)."""

    def forward(self, query_emb, ref_emb=None):
        return super().forward(query_emb.double(), None if ref_emb is None else ref_emb.double())


class LpDistance64(_Float64, LpDistance):
    pass


class CosineSimilarity64(_Float64, CosineSimilarity):
    pass


class GeooptPoincareDistance(BaseDistance):
    """Poincaré distance of curvature -c computed with geoopt (independent of chestlab)."""

    def __init__(self, c: float, **kwargs):
        super().__init__(normalize_embeddings=False, is_inverted=False, **kwargs)
        self.c = c

    def compute_mat(self, query_emb, ref_emb):
        q, r = query_emb.double(), ref_emb.double()
        return gmath.dist(q[:, None], r[None], k=torch.tensor(-self.c, dtype=torch.float64))

    def pairwise_distance(self, query_emb, ref_emb):
        k = torch.tensor(-self.c, dtype=torch.float64)
        return gmath.dist(query_emb.double(), ref_emb.double(), k=k)


def pml_metrics(emb: torch.Tensor, labels: torch.Tensor, distance) -> dict:
    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        knn_func=CustomKNN(distance),
        device=torch.device("cpu"),
    )
    return calc.get_accuracy(emb, labels, emb, labels, ref_includes_query=True)


def numpy_dist(x: np.ndarray, metric: str, c: float | None = None) -> np.ndarray:
    """Full (N, N) distance matrix from the textbook formulas."""
    if metric == "euclidean":
        return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        return 1.0 - xn @ xn.T
    # arccosh form of the Poincaré distance (equivalent to Eq. 2)
    sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    a = 1.0 - c * (x**2).sum(1)
    return np.arccosh(1.0 + 2.0 * c * sq / (a[:, None] * a[None, :])) / np.sqrt(c)


def numpy_recall(x: np.ndarray, labels: np.ndarray, ks, metric: str, c: float | None = None) -> dict:
    d = numpy_dist(x, metric, c)
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")
    same = labels[order] == labels[:, None]
    keep = (labels[None, :] == labels[:, None]).sum(1) > 1  # skip lone queries
    return {k: float(same[keep, :k].any(1).mean()) for k in ks}


# --------------------------------------------------------------------------------------------
# against pytorch-metric-learning
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "metric,distance",
    [("euclidean", LpDistance64(normalize_embeddings=False)), ("cosine", CosineSimilarity64())],
)
def test_matches_pml_euclidean_cosine(seed, metric, distance):
    dim = (2, 8, 16)[seed]
    n_classes = (5, 12, 20)[seed]
    x, y = clustered(seed, n=200 + 50 * seed, dim=dim, n_classes=n_classes)
    ref = pml_metrics(x, y, distance)
    out = retrieval_metrics(x, y, ks=(1,), metric=metric)
    assert 0.05 < out["R@1"] < 0.98  # a non-degenerate case
    assert out["R@1"] == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert out["MAP@R"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)


@pytest.mark.parametrize("c", CURVATURES)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pml_poincare_geoopt(seed, c):
    dim = (4, 12)[seed]
    x, y = in_ball(seed + 10, c, n=250, dim=dim, n_classes=(6, 15)[seed])
    ref = pml_metrics(x, y, GeooptPoincareDistance(c))
    out = retrieval_metrics(x, y, ks=(1,), metric="poincare", c=c)
    assert 0.05 < out["R@1"] < 0.98
    assert out["R@1"] == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert out["MAP@R"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)


def test_float32_input_close_to_float64():
    # float32 ranks in float32: near-ties may swap, but only a handful of them
    x, y = clustered(3, n=300, dim=16)
    out64 = retrieval_metrics(x, y, (1, 4), "euclidean")
    out32 = retrieval_metrics(x.float(), y, (1, 4), "euclidean")
    for key in out64:
        assert out32[key] == pytest.approx(out64[key], abs=3 / 300)


# --------------------------------------------------------------------------------------------
# Recall@k, k > 1, against brute force
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric,c", [("euclidean", None), ("cosine", None)] + [("poincare", c) for c in CURVATURES])
@pytest.mark.parametrize("seed", [0, 1])
def test_recall_at_k_matches_bruteforce(metric, c, seed):
    ks = (1, 2, 4, 8, 16, 32)
    if metric == "poincare":
        x, y = in_ball(seed + 20, c, n=240, dim=(3, 10)[seed], n_classes=(5, 20)[seed])
    else:
        x, y = clustered(seed + 20, n=240, dim=(3, 10)[seed], n_classes=(5, 20)[seed])
    got = recall_at_k(x, y, ks, metric, c)
    want = numpy_recall(x.numpy(), y.numpy(), ks, metric, c)
    assert list(got) == list(ks)
    for k in ks:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k
    # recall is non-decreasing in k, and the case is not saturated
    vals = [got[k] for k in ks]
    assert vals == sorted(vals) and vals[0] < 1.0


# --------------------------------------------------------------------------------------------
# hand-computed cases
# --------------------------------------------------------------------------------------------
def test_hand_computed_line():
    # 1-D points; labels 0 0 1 0 1
    #   query 0.0 (R=2): 1.0+, 2.4-      -> AP = (1/1)/2        = 0.5
    #   query 1.0 (R=2): 0.0+, 2.4-      -> AP = 0.5
    #   query 2.4 (R=1): 1.0-            -> AP = 0
    #   query 4.0 (R=2): 2.4-, 1.0+      -> AP = (1/2)/2        = 0.25
    #   query 10  (R=1): 4.0-            -> AP = 0
    x = torch.tensor([[0.0], [1.0], [2.4], [4.0], [10.0]])
    y = torch.tensor([0, 0, 1, 0, 1])
    out = retrieval_metrics(x, y, (1, 2, 3, 4), "euclidean")
    assert out == pytest.approx({"R@1": 0.4, "R@2": 0.8, "R@3": 0.8, "R@4": 1.0, "MAP@R": 0.25})
    assert map_at_r(x, y, "euclidean") == pytest.approx(0.25)
    # all distances scale by 2 at c = 0: same ranking
    assert retrieval_metrics(x, y, (1, 2, 3, 4), "poincare", c=0.0) == pytest.approx(out)


def test_poincare_ranks_differently_from_euclidean():
    # q = (0.9, 0) near the boundary; a (other label) is Euclidean-closer to q than b (q's label),
    # but hyperbolically farther (D(q,a) ≈ 2.18 > D(q,b) ≈ 1.56 at c = 1)
    cos_t = 1 - 0.0625 / (2 * 0.81)
    sin_t = math.sqrt(1 - cos_t**2)
    x = torch.tensor([[0.9, 0.0], [0.6, 0.0], [0.9 * cos_t, 0.9 * sin_t], [-0.5, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    assert recall_at_k(x, y, 1, "euclidean") == {1: 0.25}
    assert recall_at_k(x, y, 1, "poincare", c=1.0) == {1: 0.5}
    assert recall_at_k(x, y, 1, "poincare", c=0.0) == {1: 0.25}  # Euclidean limit
    assert recall_at_k(x, y, 1, "euclidean", c=1.0) == {1: 0.25}  # c is ignored


def test_cosine_ignores_norm():
    x, y = clustered(4, n=120, dim=6)
    scale = torch.rand(120, 1, dtype=torch.float64) * 10 + 0.1
    assert retrieval_metrics(x * scale, y, (1, 5), "cosine") == pytest.approx(
        retrieval_metrics(x, y, (1, 5), "cosine"), abs=1e-12
    )
    assert retrieval_metrics(x * scale, y, (1, 5), "euclidean") != retrieval_metrics(x, y, (1, 5), "euclidean")


def test_lone_queries_skipped_and_all_lone_is_nan():
    x = torch.tensor([[0.0], [0.1], [5.0], [9.0]])
    # the two lone queries (labels 7, 8) would score 0 if counted
    out = retrieval_metrics(x, torch.tensor([1, 1, 7, 8]), (1,), "euclidean")
    assert out == {"R@1": 1.0, "MAP@R": 1.0}
    with pytest.warns(RuntimeWarning, match="only once"):
        out = retrieval_metrics(x, torch.tensor([0, 1, 2, 3]), (1, 2), "euclidean")
    assert all(math.isnan(v) for v in out.values())


# --------------------------------------------------------------------------------------------
# API consistency, inputs, chunking, one pass
# --------------------------------------------------------------------------------------------
def test_functions_agree_and_accept_numpy():
    x, y = in_ball(5, 0.5, n=150, dim=5)
    both = retrieval_metrics(x, y, [8, 1, 2, 2], "poincare", c=0.5)
    assert list(both) == ["R@1", "R@2", "R@8", "MAP@R"]
    assert recall_at_k(x, y, [1, 2, 8], "poincare", c=0.5) == {k: both[f"R@{k}"] for k in (1, 2, 8)}
    assert map_at_r(x, y, "poincare", 0.5) == both["MAP@R"]
    assert retrieval_metrics(x.numpy(), y.numpy().astype(np.int32), [1, 2, 8], "poincare", 0.5) == both
    assert retrieval_metrics(x, y, [1, 2, 8], "poincare", torch.tensor(0.5)) == both


@pytest.mark.parametrize("metric,c", [("euclidean", None), ("cosine", None), ("poincare", 1.0)])
def test_chunking_invariant(metric, c):
    x, y = in_ball(6, 1.0, n=130, dim=7)
    n = len(x)
    outs = [retrieval_metrics(x, y, (1, 3, 10), metric, c, chunk_size=cs) for cs in (1, 7, n, 10 * n, None)]
    for out in outs[1:]:
        assert out == pytest.approx(outs[0], abs=1e-12)


def test_one_distance_pass_per_chunk(monkeypatch):
    from chestlab import metrics as M

    calls = []
    real = M._Scorer.__call__

    def spy(self, q):
        out = real(self, q)
        calls.append(tuple(out.shape))
        return out

    monkeypatch.setattr(M._Scorer, "__call__", spy)
    x, y = in_ball(7, 0.5, n=100, dim=4)
    retrieval_metrics(x, y, (1, 2, 4, 8), "poincare", 0.5, chunk_size=30)
    assert calls == [(30, 100), (30, 100), (30, 100), (10, 100)]


def test_no_grad_and_device_dtype():
    x, y = clustered(8, n=80, dim=4)
    xg = x.float().requires_grad_()
    out = retrieval_metrics(xg, y, (1,), "euclidean")
    assert isinstance(out["R@1"], float) and isinstance(out["MAP@R"], float)
    assert xg.grad is None
    # half precision is ranked in float32
    assert retrieval_metrics(x.half(), y, (1,), "cosine")["R@1"] > 0


# --------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------
class _LargestTensor(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the largest tensor any aten op produces while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("metric,n,dim", [("euclidean", 6_000, 8), ("poincare", 2_000, 8)])
def test_never_builds_n_by_n(metric, n, dim):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, dim, generator=g)
    if metric == "poincare":
        x = poincare.expmap0(x / math.sqrt(dim), 1.0)
    y = torch.randint(0, n // 5, (n,), generator=g)
    chunk = 100
    with _LargestTensor() as spy:
        out = retrieval_metrics(x, y, (1, 10), metric, 1.0, chunk_size=chunk)
    assert 0 <= out["R@1"] <= 1
    # every intermediate is at most chunk × N (or the N × D inputs); N × N is 20-60x larger
    assert spy.largest <= max(chunk * n, n * dim), (spy.largest, chunk * n, n * n)
    # the default chunk size keeps the score matrix at 2**22 elements (16 MiB in float32)
    assert metrics.default_chunk_size(n) * n <= 2**22 and metrics.default_chunk_size(60_502) == 69


def test_peak_rss_bounded():
    # In a fresh interpreter: peak resident memory during the call, minus memory before it.
    # A 10,000 × 10,000 float32 matrix alone would be 381 MiB; the default chunk's is 16 MiB.
    code = textwrap.dedent(
        """
        import json, re, torch
        from chestlab.metrics import retrieval_metrics
        torch.set_num_threads(1)
        torch.manual_seed(0)
        x = torch.randn(10_000, 16)
        y = torch.randint(0, 2_000, (10_000,))
        retrieval_metrics(x[:500], y[:500], (1,), "euclidean")  # warm up lazy allocations
        def status(key):
            return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))
        open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark to now
        before = status("VmRSS")
        retrieval_metrics(x, y, (1, 10), "euclidean")
        print(json.dumps({"delta_mib": (status("VmHWM") - before) / 1024}))
        """
    )
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak-RSS mark")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    delta = json.loads(res.stdout.strip().splitlines()[-1])["delta_mib"]
    assert delta < 150, f"peak RSS grew by {delta:.0f} MiB"


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
X = torch.randn(10, 3) * 0.1
Y = torch.arange(10) % 3


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(metric="hyperbolic"), r"metric must be one of \('euclidean', 'cosine', 'poincare'\)"),
        (dict(metric="poincare"), r"c must be given for metric='poincare'.*c >= 0"),
        (dict(metric="poincare", c=-1.0), r"c = -1.0 is not a valid curvature.*c >= 0"),
        (dict(ks=(0, 1)), r"ks must hold integers in \[1, N - 1\] = \[1, 9\].*k = 0"),
        (dict(ks=(1, 10)), r"ks must hold integers in \[1, N - 1\] = \[1, 9\].*k = 10"),
        (dict(ks=(1.5,)), r"ks must hold integers"),
        (dict(emb=X[:, 0]), r"emb must be a 2-D tensor \(N, D\)"),
        (dict(emb=X[None]), r"emb must be a 2-D tensor \(N, D\)"),
        (dict(emb=X[:1], labels=Y[:1]), r"emb must hold at least 2"),
        (dict(labels=Y[:9]), r"emb and labels must have the same length.*N = 10.*9"),
        (dict(labels=Y[:, None]), r"labels must be a 1-D tensor"),
        (dict(labels=Y.float()), r"labels must hold integers"),
        (dict(chunk_size=0), r"chunk_size must be an integer >= 1"),
        (dict(emb=X * 100, metric="poincare", c=1.0), r"emb: \d+ point\(s\) lie outside the Poincaré ball"),
        (dict(emb=torch.full((10, 3), math.nan)), r"emb contains NaN"),
        (dict(emb=X[:, :0]), r"emb has D = 0 coordinates"),
        (dict(chunk_size=True), r"chunk_size must be an integer >= 1"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = dict(emb=X, labels=Y, ks=(1, 2), metric="euclidean", c=None)
    args.update(kwargs)
    chunk = args.pop("chunk_size", None)
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(**args, chunk_size=chunk)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(metric="poincare", c="0.5"), r"c must be a real number"),
        (dict(emb="embeddings"), r"emb must be a tensor or array of numbers"),
        (dict(emb=X.to(torch.complex64)), r"emb must hold real numbers"),
        (dict(labels=np.array(["a"] * 10)), r"labels must be a tensor or array of numbers"),
    ],
)
def test_bad_input_types(kwargs, match):
    args = dict(emb=X, labels=Y, ks=(1, 2), metric="euclidean", c=None)
    args.update(kwargs)
    with pytest.raises(TypeError, match=match):
        retrieval_metrics(**args)


def test_recall_needs_ks():
    with pytest.raises(ValueError, match=r"ks must hold at least one"):
        recall_at_k(X, Y, [], "euclidean")
    with pytest.raises(ValueError, match=r"metric must be one of"):
        map_at_r(X, Y, "Euclidean")


@pytest.mark.parametrize("metric,c", [("euclidean", None), ("cosine", None), ("poincare", 0.7)])
def test_query_gallery_retrieval_matches_brute_force(metric, c):
    """In-shop protocol: queries retrieve from a separate gallery, nothing excluded."""
    from chestlab import poincare as P

    g = torch.Generator().manual_seed(3)
    q = P.expmap0(torch.randn(40, 5, generator=g, dtype=torch.float64), 0.7)
    gal = P.expmap0(torch.randn(70, 5, generator=g, dtype=torch.float64), 0.7)
    ql, gl = torch.randint(8, (40,), generator=g), torch.randint(8, (70,), generator=g)
    ql[0] = 99  # a query whose class is absent from the gallery is skipped
    if metric == "poincare":
        d = P.pairwise_dist(q, gal, c)
    elif metric == "cosine":
        d = 1 - torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(gal, dim=1).T
    else:
        d = torch.cdist(q, gal)
    order = d.argsort(1)
    hit = gl[order] == ql[:, None]
    r = (gl[None, :] == ql[:, None]).sum(1)
    valid = r > 0
    exp = {}
    for k in (1, 5, 70):
        exp[f"R@{k}"] = float(hit[:, :k].any(1)[valid].double().mean())
    aps = []
    for i in torch.nonzero(valid).flatten().tolist():
        R = int(r[i])
        rel = hit[i, :R].double()
        prec = rel.cumsum(0) / torch.arange(1, R + 1)
        aps.append(float((prec * rel).sum() / R))
    exp["MAP@R"] = sum(aps) / len(aps)
    got = retrieval_metrics(q, ql, (1, 5, 70), metric, c, reference=gal, reference_labels=gl, chunk_size=7)
    assert got == pytest.approx(exp, abs=1e-12)
    with pytest.raises(ValueError, match="reference_labels"):
        retrieval_metrics(q, ql, (1,), metric, c, reference=gal)
    with pytest.raises(ValueError, match="ks"):
        retrieval_metrics(q, ql, (71,), metric, c, reference=gal, reference_labels=gl)
