"""``tree``: vectors drawn from a synthetic class hierarchy, hidden behind a fixed nonlinear map.

The generative story, all deterministic from ``seed``:

1. **Tree.** A complete tree with ``branching[l]`` children per node at level ``l``; its leaves are
   the classes.  Each node sits at its parent's position plus an offset of length
   ``scale / decay**(depth-l)`` (level ``l = 1..depth``: leaves ``scale``, their parents
   ``scale / decay``...) along a random direction in a ``latent_dim``-dimensional space; siblings
   get mutually orthogonal directions.  Because offsets shrink with depth, leaves of the same
   family are closer than leaves of different families -- the tree is *embedded* in the latent
   geometry, which is what hyperbolic embeddings like.
2. **Samples.** ``samples_per_class`` points per leaf, ``z = centre + noise * N(0, I)``.
3. **Nuisance.** ``nuisance_dim`` extra coordinates of pure noise (std ``nuisance``) that carry no
   class information but are *larger* than the within-family structure.
4. **Fixed nonlinear map.** ``[z, n]`` goes through a random, never-trained 2-layer tanh network
   (orthogonal weights, so it is injective) and is standardised per feature.

The map entangles signal and nuisance in every input coordinate, so a Euclidean nearest neighbour
on the raw vectors is mediocre (Recall@1 on the unseen test classes 0.38-0.47 with the defaults)
although the structure is all there: a small MLP trained on the *train* classes learns to discount
the nuisance and reaches Recall@1 above 0.9 on the unseen sibling classes.  ``latent`` keeps the
clean ``z`` so notebooks can show what a perfect encoder would see.

Splits (by class, as metric learning does):

``holdout="sibling"`` (default): within every parent, ``test_fraction`` of the leaves are test
    classes -- new species of known families, as in CUB.
``holdout="subtree"``: whole subtrees rooted at ``holdout_level`` (default 1, the children of the
    root) are test -- new families altogether; much harder.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .base import SPLITS, TensorMetricDataset, memoise
from .options import Option, check_options

__all__ = ["TreeDataset", "TreeWorld", "make_tree_world", "tree_info", "node_name", "check_tree_options", "OPTIONS",
           "MAX_LEAVES", "MAX_VALUES"]

HOLDOUTS: tuple[str, ...] = ("sibling", "subtree")

#: The most leaves (classes) a tree may have: 4**8. Nodes are generated one parent at a time (about
#: a second for this many) and the proxies of a loss grow with the classes.
MAX_LEAVES = 2**16
#: The most values generated: samples x (input_dim + latent_dim + nuisance_dim), 2**25 = 33.5 M
#: (a few float64 copies of them, about 1 GB, exist while the map is applied).
MAX_VALUES = 2**25
_MAX_DIM = 2048  # input_dim, latent_dim, nuisance_dim: the map's QR of input_dim x input_dim takes about a second

#: ``data_options`` of ``tree``: each option's type and range (the total size: :func:`check_tree_options`).
OPTIONS: dict[str, Option] = {
    "depth": Option("int", 1, 16, nullable=True),
    "branching": Option("ints", 2, MAX_LEAVES),
    "superclass_level": Option("int", 1, 16),
    "samples_per_class": Option("int", 1, 100_000),
    "input_dim": Option("int", 1, _MAX_DIM),
    "latent_dim": Option("int", 1, _MAX_DIM),
    "nuisance_dim": Option("int", 0, _MAX_DIM),
    "scale": Option("float", 0, 1e3, low_open=True),
    "decay": Option("float", 0, 1e3, low_open=True),
    "noise": Option("float", 0, 1e3),
    "nuisance": Option("float", 0, 1e3),
    "gain": Option("float", 0, 1e3),
    "holdout": Option("choice", choices=HOLDOUTS),
    "test_fraction": Option("float", 0, 1, low_open=True, high_open=True),
    "holdout_level": Option("int", 1, 16),
    "transform": Option("callable", nullable=True),
}


@dataclass(frozen=True)
class TreeWorld:
    """Everything generated for one set of tree options, both splits together (read-only arrays).

    Shapes use ``L`` leaves, ``N = L * samples_per_class`` samples, ``D = input_dim``,
    ``depth = len(branching)``.

    Attributes:
        x: ``(N, D)`` float32, the observed vectors (standardised per feature).
        latent: ``(N, latent_dim)`` float32, the clean hierarchical coordinates ``z``.
        leaf: ``(N,)`` int64, the leaf (global class index) of every sample.
        paths: ``(L, depth)`` int64, child index taken at each level to reach each leaf.
        ancestors: ``(L, depth)`` int64, global node id at levels ``1..depth`` (last = the leaf).
        node_names: name of every node id (root excluded), :func:`node_name`: ``"branch C"``, ``"C.0"``,
            ``"C.0.3"``.
        centres: ``(L, latent_dim)`` float32 leaf centres.
        is_test: ``(L,)`` bool, which leaves belong to the test split.
        branching: children per node at each level.
    """

    x: np.ndarray
    latent: np.ndarray
    leaf: np.ndarray
    paths: np.ndarray
    ancestors: np.ndarray
    node_names: tuple[str, ...]
    centres: np.ndarray
    is_test: np.ndarray
    branching: tuple[int, ...]


def _letters(i: int) -> str:
    """0 -> ``"A"``, ..., 25 -> ``"Z"``, 26 -> ``"AA"``, ... (spreadsheet columns)."""
    out = ""
    i = int(i) + 1
    while i > 0:
        i, r = divmod(i - 1, 26)
        out = chr(ord("A") + r) + out
    return out


def node_name(path: Sequence[int]) -> str:
    """The readable name of the node reached from the root by the child indices ``path`` (level 1
    first): the level-1 nodes, the super-classes, are ``"branch A"``, ``"branch B"``, ...; a deeper
    node is its branch's letter then its child indices, e.g. ``"C.0.3"`` (child 3 of child 0 of
    branch C). Every figure and table names super-classes and classes by these."""
    letter = _letters(path[0])
    return f"branch {letter}" if len(path) == 1 else ".".join([letter, *map(str, path[1:])])


def _normalise_branching(depth: int | None, branching: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(branching, int):
        b = (branching,) * (3 if depth is None else depth)
    else:
        b = tuple(int(v) for v in branching)
        if depth is not None and depth != len(b):
            raise ValueError(
                f"depth={depth} disagrees with branching={b} ({len(b)} levels); "
                "give depth with an int branching, or a per-level tuple alone"
            )
    if not b or any(v < 2 for v in b):
        raise ValueError(f"branching must have >= 1 level and >= 2 children per node, got {b}")
    return b


def check_tree_options(options: dict[str, Any]) -> None:
    """Refuse options whose tree would not fit (one-line ``ValueError``): more than
    :data:`MAX_LEAVES` leaves, more than :data:`MAX_VALUES` generated values, or a level option
    deeper than the tree. ``options`` as :class:`TreeDataset` takes them."""
    depth, branching = options.get("depth"), options.get("branching", 4)
    b = _normalise_branching(depth, branching)
    shape = " x ".join(map(str, b))
    leaves = math.prod(b)
    if leaves > MAX_LEAVES:
        raise ValueError(f"depth / branching = {shape} make {leaves:,} leaves (classes); allowed: at most "
                         f"{MAX_LEAVES:,} leaves (e.g. depth 8 with branching 4)")
    for key in ("superclass_level", "holdout_level"):
        if options.get(key, 1) > len(b):
            raise ValueError(f"{key} = {options[key]} is deeper than the tree ({len(b)} levels); allowed: 1..{len(b)}")
    n = leaves * options.get("samples_per_class", 60)
    dims = sum(options.get(k, d) for k, d in (("input_dim", 32), ("latent_dim", 16), ("nuisance_dim", 4)))
    if n * dims > MAX_VALUES:
        raise ValueError(f"{leaves:,} leaves x {options.get('samples_per_class', 60)} samples_per_class x {dims} dimensions "
                         f"(input + latent + nuisance) = {n * dims:,} values; allowed: at most {MAX_VALUES:,}: fewer "
                         "samples_per_class, leaves or dimensions")


def _orthonormal(rng: np.random.Generator, dim: int, k: int) -> np.ndarray:
    """``(k, dim)`` random directions, mutually orthogonal when ``k <= dim``."""
    g = rng.standard_normal((dim, k))
    if k <= dim:
        q, r = np.linalg.qr(g)
        return (q * np.sign(np.diag(r))).T  # sign fix: a proper Haar-random frame
    return (g / np.linalg.norm(g, axis=0)).T


def _random_orthogonal(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """``(n, m)`` matrix with orthonormal rows (``n <= m``) or columns (``n > m``)."""
    a = _orthonormal(rng, max(n, m), min(n, m))  # (min, max)
    return a if n <= m else a.T


@memoise(maxsize=8)
def make_tree_world(
    seed: int = 0,
    branching: tuple[int, ...] = (4, 4, 4),
    samples_per_class: int = 60,
    input_dim: int = 32,
    latent_dim: int = 16,
    nuisance_dim: int = 4,
    scale: float = 0.25,
    decay: float = 0.5,
    noise: float = 0.04,
    nuisance: float = 1.25,
    gain: float = 0.6,
    holdout: str = "sibling",
    test_fraction: float = 0.5,
    holdout_level: int = 1,
    tree_seed: int | None = None,
) -> TreeWorld:
    """Generate (and memoise) the full synthetic tree data set; see the module docstring.

    ``noise`` and ``nuisance`` are standard deviations per coordinate in latent units, where a
    leaf's offset from its parent is ``scale`` long (0.25; parents 0.5, grandparents 1.0).
    Anchoring the scale at the leaves keeps the calibration similar for any depth.  ``gain`` scales
    the map's pre-activations (also in latent units): 0 -> almost linear, >= 2 -> so bent that
    what is learnt on the train classes no longer transfers to the test classes.

    The defaults were calibrated (seeds 0-4, 64 leaves, 32 unseen test siblings): Euclidean 1-NN
    Recall@1 on the raw test vectors 0.38-0.47 (on ``latent``: 1.00; through a random MLP:
    0.35-0.40); an MLP 32-128-128-64 trained with a normalised-softmax proxy loss on the train
    classes: about 0.9 after 500 steps, 0.92-0.94 after 15 s (5000 steps).  Depth 2 (8 x 4) and
    depth 4 (2 x 4 x 2 x 4) trees give similar numbers; ``holdout="subtree"``: raw 0.24-0.28,
    trained 0.71-0.73.

    ``tree_seed`` (default ``seed``) seeds the tree alone -- where its nodes sit, i.e. the classes --
    while ``seed`` keeps seeding the map, the noise and the split: another ``tree_seed`` gives *other
    classes seen through the same map*, as ImageNet and CUB are photographed alike (what
    :mod:`chestlab.engine.pretrain` trains on).
    """
    if holdout not in HOLDOUTS:
        raise ValueError(f"holdout must be one of {HOLDOUTS}, got {holdout!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if min(samples_per_class, input_dim, latent_dim) < 1 or nuisance_dim < 0:
        raise ValueError("samples_per_class, input_dim and latent_dim must be >= 1, nuisance_dim >= 0")
    depth = len(branching)
    if not 1 <= holdout_level <= depth:
        raise ValueError(f"holdout_level must be in 1..{depth} (the tree depth), got {holdout_level}")
    # Independent streams: changing samples_per_class keeps the same tree, map weights and split.
    ss_tree, ss_map, ss_samples, ss_split = np.random.SeedSequence(seed).spawn(4)
    if tree_seed is not None and tree_seed != seed:
        ss_tree = np.random.SeedSequence(tree_seed).spawn(4)[0]
    rng = np.random.default_rng(ss_tree)

    # --- 1. tree, top-down: positions and names of every level --------------------------------
    pos = np.zeros((1, latent_dim))
    paths = np.zeros((1, 0), dtype=np.int64)
    ancestors = np.zeros((1, 0), dtype=np.int64)
    names: list[str] = []
    for level, b in enumerate(branching, start=1):
        step = scale / decay ** (depth - level)
        dirs = np.stack([_orthonormal(rng, latent_dim, b) for _ in range(len(pos))])  # (P, b, d)
        pos = (pos[:, None, :] + step * dirs).reshape(-1, latent_dim)
        paths = np.concatenate(
            [np.repeat(paths, b, axis=0), np.tile(np.arange(b), len(paths))[:, None]], axis=1
        )
        first_id = len(names)
        names += [node_name(p) for p in paths]
        ancestors = np.concatenate(
            [np.repeat(ancestors, b, axis=0), first_id + np.arange(len(paths))[:, None]], axis=1
        )
    n_leaves = len(pos)

    # --- 2./3. samples and nuisance -------------------------------------------------------------
    rng = np.random.default_rng(ss_samples)
    leaf = np.repeat(np.arange(n_leaves), samples_per_class)
    z = pos[leaf] + noise * rng.standard_normal((len(leaf), latent_dim))
    u = np.concatenate([z, nuisance * rng.standard_normal((len(leaf), nuisance_dim))], axis=1)

    # --- 4. fixed random 2-layer tanh map (orthogonal weights: invertible when dims agree) -----
    # Few but large nuisance coordinates: they vary inside every class, so what a network learns
    # about removing them on the train classes transfers to the test classes.
    rng = np.random.default_rng(ss_map)
    d_in = latent_dim + nuisance_dim
    w1 = _random_orthogonal(rng, input_dim, d_in)
    w2 = _random_orthogonal(rng, input_dim, input_dim)
    w3 = _random_orthogonal(rng, input_dim, input_dim)
    b1, b2 = 0.5 * rng.standard_normal(input_dim), 0.5 * rng.standard_normal(input_dim)
    u = u - u.mean(0)
    h = np.tanh(gain * (u @ w1.T) + b1)
    h = np.tanh(gain * (h @ w2.T) / max(h.std(), 1e-12) + b2)
    x = h @ w3.T
    x = (x - x.mean(0)) / (x.std(0) + 1e-12)

    # --- split by class -------------------------------------------------------------------------
    rng = np.random.default_rng(ss_split)
    is_test = np.zeros(n_leaves, dtype=bool)
    if holdout == "sibling":
        b = branching[-1]
        n_test = min(b - 1, max(1, round(test_fraction * b)))
        for parent in range(n_leaves // b):
            is_test[parent * b + rng.permutation(b)[:n_test]] = True
    else:
        n_sub = int(np.prod(branching[:holdout_level]))
        n_test = min(n_sub - 1, max(1, round(test_fraction * n_sub)))
        test_sub = rng.permutation(n_sub)[:n_test]
        per_sub = n_leaves // n_sub  # leaves are numbered depth-first, so subtrees are contiguous
        for s in test_sub:
            is_test[s * per_sub : (s + 1) * per_sub] = True

    world = TreeWorld(
        x.astype(np.float32),
        z.astype(np.float32),
        leaf,
        paths,
        ancestors,
        node_names=tuple(names),
        centres=pos.astype(np.float32),
        is_test=is_test,
        branching=tuple(branching),
    )
    for a in (world.x, world.latent, world.leaf, world.paths, world.ancestors, world.centres, is_test):
        a.flags.writeable = False  # memoised and shared: nobody may edit it in place
    return world


class TreeDataset(TensorMetricDataset):
    """One split of the synthetic tree; yields ``(x, label)`` with ``x`` a ``(input_dim,)`` float32.

    Besides the common interface it exposes:

    ``latent``    ``(N, latent_dim)`` clean hierarchical coordinates of each sample.
    ``paths``     ``(C, depth)`` child index at each level for each class (leaf).
    ``ancestors`` ``(C, depth)`` global node ids at levels ``1..depth`` (last column: the leaf).
    ``node_names`` names of those node ids.
    ``hierarchy`` maps each leaf to its ancestor at ``superclass_level`` (default 1: the coarsest
    grouping, good for plot markers); ``ancestors`` has the full path.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        seed: int = 0,
        depth: int | None = None,
        branching: int | Sequence[int] = 4,
        superclass_level: int = 1,
        transform: Callable[[torch.Tensor], Any] | None = None,
        **world_options: Any,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} for 'tree'; choose one of {SPLITS}")
        check_tree_options(check_options({"depth": depth, "branching": branching, "superclass_level": superclass_level,
                                          **world_options}, OPTIONS))
        b = _normalise_branching(depth, branching)
        if not 1 <= superclass_level <= len(b):
            raise ValueError(f"superclass_level must be in 1..{len(b)}, got {superclass_level}")
        world = make_tree_world(seed, b, **world_options)
        keep_leaf = world.is_test if split == "test" else ~world.is_test
        leaves = np.flatnonzero(keep_leaf)  # global leaf ids of this split, in tree order
        local = np.full(len(keep_leaf), -1)
        local[leaves] = np.arange(len(leaves))
        rows = np.flatnonzero(keep_leaf[world.leaf])

        # Super-classes = all nodes of `superclass_level`, numbered globally (same in both splits).
        n_super = int(np.prod(b[:superclass_level]))
        first_id = sum(int(np.prod(b[:lvl])) for lvl in range(1, superclass_level))
        super_names = world.node_names[first_id : first_id + n_super]
        class_to_super = world.ancestors[leaves, superclass_level - 1] - first_id

        super().__init__(
            torch.from_numpy(world.x[rows].copy()),
            local[world.leaf[rows]],
            [world.node_names[i] for i in world.ancestors[leaves, -1]],
            class_to_super,
            super_names,
            transform=transform,
            name="tree",
            split=split,
        )
        self.world = world
        self.leaf_ids = torch.from_numpy(leaves)
        self.latent = torch.from_numpy(world.latent[rows].copy())
        self.paths = torch.from_numpy(world.paths[leaves].copy())
        self.ancestors = torch.from_numpy(world.ancestors[leaves].copy())
        self.node_names: list[str] = list(world.node_names)
        self.depth = len(b)

    def lca_level(self, a: torch.Tensor | int, b: torch.Tensor | int) -> torch.Tensor:
        """Level of the lowest common ancestor of classes ``a`` and ``b`` (broadcasting), as
        :meth:`chestlab.hierarchy.Hierarchy.lca_level`.

        0 = only the root in common, ``depth`` = same leaf.  Handy as a ground-truth similarity
        for the hyperbolic LCA of HypHC (:func:`chestlab.poincare.lca_depth`, a distance in the ball).
        """
        pa, pb = self.paths[torch.as_tensor(a)], self.paths[torch.as_tensor(b)]
        same = (pa == pb).long()
        return same.cumprod(dim=-1).sum(dim=-1)


def tree_info(
    *,
    depth: int | None = None,
    branching: int | Sequence[int] = 4,
    input_dim: int = 32,
    test_fraction: float = 0.5,
    holdout: str = "sibling",
    holdout_level: int = 1,
    **_: Any,
) -> dict[str, Any]:
    """Shape and class counts of ``TreeDataset`` for given options, without generating it."""
    b = _normalise_branching(depth, branching)
    leaves = math.prod(b)
    if holdout == "sibling":
        n_test = (leaves // b[-1]) * min(b[-1] - 1, max(1, round(test_fraction * b[-1])))
    else:
        n_sub = math.prod(b[:holdout_level])
        n_test = min(n_sub - 1, max(1, round(test_fraction * n_sub))) * (leaves // n_sub)
    return {
        "input_shape": (input_dim,),
        "num_classes": {"train": leaves - n_test, "test": n_test},
        "num_superclasses": b[0],
    }
