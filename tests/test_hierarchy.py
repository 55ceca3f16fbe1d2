"""chestlab.hierarchy against independent oracles: brute-force Dasgupta cost and dendrogram purity,
a union-find HypHC decoder fed pair by pair with poincare.lca_depth, scipy's linkage on a
double loop of poincare.dist, brute-force top-1 retrieval, and known trees (a constructive
embedding, points near geodesic rays, the datasets' own hierarchies)."""

from __future__ import annotations

import itertools
import json
import math
import pickle

import numpy as np
import pytest
import torch
from scipy.cluster import hierarchy as sch
from scipy.spatial.distance import squareform

from _helpers import F64, ball_points, gen
from chestlab import hierarchy as H
from chestlab import metrics, poincare
from chestlab.data import load_dataset
from chestlab.data.fake import make_fake_cub
from chestlab.data.shapes import FAMILIES
from chestlab.hierarchy import Hierarchy


# ------------------------------------------------------------------------------------------------
# oracles and fixtures
# ------------------------------------------------------------------------------------------------
def leaf_sets(Z: np.ndarray) -> list[frozenset[int]]:
    """The leaves under every internal node of Z, from scipy's own tree (not from Z's counts)."""
    nodes = sch.to_tree(Z, rd=True)[1]
    return [frozenset(node.pre_order()) for node in nodes if not node.is_leaf()]


def lca_leaves(Z: np.ndarray, i: int, j: int) -> frozenset[int]:
    """The leaf set of the LCA of leaves i, j: the smallest internal node holding both."""
    return min((s for s in leaf_sets(Z) if i in s and j in s), key=len)


def brute_dasgupta(Z: np.ndarray, W: np.ndarray) -> float:
    n = len(W)
    return sum(len(lca_leaves(Z, i, j)) * W[i, j] for i in range(n) for j in range(i + 1, n))


def brute_purity(Z: np.ndarray, y: np.ndarray) -> float:
    vals = []
    for i, j in itertools.combinations(range(len(y)), 2):
        if y[i] == y[j]:
            leaves = lca_leaves(Z, i, j)
            vals.append(sum(y[k] == y[i] for k in leaves) / len(leaves))
    return float(np.mean(vals)) if vals else math.nan


def union_find_cophenetic(depth: np.ndarray, heights_of_depth) -> np.ndarray:
    """HypHC's decoder written out: sort pairs by LCA depth (deepest first), union-find, and record
    the merge height of every pair of leaves whose clusters meet."""
    n = len(depth)
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            a = parent[a]
        return a

    members = {i: [i] for i in range(n)}
    coph = np.zeros((n, n))
    for i, j in sorted(itertools.combinations(range(n), 2), key=lambda p: -depth[p]):
        a, b = find(i), find(j)
        if a == b:
            continue
        h = heights_of_depth(depth[i, j])
        for u in members[a]:
            for v in members[b]:
                coph[u, v] = coph[v, u] = h
        parent[b] = a
        members[a] += members.pop(b)
    return coph


def constructive_tree(branching: tuple[int, ...], c: float, seed: int = 0, radius: float = 0.9):
    """A perfect embedding of a complete tree: each node gets its own orthonormal direction, a leaf's
    direction is the sum of its ancestors' with weights halving per level, and all leaves sit at
    Euclidean radius radius/sqrt(c) -- so the angle between two leaves (hence their hyperbolic LCA
    depth and distance) is a strictly decreasing function of the levels they share."""
    paths = list(itertools.product(*[range(b) for b in branching]))
    prefixes = sorted({p[:k] for p in paths for k in range(1, len(branching) + 1)})
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(prefixes), len(prefixes))))
    direction = dict(zip(prefixes, q))
    leaves = np.stack([sum(0.5**k * direction[p[: k + 1]] for k in range(len(p))) for p in paths])
    leaves *= radius / math.sqrt(c) / np.linalg.norm(leaves, axis=1, keepdims=True)
    names = ["n" + ".".join(map(str, p)) for p in paths]
    ancestors = {nm: ["n" + ".".join(map(str, p[:k])) for k in range(1, len(p))] for nm, p in zip(names, paths)}
    hier = Hierarchy.from_paths(ancestors)
    return torch.from_numpy(leaves), hier


def random_sphere(n: int, d: int, c: float, seed: int, radius: float = 0.9) -> torch.Tensor:
    u = torch.randn(n, d, generator=gen(seed), dtype=F64)
    return u / u.norm(dim=1, keepdim=True) * radius / math.sqrt(c)


# ------------------------------------------------------------------------------------------------
# Dasgupta cost and dendrogram purity
# ------------------------------------------------------------------------------------------------
def test_dasgupta_and_purity_by_hand() -> None:
    # ((0, 1), 2): pair (0,1) meets in a 2-leaf node, pairs with 2 at the 3-leaf root
    Z = np.array([[0, 1, 1.0, 2], [2, 3, 2.0, 3]])
    W = np.array([[0, 5, 1], [5, 0, 2], [1, 2, 0]], dtype=float)
    assert H.dasgupta_cost(Z, W) == 2 * 5 + 3 * (1 + 2)
    assert H.dasgupta_cost(Z, squareform(W)) == 19  # condensed similarities too
    # ((0, 1), (2, 3)) against labels aabb -> pure; ((0, 2), (1, 3)) -> every pair meets at the root
    good = np.array([[0, 1, 1.0, 2], [2, 3, 1.0, 2], [4, 5, 2.0, 4]])
    bad = np.array([[0, 2, 1.0, 2], [1, 3, 1.0, 2], [4, 5, 2.0, 4]])
    assert H.dendrogram_purity(good, [0, 0, 1, 1]) == 1.0
    assert H.dendrogram_purity(bad, [0, 0, 1, 1]) == 0.5
    assert math.isnan(H.dendrogram_purity(good, [0, 1, 2, 3]))  # no pair shares a label


@pytest.mark.parametrize("method", ["single", "average", "complete", "ward", "decode-lca", "decode-average"])
def test_dasgupta_and_purity_match_brute_force(method: str) -> None:
    rng = np.random.default_rng(3)
    n = 17
    pts = ball_points(n, 4, 1.0, seed=5, max_rel=0.9)
    Z = H.decode(pts, 1.0, method.split("-")[1]) if method.startswith("decode") else sch.linkage(pts.numpy(), method)
    W = rng.random((n, n))
    W = W + W.T
    y = rng.integers(0, 4, n)
    assert H.dasgupta_cost(Z, W) == pytest.approx(brute_dasgupta(Z, W), rel=1e-12)
    assert H.dendrogram_purity(Z, y) == pytest.approx(brute_purity(Z, y), rel=1e-12)


def test_scores_reject_bad_input() -> None:
    Z = sch.linkage(np.random.default_rng(0).random((5, 2)))
    with pytest.raises(ValueError, match="symmetric"):
        H.dasgupta_cost(Z, np.triu(np.ones((5, 5))))
    with pytest.raises(ValueError, match="5, 5"):
        H.dasgupta_cost(Z, np.ones((4, 4)))
    with pytest.raises(ValueError, match="one entry per leaf"):
        H.dendrogram_purity(Z, [0, 1])
    with pytest.raises(ValueError):
        H.cophenetic_correlation(Z[:, :3], np.ones(10))  # not a linkage matrix


# ------------------------------------------------------------------------------------------------
# decode
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", H.DECODE_METHODS)
@pytest.mark.parametrize("c", [1.0, 0.25, None])
def test_decode_is_a_valid_monotone_linkage(method: str, c: float) -> None:
    x = ball_points(40, 5, c or 0.0, seed=1, max_rel=0.97).float()  # float32 in, float64 out
    Z = H.decode(x, c, method)
    assert Z.shape == (39, 4) and Z.dtype == np.float64
    assert sch.is_valid_linkage(Z) and sch.is_monotonic(Z)
    assert (Z[:, 2] >= 0).all() and Z[-1, 3] == 40
    # scipy's tools work on it
    assert len(sch.dendrogram(Z, no_plot=True)["leaves"]) == 40
    assert sorted(set(sch.fcluster(Z, 4, "maxclust"))) == [1, 2, 3, 4]


@pytest.mark.parametrize("method", ["single", "average"])
def test_decode_linkage_matches_scipy_on_poincare_distances(method: str) -> None:
    c = 0.7
    x = ball_points(23, 3, c, seed=2)
    D = poincare.dist(x[:, None], x[None], c).numpy()  # Eq. 2 elementwise, not pairwise_dist's matmul form
    expected = sch.linkage(squareform(D, checks=False), method)
    np.testing.assert_allclose(H.decode(x, c, method), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("c", "normalize"), [(0.8, False), (0.8, True), (0.0, False)])
def test_lca_decode_matches_union_find_oracle(c: float, normalize: bool) -> None:
    x = ball_points(24, 3, c, seed=4, max_rel=0.95)
    if not normalize:  # a near-duplicate and two near-parallel points: the pairs that cancel
        x[1] = x[0] + 1e-9
        x[2] = x[3] * 0.999
    n = len(x)
    radius = max(float(poincare.dist0(p, c)) for p in x)
    pts = x
    if normalize:  # every point moved along its ray to hyperbolic radius R: |x| = tanh(sqrt(c) R / 2) / sqrt(c)
        pts = x / x.norm(dim=1, keepdim=True) * math.tanh(math.sqrt(c) * radius / 2) / math.sqrt(c)
    depth = np.zeros((n, n))
    for i, j in itertools.combinations(range(n), 2):
        depth[i, j] = depth[j, i] = float(poincare.lca_depth(pts[i], pts[j], c))
    expected = union_find_cophenetic(depth, lambda d: max(0.0, 2 * (radius - d)))
    Z = H.decode(x, c, "lca", normalize=normalize)
    np.testing.assert_allclose(squareform(sch.cophenet(Z)), expected, rtol=1e-9, atol=1e-12)


def test_lca_decode_recovers_points_near_geodesic_rays() -> None:
    # three rays from the origin (families, 120 degrees apart); around each, two sub-families at +-20
    # degrees, each with two sibling leaves at +-4 degrees; all leaves at one radius, so siblings'
    # geodesics stay deep in the ball while cousins' pass near the origin
    c = 1.5
    angles, family, sub = [], [], []
    for f, base in enumerate((0.0, 120.0, 240.0)):
        for s, off in enumerate((-20.0, 20.0)):
            for leaf in (-4.0, 4.0):
                angles.append(math.radians(base + off + leaf))
                family.append(f)
                sub.append(2 * f + s)
    perm = np.random.default_rng(0).permutation(len(angles))  # leaf order must not matter
    th = torch.tensor(angles, dtype=F64)[perm]
    family, sub = np.array(family)[perm], np.array(sub)[perm]
    x = torch.stack([th.cos(), th.sin()], 1) * 0.9 / math.sqrt(c)
    pair = (x[0], x[int(np.flatnonzero(sub == sub[0])[1])])  # siblings deeper than cousins
    cousin = x[int(np.flatnonzero((family == family[0]) & (sub != sub[0]))[0])]
    stranger = x[int(np.flatnonzero(family != family[0])[0])]
    assert poincare.lca_depth(*pair, c) > poincare.lca_depth(x[0], cousin, c) > poincare.lca_depth(x[0], stranger, c)

    Z = H.decode(x, c, "lca")
    same_partition = lambda a, b: len(set(zip(a, b))) == len(set(a)) == len(set(b))  # noqa: E731
    assert same_partition(sch.fcluster(Z, 3, "maxclust"), family)
    assert same_partition(sch.fcluster(Z, 6, "maxclust"), sub)
    # the first six merges are the sibling pairs, the next three the sub-families
    assert all(sub[int(a)] == sub[int(b)] for a, b in Z[:6, :2])
    hier = Hierarchy.from_paths({str(k): [f"f{family[k]}", f"s{sub[k]}"] for k in range(len(x))})
    scores = H.tree_scores(Z, np.arange(len(x)), hier)
    assert scores["purity"] == 1.0 and scores["cophenet"] > 0.95


@pytest.mark.parametrize("method", H.DECODE_METHODS)
def test_perfect_embedding_decodes_to_the_true_tree_random_points_do_not(method: str) -> None:
    c = 1.0
    x, hier = constructive_tree((3, 3, 3), c)
    leaves = np.arange(hier.num_classes)
    Z = H.decode(x, c, method)
    perfect = H.tree_scores(Z, leaves, hier)
    assert perfect["purity"] == 1.0
    # dasgupta: the cost under W = levels shared (read off the path tuples), over its bound n * sum W
    common = lambda p, q: sum(1 for _ in itertools.takewhile(lambda uv: uv[0] == uv[1], zip(p, q)))  # noqa: E731
    W = np.array([[common(p, q) for q in hier.paths] for p in hier.paths], float)
    n = len(W)
    bound = n * sum(W[i, j] for i in range(n) for j in range(i + 1, n))
    assert perfect["dasgupta"] == pytest.approx(brute_dasgupta(Z, W) / bound, rel=1e-12)
    assert perfect["cophenet"] > 0.97
    # same hierarchy, random points at the same radius
    for seed in range(3):
        rand = H.tree_scores(H.decode(random_sphere(len(x), x.shape[1], c, seed), c, method), leaves, hier)
        assert rand["cophenet"] < 0.5 and rand["purity"] < 0.8
        assert rand["dasgupta"] > perfect["dasgupta"] * 1.1


@pytest.mark.parametrize("method", ["single", "average"])
def test_decode_in_the_plane_is_linkage_on_euclidean_distances(method: str) -> None:
    x = ball_points(23, 3, 0.0, seed=6)
    expected = sch.linkage(x.numpy(), method, metric="euclidean")
    np.testing.assert_allclose(H.decode(x, None, method), expected, rtol=1e-12, atol=1e-12)
    assert (H.decode(x, None) == H.decode(x, None, "average")).all()  # the default method


def test_lca_decode_in_the_plane_is_the_flat_limit_of_the_balls() -> None:
    # the Euclidean LCA depth is the distance from the origin to the line through the two points:
    # half the ball's at c = 0 (Eq. 2 tends to 2 |x - y|), so every height is half
    x = ball_points(19, 3, 0.0, seed=7)
    for normalize in (True, False):
        plane, flat = H.decode(x, None, "lca", normalize=normalize), H.decode(x, 0.0, "lca", normalize=normalize)
        np.testing.assert_array_equal(plane[:, [0, 1, 3]], flat[:, [0, 1, 3]])
        np.testing.assert_allclose(plane[:, 2], flat[:, 2] / 2, rtol=1e-12, atol=1e-12)
    u, v = x[0], x[1]
    t = float(-(u @ (v - u)) / (v - u).pow(2).sum())  # foot of the perpendicular from the origin
    to_line = float((u + t * (v - u)).norm())
    R = float(x[:2].norm(dim=1).max())  # the outermost radius of the two
    Z = H.decode(x[:2], None, "lca", normalize=False)
    assert Z[0, 2] == pytest.approx(2 * (R - to_line), rel=1e-12)


def test_decode_rejects_bad_input() -> None:
    x = ball_points(5, 2, 1.0, seed=0)
    with pytest.raises(ValueError, match="method"):
        H.decode(x, 1.0, "ward")
    with pytest.raises(ValueError, match="normalize"):
        H.decode(x, 1.0, "average", normalize=True)
    with pytest.raises(TypeError, match="normalize"):
        H.decode(x, 1.0, "lca", normalize="yes")
    with pytest.raises(ValueError, match="at least 2"):
        H.decode(x[:1], 1.0)
    with pytest.raises(ValueError, match="outside the Poincar"):
        H.decode(x * 10, 1.0)
    with pytest.raises(ValueError, match="2-D"):
        H.decode(x[0], 1.0)


def test_decode_refuses_too_many_points_before_allocating(monkeypatch) -> None:
    """N = 100,000 points asked for ~37 GiB (the condensed matrix) and more: refused in one line that
    states the bound (n(n-1)/2 pairs x 32 bytes within half the machine's memory), before any
    pairwise work. With 1 MiB of memory the bound is n <= 181: 181 points decode, 182 do not."""
    def no_pairs(*args, **kwargs):
        raise AssertionError("decode computed pairwise quantities for a refused n")

    monkeypatch.setattr(H, "_memory_bytes", lambda: 24 * 2**30)
    with monkeypatch.context() as m:
        m.setattr(H, "_condensed", no_pairs)
        with pytest.raises(ValueError) as info:
            H.decode(torch.zeros(100_000, 2), 1.0)
    msg = str(info.value)
    assert "\n" not in msg and "n = 100,000" in msg and "24 GiB" in msg and "n <= 28," in msg
    monkeypatch.setattr(H, "_memory_bytes", lambda: 2**20)
    x = ball_points(182, 2, 1.0, seed=1)
    assert H.decode(x[:181], 1.0).shape == (180, 4)
    for method in H.DECODE_METHODS:
        with pytest.raises(ValueError, match=r"n = 182 points.*n <= 181"):
            H.decode(x, 1.0, method)


def test_lca_of_out_of_range_classes_names_the_argument() -> None:
    """lca_level / lca_height of class indices outside [0, C): one line naming the argument and the
    range (before: numpy's IndexError, and a negative index silently wrapped to the last class)."""
    h = Hierarchy.from_paths({"a": ["X"], "b": ["X"], "c": ["Y"]})
    for a, b, name in ((0, 3, "b"), (-1, 0, "a"), ([0, 1], [2, 7], "b"), (np.array([[5]]), 0, "a")):
        for fn in (h.lca_level, h.lca_height):
            with pytest.raises(ValueError, match=rf"^{name} must hold class indices in \[0, 3\)") as info:
                fn(a, b)
            assert "\n" not in str(info.value)
    np.testing.assert_array_equal(h.lca_height([0, 1, 2], [1, 2, 2]), [1, 2, 0])


# ------------------------------------------------------------------------------------------------
# the known hierarchy
# ------------------------------------------------------------------------------------------------
def test_hierarchy_paths_heights_and_groups() -> None:
    h = Hierarchy.from_paths({"a": ["X", "P"], "b": ["X", "P"], "c": ["X", "Q"], "d": ["Y", "P"], "e": ["Y"]})
    assert h.depth == 3 and h.paths[4] == ("Y", "e")  # ragged: padded with the class itself
    # nodes are whole prefixes: "P" under X and "P" under Y are different nodes
    expected = np.array([[0, 1, 2, 3, 3], [1, 0, 2, 3, 3], [2, 2, 0, 3, 3], [3, 3, 3, 0, 2], [3, 3, 3, 2, 0]])
    k = np.arange(5)
    np.testing.assert_array_equal(h.lca_height(k[:, None], k[None, :]), expected)
    np.testing.assert_array_equal(h.lca_level(0, [1, 2, 3]), [2, 1, 0])
    np.testing.assert_array_equal(h.groups(1), [0, 0, 0, 1, 1])
    assert h.group_names(1) == ["X", "Y"] and h.group_names(2) == ["P", "Q", "P", "e"]
    assert len(set(h.groups(3))) == 5  # level depth: the classes themselves
    # an explicit root shared by everyone is dropped; heights do not change
    rooted = Hierarchy.from_paths({k: ["entity", *v] for k, v in h.to_dict().items()})
    assert rooted == h
    with pytest.raises(ValueError, match="distinct"):
        Hierarchy(["a", "a"], [[], []])
    with pytest.raises(ValueError, match="level"):
        h.groups(4)


def test_hierarchy_from_parents_and_super_labels() -> None:
    h = Hierarchy.from_paths({"0": ["animal", "bird"], "1": ["animal", "bird"], "2": ["animal", "fish"], "3": ["plant"]})
    parents = {"0": "bird", "1": "bird", "2": "fish", "bird": "animal", "fish": "animal", "3": "plant", "animal": "life",
               "plant": "life", "life": None}  # fmt: skip
    assert Hierarchy.from_parents(parents) == h
    assert Hierarchy.from_parents(parents, classes=["3", "0"]).classes == ("3", "0")
    # HypHC / scipy style: integer parent links, the root pointing to itself (-1 works too)
    ints = Hierarchy.from_parents([4, 4, 5, 6, 5, 6, 6])  # leaves 0..3, 4 = bird, 5 = animal, 6 = root
    k = np.arange(4)
    np.testing.assert_array_equal(ints.lca_height(k[:, None], k[None]), h.lca_height(k[:, None], k[None]))
    with pytest.raises(ValueError, match="cycle"):
        Hierarchy.from_parents({"a": "b", "b": "c", "c": "b"}, classes=["a"])

    two = Hierarchy.from_super_labels([0, 0, 1, 2, 2, 2], [1, 1, 0, 1, 1, 1], superclasses=["u", "v"])
    assert two.paths == (("v", "0"), ("u", "1"), ("v", "2")) and two.depth == 2
    np.testing.assert_array_equal(two.groups(1), [0, 1, 0])
    # a class without samples hangs under the root; a class in two super-classes is an error
    assert Hierarchy.from_super_labels([0, 2], [0, 0]).paths == (("S0", "0"), ("1",), ("S0", "2"))
    with pytest.raises(ValueError, match="two super-classes"):
        Hierarchy.from_super_labels([0, 0], [0, 1])


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_hierarchy_file_round_trip(tmp_path, suffix: str) -> None:
    h = Hierarchy.from_paths({"a": ["X", "P"], "b, with comma": ["X", "P"], "c": ["Y"]})
    path = tmp_path / f"h{suffix}"
    h.to_file(path)
    assert Hierarchy.from_file(path) == h
    sub = Hierarchy.from_file(path, classes=["c", "a"])  # pick and order the classes
    assert sub.classes == ("c", "a") and sub.paths == (("Y", "c"), ("X", "P", "a"))
    with pytest.raises(ValueError, match="no ancestors"):
        Hierarchy.from_file(path, classes=["a", "zebra"])


def test_hierarchy_csv_comments_and_header(tmp_path) -> None:
    path = tmp_path / "h.txt"
    path.write_text(
        "class,ancestors\n# birds\nsparrow,Passeriformes,Passeridae\n\ncrow,Passeriformes,Corvidae,\nowl,Strigiformes\n"
    )
    h = Hierarchy.from_file(path)
    assert h.classes == ("sparrow", "crow", "owl") and h.depth == 3
    assert h.lca_height(0, 1) == 2 and h.lca_height(0, 2) == 3


def test_hierarchy_of_tree_is_the_full_tree() -> None:
    ds = load_dataset("tree", "test", branching=(2, 3, 4), samples_per_class=2)
    h = H.hierarchy_of("tree", "test", branching=(2, 3, 4), samples_per_class=2)
    assert h == H.hierarchy_of(ds) and h.depth == 3 and h.classes == tuple(ds.classes)
    k = torch.arange(ds.num_classes)
    np.testing.assert_array_equal(h.lca_level(k[:, None], k[None]), ds.lca_level(k[:, None], k[None]).numpy())
    np.testing.assert_array_equal(h.groups(1), ds.class_to_super.numpy())  # super-classes numbered alike
    assert h.group_names(1) == ds.superclasses


def test_hierarchy_of_shapes_is_its_families() -> None:
    h = H.hierarchy_of("shapes", "test", per_class=1, size=8)
    family_of = {v: f for f, vs in FAMILIES.items() for v in vs}
    names = h.group_names(1)
    assert h.depth == 2 and len(names) == 6
    assert all(names[g] == family_of[k.split("/")[1]] for g, k in zip(h.groups(1), h.classes))


def test_hierarchy_of_cifar100_is_its_coarse_classes(tmp_path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    fine = np.arange(100)
    coarse = (fine * 7) % 20  # any function of the fine class
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in fine],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    part = {b"data": np.zeros((100, 3072), np.uint8), b"fine_labels": fine.tolist(), b"coarse_labels": coarse.tolist()}
    for name, obj in (("meta", meta), ("train", part), ("test", part)):
        (folder / name).write_bytes(pickle.dumps(obj))
    h = H.hierarchy_of("cifar100", "test", data_root=tmp_path, transform=None)
    names = h.group_names(1)
    assert h.classes == tuple(f"fine{i}" for i in range(50, 100))
    assert [names[g] for g in h.groups(1)] == [f"coarse{(i * 7) % 20}" for i in range(50, 100)]


def test_hierarchy_of_cub_with_a_file(tmp_path) -> None:
    make_fake_cub(tmp_path, num_classes=104, per_class=1, size=8)
    ds = load_dataset("cub200", "test", data_root=tmp_path, transform=None)
    table = {f"{i:03d}.Fake_Bird_{i}": ["Passeriformes" if i % 2 else "Strigiformes", f"family{i % 4}"] for i in range(1, 105)}
    (tmp_path / "cub.json").write_text(json.dumps(table))
    h = H.hierarchy_of("cub200", "test", file=tmp_path / "cub.json", data_root=tmp_path, transform=None)
    assert h.classes == tuple(ds.classes) and h.depth == 3
    assert [p[:-1] for p in h.paths] == [tuple(table[k]) for k in ds.classes]
    del table[ds.classes[0]]
    (tmp_path / "cub.json").write_text(json.dumps(table))
    with pytest.raises(ValueError, match="no ancestors"):
        H.hierarchy_of(ds, file=tmp_path / "cub.json")


# ------------------------------------------------------------------------------------------------
# retrieval with a hierarchy
# ------------------------------------------------------------------------------------------------
def brute_top1(D: np.ndarray) -> np.ndarray:
    """The nearest other point of every row of a full distance matrix, by a plain loop."""
    n = len(D)
    return np.array([min((j for j in range(n) if j != i), key=lambda j: D[i, j]) for i in range(n)])


@pytest.mark.parametrize("space", ["E", "H"])
def test_severity_and_super_recall_match_brute_force(space: str) -> None:
    c = 0.6
    rng = np.random.default_rng(7)
    paths = {f"k{i}": [f"A{i // 6}", f"B{i // 3}"] for i in range(12)}  # 2 x 2 x 3 tree, 12 classes
    h = Hierarchy.from_paths(paths)
    labels = rng.integers(0, 11, 70)
    labels[:2] = [11, 5]  # class 11 occurs once: a lone query
    if space == "E":
        x = torch.randn(70, 5, generator=gen(0), dtype=F64)
        metric, cc = "euclidean", None
        D = np.linalg.norm(x.numpy()[:, None] - x.numpy()[None], axis=-1)
    else:
        x = ball_points(70, 5, c, seed=0)
        metric, cc = "poincare", c
        D = poincare.dist(x[:, None], x[None], c).numpy()  # Eq. 2 elementwise, not pairwise_dist
    nn = brute_top1(D)
    # the oracle reads the path tuples directly
    full = [tuple(paths[f"k{k}"]) + (f"k{k}",) for k in range(12)]
    shared = lambda a, b: next((i for i, (u, v) in enumerate(zip(full[a], full[b])) if u != v), 3)  # noqa: E731
    counts = np.bincount(labels)
    wrong = [i for i in range(70) if counts[labels[i]] > 1 and labels[nn[i]] != labels[i]]
    severity = np.mean([3 - shared(labels[i], labels[nn[i]]) for i in wrong])
    sup = [full[k][0] for k in labels]
    ok = [sup[nn[i]] == sup[i] for i in range(70) if sup.count(sup[i]) > 1]
    assert 0 < len(wrong) < 70 and 0 < np.mean(ok) < 1  # the data exercise both outcomes

    for chunk in (None, 1, 7):
        np.testing.assert_array_equal(H.nearest_neighbours(x, metric, cc, chunk_size=chunk).numpy(), nn)
        for xx in (x, x.float()):
            out = H.hierarchical_retrieval(xx, labels, h, metric, cc, chunk_size=chunk)
            assert out["severity"] == pytest.approx(severity, rel=1e-12)
            assert out["super_R@1"] == pytest.approx(np.mean(ok), rel=1e-12)
    # second oracle: Recall@1 of chestlab.metrics on the super-class labels (same lone-query rule)
    r1 = metrics.retrieval_metrics(x, h.groups(1)[labels], 1, metric, cc)["R@1"]
    assert H.hierarchical_retrieval(x, labels, h, metric, cc)["super_R@1"] == pytest.approx(r1, rel=1e-12)


@pytest.mark.parametrize("metric", ["euclidean", "poincare"])
@pytest.mark.parametrize("n_far", [20, 400])
def test_nearest_neighbours_among_near_duplicates_in_float32(metric: str, n_far: int) -> None:
    # a dozen points 1e-5 apart around one point of norm ~0.8: ||x||^2 + ||y||^2 - 2<x, y> cancels to
    # noise in float32 (the plain expansion gets ~10 of them wrong); the oracle is float64 on the same values.
    # With 20 other points the cancelling pairs are 1/8 of the block (recomputed whole), with 400 about
    # 1/1000 (recomputed pair by pair)
    c = 1.0
    base = ball_points(1, 5, c, seed=3, max_rel=0.9)[0]
    x = torch.cat([base + 1e-5 * torch.randn(12, 5, generator=gen(1), dtype=F64), ball_points(n_far, 5, c, seed=2)]).float()
    xd = x.double()
    D = (xd[:, None] - xd[None]).norm(dim=-1) if metric == "euclidean" else poincare.dist(xd[:, None], xd[None], c)
    cc = c if metric == "poincare" else None
    np.testing.assert_array_equal(H.nearest_neighbours(x, metric, cc).numpy(), brute_top1(D.numpy()))


def test_poincare_neighbour_far_down_the_euclidean_ranking() -> None:
    # query at 0.5 e1; ten points near 0.97 e1 are Euclidean-closer (~0.47) than the origin (0.5),
    # but 3 units away in the ball, where the origin is 1.1 away: the hyperbolic top-1 is the
    # Euclidean 11th
    c = 1.0
    q = torch.tensor([[0.5, 0.0, 0.0]], dtype=F64)
    rim = torch.tensor([0.97, 0.0, 0.0], dtype=F64) + 0.01 * torch.randn(10, 3, generator=gen(0), dtype=F64)
    x = torch.cat([q, rim, torch.zeros(1, 3, dtype=F64)])
    assert (x[1:] - q).norm(dim=1).argsort()[-1] == 10  # the origin is the farthest in Euclidean terms
    assert H.nearest_neighbours(x, "poincare", c)[0] == 11
    assert H.nearest_neighbours(x, "euclidean")[0] != 11


def test_retrieval_edge_cases() -> None:
    h = Hierarchy.from_paths({"a": ["X"], "b": ["X"], "c": ["Y"]})
    x = torch.tensor([[0.0], [0.1], [5.0], [5.1]], dtype=F64)
    out = H.hierarchical_retrieval(x, [0, 0, 2, 2], h, "euclidean")
    assert math.isnan(out["severity"]) and out["super_R@1"] == 1.0  # no mistake: severity undefined
    out = H.hierarchical_retrieval(x, [0, 1, 0, 1], h, "euclidean")
    assert out["severity"] == 1.0 and out["super_R@1"] == 1.0  # every mistake is a sibling
    # lone queries are skipped: class 2 (and its super-class Y) occurs once, so query 4 counts for
    # neither; class-1 query 2's top-1 is a sibling
    x5 = torch.tensor([[0.0], [0.1], [0.25], [0.45], [5.0]], dtype=F64)
    out = H.hierarchical_retrieval(x5, [0, 0, 1, 1, 2], h, "euclidean")
    assert out == {"severity": 1.0, "super_R@1": 1.0}
    with pytest.raises(ValueError, match="class indices"):
        H.hierarchical_retrieval(x, [0, 1, 3, 1], h, "euclidean")
    with pytest.raises(ValueError, match="c must be given"):
        H.nearest_neighbours(x, "poincare")


# ------------------------------------------------------------------------------------------------
# the entry point
# ------------------------------------------------------------------------------------------------
def embedding_of(leaves: torch.Tensor, c: float, per_class: int, noise: float, seed: int) -> dict:
    """Samples scattered (in the tangent space) around class means placed at the given leaves."""
    v = poincare.logmap0(leaves, c)
    labels = torch.arange(len(leaves)).repeat_interleave(per_class)
    v = v[labels] + noise * torch.randn(len(labels), v.shape[1], generator=gen(seed), dtype=F64)
    return {"x_e": v.float(), "x_h": poincare.expmap0(v, c).float(), "labels": labels, "super": labels // 9}


def test_hierarchy_metrics_perfect_vs_scrambled() -> None:
    c = 1.0
    leaves, hier = constructive_tree((3, 3, 3), c)
    emb = embedding_of(leaves, c, per_class=4, noise=0.02, seed=0)
    out = H.hierarchy_metrics(emb, hier, c)
    trees = ("cophenet", "purity", "dasgupta")
    expected_keys = {f"{s}/{k}" for s in "HE" for k in ("severity", "super_R@1", *trees, *(f"lca_{t}" for t in trees))}
    assert set(out) == expected_keys
    for s in "HE":
        assert out[f"{s}/purity"] == 1.0 and out[f"{s}/cophenet"] > 0.97 and out[f"{s}/super_R@1"] == 1.0
        assert out[f"{s}/lca_purity"] == 1.0  # leaves at one radius, the root at the origin: HypHC recovers it
    assert set(H.hierarchy_metrics(emb, hier, c, lca=False)) == {k for k in expected_keys if "lca_" not in k}
    # the same points with the classes shuffled over the leaves: the hierarchy no longer fits
    perm = torch.randperm(27, generator=gen(1))
    scrambled = dict(emb, labels=perm[emb["labels"]])
    bad = H.hierarchy_metrics(scrambled, hier, c)
    for s in "HE":
        assert bad[f"{s}/cophenet"] < 0.5 and bad[f"{s}/purity"] < 0.8
        assert bad[f"{s}/dasgupta"] > out[f"{s}/dasgupta"]
    # mistakes in a noisy embedding of the true tree are mostly siblings; scrambled ones are not
    noisy = embedding_of(leaves, c, per_class=4, noise=0.35, seed=2)
    good = H.hierarchy_metrics(noisy, hier, c)
    worse = H.hierarchy_metrics(dict(noisy, labels=perm[noisy["labels"]]), hier, c)
    for s in "HE":
        assert good[f"{s}/severity"] < worse[f"{s}/severity"]
        assert good[f"{s}/super_R@1"] > worse[f"{s}/super_R@1"]


def test_hierarchy_metrics_matches_its_parts_and_takes_proxies() -> None:
    c = 0.5
    leaves, hier = constructive_tree((2, 2, 3), c, seed=3)
    emb = embedding_of(leaves, c, per_class=3, noise=0.1, seed=4)
    emb["super"] = torch.as_tensor(hier.groups(1))[emb["labels"]]
    out = H.hierarchy_metrics(emb, hier, c)
    for space, key, metric, cs in (("H", "x_h", "poincare", c), ("E", "x_e", "euclidean", None)):
        means, ids = H.class_means(emb[key], emb["labels"], cs)
        parts = H.tree_scores(H.decode(means, cs, "average"), ids.numpy(), hier)
        parts.update({f"lca_{k}": v for k, v in H.tree_scores(H.decode(means, cs, "lca"), ids.numpy(), hier).items()})
        parts.update(H.hierarchical_retrieval(emb[key], emb["labels"], hier, metric, cs))
        assert all(out[f"{space}/{k}"] == pytest.approx(v, rel=1e-12, nan_ok=True) for k, v in parts.items())
    # method names the decoder of the plain keys (the lca_ keys are dropped when it is "lca" itself)
    single = H.hierarchy_metrics(emb, hier, c, method="single")
    means, ids = H.class_means(emb["x_e"], emb["labels"])
    assert single["E/cophenet"] == pytest.approx(H.tree_scores(H.decode(means, None, "single"), ids.numpy(), hier)["cophenet"])
    assert H.hierarchy_metrics(emb, hier, c, method="lca")["H/purity"] == out["H/lca_purity"]
    with pytest.raises(ValueError, match="method"):
        H.hierarchy_metrics(emb, hier, c, method="ward")
    # hierarchy=None: the two levels labels -> super of emb (same super-classes, one level less)
    two = H.hierarchy_metrics(emb, None, c)
    assert two["H/super_R@1"] == out["H/super_R@1"] and two["H/purity"] == out["H/purity"]

    # proxies: (C, D), (C, K, D) or the loss's {"h": ...}; K per class, each labelled by its class
    k_per = 2
    jitter = 0.01 * torch.randn(12, k_per, leaves.shape[1], generator=gen(5), dtype=F64)
    prox = poincare.expmap0(poincare.logmap0(leaves, c)[:, None] + jitter, c)
    prox_e = poincare.logmap0(prox, c)  # the Euclidean proxies: another tree, scored in E alike
    with_p = H.hierarchy_metrics(emb, hier, c, {"h": prox, "e": prox_e})
    assert with_p["H/proxy_purity"] == 1.0 and with_p["H/proxy_cophenet"] > 0.9
    leaf_cls = np.repeat(np.arange(12), k_per)
    for space, p, cs in (("H", prox, c), ("E", prox_e, None)):
        flat = p.reshape(-1, p.shape[-1])
        for prefix, m in (("", "average"), ("lca_", "lca")):
            direct = H.tree_scores(H.decode(flat, cs, m), leaf_cls, hier)
            assert with_p[f"{space}/proxy_{prefix}cophenet"] == pytest.approx(direct["cophenet"], rel=1e-12)
            assert with_p[f"{space}/proxy_{prefix}dasgupta"] == pytest.approx(direct["dasgupta"], rel=1e-12)
    only_h = H.hierarchy_metrics(emb, hier, c, prox[:, 0])  # an array is the ball's proxies
    assert only_h["H/proxy_purity"] == 1.0 and not any(k.startswith("E/proxy") for k in only_h)
    with pytest.raises(ValueError, match="proxy_hierarchy"):
        H.hierarchy_metrics(emb, hier, c, prox[:5])
    # a cap on the leaves decodes a fixed subset of classes
    capped = H.hierarchy_metrics(emb, hier, c, prox, max_leaves=8)
    assert capped["H/purity"] == capped["H/proxy_purity"] == 1.0


def test_class_means_gyro_midpoint() -> None:
    c = 0.9
    x = ball_points(10, 3, c, seed=8)
    labels = torch.tensor([2, 0, 2, 2, 0, 5, 5, 0, 2, 5])
    means, ids = H.class_means(x, labels, c)
    assert ids.tolist() == [0, 2, 5] and means.dtype == F64
    from32 = H.class_means(x.float(), labels, c)[0]  # float32 in: accumulated and returned in float64
    assert from32.dtype == F64
    np.testing.assert_allclose(from32.numpy(), means.numpy(), rtol=1e-6, atol=1e-7)
    for m, k in zip(means, ids):  # poincare.weighted_midpoint is held to geoopt's
        np.testing.assert_allclose(m.numpy(), poincare.weighted_midpoint(x[labels == k], None, c).numpy(),
                                   rtol=1e-12, atol=1e-14)
    euclid, _ = H.class_means(x, labels)
    np.testing.assert_allclose(euclid[0].numpy(), x[labels == 0].mean(0).numpy(), rtol=1e-14)
    # it moves with the points under a gyro-translation (the tangent mean at the origin does not)
    a = torch.tensor([0.4, -0.3, 0.2], dtype=F64)
    moved, _ = H.class_means(poincare.mobius_add(a.expand_as(x), x, c), labels, c)
    np.testing.assert_allclose(moved.numpy(), poincare.mobius_add(a.expand_as(means), means, c).numpy(), atol=1e-12)


def wide_embedding(seed: int, noise: float = 0.15) -> tuple[dict, dict, Hierarchy]:
    """Samples (5 per class) around the classes of a 3 x 3 x 2 tree in D = 5, and 2 proxies per class,
    all within Euclidean radius 0.9 (inside the ball for c <= 1); x_h = x_e (the same coordinates read
    in the ball and in the plane)."""
    leaves, hier = constructive_tree((3, 3, 2), 1.0, seed=seed, radius=0.6)
    leaves = leaves[:, :5]  # 5 of its 30 directions: a noisy tree, at most 0.6 from the origin (c <= 1)
    labels = torch.arange(len(leaves)).repeat_interleave(5)
    scale = float(leaves.norm(dim=1).mean())
    x = leaves[labels] + noise * scale * torch.randn(len(labels), 5, generator=gen(seed + 1), dtype=F64)
    prox = leaves[:, None] + noise * scale * torch.randn(len(leaves), 2, 5, generator=gen(seed + 2), dtype=F64)
    emb = {"x_h": x, "x_e": x, "labels": labels, "super": torch.as_tensor(hier.groups(1))[labels]}
    return emb, {"h": prox, "e": prox}, hier


@pytest.mark.parametrize("seed", [0, 1])
def test_both_spaces_score_the_same_points_alike_as_c_goes_to_0(seed: int) -> None:
    # at c -> 0 the Poincaré distance is 2 |x - y| and the gyro-midpoint the mean: one named method
    # must then give the same numbers in both spaces (retrieval, class-mean trees, proxies' trees, lca)
    c = 1e-9
    emb, prox, hier = wide_embedding(seed)
    out = H.hierarchy_metrics(emb, hier, c, prox)
    h_keys = sorted(k for k in out if k.startswith("H/"))
    assert len(h_keys) == 14 and {"E/" + k[2:] for k in h_keys} == {k for k in out if k.startswith("E/")}
    for k in h_keys:
        assert out[k] == pytest.approx(out["E/" + k[2:]], abs=1e-6), k
    assert 0.3 < out["H/cophenet"] < 1.0 and out["H/lca_cophenet"] != out["H/cophenet"]  # not a trivial case


def test_a_gyro_translation_leaves_the_balls_metrics_unchanged() -> None:
    # a -> a (+) x is an isometry of the ball: the retrieval and every average-linkage tree stay; the
    # lca_ keys read the origin as the root, so they may move
    c = 0.7
    emb, prox, hier = wide_embedding(seed=3)
    a = torch.tensor([0.5, -0.3, 0.2, 0.1, -0.4], dtype=F64)
    moved = dict(emb, x_h=poincare.mobius_add(a.expand_as(emb["x_h"]), emb["x_h"], c))
    moved_prox = poincare.mobius_add(a.expand_as(prox["h"]), prox["h"], c)
    before = H.hierarchy_metrics(emb, hier, c, {"h": prox["h"]})
    after = H.hierarchy_metrics(moved, hier, c, {"h": moved_prox})
    for k in ("severity", "super_R@1", "cophenet", "purity", "dasgupta", "proxy_cophenet", "proxy_purity",
              "proxy_dasgupta"):
        assert after[f"H/{k}"] == pytest.approx(before[f"H/{k}"], abs=1e-9), k
    assert 0.3 < before["H/cophenet"] < 1.0
    assert any(after[f"H/{k}"] != pytest.approx(before[f"H/{k}"], abs=1e-3) for k in ("lca_cophenet", "proxy_lca_cophenet"))


# --------------------------------------------------------------------------------------------
# the trainer logs the hierarchy at eval time; evaluate reports it
# --------------------------------------------------------------------------------------------
def test_trainer_logs_hierarchy_metrics_and_evaluate_reports_them(tmp_path):
    import json

    from chestlab import train
    from chestlab.evaluate import evaluate_run, format_table

    run = tmp_path / "run"
    argv = ["--quiet", "--steps", "30", "--set", "eval_every=30", "--set", "batch_size=16", "--set", "dim_e=8",
            "--set", "dim_h=4", "--set", "M=4", "--set", "eval_max=300", "--set", "eval_train=false", "--out", str(run)]
    assert train.main(argv) == 0
    rec = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if '"eval"' in x][-1]
    for key in ("test/H/severity", "test/E/super_R@1", "test/H/cophenet", "test/E/lca_cophenet", "proxies/H/cophenet",
                "proxies/E/purity", "proxies/H/lca_dasgupta"):
        assert key in rec, key
    # the logged numbers are hierarchy_metrics of the same embeddings
    tr = train.Trainer.from_run(run)
    emb = tr.embed("test", 300)
    ref = H.hierarchy_metrics(emb, H.hierarchy_of(tr.test_set), tr.model.head.c)
    assert rec["test/H/severity"] == pytest.approx(ref["H/severity"]) and rec["test/E/cophenet"] == pytest.approx(ref["E/cophenet"])
    res = evaluate_run(str(run), max_n=300)
    assert res["H"]["severity"] == pytest.approx(ref["H/severity"]) and "cophenet" in res["proxies/H"]
    assert "severity" in format_table(res).splitlines()[0]
    off = train.TrainConfig.preset("demo-tree", eval_hierarchy=False, steps=2, eval_max=100)
    assert not any("severity" in k for k in train.Trainer(off).evaluate(("test",)).metrics)
