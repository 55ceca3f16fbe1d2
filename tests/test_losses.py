"""chestlab.losses against naive oracles (explicit Python loops, geoopt float64 distances, math.exp/log,
a numerically minimised hyperbolic LCA), limits and semantics, input validation, and CHESTLoss."""

from __future__ import annotations

import math

import geoopt.manifolds.stereographic.math as gm
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from torch import nn

from chestlab import losses as L
from chestlab.models import HyperbolicHead

import _helpers
from _helpers import F64, gen


def ball_points(n: int, d: int, c: float, seed: int, max_rel: float = 0.9) -> torch.Tensor:
    return _helpers.ball_points(n, d, c, seed, max_rel)


# ------------------------------------------------------------------------------------------------
# naive oracles: one sample / class / proxy / triplet at a time, geoopt for D_H, math for the rest
# ------------------------------------------------------------------------------------------------
def d_hyp(x: torch.Tensor, y: torch.Tensor, c: float) -> float:
    return float(gm.dist(x, y, k=torch.tensor(-c, dtype=F64)))


def d_euc(x: torch.Tensor, y: torch.Tensor) -> float:
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(x.tolist(), y.tolist())))


def cos_naive(x: torch.Tensor, y: torch.Tensor) -> float:
    xs, ys = x.tolist(), y.tolist()
    return sum(a * b for a, b in zip(xs, ys)) / math.sqrt(sum(a * a for a in xs) * sum(b * b for b in ys))


def logsumexp_naive(v: list[float]) -> float:
    m = max(v)
    return m + math.log(sum(math.exp(a - m) for a in v))


def softmax_naive(v: list[float]) -> list[float]:
    lse = logsumexp_naive(v)
    return [math.exp(a - lse) for a in v]


def soft_sim_naive(ds: list[float], gamma: float) -> float:
    w = softmax_naive([-d / gamma for d in ds])
    return -sum(wk * dk for wk, dk in zip(w, ds))


def proxy_loss_naive(S_row: list[float], y: int, lam: float, delta: float) -> float:
    logits = [lam * (s - (delta if cls == y else 0.0)) for cls, s in enumerate(S_row)]
    return -(logits[y] - logsumexp_naive(logits))


def lca_depth_naive(a: torch.Tensor, b: torch.Tensor, c: float) -> float:
    """min over the whole geodesic through a and b (geoopt's, t in R) of the distance to the origin."""
    k = torch.tensor(-c, dtype=F64)

    def f(t: float) -> float:
        return float(gm.dist0(gm.geodesic(torch.tensor(t, dtype=F64), a, b, k=k), k=k))

    return minimize_scalar(f, bracket=(0.0, 1.0), tol=1e-10).fun


def hyphc_naive(flat: torch.Tensor, triplets: torch.Tensor, c: float, gamma_hyp: float, variant: str) -> list[float]:
    out = []
    for i, j, k in triplets.tolist():
        pairs = [(flat[i], flat[j]), (flat[i], flat[k]), (flat[j], flat[k])]
        S = [math.exp(-d_hyp(p, q, c)) for p, q in pairs]
        d = [lca_depth_naive(p, q, c) if variant == "lca" else d_hyp(p, q, c) for p, q in pairs]
        w = softmax_naive([x / gamma_hyp for x in d])
        out.append(sum(S) - sum(s * wk for s, wk in zip(S, w)))
    return out


def chest_naive(x_e, x_h, labels, pe, ph, triplets, c, *, gamma_e, gamma_h, lambda_e, lambda_h, delta_e, delta_h,
                eta_e, eta_h, tau, gamma_hyp, hyphc) -> dict:
    C, K = pe.shape[:2]
    l_h, l_e = [], []
    for i, y in enumerate(labels.tolist()):
        S_h = [soft_sim_naive([d_hyp(x_h[i], ph[cls, k], c) for k in range(K)], gamma_h) for cls in range(C)]
        S_e = [soft_sim_naive([d_euc(x_e[i], pe[cls, k]) for k in range(K)], gamma_e) for cls in range(C)]
        l_h.append(proxy_loss_naive(S_h, y, lambda_h, delta_h))
        l_e.append(proxy_loss_naive(S_e, y, lambda_e, delta_e))
    hyp = hyphc_naive(ph.reshape(C * K, -1), triplets, c, gamma_hyp, hyphc)
    lh, le, lt = sum(l_h) / len(l_h), sum(l_e) / len(l_e), sum(hyp) / len(hyp)
    return dict(loss=eta_h * lh + eta_e * le + tau * lt, l_h=lh, l_e=le, l_hyphc=lt)


def pair_ce_naive(sim, labels: list[int], t: float) -> float:
    """mean over positive pairs (i, j) of -log(e^{s_ij/t} / sum_{k != i} e^{s_ik/t}); sim(i, k) -> float."""
    n, terms = len(labels), []
    for i in range(n):
        others = [k for k in range(n) if k != i]
        lse = logsumexp_naive([sim(i, k) / t for k in others])
        for j in others:
            if labels[j] == labels[i]:
                terms.append(-(sim(i, j) / t - lse))
    return sum(terms) / len(terms)


# ------------------------------------------------------------------------------------------------
# oracles
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [0.1, 1.0, 5.0])
def test_soft_similarity_oracle(gamma):
    d = torch.rand(3, 4, 5, generator=gen(0), dtype=F64) * 8
    S = L.soft_similarity(d, gamma)
    assert S.shape == (3, 4)
    for idx in [(a, b) for a in range(3) for b in range(4)]:
        assert S[idx].item() == pytest.approx(soft_sim_naive(d[idx].tolist(), gamma), rel=1e-13, abs=1e-14)


@pytest.mark.parametrize("lam,delta", [(20.0, 1.0), (20.0, 10.0), (1.0, 0.0), (5.0, -3.0)])
def test_proxy_loss_oracle(lam, delta):
    S = -torch.rand(6, 4, generator=gen(1), dtype=F64) * 5
    labels = torch.tensor([0, 3, 2, 2, 1, 0])
    out = L.proxy_loss(S, labels, lam, delta)
    assert out.shape == (6,)
    for i in range(6):
        assert out[i].item() == pytest.approx(proxy_loss_naive(S[i].tolist(), int(labels[i]), lam, delta), rel=1e-12)


@pytest.mark.parametrize("variant", ["lca", "pairwise"])
@pytest.mark.parametrize("c", [0.5, 2.0])
def test_hyphc_loss_oracle(variant, c):
    ph = ball_points(8, 3, c, 2).view(4, 2, 3)
    trip = L.sample_triplets(4, 2, 3, gen(3))
    for gamma_hyp in (1.0, 0.3):
        out = L.hyphc_loss(ph, trip, c, gamma_hyp, variant=variant)
        naive = hyphc_naive(ph.reshape(8, 3), trip, c, gamma_hyp, variant)
        assert out.tolist() == pytest.approx(naive, rel=1e-9, abs=1e-12)
    # (P, D) flat proxies are accepted as well
    assert torch.equal(L.hyphc_loss(ph.reshape(8, 3), trip, c, variant=variant), L.hyphc_loss(ph, trip, c, variant=variant))


def test_hyphc_variants_differ():
    # the two readings of Eq. 9 really are different losses on the same triplets
    ph = ball_points(8, 3, 0.5, 4).view(4, 2, 3)
    trip = L.sample_triplets(4, 2, 6, gen(5))
    lca, pw = L.hyphc_loss(ph, trip, 0.5, variant="lca"), L.hyphc_loss(ph, trip, 0.5, variant="pairwise")
    assert float((lca - pw).abs().max()) > 1e-2


CHEST_KW = dict(gamma_e=5.0, gamma_h=2.0, lambda_e=20.0, lambda_h=10.0, delta_e=1.0, delta_h=5.0,
                eta_e=1.3, eta_h=0.7, tau=0.5, gamma_hyp=1.0)


def chest_inputs(c: float, B=5, C=3, K=2, DE=4, DH=3, M=3, seed=10):
    x_e = torch.randn(B, DE, generator=gen(seed), dtype=F64)
    x_h = ball_points(B, DH, c, seed + 1)
    labels = torch.randint(C, (B,), generator=gen(seed + 2))
    pe = torch.randn(C, K, DE, generator=gen(seed + 3), dtype=F64)
    ph = ball_points(C * K, DH, c, seed + 4).view(C, K, DH)
    trip = L.sample_triplets(C, K, M, gen(seed + 5))
    return x_e, x_h, labels, pe, ph, trip


@pytest.mark.parametrize("hyphc", ["lca", "pairwise"])
@pytest.mark.parametrize("c", [0.5, 2.0])
def test_chest_loss_oracle(hyphc, c):
    x_e, x_h, labels, pe, ph, trip = chest_inputs(c)
    out = L.chest_loss(x_e, x_h, labels, pe, ph, trip, c=c, hyphc=hyphc, **CHEST_KW)
    naive = chest_naive(x_e, x_h, labels, pe, ph, trip, c, hyphc=hyphc, **CHEST_KW)
    for name in ("loss", "l_h", "l_e", "l_hyphc"):
        assert getattr(out, name).item() == pytest.approx(naive[name], rel=1e-9), name
    assert out.s_h.shape == out.s_e.shape == (5, 3)
    # S_E(x_0, p_1) itself, from scratch
    assert out.s_e[0, 1].item() == pytest.approx(soft_sim_naive([d_euc(x_e[0], pe[1, k]) for k in range(2)], 5.0), rel=1e-12)


def test_pair_ce_and_mix_oracle():
    c = 0.5
    z_e = torch.randn(6, 4, generator=gen(20), dtype=F64)
    z_h = ball_points(6, 3, c, 21)
    labels = [0, 1, 0, 2, 1, 0]
    lab = torch.tensor(labels)
    cos = lambda i, k: cos_naive(z_e[i], z_e[k])  # noqa: E731
    hyp = lambda i, k: -d_hyp(z_h[i], z_h[k], c)  # noqa: E731
    assert L.pair_ce_loss(z_e, lab, 0.1).item() == pytest.approx(pair_ce_naive(cos, labels, 0.1), rel=1e-12)
    assert L.pair_ce_loss(z_h, lab, 0.3, c).item() == pytest.approx(pair_ce_naive(hyp, labels, 0.3), rel=1e-11)
    t_e, t_h, lam = 0.1, 0.5, 0.2
    mix = lambda i, k: cos(i, k) / t_e + lam * hyp(i, k) / t_h  # noqa: E731
    assert L.mix_loss(z_e, z_h, lab, t_e, t_h, lam, c).item() == pytest.approx(pair_ce_naive(mix, labels, 1.0), rel=1e-11)
    # lam = 0: Mix is the spherical loss
    assert L.mix_loss(z_e, z_h, lab, t_e, t_h, 0.0, c).item() == pytest.approx(L.pair_ce_loss(z_e, lab, t_e).item(), rel=1e-14)


def test_hard_negative_weights_oracle():
    c, t = 1.0, 0.4
    a, o = ball_points(1, 3, c, 22)[0], ball_points(5, 3, c, 23)
    assert L.hard_negative_weights(a, o, t, c).tolist() == pytest.approx(
        softmax_naive([-d_hyp(a, o[k], c) / t for k in range(5)]), rel=1e-12)
    assert L.hard_negative_weights(a, o, t).tolist() == pytest.approx(
        softmax_naive([cos_naive(a, o[k]) / t for k in range(5)]), rel=1e-12)


# ------------------------------------------------------------------------------------------------
# limits and semantics
# ------------------------------------------------------------------------------------------------
def test_soft_similarity_limits():
    d = torch.tensor([[3.0, 1.0, 2.5, 7.0], [0.5, 0.45, 9.0, 2.0]], dtype=F64)
    torch.testing.assert_close(L.soft_similarity(d, 1e-4), -d.min(-1).values, rtol=1e-12, atol=0)
    torch.testing.assert_close(L.soft_similarity(d, 1e9), -d.mean(-1), rtol=1e-8, atol=0)
    one = torch.rand(5, 1, generator=gen(30), dtype=F64)
    for gamma in (1e-3, 1.0, 1e6):
        torch.testing.assert_close(L.soft_similarity(one, gamma), -one[:, 0], rtol=0, atol=0)


def test_proxy_loss_delta_zero_is_cross_entropy():
    S = -torch.rand(7, 5, generator=gen(31), dtype=F64) * 3
    labels = torch.randint(5, (7,), generator=gen(32))
    manual = -torch.log(torch.exp(20 * S).gather(1, labels[:, None])[:, 0] / torch.exp(20 * S).sum(1))
    torch.testing.assert_close(L.proxy_loss(S, labels, 20.0, 0.0), manual, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(L.proxy_loss(S, labels, 20.0, 0.0), F.cross_entropy(20 * S, labels, reduction="none"))


def test_chest_loss_components_and_switches():
    c = 0.5
    x_e, x_h, labels, pe, ph, trip = chest_inputs(c, seed=40)
    kw = dict(CHEST_KW, c=c)
    full = L.chest_loss(x_e, x_h, labels, pe, ph, trip, **kw)
    # Eq. 10: the total is the weighted sum of the three parts
    torch.testing.assert_close(full.loss, 0.7 * full.l_h + 1.3 * full.l_e + 0.5 * full.l_hyphc, rtol=1e-14, atol=0)
    assert full.l_h > 0 and full.l_e > 0 and full.l_hyphc > 0
    # eta_e = 0: the Euclidean part is skipped entirely (even NaN Euclidean inputs do not matter)
    h_only = L.chest_loss(torch.full_like(x_e, math.nan), x_h, labels, torch.full_like(pe, math.nan), ph, trip,
                          **dict(kw, eta_e=0.0))
    assert h_only.s_e is None and h_only.l_e.item() == 0.0
    torch.testing.assert_close(h_only.loss, 0.7 * full.l_h + 0.5 * full.l_hyphc, rtol=1e-14, atol=0)
    torch.testing.assert_close(h_only.s_h, full.s_h, rtol=0, atol=0)
    # eta_h = 0: s_h is None
    e_only = L.chest_loss(x_e, x_h, labels, pe, ph, trip, **dict(kw, eta_h=0.0))
    assert e_only.s_h is None
    torch.testing.assert_close(e_only.loss, 1.3 * full.l_e + 0.5 * full.l_hyphc, rtol=1e-14, atol=0)
    # tau = 0: triplets may be None, and the HypHC term is 0
    no_hyp = L.chest_loss(x_e, x_h, labels, pe, ph, None, **dict(kw, tau=0.0))
    assert no_hyp.l_hyphc.item() == 0.0
    torch.testing.assert_close(no_hyp.loss, 0.7 * full.l_h + 1.3 * full.l_e, rtol=1e-14, atol=0)


# ------------------------------------------------------------------------------------------------
# hard negatives (paper 002)
# ------------------------------------------------------------------------------------------------
def _fan(r: float):
    """Anchor r*e1 and six points at norm r at angles 90 (the positive), 20 (the hardest negative),
    45, 70, 120, 180 degrees: same norm, so cosine and -D_H order them the same way."""
    ang = torch.tensor([90.0, 20.0, 45.0, 70.0, 120.0, 180.0], dtype=F64) * math.pi / 180
    return torch.tensor([r, 0.0], dtype=F64), r * torch.stack([torch.cos(ang), torch.sin(ang)], -1)


@pytest.mark.parametrize("c", [None, 0.0, 0.5, 2.0])
def test_hard_negative_weights_sum_to_one_and_sharpen(c):
    cc = c or 1.0
    a, o = ball_points(1, 4, cc, 50)[0], ball_points(9, 4, cc, 51)
    w = L.hard_negative_weights(a, o, 0.5, c)
    assert w.shape == (9,) and bool((w > 0).all())
    assert w.sum().item() == pytest.approx(1.0, abs=1e-14)
    wb = L.hard_negative_weights(ball_points(3, 4, cc, 52), ball_points(27, 4, cc, 53).view(3, 9, 4), 0.5, c)
    torch.testing.assert_close(wb.sum(-1), torch.ones(3, dtype=F64), rtol=0, atol=1e-14)
    # t -> 0: all the weight goes to the most similar candidate (the hardest negative of _fan)
    a, o = _fan(0.3)
    top = [L.hard_negative_weights(a, o, t, c)[1].item() for t in (1.0, 0.3, 0.1, 0.03, 1e-3)]
    assert all(x < y for x, y in zip(top, top[1:])), top
    assert top[-1] > 1 - 1e-9


def test_hyperbolic_weights_concentrate_more_than_sphere():
    """The hard-negative paper's claim, on an example where it holds: anchor and candidates at norm
    0.45 (0.9 of the c = 4 ball's radius). At a fixed t = 0.5 the hardest negative gets 46 % of the
    weight on the sphere, and 52 %, 55 %, 60 %, 67 % in balls of curvature 0.5, 1, 2, 4."""
    a, o = _fan(0.45)
    top = {c: L.hard_negative_weights(a, o, 0.5, c)[1].item() for c in (None, 0.5, 1.0, 2.0, 4.0)}
    expected = {None: 0.46293, 0.5: 0.52419, 1.0: 0.54696, 2.0: 0.59582, 4.0: 0.67010}
    assert top == pytest.approx(expected, abs=1e-4)
    # ...and the hardest negative is the argmax in every geometry
    for c in top:
        assert int(L.hard_negative_weights(a, o, 0.5, c).argmax()) == 1
    # it is not unconditional: near the origin D_H ~ 2|x - y| is tiny and the weights are almost
    # uniform (20 %), far flatter than the sphere's 46 %, whatever c
    a0, o0 = _fan(0.05)
    for c in (0.5, 4.0):
        assert L.hard_negative_weights(a0, o0, 0.5, c)[1].item() == pytest.approx(0.198, abs=1e-3)


# ------------------------------------------------------------------------------------------------
# hypothesis
# ------------------------------------------------------------------------------------------------
dists = st.lists(st.floats(0.0, 50.0, allow_nan=False), min_size=1, max_size=8)
gammas = st.floats(1e-2, 1e2)


@settings(max_examples=60, deadline=None)
@given(dists, gammas, gammas)
def test_soft_similarity_is_a_soft_min(ds, g1, g2):
    d = torch.tensor(ds, dtype=F64)
    s1, s2 = L.soft_similarity(d, g1).item(), L.soft_similarity(d, g2).item()
    assert -max(ds) - 1e-12 <= s1 <= -min(ds) + 1e-12
    # dS/dgamma = -Var_p(d)/gamma^2 <= 0: a larger gamma averages over more (farther) proxies
    lo, hi = (s1, s2) if g1 <= g2 else (s2, s1)
    assert hi <= lo + 1e-12


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-10.0, 0.0), min_size=2, max_size=6), st.data(), st.floats(0.0, 20.0), st.floats(0.0, 20.0))
def test_proxy_loss_positive_and_monotone_in_margin(S_row, data, d1, d2):
    y = data.draw(st.integers(0, len(S_row) - 1))
    S, lab = torch.tensor([S_row], dtype=F64), torch.tensor([y])
    l1, l2 = L.proxy_loss(S, lab, 3.0, d1).item(), L.proxy_loss(S, lab, 3.0, d2).item()
    assert l1 >= 0 and l2 >= 0
    assert (l1 <= l2 + 1e-12) if d1 <= d2 else (l2 <= l1 + 1e-12)


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------
def test_errors_name_the_parameter():
    c = 0.5
    x_e, x_h, labels, pe, ph, trip = chest_inputs(c, seed=60)
    kw = dict(CHEST_KW, c=c)
    S = -torch.rand(4, 3, dtype=F64)
    lab = torch.tensor([0, 1, 2, 0])
    # K < 2 with tau > 0
    with pytest.raises(ValueError, match="K >= 2"):
        L.chest_loss(x_e, x_h, labels, pe[:, :1], ph[:, :1], trip.clamp(max=2), **kw)
    # M < 1
    with pytest.raises(ValueError, match="M >= 1"):
        L.chest_loss(x_e, x_h, labels, pe, ph, trip[:0], **kw)
    with pytest.raises(ValueError, match="M >= 1"):
        L.chest_loss(x_e, x_h, labels, pe, ph, None, **kw)
    with pytest.raises(ValueError, match="M"):
        L.sample_triplets(3, 2, 0)
    # C < 2, K < 2 for the sampler
    with pytest.raises(ValueError, match="C >= 2"):
        L.sample_triplets(1, 2, 5)
    with pytest.raises(ValueError, match="K >= 2"):
        L.sample_triplets(3, 1, 5)
    # labels out of range, mismatched shapes
    with pytest.raises(ValueError, match="labels"):
        L.chest_loss(x_e, x_h, labels + 3, pe, ph, trip, **kw)
    with pytest.raises(ValueError, match="x_h"):
        L.chest_loss(x_e, x_h[:3], labels, pe, ph, trip, **kw)
    with pytest.raises(ValueError, match="proxies"):
        L.chest_loss(x_e, x_h, labels, pe, ph[:2], trip, **kw)
    with pytest.raises(ValueError, match="proxies"):
        L.chest_loss(x_e, x_h, labels, pe.reshape(6, 4), ph, trip, **kw)
    with pytest.raises(ValueError, match="x_e"):
        L.chest_loss(x_e[:, :3], x_h, labels, pe, ph, trip, **kw)
    with pytest.raises(ValueError, match="triplets"):
        L.chest_loss(x_e, x_h, labels, pe, ph, trip[:, :2], **kw)
    with pytest.raises(ValueError, match="triplets"):
        L.chest_loss(x_e, x_h, labels, pe, ph, trip + 6, **kw)
    with pytest.raises(ValueError, match="S"):
        L.proxy_loss(S[0], lab[:1], 20.0, 1.0)
    # negative gamma / lambda / t / c
    with pytest.raises(ValueError, match="gamma"):
        L.soft_similarity(S, -1.0)
    with pytest.raises(ValueError, match="gamma"):
        L.soft_similarity(S, 0.0)
    with pytest.raises(ValueError, match="gamma"):
        L.chest_loss(x_e, x_h, labels, pe, ph, trip, **dict(kw, gamma_e=-5.0))
    with pytest.raises(ValueError, match="gamma_hyp"):
        L.hyphc_loss(ph, trip, c, gamma_hyp=-1.0)
    with pytest.raises(ValueError, match="lambda"):
        L.proxy_loss(S, lab, -20.0, 1.0)
    with pytest.raises(ValueError, match="lambda"):
        L.chest_loss(x_e, x_h, labels, pe, ph, trip, **dict(kw, lambda_h=-1.0))
    with pytest.raises(ValueError, match="t ="):
        L.pair_ce_loss(x_h, labels, -0.1)
    with pytest.raises(ValueError, match="t ="):
        L.hard_negative_weights(x_h[0], x_h[1:], 0.0)
    with pytest.raises(ValueError, match="t_e"):
        L.mix_loss(x_e, x_h, labels, -0.1, 0.1, 1.0, c)
    with pytest.raises(ValueError, match="t_h"):
        L.mix_loss(x_e, x_h, labels, 0.1, -0.1, 1.0, c)
    with pytest.raises(ValueError, match="lam"):
        L.mix_loss(x_e, x_h, labels, 0.1, 0.1, -1.0, c)
    with pytest.raises(ValueError, match="eta_e"):
        L.chest_loss(x_e, x_h, labels, pe, ph, trip, **dict(kw, eta_e=-1.0))
    with pytest.raises(ValueError, match="tau"):
        L.chest_loss(x_e, x_h, labels, pe, ph, trip, **dict(kw, tau=-1.0))
    for f in (lambda: L.chest_loss(x_e, x_h, labels, pe, ph, trip, **dict(kw, c=-0.5)),
              lambda: L.hyphc_loss(ph, trip, -0.5),
              lambda: L.pair_ce_loss(x_h, labels, 0.1, -0.5),
              lambda: L.hard_negative_weights(x_h[0], x_h[1:], 0.1, -0.5)):
        with pytest.raises(ValueError, match="c = -0.5"):
            f()
    # an empty batch: one clear error, not a NaN loss
    with pytest.raises(ValueError, match="B = 0"):
        L.chest_loss(x_e[:0], x_h[:0], labels[:0], pe, ph, trip, **kw)
    with pytest.raises(ValueError, match="B = 0"):
        L.proxy_loss(S[:0], lab[:0], 20.0, 1.0)
    # strings where numbers are expected, floats where class indices are expected
    with pytest.raises(TypeError, match="gamma_h must be a real number"):
        L.chest_loss(x_e, x_h, labels, pe, ph, trip, **dict(kw, gamma_h="5"))
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        L.proxy_loss(S, lab.float(), 20.0, 1.0)
    # unknown HypHC variant
    with pytest.raises(ValueError, match="variant"):
        L.hyphc_loss(ph, trip, c, variant="centroid")
    # pairwise cross-entropy without any positive pair
    with pytest.raises(ValueError, match="positive pair"):
        L.pair_ce_loss(x_h[:3], torch.tensor([0, 1, 2]), 0.1, c)


# Validation of every argument, with errors naming chest_loss's own parameters.
@pytest.mark.parametrize("case", ["label_high", "label_negative", "batch_mismatch", "one_class"])
def test_proxy_loss_validates_labels(case):
    S, lab = -torch.rand(4, 3, dtype=F64), torch.tensor([0, 1, 2, 0])
    args = {"label_high": (S, lab + 1), "label_negative": (S, lab - 1), "batch_mismatch": (S, lab[:3]),
            "one_class": (S[:, :1], lab * 0)}[case]
    with pytest.raises(ValueError, match="labels|C"):
        L.proxy_loss(*args, 20.0, 1.0)


@pytest.mark.parametrize("case", ["one_class", "hyphc_tau0", "hyphc_name", "c_unused", "gamma_e_name"])
def test_chest_loss_validates_all_arguments(case):
    c = 0.5
    x_e, x_h, labels, pe, ph, trip = chest_inputs(c, seed=61)
    kw = dict(CHEST_KW, c=c)
    call, match = {
        "one_class": (lambda: L.chest_loss(x_e, x_h, labels * 0, pe[:1], ph[:1], None, **dict(kw, tau=0.0)), "C"),
        "hyphc_tau0": (lambda: L.chest_loss(x_e, x_h, labels, pe, ph, None, **dict(kw, tau=0.0), hyphc="centroid"), "hyphc"),
        "hyphc_name": (lambda: L.chest_loss(x_e, x_h, labels, pe, ph, trip, **kw, hyphc="centroid"), "hyphc"),
        "c_unused": (lambda: L.chest_loss(x_e, x_h, labels, pe, ph, None, **dict(kw, c=-0.5, eta_h=0.0, tau=0.0)), "c = -0.5"),
        "gamma_e_name": (lambda: L.chest_loss(x_e, x_h, labels, pe, ph, trip, **dict(kw, gamma_e=-5.0)), "gamma_e"),
    }[case]
    with pytest.raises(ValueError, match=match):
        call()


def test_pair_ce_loss_validates_labels():
    with pytest.raises(ValueError, match="labels"):
        L.pair_ce_loss(torch.rand(4, 3, dtype=F64) * 0.3, torch.tensor([0, 0, 1]), 0.1)


# ------------------------------------------------------------------------------------------------
# CHESTLoss
# ------------------------------------------------------------------------------------------------
C_, K_, DE_, DH_ = 4, 3, 6, 5


def make_loss(seed: int = 0, **kw) -> L.CHESTLoss:
    torch.manual_seed(seed)
    head = HyperbolicHead(DE_, DH_, c=0.5)
    return L.CHESTLoss(C_, K_, DE_, head, seed=seed, **{"M": 8, "delta_h": 1.0, "delta_e": 1.0, **kw})


def batch(seed: int = 1, B: int = 8):
    x_e = torch.randn(B, DE_, generator=gen(seed))
    return x_e, torch.randint(C_, (B,), generator=gen(seed + 1))


def test_chestloss_proxies_and_shared_head():
    loss = make_loss()
    head = loss.head
    assert loss.proxies.shape == (C_, K_, DE_) and isinstance(loss.proxies, nn.Parameter)
    assert any(p is loss.proxies for p in loss.parameters())
    ph = loss.proxies_h()
    assert ph.shape == (C_, K_, DH_)
    torch.testing.assert_close(ph, head(loss.proxies.reshape(-1, DE_)).view(C_, K_, DH_), rtol=0, atol=0)
    x_e, labels = batch()
    out = loss(x_e, head(x_e), labels)
    # the head's curvature is the loss's: change it and both the proxies and the loss change
    head.c = 1.5
    assert loss.c == 1.5
    assert float((loss.proxies_h() - ph).detach().abs().max()) > 1e-3
    out2 = loss(x_e, head(x_e), labels)
    assert abs(out2.loss.item() - out.loss.item()) > 1e-4
    # the proxies go through the same head: the head gets a gradient through them alone
    head.zero_grad()
    out3 = loss(x_e, head(x_e).detach(), labels)
    out3.loss.backward()
    assert head.linear.weight.grad is not None and float(head.linear.weight.grad.abs().sum()) > 0
    assert float(loss.proxies.grad.abs().sum()) > 0


def test_sample_triplets_valid():
    for C, K in [(2, 2), (5, 3), (3, 7)]:
        seen_pos, seen_neg = set(), set()
        for seed in range(40):
            trip = L.sample_triplets(C, K, 32, gen(seed))
            assert trip.shape == (32, 3) and trip.dtype == torch.long
            assert bool(((trip >= 0) & (trip < C * K)).all())
            a, p, n = trip.unbind(1)
            assert bool((a // K == p // K).all()), "anchor and positive share the class"
            assert bool((a % K != p % K).all()), "anchor and positive are different proxies"
            assert bool((n // K != a // K).all()), "the negative is of another class"
            seen_pos.update(zip((a % K).tolist(), (p % K).tolist()))
            seen_neg.update(zip((a // K).tolist(), (n // K).tolist()))
        # every ordered proxy pair and class pair is reachable
        assert len(seen_pos) == K * (K - 1) and len(seen_neg) == C * (C - 1)
    assert torch.equal(L.sample_triplets(5, 3, 10, gen(7)), L.sample_triplets(5, 3, 10, gen(7)))


def test_chestloss_generator_state_round_trips():
    a = make_loss(seed=0, delta_h=7.0)
    x_e, labels = batch()
    for _ in range(3):
        a(x_e, a.head(x_e), labels)
    sd = a.state_dict()
    expect_out = a(x_e, a.head(x_e), labels)
    expect_next = L.sample_triplets(C_, K_, a.M, a.generator)

    b = make_loss(seed=5, delta_h=1.0)
    fresh = b(x_e, b.head(x_e), labels)
    assert abs(fresh.l_hyphc.item() - expect_out.l_hyphc.item()) > 1e-6  # otherwise the check is void
    b.load_state_dict(sd)
    assert b.delta_h == 7.0
    out = b(x_e, b.head(x_e), labels)
    assert out.loss.item() == expect_out.loss.item()
    assert out.l_hyphc.item() == expect_out.l_hyphc.item()
    assert torch.equal(L.sample_triplets(C_, K_, b.M, b.generator), expect_next)


def test_chestloss_set_validates_and_applies_next_forward():
    loss = make_loss()
    x_e, labels = batch()
    x_h = loss.head(x_e).detach()
    for kw, match in [({"gamma_e": -1.0}, "gamma_e"), ({"lambda_h": 0.0}, "lambda_h"), ({"M": 0}, "M"),
                      ({"hyphc": "centroid"}, "hyphc"), ({"tau": -0.5}, "tau"), ({"foo": 1.0}, "foo")]:
        with pytest.raises(ValueError, match=match):
            loss.set(**kw)
    with pytest.raises(ValueError, match="num_classes"):
        L.CHESTLoss(1, 2, DE_, loss.head)
    with pytest.raises(ValueError, match="K"):
        L.CHESTLoss(3, 0, DE_, loss.head)
    with pytest.raises(ValueError, match="K >= 2"):
        L.CHESTLoss(3, 1, DE_, loss.head, tau=0.5)
    with pytest.raises(ValueError, match="M"):
        L.CHESTLoss(3, 2, DE_, loss.head, M=0)

    base = loss(x_e, x_h, labels)
    loss.set(delta_h=10.0)
    assert loss(x_e, x_h, labels).l_h.item() > base.l_h.item() + 1.0  # a larger margin costs more
    # M and the sampler: the next forward draws M = 5 triplets from the module's generator
    loss.set(M=5, hyphc="pairwise")
    g = torch.Generator().manual_seed(0)
    g.set_state(loss.generator.get_state())
    with torch.no_grad():
        expect = L.hyphc_loss(loss.proxies_h(), L.sample_triplets(C_, K_, 5, g), loss.c, variant="pairwise").mean()
        got = loss(x_e, x_h, labels).l_hyphc
    torch.testing.assert_close(got, expect)
    loss.set(tau=0.0, eta_e=0.0)
    out = loss(x_e, x_h, labels)
    assert out.l_hyphc.item() == 0.0 and out.s_e is None
    torch.testing.assert_close(out.loss, out.l_h)


def test_chestloss_rejected_set_changes_nothing():
    loss = make_loss()
    before = loss.hparams()
    with pytest.raises(ValueError):
        loss.set(gamma_e=2.0, lambda_h=-1.0)
    k1 = L.CHESTLoss(3, 1, DE_, loss.head, tau=0.0)
    with pytest.raises(ValueError):
        k1.set(tau=0.5)
    assert loss.hparams() == before and k1.tau == 0.0


def test_chestloss_under_bf16_autocast():
    loss = make_loss()
    backbone = nn.Linear(7, DE_)
    inp = torch.randn(8, 7, generator=gen(70))
    _, labels = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_e = backbone(inp)
        x_h = loss.head(x_e)
        assert x_e.dtype == torch.bfloat16
        out = loss(x_e, x_h, labels)
    assert out.loss.dtype == torch.float32 and bool(torch.isfinite(out.loss))
    assert out.s_h.dtype == torch.float32
    out.loss.backward()
    assert bool(torch.isfinite(loss.proxies.grad).all()) and bool(torch.isfinite(backbone.weight.grad).all())
    # close to the float32 loss (bf16 rounds only the backbone and the data's head)
    ref = loss(backbone(inp), loss.head(backbone(inp)), labels).loss
    assert out.loss.item() == pytest.approx(ref.item(), rel=0.05)


# ------------------------------------------------------------------------------------------------
# the training path (parts.py: fused proxy term, hand-written distance backward) == the functional core
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("B,C,K", [(5, 4, 3), (7, 3, 1), (6, 5, 2), (9, 40, 10)])
@pytest.mark.parametrize("gamma,lam,delta", [(5.0, 20.0, 1.0), (0.3, 2.0, -0.5), (1e-3, 64.0, 20.0)])
def test_proxy_term_equals_functional(B, C, K, gamma, lam, delta, dtype):
    from chestlab.losses.parts import proxy_term

    d = (torch.rand(B, C, K, dtype=dtype, generator=gen(B * C + K)) * 5).requires_grad_()
    labels = torch.randint(C, (B,), generator=gen(3))
    loss, S = proxy_term(d, labels, gamma, lam, delta)
    S_ref = L.soft_similarity(d, gamma)
    ref = L.proxy_loss(S_ref, labels, lam, delta).mean()
    (g,) = torch.autograd.grad(loss, d)
    (g_ref,) = torch.autograd.grad(ref, d)
    tol = 1e-12 if dtype == F64 else 1e-6
    assert abs(loss.item() - ref.item()) <= tol * max(1.0, abs(ref.item()))
    torch.testing.assert_close(S, S_ref.detach(), rtol=tol, atol=tol)
    assert not S.requires_grad
    torch.testing.assert_close(g / g_ref.abs().max(), g_ref / g_ref.abs().max(), rtol=0, atol=10 * tol)


def test_proxy_term_validates_like_functional():
    from chestlab.losses.parts import proxy_term

    d = torch.rand(4, 3, 2)
    labels = torch.tensor([0, 1, 2, 0])
    for kw, match in [(dict(gamma=0.0), "gamma"), (dict(lam=-1.0), "lambda"), (dict(delta=math.inf), "delta")]:
        args = {"gamma": 1.0, "lam": 2.0, "delta": 0.5, **kw}
        with pytest.raises(ValueError, match=match):
            proxy_term(d, labels, **args)
    with pytest.raises(ValueError, match="labels"):
        proxy_term(d, labels + 3, 1.0, 2.0, 0.5)
    with pytest.raises(ValueError, match="d"):
        proxy_term(torch.full_like(d, math.nan), labels, 1.0, 2.0, 0.5)


@pytest.mark.parametrize("hyphc", ["lca", "pairwise"])
def test_chestloss_equals_functional_chest_loss(hyphc):
    """CHESTLoss (training path) == functional.chest_loss on the same proxies and triplets: the
    loss, its parts, S, and the gradients of x_e, x_h, the proxies and the head."""
    loss = make_loss(seed=3, hyphc=hyphc, delta_h=2.0, delta_e=0.5)
    x_e, labels = batch(seed=4, B=10)
    x_e = x_e.requires_grad_()
    g = torch.Generator().manual_seed(0)
    g.set_state(loss.generator.get_state())
    trip = L.sample_triplets(C_, K_, loss.M, g)
    x_h = loss.head(x_e)
    out = loss(x_e, x_h, labels)
    params = [x_e, loss.proxies, loss.head.linear.weight]
    grads = torch.autograd.grad(out.loss, params)
    ref = L.chest_loss(x_e, loss.head(x_e), labels, loss.proxies, loss.proxies_h(), trip, c=loss.c, delta_e=0.5,
                       delta_h=2.0, hyphc=hyphc)
    grads_ref = torch.autograd.grad(ref.loss, params)
    for name in ("loss", "l_h", "l_e", "l_hyphc"):
        a, b = getattr(out, name).item(), getattr(ref, name).item()
        assert abs(a - b) <= 1e-6 * max(1.0, abs(b)), name
    torch.testing.assert_close(out.s_h, ref.s_h.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.s_e, ref.s_e.detach(), rtol=1e-6, atol=1e-6)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a / b.abs().max(), b / b.abs().max(), rtol=0, atol=1e-5)


def test_chestloss_checks_name_the_inputs():
    loss = make_loss()
    x_e, labels = batch()
    x_h = loss.head(x_e).detach()
    with pytest.raises(ValueError, match="x_h"):
        loss(x_e, x_h * 10, labels)
    with pytest.raises(ValueError, match="x_e"):
        loss(torch.full_like(x_e, math.nan), x_h, labels)
    from chestlab import poincare

    with poincare.checks(False):  # the trainer's inner loop: no value checks, same result
        a = loss(x_e, x_h, labels).loss
    loss2 = make_loss()
    b = loss2(x_e, x_h, labels).loss
    assert abs(a.item() - b.item()) < 1e-6


# ------------------------------------------------------------------------------------------------
# the fused distance -> soft similarity -> cross-entropy Function (parts.points_proxy_term)
# ------------------------------------------------------------------------------------------------
def _points(kind: str, n: int, c, seed: int, dtype) -> torch.Tensor:
    if c is None:
        return torch.randn(n, 5, generator=gen(seed), dtype=F64).to(dtype) * 2
    return _helpers.ball_points(n, 5, c, seed, 0.95, dtype)


def _two_step(x, y, labels, K, c, gamma, lam, delta):
    from chestlab import poincare as P
    from chestlab.losses.parts import proxy_term

    d = P.pairwise_euclidean(x, y) if c is None else P.pairwise_dist(x, y, c)
    return proxy_term(d.view(x.shape[0], -1, K), labels, gamma, lam, delta)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("c", [None, 0.5, 2.0, 1e-4])
@pytest.mark.parametrize("K", [1, 2, 3])
@pytest.mark.parametrize("close", [False, True])
def test_points_proxy_term_equals_the_two_step_route(dtype, c, K, close):
    """Values, S and the gradients of x and the proxies equal pairwise_dist / pairwise_euclidean
    followed by proxy_term; ``close``: some samples coincide with a proxy or lie very near one (the
    recomputed pairs, the zero-gradient case and the accurate asinh of small distances)."""
    from chestlab.losses.parts import points_proxy_term

    B, C = 9, 4
    x, y = _points("x", B, c, 1, dtype), _points("y", C * K, c, 2, dtype)
    if close:
        x[0], x[1] = y[0], y[K] * (1 + 1e-3)
        x[2] = y[1] + 1e-4
    labels = torch.arange(B) % C
    for gamma, lam, delta in [(5.0, 20.0, 1.0), (0.05, 3.0, -0.5)]:
        xs, ys = x.clone().requires_grad_(), y.clone().requires_grad_()
        loss, S = points_proxy_term(xs, ys, labels, K, c, gamma, lam, delta)
        gx, gy = torch.autograd.grad(loss, (xs, ys))
        xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
        ref, S_ref = _two_step(xr, yr, labels, K, c, gamma, lam, delta)
        gxr, gyr = torch.autograd.grad(ref, (xr, yr))
        tol = 1e-12 if dtype == F64 else 2e-6
        assert abs(loss.item() - ref.item()) <= tol * max(1.0, abs(ref.item()))
        torch.testing.assert_close(S, S_ref, rtol=tol, atol=tol * float(S_ref.abs().max()))
        assert not S.requires_grad and loss.requires_grad
        # the gradients: as close to the float64 answer as the two-step route's (both expand
        # |x - y|^2, which loses digits for the near pairs in float32, and a small gamma amplifies
        # the rounding of the distances by 1/gamma), or equal to it to rounding
        x64, y64 = x.double().requires_grad_(), y.double().requires_grad_()
        truth = torch.autograd.grad(_two_step(x64, y64, labels, K, c, gamma, lam, delta)[0], (x64, y64))
        for g, r, t in ((gx, gxr, truth[0]), (gy, gyr, truth[1])):
            scale = float(t.abs().max())
            err, err_ref = float((g.double() - t).abs().max()), float((r.double() - t).abs().max())
            floor = 1e-10 if dtype == F64 else (2e-5 if gamma < 1 else 2e-6)
            assert err <= max(4 * err_ref, floor * scale), (err, err_ref, scale)


@pytest.mark.parametrize("c", [None, 0.5])
@pytest.mark.parametrize("K", [1, 3])
def test_points_proxy_term_gradients_equal_autograd_on_the_readable_route(c, K):
    """float64: the hand-derived backward == autograd through the readable definitions, the
    elementwise distances (``poincare.dist`` broadcast, ``(x - y).norm``) then ``soft_similarity``
    and ``proxy_loss``."""
    from chestlab import poincare as P
    from chestlab.losses.parts import points_proxy_term

    x = _points("x", 6, c, 7, F64).requires_grad_()
    y = _points("y", 4 * K, c, 8, F64).requires_grad_()
    labels = torch.tensor([0, 3, 1, 2, 3, 0])
    loss = points_proxy_term(x, y, labels, K, c, 0.7, 5.0, 0.5)[0]
    d = (x[:, None] - y[None]).norm(dim=-1) if c is None else P.dist(x[:, None], y[None], c)
    ref = L.proxy_loss(L.soft_similarity(d.view(6, 4, K), 0.7), labels, 5.0, 0.5).mean()
    assert abs(loss.item() - ref.item()) <= 1e-12 * abs(ref.item())
    for g, r in zip(torch.autograd.grad(loss, (x, y)), torch.autograd.grad(ref, (x, y))):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("c", [None, 0.5])
@pytest.mark.parametrize("K", [1, 3])
def test_gradcheck_points_proxy_term(c, K):
    """The hand-derived backward of the fused Function against finite differences (float64)."""
    from chestlab.losses.parts import points_proxy_term

    x = _points("x", 5, c, 3, F64).requires_grad_()
    y = _points("y", 3 * K, c, 4, F64).requires_grad_()
    labels = torch.tensor([0, 2, 1, 2, 0])
    assert torch.autograd.gradcheck(lambda x, y: points_proxy_term(x, y, labels, K, c, 0.7, 5.0, 0.5)[0], (x, y))
    assert torch.autograd.gradcheck(lambda x, y: points_proxy_term(x, y, labels, K, c, 1e-2, 30.0, -2.0)[0], (x, y))


@pytest.mark.parametrize("c", [None, 0.5])
def test_points_proxy_term_float32_is_as_close_to_float64_as_the_two_step_route(c):
    """In float32 at a CUB-like shape (proxies of 10 classes x 10, D = 64), the fused Function is no
    farther from the float64 answer than the two-step route is (up to 2x), values and gradients."""
    from chestlab.losses.parts import points_proxy_term

    B, C, K = 32, 10, 10
    x64 = _helpers.ball_points(B, 64, 0.5, 5, 0.9) if c else torch.randn(B, 64, generator=gen(5), dtype=F64)
    y64 = _helpers.ball_points(C * K, 64, 0.5, 6, 0.9) if c else torch.randn(C * K, 64, generator=gen(6), dtype=F64)
    labels = torch.arange(B) % C

    def run(fn, dtype):
        x, y = x64.to(dtype).requires_grad_(), y64.to(dtype).requires_grad_()
        loss = fn(x, y, labels, K, c, 5.0, 20.0, 1.0)[0]
        return [loss.detach().double(), *(g.double() for g in torch.autograd.grad(loss, (x, y)))]

    truth = run(points_proxy_term, F64)
    fused, two = run(points_proxy_term, torch.float32), run(_two_step, torch.float32)
    for f, t, r in zip(fused, two, truth):
        scale = float(r.abs().max())
        err_f, err_t = float((f - r).abs().max()) / scale, float((t - r).abs().max()) / scale
        assert err_f <= max(2 * err_t, 1e-6), (err_f, err_t)


def test_points_proxy_term_validates_like_the_two_step_route():
    from chestlab import poincare as P
    from chestlab.losses.parts import points_proxy_term

    x, y, labels = _helpers.ball_points(4, 3, 0.5, 0), _helpers.ball_points(6, 3, 0.5, 1), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="outside the Poincaré ball"):
        points_proxy_term(x * 10, y, labels, 2, 0.5, 1.0, 2.0, 0.5)
    with pytest.raises(ValueError, match="NaN or inf"):
        points_proxy_term(torch.full_like(x, math.nan), y, labels, 2, None, 1.0, 2.0, 0.5)
    with pytest.raises(ValueError, match="same D"):
        points_proxy_term(x[:, :2], y, labels, 2, 0.5, 1.0, 2.0, 0.5)
    with pytest.raises(ValueError, match="K = 4"):
        points_proxy_term(x, y, labels, 4, 0.5, 1.0, 2.0, 0.5)
    with pytest.raises(ValueError, match="labels"):
        points_proxy_term(x, y, labels + 3, 2, 0.5, 1.0, 2.0, 0.5)
    for kw, match in [(dict(gamma=0.0), "gamma"), (dict(lam=-1.0), "lambda"), (dict(delta=math.inf), "delta")]:
        args = {"gamma": 1.0, "lam": 2.0, "delta": 0.5, **kw}
        with pytest.raises(ValueError, match=match):
            points_proxy_term(x, y, labels, 2, 0.5, **args)
    with P.checks(False):  # the two-step route for a tensor c (the series form below poincare.tiny_c too)
        a = points_proxy_term(x, y, labels, 2, torch.tensor(0.5, dtype=F64), 1.0, 2.0, 0.5)[0]
    b = points_proxy_term(x, y, labels, 2, 0.5, 1.0, 2.0, 0.5)[0]
    assert abs(float(a) - float(b)) <= 1e-12 * abs(float(b))


def test_keep_freed_memory_is_set_by_a_trainer_not_by_an_import_and_can_be_turned_off():
    """Importing the losses changes no process setting; placing a trainer sets glibc's malloc thresholds
    (Linux/glibc), unless CHESTLAB_MALLOC=default."""
    import os
    import subprocess
    import sys

    code = ("from chestlab.losses import parts; from chestlab.engine import device; print(device.MALLOC_TUNED); "
            "from chestlab.settings import TrainConfig; device.place(TrainConfig(device='cpu', threads=1)); "
            "print(device.MALLOC_TUNED)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    env.pop("CHESTLAB_MALLOC", None)
    on = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    off = subprocess.run([sys.executable, "-c", code], env={**env, "CHESTLAB_MALLOC": "default"}, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert on[0] == off[0] == "None"  # the import set nothing
    assert off[1] == "off (CHESTLAB_MALLOC=default)"
    if sys.platform.startswith("linux"):
        assert on[1].startswith(("on (mmap threshold 256 MiB", "not applicable (no glibc"))
    else:
        assert on[1].startswith("not applicable")


def _hyphc_case(c: float, dtype=F64, seed: int = 11, C: int = 10, K: int = 4, M: int = 25, D: int = 16):
    x = _helpers.ball_points(C * K, D, c, seed, 0.9).to(dtype)
    t = L.sample_triplets(C, K, M, gen(seed + 1))
    return x, t


@pytest.mark.parametrize("variant", ["lca", "pairwise"])
@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("c", [0.5, 2.0, 1e-3])
@pytest.mark.parametrize("dtype, vtol, gtol", [(F64, 1e-12, 1e-11), (torch.float32, 1e-6, 1e-5)])
def test_hyphc_term_equals_the_readable_hyphc_loss(variant, detach, c, dtype, vtol, gtol):
    """The fused HypHC Function (parts.hyphc_term, the CHEST training path) against the readable
    hyphc_loss(...).mean(): values (relative) and gradients (max |Δ| / max |ref|)."""
    from chestlab.losses.parts import _hyphc_gram_parts, hyphc_term

    x, t = _hyphc_case(c, dtype)
    assert _hyphc_gram_parts(x, t, c, variant == "lca", 7) is not None  # the fused path runs
    xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = L.hyphc_loss(xr, t, c, 0.7, variant=variant, detach_similarity=detach).mean()
    out = hyphc_term(xf, t, c, 0.7, variant, detach)
    assert out.grad_fn is not None and "HypHCFn" in type(out.grad_fn).__name__
    assert abs(float(out) - float(ref)) <= vtol * abs(float(ref))
    (gr,), (gf,) = torch.autograd.grad(ref, xr), torch.autograd.grad(out, xf)
    assert float((gf - gr).abs().max()) <= gtol * float(gr.abs().max())


@pytest.mark.parametrize("variant", ["lca", "pairwise"])
def test_gradcheck_hyphc_term(variant):
    """The hand-derived backward of _HypHCFn against finite differences (float64), with the similarities
    not detached (so that every path of the Function is differentiated), in several chunks of rows."""
    from chestlab.losses.parts import _HypHCFn, _hyphc_gram_parts

    x, t = _hyphc_case(0.7, F64, seed=3, C=4, K=3, M=6, D=5)

    def f(z):
        return _HypHCFn.apply(z, t, _hyphc_gram_parts(z.detach(), t, 0.7, variant == "lca", 4), 0.7, 0.5, variant == "lca",
                              False, 4)

    assert torch.autograd.gradcheck(f, (x.clone().requires_grad_(),))


def test_hyphc_term_falls_back_to_hyphc_loss_where_pairs_need_the_exact_route():
    """Coincident proxies (and a tensor c) take hyphc_loss itself: same value and gradient, no NaN."""
    from chestlab.losses.parts import _hyphc_gram_parts, hyphc_term

    x, t = _hyphc_case(0.5)
    x[t[0, 1]] = x[t[0, 0]]  # a coincident pair: group_dist_lca's exact recomputation
    assert _hyphc_gram_parts(x, t, 0.5, True, 7) is None
    for c in (0.5, torch.tensor(0.5, dtype=F64)):
        xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
        ref = L.hyphc_loss(xr, t, c).mean()
        out = hyphc_term(xf, t, c)
        assert "HypHCFn" not in type(out.grad_fn).__name__
        assert float(out) == float(ref)
        assert torch.equal(torch.autograd.grad(out, xf)[0], torch.autograd.grad(ref, xr)[0])
