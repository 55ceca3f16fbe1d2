"""chestlab.tree_embedding (Poincaré embeddings of a known tree, Nickel & Kiela 2017) against
independent oracles: scipy's shortest paths for the tree metric, an explicit loop for the losses,
geoopt (float64, k = -c) for the distances, the Riemannian gradient and the Riemannian SGD step,
autograd for the gradient's defining identity, scikit-learn's average precision for the MAP, and a
grid search for the distortion's best scale. Small trees, a second or two each."""

from __future__ import annotations

import math

import geoopt
import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import shortest_path
from sklearn.metrics import average_precision_score

from chestlab import poincare as P
from chestlab import tree_embedding as te
from chestlab.hierarchy import Hierarchy

from _helpers import F64, ball_points, gen


def ball(c: float) -> geoopt.PoincareBall:
    """geoopt's ball with a float64 curvature (its default parameter is float32)."""
    return geoopt.PoincareBall(c=torch.tensor(c, dtype=F64))


@pytest.fixture(scope="module")
def tree33() -> te.Tree:
    return te.Tree.complete((3, 3))


# ------------------------------------------------------------------------------------------------
# the tree
# ------------------------------------------------------------------------------------------------
def test_complete_tree_is_the_data_sets_tree():
    from chestlab.data.tree import make_tree_world

    tree = te.Tree.complete((4, 4, 4))
    assert tree.n == 1 + 4 + 16 + 64 and tree.depth == 3
    assert torch.equal(torch.bincount(tree.level), torch.tensor([1, 4, 16, 64]))
    world = make_tree_world(0, (4, 4, 4), samples_per_class=1)
    assert set(tree.names[1:]) == set(world.node_names)
    for v in range(1, tree.n):  # every node's parent is its name's prefix ("A.0.3" -> "A.0" -> "branch A")
        p = int(tree.parent[v])
        assert tree.level[v] == tree.level[p] + 1
        prefix = tree.names[v].rsplit(".", 1)[0]
        want = "root" if tree.level[v] == 1 else f"branch {prefix}" if tree.level[v] == 2 else prefix
        assert tree.names[p] == want


def test_tree_metric_related_and_edges_against_shortest_paths(tree33):
    E = tree33.edges()
    assert int(E.sum()) == 2 * (tree33.n - 1) and torch.equal(E, E.T)
    sp = shortest_path(E.numpy().astype(float), unweighted=True)
    np.testing.assert_array_equal(tree33.tree_distances().numpy(), sp)
    # related = one is an ancestor of the other = the path between them is monotone in level
    lev = tree33.level
    d = tree33.tree_distances()
    mono = (d == (lev[:, None] - lev[None, :]).abs().double()) & (d > 0)
    assert torch.equal(tree33.related(), mono)


def test_from_hierarchy_keeps_the_paths():
    h = Hierarchy.from_paths({"a": ["x", "p"], "b": ["x", "p"], "c": ["x"], "d": ["y", "q"]})
    tree = te.Tree.from_hierarchy(h)
    # root, x, y, then p, c, q, then a, b, d (level by level, first appearance)
    assert tree.names == ("root", "x", "y", "p", "c", "q", "a", "b", "d")
    assert tree.parent.tolist() == [-1, 0, 0, 1, 1, 2, 3, 3, 5]
    assert tree.level.tolist() == [0, 1, 1, 2, 2, 2, 3, 3, 3]


@pytest.mark.parametrize("bad", [(), (1, 3), (4, 2.5), (True, 2), (64, 64)])
def test_bad_branching_is_refused(bad):
    with pytest.raises(ValueError, match="branching"):
        te.Tree.complete(bad)


@pytest.mark.parametrize("c", [0.5, 1.0])
def test_sarkar_gives_every_edge_length_tau(c):
    tree = te.Tree.complete((3, 2, 3))
    X = te.sarkar(tree, 2.5, c)
    child = torch.arange(1, tree.n)
    d = P.dist(X[child], X[tree.parent[child]], c)
    assert float((d - 2.5).abs().max()) < 1e-9
    # siblings leave v in directions as far apart as possible: with the parent, k + 1 equal angles
    v = int(tree.parent[-1])
    kids = (tree.parent == v).nonzero().squeeze(1)
    around = P.mobius_add(-X[v].expand(len(kids) + 1, 2), torch.cat([X[kids], X[tree.parent[v]][None]]), c)
    ang = torch.sort(torch.atan2(around[:, 1], around[:, 0])).values
    gaps = torch.diff(torch.cat([ang, ang[:1] + 2 * math.pi]))
    assert float((gaps - 2 * math.pi / len(gaps)).abs().max()) < 1e-9


# ------------------------------------------------------------------------------------------------
# distances and losses
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_distances_are_the_poincare_distances(c):
    x = ball_points(13, 3, c, 1, 0.95)
    D = te.pairwise(x, c)
    ref = ball(c).dist(x[:, None], x[None, :])
    assert float((D - ref).abs().max()) < 1e-10
    # c = 0: the limit 2 |x - y|, the Euclidean distance of the coordinates 2x
    y = torch.randn(13, 3, generator=gen(2), dtype=F64)
    assert float((te.pairwise(y, 0.0) - torch.cdist(2 * y, 2 * y)).abs().max()) < 1e-12


def _nk_loop(D: torch.Tensor, related: torch.Tensor) -> float:
    n, terms = len(D), []
    for u in range(n):
        neg = [w for w in range(n) if w != u and not related[u, w]]
        for v in range(n):
            if related[u, v]:
                den = math.exp(-D[u, v]) + sum(math.exp(-D[u, w]) for w in neg)
                terms.append(-math.log(math.exp(-D[u, v]) / den))
    return sum(terms)


def test_losses_against_their_formulas(tree33):
    x = ball_points(tree33.n, 2, 1.0, 3, 0.9)
    D = te.pairwise(x, 1.0)
    assert abs(float(te.nk_loss(D, tree33.related())) - _nk_loop(D.double(), tree33.related())) < 1e-12
    d_T = tree33.tree_distances()
    n = tree33.n
    ref = np.sum([(float(D[u, v]) / float(d_T[u, v]) - 1) ** 2 for u in range(n) for v in range(u + 1, n)])
    assert abs(float(te.distortion_loss(D, d_T)) - ref) < 1e-12


@pytest.mark.parametrize("c", [1.0, 0.0])
def test_closed_form_loss_gradients_against_autograd(tree33, c):
    x = ball_points(tree33.n, 3, 1.0, 10, 0.9)
    D = te.pairwise(x, c).detach().requires_grad_(True)
    for loss, grad, target in ((te.nk_loss, te.nk_loss_grad, tree33.related()),
                               (te.distortion_loss, te.distortion_loss_grad, tree33.tree_distances())):
        (ref,) = torch.autograd.grad(loss(D, target), D)
        assert float((grad(D.detach(), target) - ref).abs().max()) < 1e-15
    # a tree whose root has no negatives: its rows stay finite (lse = -inf there)
    assert bool(torch.isfinite(te.nk_loss_grad(D.detach(), tree33.related())).all())


def test_riemannian_gradient_against_geoopt_and_autograd(tree33):
    c = 0.7
    x = ball_points(tree33.n, 3, c, 4, 0.9).requires_grad_(True)
    loss = te.nk_loss(te.pairwise(x, c), tree33.related())
    (egrad,) = torch.autograd.grad(loss, x)
    rgrad = te.riemannian_grad(x.detach(), egrad, c)
    ref = ball(c).egrad2rgrad(x.detach(), egrad)
    assert float((rgrad - ref).abs().max()) < 1e-14
    # the defining identity g_x(grad_R, w) = dL(x)[w] = d/dt L(exp_x(t w)) at t = 0, by central differences
    w = torch.randn(tree33.n, 3, generator=gen(5), dtype=F64)
    h = 1e-6
    L = [float(te.nk_loss(te.pairwise(P.expmap(x.detach(), t * w, c), c), tree33.related())) for t in (h, -h)]
    lam2 = (2 / (1 - c * x.detach().pow(2).sum(-1, keepdim=True))) ** 2
    assert abs(float((lam2 * rgrad * w).sum()) - (L[0] - L[1]) / (2 * h)) < 1e-8


def test_rsgd_step_is_geoopts_riemannian_sgd(tree33):
    c, lr = 1.3, 0.05
    x0 = ball_points(tree33.n, 2, c, 6, 0.8)
    p = geoopt.ManifoldParameter(x0.clone(), manifold=ball(c))
    opt = geoopt.optim.RiemannianSGD([p], lr=lr)
    loss = te.nk_loss(te.pairwise(p, c), tree33.related())
    loss.backward()
    egrad = p.grad.detach().clone()
    opt.step()
    assert float((te.rsgd_step(x0, egrad, lr, c) - p.detach()).abs().max()) < 1e-14
    # an overshooting step is pulled back inside the ball
    far = te.rsgd_step(x0, -1e6 * x0 / P.alpha(x0, c)[:, None] ** 2, 1.0, c)
    assert bool((c * far.pow(2).sum(-1) < 1).all())


def test_euclidean_fit_is_plain_sgd(tree33):
    # c = 0 is the plane in the coordinates y = 2x: the same steps as SGD on |y_u - y_v| with the same lr
    res = te.fit(tree33, 2, 0.0, steps=40, lr=0.3, burn_in=0.25, seed=7)
    g = torch.Generator().manual_seed(7)
    y = 2 * (2 * torch.rand(tree33.n, 2, generator=g, dtype=F64) - 1) * 1e-3
    for step in range(40):
        y.requires_grad_(True)
        D = (y[:, None] - y[None, :]).pow(2).sum(-1).clamp_min(1e-300).sqrt()  # cdist, but a zero gradient at 0
        (grad,) = torch.autograd.grad(te.nk_loss(D, tree33.related()), y)
        y = (y - (0.03 if step < 10 else 0.3) * grad).detach()
    assert float((2 * res.x - y).abs().max()) < 1e-10


def test_a_fitted_disk_reconstructs_a_small_tree(tree33):
    res = te.fit(tree33, 2, 1.0, steps=300, seed=0)
    assert res.losses[-1] < res.losses[0]
    D = te.pairwise(res.x, 1.0)
    assert te.mean_average_precision(D, tree33.related()) > 0.95
    # coarse near the origin: the mean depth d_H(0, x) grows with the level
    depth = P.dist0(res.x, 1.0)
    by_level = [float(depth[tree33.level == lev].mean()) for lev in range(3)]
    assert by_level[0] < by_level[1] < by_level[2]


def test_fit_is_reproducible_and_refuses_bad_settings(tree33):
    a, b = te.fit(tree33, 2, 1.0, steps=5, seed=3), te.fit(tree33, 2, 1.0, steps=5, seed=3)
    assert torch.equal(a.x, b.x)
    for kw, name in ((dict(dim=0), "dim"), (dict(steps=10**6), "steps"), (dict(lr=0.0), "lr"), (dict(lr=math.nan), "lr"),
                     (dict(burn_in=1.5), "burn_in"), (dict(loss="hinge"), "loss"), (dict(c=-1.0), "c"),
                     (dict(init_scale=2.0), "init_scale")):
        args = dict(dim=2, c=1.0, steps=5) | kw
        with pytest.raises(ValueError, match=name):
            te.fit(tree33, **args)


# ------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------
def test_map_against_scikit_learn_with_ties(tree33):
    g = gen(8)
    D = torch.randint(1, 4, (tree33.n, tree33.n), generator=g).double()  # many ties
    D = D + D.T
    for rel in (tree33.related(), tree33.edges()):
        aps = []
        for u in range(tree33.n):
            keep = torch.arange(tree33.n) != u
            y = rel[u][keep].numpy()
            if 0 < y.sum() < len(y):
                aps.append(average_precision_score(y, -D[u][keep].numpy()))
        assert abs(te.mean_average_precision(D, rel) - float(np.mean(aps))) < 1e-12
    assert te.mean_average_precision(tree33.tree_distances(), tree33.related()) < 1  # d_T ranks siblings with ancestors
    assert te.mean_average_precision(tree33.tree_distances(), tree33.edges()) == 1.0


def test_distortion_best_scale_and_worst_case(tree33):
    d_T = tree33.tree_distances()
    assert te.distortion(3.0 * d_T, d_T) == pytest.approx((0.0, 1.0), abs=1e-12)
    D = te.pairwise(ball_points(tree33.n, 2, 1.0, 9, 0.9), 1.0)
    avg, worst = te.distortion(D, d_T)
    iu = torch.triu_indices(tree33.n, tree33.n, 1)
    q = (D[iu[0], iu[1]] / d_T[iu[0], iu[1]]).numpy()
    grid = np.exp(np.linspace(-4, 4, 40001))
    assert avg == pytest.approx(min(np.mean(np.abs(s * q - 1)) for s in grid), abs=1e-6)
    assert worst == pytest.approx(q.max() / q.min())
    assert te.distortion(7.0 * D, d_T)[0] == pytest.approx(avg)  # scale-free


def test_dimension_sweep_pairs_the_spaces_and_picks_the_rate_by_the_loss():
    tree = te.Tree.complete((2, 2))
    df = te.dimension_sweep(tree, (2,), (0, 1), steps=30, lrs=(0.01, 0.3))
    assert sorted(df.space.unique()) == ["disk", "plane"] and len(df) == 4
    for space, c in (("disk", 1.0), ("plane", 0.0)):
        losses = {lr: te.fit(tree, 2, c, steps=30, lr=lr, seed=0).losses[-1] for lr in (0.01, 0.3)}
        chosen = df[df.space == space].lr
        assert (chosen == min(losses, key=losses.get)).all()
        row = df[(df.space == space) & (df.seed == 0)].iloc[0]
        assert row.loss == pytest.approx(losses[row.lr])
