"""Closed-form gradients (chestlab.gradients) against autograd, and torch.autograd.gradcheck (float64)
on every differentiable function of chestlab.losses and the main ones of chestlab.poincare."""

from __future__ import annotations

import math

import geoopt.manifolds.stereographic.math as gm
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from chestlab import gradients as G
from chestlab import losses as L
from chestlab import poincare as P

from _helpers import F64, ball_points, gen  # noqa: E402  (one thread: tests/conftest.py)
# includes the Euclidean limit, tiny curvatures (series branches) and strongly curved balls
CS = [0.0, 1e-9, 1e-4, 0.1, 0.5, 1.0, 2.0, 10.0]


def near_boundary(n: int, d: int, c: float, seed: int, gap: float) -> torch.Tensor:
    """(n, d) points with sqrt(c)|x| = 1 - gap."""
    u = torch.randn(n, d, generator=gen(seed), dtype=F64)
    return u / u.norm(dim=-1, keepdim=True) * (1 - gap) / math.sqrt(c)


def autograd_x(f, x: torch.Tensor, *args) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x, *args).sum(), x)
    return g


def assert_close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------------------------
# closed forms vs autograd
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [0.05, 1.0, 5.0, 1e3])
def test_soft_similarity_grad(gamma):
    d = torch.rand(3, 4, 6, generator=gen(0), dtype=F64) * 10
    assert_close(G.soft_similarity_grad(d, gamma), autograd_x(L.soft_similarity, d, gamma))
    # K = 1: S = -d, so dS/dd = -1 whatever gamma
    one = torch.rand(5, 1, generator=gen(1), dtype=F64)
    assert_close(G.soft_similarity_grad(one, gamma), -torch.ones_like(one))


def test_soft_similarity_grad_pushes_far_proxies():
    # the formula's sign change: a proxy farther than (soft mean + gamma) gets a positive dS/dd
    d = torch.tensor([0.0, 0.1, 30.0], dtype=F64)
    g = G.soft_similarity_grad(d, 5.0)
    assert g[0] < 0 and g[1] < 0 and g[2] > 0
    with pytest.raises(ValueError, match="gamma"):
        G.soft_similarity_grad(d, -1.0)


@pytest.mark.parametrize("lam,delta", [(1.0, 0.0), (20.0, 1.0), (20.0, 20.0), (3.0, -2.0)])
def test_proxy_loss_grad(lam, delta):
    S = -torch.rand(7, 5, generator=gen(2), dtype=F64) * 3
    labels = torch.randint(5, (7,), generator=gen(3))
    g = G.proxy_loss_grad(S, labels, lam, delta)
    assert_close(g, autograd_x(L.proxy_loss, S, labels, lam, delta))
    # each row sums to zero (softmax minus a one-hot), and only the true class is pushed up
    assert_close(g.sum(-1), torch.zeros(7, dtype=F64), atol=1e-12, rtol=0)
    assert bool((g.gather(1, labels[:, None]) <= 0).all())
    with pytest.raises(ValueError, match="lambda"):
        G.proxy_loss_grad(S, labels, -1.0, delta)


@pytest.mark.parametrize("c", CS)
def test_dist_grad_vs_autograd(c):
    x, y = ball_points(40, 5, c, 4), ball_points(40, 5, c, 5)
    assert_close(G.dist_grad(x, y, c), autograd_x(P.dist, x, y, c), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("c", [0.1, 0.5, 1.0, 2.0, 10.0])
@pytest.mark.parametrize("gap", [1e-3, 1e-6, 1e-9])
def test_dist_grad_near_boundary(c, gap):
    # both points close to the boundary: the gradient grows like 1/(1 - c|x|^2) ~ 1/(2 gap)
    x, y = near_boundary(20, 4, c, 6, gap), near_boundary(20, 4, c, 7, gap)
    g = G.dist_grad(x, y, c)
    assert bool(torch.isfinite(g).all())
    assert_close(g, autograd_x(P.dist, x, y, c), rtol=1e-7, atol=0)
    assert float(g.norm(dim=-1).min()) > 0.1 / gap


@pytest.mark.parametrize("c", [0.1, 0.5, 1.0, 2.0])
def test_dist_grad_vs_geoopt(c):
    # an autograd oracle that shares no code with chestlab.poincare
    x, y = ball_points(30, 6, c, 8, 0.9), ball_points(30, 6, c, 9, 0.9)
    k = torch.tensor(-c, dtype=F64)
    g = autograd_x(lambda a: gm.dist(a, y, k=k), x)
    assert_close(G.dist_grad(x, y, c), g, rtol=1e-8, atol=1e-10)


def test_dist_grad_is_nickel_kiela_at_c1():
    # Nickel & Kiela (2017), for d(theta, x) on the unit ball, gradient in theta
    th, x = ball_points(25, 3, 1.0, 10), ball_points(25, 3, 1.0, 11)
    a = 1 - th.pow(2).sum(-1, keepdim=True)
    b = 1 - x.pow(2).sum(-1, keepdim=True)
    gam = 1 + 2 * (th - x).pow(2).sum(-1, keepdim=True) / (a * b)
    nk = 4 / (b * (gam**2 - 1).sqrt()) * ((x.pow(2).sum(-1, keepdim=True) - 2 * (th * x).sum(-1, keepdim=True) + 1) / a**2 * th - x / a)
    assert_close(G.dist_grad(th, x, 1.0), nk, rtol=1e-9, atol=1e-12)


def test_dist_grad_euclidean_limit_and_special_points():
    x, y = ball_points(10, 4, 1.0, 12, 0.5), ball_points(10, 4, 1.0, 13, 0.5)
    euclid = 2 * (x - y) / (x - y).norm(dim=-1, keepdim=True)
    assert_close(G.dist_grad(x, y, 0.0), euclid, rtol=1e-15, atol=0)
    assert_close(G.dist_grad(x, y, 1e-12), euclid, rtol=1e-10, atol=0)  # continuous at c = 0
    # x = y: not differentiable; 0, as autograd gives on poincare.dist
    assert_close(G.dist_grad(x, x, 0.5), torch.zeros_like(x), rtol=0, atol=0)
    assert_close(autograd_x(P.dist, x, x, 0.5), torch.zeros_like(x), rtol=0, atol=0)
    # from the origin the gradient points away from y with norm 2 (D(0, y) is 2 artanh(sqrt c|y|)/sqrt c)
    g0 = G.dist_grad(torch.zeros(4, dtype=F64), y[0], 1.0)
    assert_close(g0, -2 * y[0] / y[0].norm(), rtol=1e-14, atol=0)
    # broadcasting: (5, 1, D) against (1, 4, D)
    gb = G.dist_grad(x[:5, None], y[None, :4], 0.5)
    assert gb.shape == (5, 4, 4)
    assert_close(gb[2, 3], G.dist_grad(x[2], y[3], 0.5), rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="c = -0.5"):
        G.dist_grad(x, y, -0.5)
    with pytest.raises(ValueError, match=r"x: \d+ point"):
        G.dist_grad(x * 10, y, 1.0)


def test_cosine_grad():
    x = torch.randn(20, 5, generator=gen(14), dtype=F64) * 3
    y = torch.randn(20, 5, generator=gen(15), dtype=F64)
    g = G.cosine_grad(x, y)
    assert_close(g, autograd_x(lambda a: F.cosine_similarity(a, y, dim=-1), x))
    assert_close((g * x).sum(-1), torch.zeros(20, dtype=F64), rtol=0, atol=1e-13)  # scale invariance
    assert_close(G.cosine_grad(2 * x, y), g / 2)


def _anchor_loss(anchor: torch.Tensor, others: torch.Tensor, j, t: float, c):
    """L_i = -s_ij/t + log sum_k exp(s_ik/t), written directly from docs/maths.md."""
    if c is None:
        s = F.cosine_similarity(anchor.unsqueeze(-2), others, dim=-1)
    else:
        s = -P.dist(anchor.unsqueeze(-2), others, c)
    j = torch.as_tensor(j).expand(anchor.shape[:-1])
    return -s.gather(-1, j[..., None]).squeeze(-1) / t + torch.logsumexp(s / t, dim=-1)


@pytest.mark.parametrize("c", [None, 0.0, 1e-6, 0.5, 2.0])
@pytest.mark.parametrize("t", [0.05, 0.3, 2.0])
def test_pair_ce_anchor_grad(c, t):
    cc = 1.0 if c in (None, 0.0) else c
    anchor, others = ball_points(1, 6, cc, 16, 0.9)[0], ball_points(7, 6, cc, 17, 0.9)
    for j in (0, 3, 6):
        g = G.pair_ce_anchor_grad(anchor, others, j, t, c)
        assert_close(g, autograd_x(_anchor_loss, anchor, others, j, t, c), rtol=1e-9, atol=1e-11)
    # batched: anchors (B, D), others (B, N, D), one positive index per anchor
    A, O = ball_points(4, 6, cc, 18, 0.9), ball_points(28, 6, cc, 19, 0.9).view(4, 7, 6)
    idx = torch.tensor([0, 6, 2, 2])
    gb = G.pair_ce_anchor_grad(A, O, idx, t, c)
    assert_close(gb, autograd_x(_anchor_loss, A, O, idx, t, c), rtol=1e-9, atol=1e-11)
    assert_close(gb[1], G.pair_ce_anchor_grad(A[1], O[1], 6, t, c), rtol=1e-14, atol=1e-15)


def test_pair_ce_anchor_grad_uses_hard_negative_weights(monkeypatch):
    anchor, others = ball_points(1, 3, 1.0, 20, 0.8)[0], ball_points(5, 3, 1.0, 21, 0.8)
    seen = []

    def uniform(a, o, t, c=None):
        seen.append(L.hard_negative_weights(a, o, t, c))
        return torch.full(o.shape[:-1], 1 / o.shape[-2], dtype=o.dtype)

    monkeypatch.setattr(G, "hard_negative_weights", uniform)
    g = G.pair_ce_anchor_grad(anchor, others, 2, 0.5, 1.0)
    assert len(seen) == 1
    # with w replaced by 1/N the formula must follow: (1/t) mean_k (ds_k - ds_j)
    ds = -G.dist_grad(anchor.expand_as(others), others, 1.0)
    assert_close(g, (ds - ds[2]).mean(0) / 0.5, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("c", [None, 0.5])
def test_pair_ce_anchor_grad_assembles_pair_ce_loss(c):
    # labels [0, 0, 1, 2, 3, 4]: the positive pairs are (0,1) and (1,0), so
    # d pair_ce_loss / d z0 = (dL_0/dz0 [anchor 0] + dL_1/dz0 [z0 as anchor 1's positive]) / 2
    z = ball_points(6, 4, 0.5, 22, 0.9)
    labels = torch.tensor([0, 0, 1, 2, 3, 4])
    t = 0.2
    full = autograd_x(lambda z0: L.pair_ce_loss(torch.cat([z0[None], z[1:]]), labels, t, c), z[0])
    as_anchor = G.pair_ce_anchor_grad(z[0], z[1:], 0, t, c)
    w10 = L.hard_negative_weights(z[1], torch.cat([z[:1], z[2:]]), t, c)[0]
    ds10 = G.cosine_grad(z[0], z[1]) if c is None else -G.dist_grad(z[0], z[1], c)
    as_positive = (w10 - 1) * ds10 / t
    assert_close(full, (as_anchor + as_positive) / 2, rtol=1e-9, atol=1e-12)


def test_pair_ce_anchor_grad_validates():
    a, o = torch.zeros(3, dtype=F64), torch.rand(4, 3, dtype=F64) * 0.5
    with pytest.raises(ValueError, match="t = -1"):
        G.pair_ce_anchor_grad(a, o, 0, -1.0)
    with pytest.raises(ValueError, match="positive_index"):
        G.pair_ce_anchor_grad(a, o, 4, 1.0)
    with pytest.raises(ValueError, match="others"):
        G.pair_ce_anchor_grad(a, o[:, :2], 0, 1.0)


# ------------------------------------------------------------------------------------------------
# gradcheck (float64) on the losses and the geometry
# ------------------------------------------------------------------------------------------------
def req(x: torch.Tensor) -> torch.Tensor:
    return x.detach().clone().requires_grad_(True)


def test_gradcheck_soft_similarity_and_proxy_loss():
    d = req(torch.rand(3, 4, 5, generator=gen(30), dtype=F64) * 4)
    assert gradcheck(lambda d: L.soft_similarity(d, 0.7), (d,))
    S = req(-torch.rand(5, 4, generator=gen(31), dtype=F64))
    labels = torch.tensor([0, 3, 1, 1, 2])
    assert gradcheck(lambda S: L.proxy_loss(S, labels, 5.0, 0.5), (S,))


@pytest.mark.parametrize("variant", ["lca", "pairwise"])
@pytest.mark.parametrize("c", [0.0, 0.5, 2.0])
def test_gradcheck_hyphc_loss(variant, c):
    cc = c or 1.0
    p = req(ball_points(8, 3, cc, 32, 0.9).view(4, 2, 3))
    trip = L.sample_triplets(4, 2, 5, gen(33))
    assert gradcheck(lambda p: L.hyphc_loss(p, trip, c, 0.7, variant=variant, detach_similarity=False), (p,))


@pytest.mark.parametrize("variant", ["lca", "pairwise"])
def test_hyphc_detached_similarity_gradient(variant):
    # default detach_similarity=True: the gradient is that of sum S0 - sum S0 softmax(d(P)) with
    # S0 = exp(-D_H) frozen at the current proxies; check it by central differences of that function
    c = 0.5
    p0 = ball_points(6, 3, c, 34, 0.9)
    trip = L.sample_triplets(3, 2, 4, gen(35))
    pairs = [(0, 1), (0, 2), (1, 2)]
    S0 = torch.stack([torch.exp(-P.dist(p0[trip[:, a]], p0[trip[:, b]], c)) for a, b in pairs], -1)
    depth = P.lca_depth if variant == "lca" else P.dist

    def frozen(p):
        d = torch.stack([depth(p[trip[:, a]], p[trip[:, b]], c) for a, b in pairs], -1)
        return (S0.sum(-1) - (S0 * torch.softmax(d, -1)).sum(-1)).sum()

    p = req(p0)
    (g,) = torch.autograd.grad(L.hyphc_loss(p, trip, c, variant=variant).sum(), p)
    num = torch.zeros_like(p0)
    h = 1e-6
    for idx in range(p0.numel()):
        e = torch.zeros(p0.numel(), dtype=F64)
        e[idx] = h
        e = e.view_as(p0)
        num.view(-1)[idx] = (frozen(p0 + e) - frozen(p0 - e)) / (2 * h)
    assert_close(g, num, rtol=1e-6, atol=1e-8)
    # ...and it differs from the full gradient (S is really treated as a constant)
    (g_full,) = torch.autograd.grad(L.hyphc_loss(p, trip, c, variant=variant, detach_similarity=False).sum(), p)
    assert float((g_full - g).abs().max()) > 1e-3


@pytest.mark.parametrize("hyphc", ["lca", "pairwise"])
def test_gradcheck_chest_loss(hyphc):
    c = 0.5
    C, K, B = 3, 2, 4
    x_e = req(torch.randn(B, 4, generator=gen(36), dtype=F64))
    x_h = req(ball_points(B, 3, c, 37, 0.9))
    pe = req(torch.randn(C, K, 4, generator=gen(38), dtype=F64))
    ph = req(ball_points(C * K, 3, c, 39, 0.9).view(C, K, 3))
    labels = torch.tensor([0, 2, 1, 2])
    trip = L.sample_triplets(C, K, 4, gen(40))
    kw = dict(c=c, delta_e=0.5, delta_h=1.0, lambda_e=3.0, lambda_h=4.0, eta_e=0.7, eta_h=1.3, gamma_e=2.0, gamma_h=1.5)

    # the HypHC term detaches its similarities, so its proxies_h gradient is checked above; here
    # gradcheck every input with tau = 0 and the data/Euclidean proxies with tau > 0
    def f0(x_e, x_h, pe, ph):
        return L.chest_loss(x_e, x_h, labels, pe, ph, None, tau=0.0, **kw).loss

    def f1(x_e, x_h, pe):
        return L.chest_loss(x_e, x_h, labels, pe, ph.detach(), trip, tau=0.5, hyphc=hyphc, **kw).loss

    assert gradcheck(f0, (x_e, x_h, pe, ph))
    assert gradcheck(f1, (x_e, x_h, pe))


@pytest.mark.parametrize("c", [None, 0.0, 0.5])
def test_gradcheck_pair_ce_and_weights(c):
    cc = c or 1.0
    z = req(ball_points(6, 3, cc, 41, 0.9))
    labels = torch.tensor([0, 0, 1, 1, 2, 0])
    assert gradcheck(lambda z: L.pair_ce_loss(z, labels, 0.3, c), (z,))
    a, o = req(z.detach()[0]), req(z.detach()[1:])
    assert gradcheck(lambda a, o: L.hard_negative_weights(a, o, 0.3, c), (a, o))


def test_gradcheck_mix_loss():
    ze = req(torch.randn(6, 4, generator=gen(42), dtype=F64))
    zh = req(ball_points(6, 3, 0.5, 43, 0.9))
    labels = torch.tensor([0, 1, 1, 0, 2, 2])
    assert gradcheck(lambda ze, zh: L.mix_loss(ze, zh, labels, 0.2, 0.5, 0.3, 0.5), (ze, zh))


@pytest.mark.parametrize("c", [0.0, 1e-6, 0.5, 2.0])
def test_gradcheck_poincare(c):
    cc = c or 1.0
    x, y = req(ball_points(4, 3, cc, 44, 0.9)), req(ball_points(4, 3, cc, 45, 0.9))
    v = req(torch.randn(4, 3, generator=gen(46), dtype=F64))
    assert gradcheck(lambda x, y: P.dist(x, y, c), (x, y))
    assert gradcheck(lambda x, y: P.pairwise_dist(x, y, c), (x, y))
    assert gradcheck(lambda v: P.expmap0(v, c), (v,))
    assert gradcheck(lambda x: P.logmap0(x, c), (x,))
    assert gradcheck(lambda x, y: P.lca_depth(x, y, c), (x, y))
    assert gradcheck(lambda x, y: P.mobius_add(x, y, c), (x, y))
    assert gradcheck(lambda x, v: P.expmap(x, 0.5 * v, c), (x, v))
    assert gradcheck(lambda x, y: P.logmap(x, y, c), (x, y))
    # the custom backward passes (one (N, D) tensor each): the norm-scaled rows and the Gram distances
    assert gradcheck(lambda v: P.clip_features(v, 0.8), (v,))
    assert gradcheck(lambda v: P.project(3 * v, cc), (v,))
    assert gradcheck(lambda x: P.group_dist_lca(x, torch.tensor([[0, 1, 2], [3, 1, 0]]), c)[1], (x,))


@pytest.mark.parametrize("c0", [1e-9, 0.5])
def test_gradcheck_poincare_in_c(c0):
    # c as a tensor that requires grad; c0 = 1e-9 is on the series branches (c = 0 itself, where c - eps
    # is not a curvature, is checked by one-sided differences in test_geometry_ops.py)
    x, y = req(ball_points(4, 3, 1.0, 47, 0.6)), req(ball_points(5, 3, 1.0, 48, 0.6))
    v = req(torch.randn(4, 3, generator=gen(49), dtype=F64))
    c = req(torch.tensor(c0, dtype=F64))
    kw = dict(eps=min(1e-6, c0 / 10))
    assert gradcheck(lambda x, y, c: P.pairwise_dist(x, y, c), (x, y, c), **kw)
    assert gradcheck(lambda v, c: P.expmap0(v, c), (v, c), **kw)
    assert gradcheck(lambda x, c: P.logmap0(x, c), (x, c), **kw)
    assert gradcheck(lambda x, c: P.mobius_scalar_mul(0.7, x, c), (x, c), **kw)
    assert gradcheck(lambda x, y, c: P.lca_depth(x, y[:4], c), (x, y, c), **kw)


# ------------------------------------------------------------------------------------------------
# gradcheck (float64) on the hand-written backward passes of the training path
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [1e-4, 0.5, 2.0])
def test_gradcheck_pairwise_fast_paths(c):
    x, y = ball_points(5, 4, c, 61, 0.9).requires_grad_(), ball_points(6, 4, c, 62, 0.9).requires_grad_()
    assert gradcheck(lambda x, y: P._PairwiseDist.apply(x, y, c), (x, y))
    y_fixed = y.detach()[:3].clone()
    assert gradcheck(lambda x: P._PairwiseDist.apply(x, y_fixed, c), (x,))  # one input needs grad
    assert gradcheck(lambda y: P._PairwiseDist.apply(x.detach(), y, c), (y,))
    assert gradcheck(lambda x, y: P._PairwiseDist.apply(x, y, None), (x, y))  # Euclidean
    assert gradcheck(lambda x, y: P.pairwise_euclidean(x, y), (x, y))


@pytest.mark.parametrize("c", [0.0, 0.5, 2.0])
def test_gradcheck_expmap0_clipped(c):
    v = (torch.randn(6, 4, dtype=F64, generator=gen(63)) * torch.tensor([0.1, 0.5, 1.0, 2.0, 4.0, 8.0], dtype=F64)[:, None])
    assert gradcheck(lambda v: P.expmap0_clipped(v, 2.3, c), (v.requires_grad_(),))
    if c > 0:
        cc = torch.tensor(c, dtype=F64, requires_grad=True)
        assert gradcheck(lambda v, cc: P.expmap0_clipped(v, 2.3, cc), (v, cc))


@pytest.mark.parametrize("K", [1, 2, 3])
def test_gradcheck_proxy_term(K):
    from chestlab.losses.parts import proxy_term

    d = (torch.rand(4, 3, K, dtype=F64, generator=gen(64)) * 3).requires_grad_()
    labels = torch.tensor([0, 2, 1, 2])
    assert gradcheck(lambda d: proxy_term(d, labels, 0.7, 5.0, 0.5)[0], (d,))
    assert gradcheck(lambda d: proxy_term(d, labels, 1e-2, 30.0, -2.0)[0], (d,))
