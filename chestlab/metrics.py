r"""Retrieval metrics — Recall@k and MAP@R — in Euclidean, cosine and Poincaré space.

Protocol (the deep-metric-learning convention, as in pytorch-metric-learning's
``AccuracyCalculator(k="max_bin_count")`` with ``ref_includes_query=True``):

* every embedding is a query, and the reference set is the same set with the query itself
  removed (its distance is set to ``+inf``);
* **Recall@k** is the fraction of queries that have at least one item of their own label among
  their ``k`` nearest neighbours (so Recall@1 is PML's ``precision_at_1``);
* **MAP@R** (Musgrave et al. 2020) is the mean over queries of
  :math:`\frac{1}{R}\sum_{i=1}^{R} P@i \cdot \mathrm{rel}(i)`, where ``R`` is the number of *other*
  items with the query's label, ``rel(i)`` says whether the ``i``-th neighbour shares it and
  ``P@i`` is the precision among the first ``i`` neighbours;
* queries whose label occurs only once (``R = 0``, "lone" queries) are skipped by **both** metrics,
  as PML does: such a query can never be answered correctly, it does not measure the embedding.
  If every query is lone, the metrics are ``nan``.

Distances (``metric``):

* ``"euclidean"``: :math:`\|x - y\|`;
* ``"cosine"``: :math:`1 - \cos(x, y)` (rows are L2-normalised first);
* ``"poincare"``: the Poincaré distance of curvature ``-c`` (Eq. 2), from
  :func:`chestlab.poincare.pairwise_dist`; ``c = 0`` is its Euclidean limit ``2‖x − y‖``.

Inputs are validated up front, with one-line errors that name the argument: ``TypeError`` for
strings, booleans and complex numbers where numbers are expected (e.g. ``c="0.5"``), ``ValueError``
for fewer than 2 embeddings (1 query against a ``reference`` set), ``D = 0``, non-finite embeddings
(a value check, skipped inside :func:`chestlab.poincare.checks` ``(False)``), points outside the ball
and out-of-range ``ks`` / ``chunk_size``.

Only the *order* of the neighbours matters, so the Euclidean and cosine scores are computed in a
cheaper order-preserving form. Queries are processed in chunks of rows: memory stays
O(chunk × N) and only the first ``max(max ks, max R)`` neighbour indices of a chunk are kept, so
no N × N matrix is ever built (the SOP test set, 60,502 × 384, fits in a few hundred MiB).

Example
-------
>>> import torch
>>> from chestlab.metrics import retrieval_metrics
>>> emb, labels = torch.randn(100, 8), torch.arange(100) % 5
>>> out = retrieval_metrics(emb, labels, ks=(1, 2, 4, 8), metric="euclidean")
>>> sorted(out)
['MAP@R', 'R@1', 'R@2', 'R@4', 'R@8']
"""

from __future__ import annotations

import math
import operator
import warnings
from typing import Any, Mapping, Optional, Iterable, Union

import numpy as np
import torch
from torch import Tensor

from . import poincare

__all__ = ["METRICS", "recall_at_k", "map_at_r", "retrieval_metrics", "default_chunk_size", "similarity_arrays",
           "per_sample_margins"]

#: The distances the metrics can rank by.
METRICS = ("euclidean", "cosine", "poincare")

#: Default budget of elements per (chunk × N) score matrix: 2**22 float32 = 16 MiB. The Poincaré
#: distance keeps a dozen such temporaries alive at once, so the peak stays at a few hundred MiB
#: whatever N is, while chunks stay wide enough (69 rows at N = 60,502) for an efficient matmul.
_CHUNK_ELEMENTS = 2**22

ArrayLike = Union[Tensor, np.ndarray]


def default_chunk_size(n: int) -> int:
    """Rows per chunk used when ``chunk_size=None``: ``2**22 // n`` (at least 1, at most ``n``)."""
    return max(1, min(n, _CHUNK_ELEMENTS // max(n, 1)))


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def _as_tensor(x: ArrayLike, name: str, what: str) -> Tensor:
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a tensor or array of numbers ({what}), got {type(x).__name__}; "
                        f"convert it with numpy.asarray(..., dtype=float)") from None
    if t.dtype == torch.bool or t.dtype.is_complex:
        raise TypeError(f"{name} must hold real numbers ({what}), got dtype {t.dtype}")
    return t


def _check_inputs(
    emb: ArrayLike, labels: ArrayLike, metric: str, c, chunk_size, name: str = "emb", min_n: int = 2,
) -> tuple[Tensor, Tensor, float | None, int]:
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")

    emb = _as_tensor(emb, name, "embeddings (N, D)")
    if emb.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor (N, D), got shape {tuple(emb.shape)}")
    # float64 stays float64; everything else (half, bfloat16, ints) is ranked in float32
    if emb.dtype != torch.float64:
        emb = emb.to(torch.float32)
    emb = emb.detach()
    n = emb.shape[0]
    if n < min_n:
        raise ValueError(f"{name} must hold at least {min_n} embedding{'s' if min_n > 1 else ''} (N >= {min_n}), got N = {n}")
    if emb.shape[1] == 0:
        raise ValueError(f"{name} has D = 0 coordinates: every distance would be 0; pass (N, D) embeddings with D >= 1")
    poincare.check_finite(emb, name)  # "emb contains NaN or inf ..." (a value check: off inside poincare.checks(False))

    labels_name = "labels" if name == "emb" else f"{name}_labels"
    labels = _as_tensor(labels, labels_name, "integer class ids (N,)")
    if labels.dim() != 1:
        raise ValueError(f"{labels_name} must be a 1-D tensor of N integer labels, got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point:
        raise ValueError(f"{labels_name} must hold integers (class ids), got dtype {labels.dtype}; convert with .long()")
    if labels.shape[0] != n:
        raise ValueError(
            f"{name} and {labels_name} must have the same length: {name} has N = {n} rows, {labels_name} has {labels.shape[0]}"
        )
    labels = labels.to(device=emb.device, dtype=torch.long)

    c_value = None
    if metric == "poincare":
        if c is None:
            raise ValueError("c must be given for metric='poincare': a curvature c >= 0 (float), e.g. c=0.5")
        poincare.check_curvature(c, "c")
        c_value = float(c.detach()) if isinstance(c, Tensor) else float(c)
        poincare.check_in_ball(emb, c_value, name)

    if chunk_size is None:
        chunk_size = default_chunk_size(n)
    else:
        try:
            if isinstance(chunk_size, bool):
                raise TypeError
            chunk_size = operator.index(chunk_size)
        except TypeError:
            raise ValueError(f"chunk_size must be an integer >= 1 (or None), got {chunk_size!r}") from None
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1 (or None), got {chunk_size}")
    return emb, labels, c_value, chunk_size


def _check_ks(ks: Union[int, Iterable[int]], n: int) -> list[int]:
    if isinstance(ks, (int, np.integer)):
        ks = [ks]
    out = []
    for k in ks:
        if isinstance(k, bool):
            raise ValueError(f"ks must hold integers in [1, N - 1] = [1, {n - 1}], got {k!r}")
        try:
            k = operator.index(k)
        except TypeError:
            raise ValueError(f"ks must hold integers in [1, N - 1] = [1, {n - 1}], got {k!r}") from None
        # the query itself is excluded, so only N - 1 neighbours exist
        if not 1 <= k <= n - 1:
            raise ValueError(f"ks must hold integers in [1, N - 1] = [1, {n - 1}] (N = {n}), got k = {k}")
        out.append(k)
    return sorted(set(out))


# --------------------------------------------------------------------------------------------
# scores: any order-preserving transform of the distance will do
# --------------------------------------------------------------------------------------------
class _Scorer:
    """Scores of a chunk of queries against all references, (B, D) -> (B, N); smaller = closer."""

    def __init__(self, emb: Tensor, metric: str, c: float | None):
        self.metric, self.c = metric, c
        if metric == "cosine":
            # 1 - cos(x, y) ranks like -<x̂, ŷ>: normalise once, not once per chunk
            self.ref = torch.nn.functional.normalize(emb, dim=1)
        else:
            self.ref = emb
        if metric in ("euclidean", "poincare"):
            # ||x - y||^2 = ||x||^2 - 2<x,y> + ||y||^2; ||x||^2 is constant along a row, so
            # ||y||^2 - 2<x,y> ranks like the distance and costs one fused addmm, no sqrt
            self.ref_sq = emb.pow(2).sum(1)
        if metric == "poincare":
            # Eq. 2: D = (2/sqrt c) asinh(sqrt(c ||x-y||^2 / (alpha_x alpha_y))) is increasing in
            # ||x - y||^2 / alpha_y along a row (alpha_x fixed): same ranking as pairwise_dist at the
            # cost of one addmm and one scaling, 4x faster on the CPU at SOP size
            self.inv_alpha = poincare.conformal_factor(emb, c).squeeze(-1) / 2

    def __call__(self, q: Tensor) -> Tensor:
        if self.metric == "cosine":
            q = torch.nn.functional.normalize(q, dim=1)
        if self.metric == "euclidean":
            return torch.addmm(self.ref_sq.unsqueeze(0), q, self.ref.T, alpha=-2)
        if self.metric == "cosine":
            return -(q @ self.ref.T)
        sq = torch.addmm(self.ref_sq.unsqueeze(0), q, self.ref.T, alpha=-2).add_(q.pow(2).sum(1, keepdim=True))
        return sq.clamp_min_(0).mul_(self.inv_alpha)


# --------------------------------------------------------------------------------------------
# one pass over the chunks
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def _retrieve(
    emb: Tensor, labels: Tensor, ks: list[int], want_map: bool, metric: str, c: float | None, chunk_size: int,
    ref: Optional[Tensor] = None, ref_labels: Optional[Tensor] = None,
) -> tuple[dict[int, float], float]:
    n = emb.shape[0]
    device = emb.device
    self_retrieval = ref is None
    if self_retrieval:
        ref, ref_labels = emb, labels
        # R_i = number of *other* items with the query's label
        _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        r_all = counts[inverse] - 1
    else:
        # query -> gallery (In-shop): R_i = number of gallery items with the query's label
        uniq, counts = torch.unique(ref_labels, return_counts=True)
        pos = torch.searchsorted(uniq, labels).clamp_max(len(uniq) - 1)
        r_all = torch.where(uniq[pos] == labels, counts[pos], torch.zeros_like(labels))
    valid_all = r_all > 0
    n_valid = int(valid_all.sum())
    if n_valid == 0:
        warnings.warn(
            "every label occurs only once, so no query has a relevant neighbour: the metrics are nan",
            RuntimeWarning,
            stacklevel=3,
        )
        return {k: math.nan for k in ks}, math.nan

    max_r = int(r_all.max()) if want_map else 0
    max_k = max(ks, default=0)
    num_nn = max(max_k, max_r)  # <= n - 1: both are checked / bounded by construction
    scorer = _Scorer(ref, metric, c)
    ranks = torch.arange(1, num_nn + 1, device=device)

    hits_at = torch.zeros(len(ks), dtype=torch.float64, device=device)
    ap_sum = torch.zeros((), dtype=torch.float64, device=device)
    ks_t = torch.tensor(ks, device=device, dtype=torch.long)

    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        rows = torch.arange(stop - start, device=device)
        scores = scorer(emb[start:stop])
        if self_retrieval:
            scores[rows, rows + start] = math.inf  # exclude the query itself
        nn_idx = scores.topk(num_nn, dim=1, largest=False, sorted=True).indices  # (B, num_nn)
        del scores
        hit = ref_labels[nn_idx] == labels[start:stop, None]  # (B, num_nn) bool
        valid = valid_all[start:stop]

        if ks:
            # rank (0-based) of the first relevant neighbour; num_nn when there is none
            first = torch.where(hit.any(1), hit.byte().argmax(1), num_nn)
            # masks, not boolean indexing: no host sync per chunk on a GPU
            found = ((first[:, None] < ks_t[None, :]) & valid[:, None]).sum(0)
            hits_at += found.to(torch.float64)

        if want_map:
            r = r_all[start:stop]
            h = hit[:, :max_r]
            # only the first R neighbours of each query count in MAP@R
            rel = h & (ranks[None, :max_r] <= r[:, None])
            prec_at_i = rel.cumsum(1).to(torch.float64) / ranks[:max_r].to(torch.float64)
            ap = (prec_at_i * rel).sum(1) / r.clamp_min(1).to(torch.float64)
            ap_sum += (ap * valid).sum()

    recalls = {k: float(v) / n_valid for k, v in zip(ks, hits_at.tolist())}
    return recalls, float(ap_sum) / n_valid if want_map else math.nan


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def retrieval_metrics(
    emb: ArrayLike,
    labels: ArrayLike,
    ks: Union[int, Iterable[int]],
    metric: str,
    c: float | None = None,
    *,
    chunk_size: int | None = None,
    reference: Optional[ArrayLike] = None,
    reference_labels: Optional[ArrayLike] = None,
) -> dict[str, float]:
    r"""Recall@k for every ``k`` in ``ks`` and MAP@R, in one pass over the chunks of queries.

    By default every embedding queries all the others (CUB, Cars, SOP). With ``reference`` (M, D) and
    ``reference_labels`` (M,), ``emb`` are the queries and they retrieve from the reference set only
    (In-shop's query -> gallery protocol); nothing is excluded then and ``k`` may go up to ``M``.

    Parameters
    ----------
    emb : (N, D) tensor or array
        Embeddings; queries and references at once. Ranked in float32 (float64 if given float64),
        on ``emb``'s device. For ``"poincare"`` they must lie in the ball ``c‖x‖² < 1``.
    labels : (N,) tensor or array of ints
        Class ids.
    ks : int or iterable of ints
        Cut-offs for Recall@k, each in ``[1, N - 1]``; may be empty (MAP@R only).
    metric : {"euclidean", "cosine", "poincare"}
        The distance to rank by.
    c : float, optional
        Curvature (``c >= 0``) for ``"poincare"``, required there; ignored by the other metrics.
    chunk_size : int, optional
        Queries per chunk; ``None`` picks :func:`default_chunk_size` (a 16 MiB float32 score matrix).

    Returns
    -------
    dict
        ``{"R@k": float for k in sorted(ks)} | {"MAP@R": float}``, each in [0, 1]; ``nan`` (with a
        ``RuntimeWarning``) if no label occurs twice.

    Raises
    ------
    TypeError
        ``emb``/``labels`` that are not arrays of real numbers, ``c`` that is not a real number.
    ValueError
        Empty or 1-row ``emb`` (N >= 2; N >= 1 with ``reference``), ``D = 0``, NaN/inf embeddings,
        points outside the ball, an unknown ``metric``, out-of-range ``ks`` or ``chunk_size``.
    """
    gallery = reference is not None or reference_labels is not None
    emb, labels, c, chunk_size = _check_inputs(emb, labels, metric, c, chunk_size, min_n=1 if gallery else 2)
    ref = ref_labels = None
    if gallery:
        if reference is None or reference_labels is None:
            raise ValueError("give both reference (M, D) and reference_labels (M,) for query -> gallery retrieval")
        ref, ref_labels, _, _ = _check_inputs(reference, reference_labels, metric, c, 1, name="reference", min_n=1)
        if ref.shape[1] != emb.shape[1]:
            raise ValueError(f"reference has D = {ref.shape[1]} but emb has D = {emb.shape[1]}")
        ref, ref_labels = ref.to(emb), ref_labels.to(emb.device)
        ks = _check_ks(ks, ref.shape[0] + 1)  # no self to exclude: k <= M
    else:
        ks = _check_ks(ks, emb.shape[0])
    recalls, mapr = _retrieve(emb, labels, ks, True, metric, c, chunk_size, ref, ref_labels)
    out = {f"R@{k}": v for k, v in recalls.items()}
    out["MAP@R"] = mapr
    return out


def recall_at_k(
    emb: ArrayLike,
    labels: ArrayLike,
    ks: Union[int, Iterable[int]],
    metric: str,
    c: float | None = None,
    *,
    chunk_size: int | None = None,
) -> dict[int, float]:
    """Recall@k: fraction of (non-lone) queries with a same-label item among their ``k`` nearest.

    Same arguments as :func:`retrieval_metrics` (``ks`` must not be empty). Only ``max(ks)``
    neighbours per query are kept. Returns ``{k: recall}`` for ``k`` in ``sorted(set(ks))``.
    """
    emb, labels, c, chunk_size = _check_inputs(emb, labels, metric, c, chunk_size)
    ks = _check_ks(ks, emb.shape[0])
    if not ks:
        raise ValueError(f"ks must hold at least one integer in [1, N - 1] = [1, {emb.shape[0] - 1}]")
    recalls, _ = _retrieve(emb, labels, ks, False, metric, c, chunk_size)
    return recalls


def map_at_r(
    emb: ArrayLike,
    labels: ArrayLike,
    metric: str,
    c: float | None = None,
    *,
    chunk_size: int | None = None,
) -> float:
    """MAP@R (Musgrave et al. 2020), queries with ``R = 0`` skipped.

    Same arguments as :func:`retrieval_metrics`. Only ``max R`` neighbours per query are kept.
    """
    emb, labels, c, chunk_size = _check_inputs(emb, labels, metric, c, chunk_size)
    _, mapr = _retrieve(emb, labels, [], True, metric, c, chunk_size)
    return mapr


# ------------------------------------------------------------------------------------------------
# Eq. 7, sample by sample: the margin each sample of a batch reaches
# ------------------------------------------------------------------------------------------------
def _numpy(x: Any) -> Optional[np.ndarray]:
    if x is None:
        return None
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def similarity_arrays(sim_event: Any) -> dict:
    """``{"h_pos", "h_neg", "e_pos", "e_neg"}`` of a batch's similarities as numpy arrays (None where a
    space was not computed): from a :class:`chestlab.engine.SimilarityEvent` or a mapping with those keys."""
    get = (lambda k: sim_event.get(k)) if isinstance(sim_event, Mapping) else (lambda k: getattr(sim_event, k, None))
    return {k: _numpy(get(k)) for k in ("h_pos", "h_neg", "e_pos", "e_neg")}


def per_sample_margins(sim_event: Any, space: str = "h", lam: float = 20.0) -> Optional[dict]:
    r"""Each sample's margin in Eq. 7, from a batch's similarities to its own class and the others.

    For a sample :math:`x_i` of class :math:`y_i`, Eq. 7 is a cross-entropy that can be rewritten as

    .. math:: L(x_i) = \log\Big(1 + \sum_{y \ne y_i} e^{\lambda (S_y - S_{y_i} + \delta)}\Big)
              = \operatorname{softplus}\big(\lambda(\delta - m_i)\big), \qquad
              m_i = S_{y_i} - \frac1\lambda \log \sum_{y \ne y_i} e^{\lambda S_y},

    so the loss depends on the sample only through its margin :math:`m_i`: :math:`m_i \ge \delta`
    exactly when :math:`L(x_i) \le \log 2`, and the loss vanishes once :math:`m_i` exceeds
    :math:`\delta` by a few :math:`1/\lambda`. The log-sum-exp is a soft maximum:
    :math:`m_i \le S_{y_i} - \max_{y\ne y_i} S_y \le m_i + \log(C - 1)/\lambda`.

    ``sim_event``: a :class:`chestlab.engine.SimilarityEvent` or a mapping with ``{space}_pos`` (B,)
    and ``{space}_neg``, either (B, C - 1) or flat (B (C - 1),) in row-major order (how
    ``Trainer.similarities`` stores it: each sample's C - 1 negatives in turn). ``space``: ``"h"`` or
    ``"e"``; ``lam``: that space's :math:`\lambda`.

    Returns ``{"soft": m (B,), "hard": S_own - max S_other (B,), "pos": S_own (B,)}`` (float64), or
    None when the space was not computed (its weight is 0). :func:`chestlab.viz.similarity.margin_histogram`
    draws them.
    """
    if space not in ("h", "e"):
        raise ValueError(f"space = {space!r}: choose 'h' or 'e'")
    lam = float(lam)
    if not (np.isfinite(lam) and lam > 0):
        raise ValueError(f"lam = {lam!r}: lambda must be a finite number > 0")
    parts = similarity_arrays(sim_event)
    pos, neg = parts[f"{space}_pos"], parts[f"{space}_neg"]
    if pos is None or neg is None or len(pos) == 0:
        return None
    pos = np.asarray(pos, dtype=np.float64).reshape(-1)
    neg = np.asarray(neg, dtype=np.float64)
    B = len(pos)
    if neg.size == 0 or neg.size % B:
        raise ValueError(f"{space}_neg has {neg.size} values: expected B (C - 1) for B = {B} samples (C >= 2 classes)")
    neg = neg.reshape(B, -1)
    top = neg.max(axis=1)
    lse = top + np.log(np.exp(lam * (neg - top[:, None])).sum(axis=1)) / lam  # (1/lam) logsumexp(lam S), stable
    return {"soft": pos - lse, "hard": pos - top, "pos": pos}
