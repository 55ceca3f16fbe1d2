r"""Hierarchy-aware evaluation: decode a dendrogram from points in the Poincaré ball, score it against
a known class hierarchy, and measure how bad the retrieval mistakes are.

Three layers, each usable on its own:

* **Known hierarchy** -- :class:`Hierarchy`: for each class ``k``, its *path* from the root (excluded)
  down to the class itself (included), ``paths[k] = (level-1 ancestor, ..., class k)``.  The level-1
  ancestor is the super-class; two classes share ``lca_level(a, b)`` = the length of the common
  prefix of their paths (0: only the root in common, ``depth``: the same class) and their LCA sits
  ``lca_height(a, b) = depth - lca_level(a, b)`` levels above the leaves (the ball's continuous
  counterpart, the depth of the hyperbolic LCA, is :func:`chestlab.poincare.lca_depth`).  Built from a dataset
  (:func:`hierarchy_of`: the full tree of ``tree``, the super-classes of ``shapes``, CIFAR-100's 20
  coarse classes, CUB's families, Cars' makes...), a hierarchy file (:meth:`Hierarchy.from_file`), a
  parent table (:meth:`Hierarchy.from_parents`) or per-sample super-labels
  (:meth:`Hierarchy.from_super_labels`).
* **Dendrograms** -- :func:`decode` turns ``n`` points (class means, proxies) of the ball or of the
  plane into a scipy linkage matrix ``Z`` (n-1, 4) by one named method in either space: average (the
  default) or single linkage on the space's own distance (Poincaré / Euclidean), or HypHC's greedy
  decoding by the deepest LCA (``"lca"``, leaves brought to one radius).  :func:`dasgupta_cost`,
  :func:`dendrogram_purity` and :func:`cophenetic_correlation` score a linkage matrix;
  :func:`tree_scores` does all three against a :class:`Hierarchy`.
* **Retrieval** -- :func:`hierarchical_retrieval`: the *mistake severity* (mean LCA height between a
  query and its wrong top-1 neighbour) and Recall@1 at the super-class level, in Euclidean or
  Poincaré space, chunked like :mod:`chestlab.metrics` (O(chunk x N) memory).

:func:`hierarchy_metrics` runs everything on the trainer's embedding dict
(:meth:`chestlab.engine.evaluator.Evaluator.embed`) and returns flat keys (``"H/severity"``,
``"E/super_R@1"``, ``"H/cophenet"``, ``"E/lca_purity"``...) ready to log, each computed the same way in
both spaces.

Example
-------
>>> import torch
>>> from chestlab import poincare
>>> from chestlab.hierarchy import Hierarchy, decode, tree_scores
>>> h = Hierarchy.from_paths({"a": ["x"], "b": ["x"], "c": ["y"], "d": ["y"]})
>>> pts = poincare.expmap0(torch.tensor([[2.0, 0.1], [2.0, -0.1], [-2.0, 0.1], [-2.0, -0.1]]), 1.0)
>>> Z = decode(pts, 1.0)
>>> tree_scores(Z, [0, 1, 2, 3], h)["purity"]
1.0
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from scipy.cluster import hierarchy as sch
from scipy.spatial.distance import squareform
from torch import Tensor

from . import metrics, poincare

__all__ = [
    "MAX_HIERARCHY_FILE_BYTES",
    "MAX_HIERARCHY_CELLS",
    "Hierarchy",
    "hierarchy_of",
    "DECODE_METHODS",
    "DEFAULT_DECODER",
    "decode",
    "dasgupta_cost",
    "dendrogram_purity",
    "cophenetic_correlation",
    "tree_scores",
    "class_means",
    "nearest_neighbours",
    "hierarchical_retrieval",
    "hierarchy_metrics",
]

ArrayLike = Union[Tensor, np.ndarray, Sequence[Any]]
PathLike = Union[str, "os.PathLike[str]"]

#: The dendrogram decoders of :func:`decode`: linkage on each space's own distance, and HypHC's LCA decoding.
DECODE_METHODS = ("average", "single", "lca")
#: The decoder of every hierarchy metric (both spaces): average linkage on the space's own distance.
DEFAULT_DECODER = "average"

#: Elements per block of a pairwise computation (as :mod:`chestlab.metrics`: 2**22 = 16 MiB float32).
_BLOCK_ELEMENTS = 2**22


# --------------------------------------------------------------------------------------------
# the known hierarchy
# --------------------------------------------------------------------------------------------
class Hierarchy:
    r"""A known class hierarchy: for each of ``C`` classes, its path of ancestors from the root.

    ``paths[k] = (a_1, ..., a_{L_k - 1}, classes[k])``: ``a_1`` is the class's level-1 ancestor (its
    super-class), the root itself is left out and the class is the path's last node.  ``depth`` is
    the longest path; shorter paths are padded with the class itself (a chain of one-child nodes), so
    every class is a leaf at level ``depth``.  Nodes are identified by their whole path prefix, so two
    nodes may share a name under different parents.

    Normalisation: a prefix shared by *every* class (an explicit root such as ``"entity"``) is dropped,
    so level 1 always splits the classes; LCA heights are unchanged by this.

    Args:
        classes: ``C`` distinct class names, in label order (``classes[label]``).
        ancestors: for each class, its ancestors from the top (level 1) down to its parent, *without*
            the class itself; may be empty (the class hangs directly under the root).

    Attributes:
        classes: the class names, a tuple.
        paths: ``C`` tuples, each class's path (normalised, unpadded, class included).
        depth: number of levels below the root.
        codes: ``(C, depth)`` int64, read-only: ``codes[a, l] == codes[b, l]`` iff classes ``a`` and
            ``b`` share their level-``l+1`` ancestor (padding gets codes unique to its class).
    """

    def __init__(self, classes: Sequence[str], ancestors: Sequence[Sequence[str]]) -> None:
        classes = tuple(str(k) for k in classes)
        if not classes:
            raise ValueError("a hierarchy needs at least one class")
        if len(set(classes)) != len(classes):
            dup = sorted({k for k in classes if classes.count(k) > 1})[:5]
            raise ValueError(f"class names must be distinct, got duplicates {dup}")
        if len(ancestors) != len(classes):
            raise ValueError(f"got {len(ancestors)} ancestor paths for {len(classes)} classes; give one per class")
        paths = []
        for k, anc in zip(classes, ancestors):
            if isinstance(anc, str):
                raise TypeError(f"the ancestors of class {k!r} must be a sequence of names, got the string {anc!r}")
            paths.append(tuple(str(a) for a in anc) + (k,))
        # drop the prefix shared by every class (an explicit root), keeping each class's own node
        shortest = min(len(p) for p in paths)
        common = 0
        while common < shortest - 1 and all(p[common] == paths[0][common] for p in paths):
            common += 1
        self.classes: tuple[str, ...] = classes
        self.paths: tuple[tuple[str, ...], ...] = tuple(p[common:] for p in paths)
        self.depth: int = max(len(p) for p in self.paths)
        codes = np.empty((len(classes), self.depth), dtype=np.int64)
        for level in range(self.depth):
            table: dict[tuple[int, str], int] = {}
            for k, p in enumerate(self.paths):
                # a node is its whole prefix, i.e. its parent's node and its name (O(C depth), not
                # O(C depth^2)); padding (level beyond the path) is unique to its class
                parent = int(codes[k, level - 1]) if level else 0
                codes[k, level] = table.setdefault((parent, p[level]), len(table)) if level < len(p) else -1 - k
        codes.flags.writeable = False
        self.codes: np.ndarray = codes

    # -- constructors ----------------------------------------------------------------------------
    @classmethod
    def from_paths(cls, ancestors: Mapping[str, Sequence[str]], classes: Optional[Sequence[str]] = None) -> "Hierarchy":
        """From a mapping ``class name -> [level-1 ancestor, ..., parent]`` (class excluded).

        ``classes`` picks and orders the classes (each must be in the mapping; extra entries are
        ignored, so one mapping can serve both splits); default: the mapping's order.
        """
        names = list(ancestors) if classes is None else [str(k) for k in classes]
        missing = [k for k in names if k not in ancestors]
        if missing:
            raise ValueError(
                f"{len(missing)} class(es) have no ancestors in the hierarchy, e.g. {missing[:5]}; "
                f"it knows {len(ancestors)} classes, e.g. {list(ancestors)[:3]}"
            )
        return cls(names, [ancestors[k] for k in names])

    @classmethod
    def from_parents(
        cls,
        parents: Union[Mapping[Any, Any], Sequence[int], np.ndarray],
        classes: Optional[Sequence[Any]] = None,
    ) -> "Hierarchy":
        """From a parent table: ``{node: parent}`` (``None``, or a node absent from the keys, hangs
        under the root), or a sequence of ints ``parents[i]`` = parent of node ``i`` (negative, or
        ``i`` itself: under the root; HypHC's and scipy's ``to_tree`` convention).

        ``classes``: the leaves, in label order; default: every node that is nobody's parent, in key
        order (ints: increasing).  Node names are ``str(node)``.  A single top node shared by all
        classes is an explicit root and is dropped (see :class:`Hierarchy`).
        """
        if isinstance(parents, Mapping):
            table = {k: v for k, v in parents.items()}
        else:
            arr = np.asarray(parents)
            if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
                raise ValueError("parents must be a mapping or a 1-D sequence of integer node ids")
            table = {i: (None if p < 0 or p == i else int(p)) for i, p in enumerate(arr.tolist())}
        if classes is None:
            inner = {p for p in table.values() if p is not None}
            classes = [k for k in table if k not in inner]
        ancestors = []
        for leaf in classes:
            path: list[Any] = []
            node = table.get(leaf)
            while node is not None:
                if len(path) > len(table):
                    raise ValueError(f"the parent table has a cycle through {leaf!r}")
                path.append(node)
                node = table.get(node)
            ancestors.append([str(a) for a in reversed(path)])
        return cls([str(k) for k in classes], ancestors)

    @classmethod
    def from_super_labels(
        cls,
        labels: ArrayLike,
        super_labels: ArrayLike,
        *,
        classes: Optional[Sequence[str]] = None,
        superclasses: Optional[Sequence[str]] = None,
    ) -> "Hierarchy":
        """The two-level hierarchy root -> super-class -> class from per-sample labels.

        ``labels``, ``super_labels``: ``(N,)`` ints (class and super-class of each sample; ``N = C``
        with ``labels = arange(C)`` gives the mapping directly).  A class must have one super-class
        (``ValueError`` otherwise).  ``classes`` / ``superclasses`` name them (default ``str(k)`` and
        ``"S<s>"``); ``C`` is ``len(classes)`` or ``max(labels) + 1``, and a class without samples
        hangs directly under the root (its own level-1 group).
        """
        lab = _as_int_array(labels, "labels")
        sup = _as_int_array(super_labels, "super_labels")
        if lab.shape != sup.shape:
            raise ValueError(f"labels and super_labels must have the same shape, got {lab.shape} and {sup.shape}")
        n_classes = len(classes) if classes is not None else (int(lab.max()) + 1 if lab.size else 0)
        if lab.size and int(lab.max()) >= n_classes:
            raise ValueError(f"label {int(lab.max())} is out of range for {n_classes} classes")
        pairs = np.unique(np.stack([lab, sup], 1), axis=0) if lab.size else np.zeros((0, 2), np.int64)
        owner = np.full(n_classes, -1, dtype=np.int64)
        for k, s in pairs.tolist():
            if owner[k] >= 0:
                raise ValueError(
                    f"class {k} has samples in two super-classes ({owner[k]} and {s}); "
                    "super_labels must be a function of labels"
                )
            owner[k] = s
        if superclasses is not None and pairs.size and int(pairs[:, 1].max()) >= len(superclasses):
            raise ValueError(f"super-class {int(pairs[:, 1].max())} is out of range for {len(superclasses)} names")
        names = [str(k) for k in range(n_classes)] if classes is None else [str(k) for k in classes]
        sname = (lambda s: str(superclasses[s])) if superclasses is not None else (lambda s: f"S{s}")
        return cls(names, [[sname(int(s))] if s >= 0 else [] for s in owner])

    @classmethod
    def from_file(cls, path: PathLike, classes: Optional[Sequence[str]] = None) -> "Hierarchy":
        """Read a hierarchy file: each class name with its ancestors, top (level 1) first.

        Format (``.json`` by suffix, anything else is CSV):

        * JSON: one object ``{"class name": ["level-1 ancestor", ..., "parent"], ...}``, e.g.
          ``{"001.Black_footed_Albatross": ["Procellariiformes", "Diomedeidae"], ...}``;
        * CSV: one row per class, ``class,level-1 ancestor,...,parent`` (rows may differ in length);
          blank rows and rows starting with ``#`` are skipped, as is a header row whose first cell
          is ``class``.

        The class itself is not listed among its ancestors.  ``classes`` (e.g. a dataset split's
        ``classes``) picks and orders the classes; every one must be in the file, extra entries are
        ignored (one file serves both splits).  :meth:`to_file` writes either format.
        """
        path = Path(path)
        text = _read_text(path, MAX_HIERARCHY_FILE_BYTES, "the hierarchy file")
        table: dict[str, list[str]] = {}
        if path.suffix.lower() == ".json":
            try:
                raw = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as e:
                why = e if isinstance(e, json.JSONDecodeError) else "nested too deeply"
                raise ValueError(f"{path}: not valid JSON ({why}); expected {{class: [ancestors...]}}") from None
            if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
                raise ValueError(f"{path}: expected one JSON object mapping each class name to a list of ancestors")
            table = {str(k): [str(a) for a in v] for k, v in raw.items()}
        else:
            reader = csv.reader(text.splitlines())
            try:
                rows = list(reader)
            except csv.Error as e:  # e.g. a field over csv's size limit
                raise ValueError(f"{path}, row {reader.line_num}: not a CSV table ({e})") from None
            for i, row in enumerate(rows):
                cells = [c.strip() for c in row]
                while cells and not cells[-1]:
                    cells.pop()
                if not cells or cells[0].startswith("#") or (i == 0 and cells[0].lower() == "class"):
                    continue
                if cells[0] in table:  # the row's text is not echoed: errors never show a file's content
                    raise ValueError(f"{path}, row {i + 1}: its class is listed twice (the file lists each class once)")
                table[cells[0]] = cells[1:]
        if not table:
            raise ValueError(f"{path}: no classes found")
        missing = [] if classes is None else [str(k) for k in classes if str(k) not in table]
        if missing:  # names the dataset's classes only, never the file's entries
            raise ValueError(f"{path}: {len(missing)} of the {len(classes)} classes have no ancestors in the file, "
                             f"e.g. {missing[:3]}; it has {len(table)} entries, none for them")
        names = list(table) if classes is None else [str(k) for k in classes]
        depth = 1 + max(len(table[k]) for k in names)
        if len(names) * depth > MAX_HIERARCHY_CELLS:  # Hierarchy holds a (classes, depth) code table
            raise ValueError(f"{path}: {len(names)} classes x {depth} levels is more than {MAX_HIERARCHY_CELLS} "
                             "cells; a hierarchy file is a table of classes and their ancestors")
        return cls.from_paths(table, classes)

    @classmethod
    def from_dataset(cls, dataset: Any) -> "Hierarchy":
        """The true hierarchy of a split of a :class:`chestlab.data.MetricDataset`.

        The full tree where the dataset exposes it (``tree``: ``ancestors`` + ``node_names``, all
        ``depth`` levels), else the two levels super-class -> class from ``class_to_super`` and
        ``superclasses`` (``shapes``' families, CIFAR-100's coarse classes, CUB's families, Cars'
        makes, SOP's categories...).  Classes are in the split's label order.
        """
        classes = list(dataset.classes)
        anc = getattr(dataset, "ancestors", None)
        names = getattr(dataset, "node_names", None)
        if anc is not None and names is not None:
            rows = np.asarray(anc).tolist()
            return cls(classes, [[names[i] for i in row[:-1]] for row in rows])
        supers = list(dataset.superclasses)
        return cls(classes, [[supers[int(s)]] for s in np.asarray(dataset.class_to_super).tolist()])

    # -- queries ---------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of classes ``C``."""
        return len(self.classes)

    def groups(self, level: int = 1) -> np.ndarray:
        """``(C,)`` int64: index of each class's ancestor at ``level`` (1 = super-class, ``depth`` =
        the class itself), numbered ``0..G-1`` in order of first appearance."""
        if not 1 <= level <= self.depth:
            raise ValueError(f"level must be in 1..{self.depth} (the hierarchy's depth), got {level}")
        _, first, inverse = np.unique(self.codes[:, level - 1], return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first))  # renumber groups by first appearance
        return rank[inverse.reshape(-1)].astype(np.int64)

    def group_names(self, level: int = 1) -> list[str]:
        """Names of the ``groups(level)`` nodes, in group order (``superclasses`` for ``level=1``)."""
        g = self.groups(level)
        out = [""] * (int(g.max()) + 1)
        for k, p in enumerate(self.paths):
            out[g[k]] = p[min(level, len(p)) - 1]
        return out

    def lca_level(self, a: ArrayLike, b: ArrayLike) -> np.ndarray:
        """Levels shared by classes ``a`` and ``b`` (ints, broadcasting): the level of their lowest
        common ancestor, the length of the common prefix of their paths; 0 = only the root in common,
        ``depth`` = the same class. (Not :func:`chestlab.poincare.lca_depth`: a distance in the ball.)"""
        ca, cb = self.codes[_class_indices(a, "a", self.num_classes)], self.codes[_class_indices(b, "b", self.num_classes)]
        return np.cumprod(ca == cb, axis=-1).sum(-1)

    def lca_height(self, a: ArrayLike, b: ArrayLike) -> np.ndarray:
        """Height of the LCA of classes ``a`` and ``b`` above the leaves: ``depth - lca_level(a, b)``
        (0 = same class, 1 = siblings, ``depth`` = different super-classes)."""
        return self.depth - self.lca_level(a, b)

    def to_dict(self) -> dict[str, list[str]]:
        """``{class: [ancestors, top first]}``, the JSON file format of :meth:`from_file`."""
        return {k: list(p[:-1]) for k, p in zip(self.classes, self.paths)}

    def to_file(self, path: PathLike) -> None:
        """Write the hierarchy in the format of :meth:`from_file` (JSON for ``.json``, else CSV)."""
        path = Path(path)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
            return
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["class", "ancestors (top first)"])
            for k, anc in self.to_dict().items():
                writer.writerow([k, *anc])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hierarchy):
            return NotImplemented
        return self.classes == other.classes and self.paths == other.paths

    def __repr__(self) -> str:
        return f"Hierarchy(classes={self.num_classes}, depth={self.depth}, super-classes={len(self.group_names(1))})"


def hierarchy_of(
    dataset: Any,
    split: str = "test",
    *,
    file: Optional[PathLike] = None,
    **options: Any,
) -> Hierarchy:
    """The true hierarchy of a dataset split, classes in its label order.

    ``dataset``: a :class:`chestlab.data.MetricDataset`, or a registry name loaded with
    ``load_dataset(dataset, split, **options)`` (``data_root``, ``seed``, ``branching``...).  With
    ``file`` (see :meth:`Hierarchy.from_file`), the hierarchy is read from it for the split's
    ``classes`` -- how CUB / Cars get a deeper taxonomy; otherwise :meth:`Hierarchy.from_dataset`.
    """
    if isinstance(dataset, str):
        from .data import load_dataset  # lazy: the data package pulls in PIL and the readers

        dataset = load_dataset(dataset, split, **options)
    elif options:
        raise ValueError(f"options {sorted(options)} only apply when dataset is a registry name")
    if file is not None:
        return Hierarchy.from_file(file, classes=list(dataset.classes))
    return Hierarchy.from_dataset(dataset)


#: The most bytes :meth:`Hierarchy.from_file` reads (8 MiB: 100 000 classes with four levels of
#: 20-character names fit), so /dev/zero or a wrong file does not fill memory; and the most cells
#: (classes x levels) of the table it builds (a short row among long ones is padded).
MAX_HIERARCHY_FILE_BYTES = 8 * 2**20
MAX_HIERARCHY_CELLS = 2**22


def _read_text(path: Path, max_bytes: int, what: str) -> str:
    """The UTF-8 text of the regular file ``path``, at most ``max_bytes``; one-line ``ValueError``
    otherwise (a device, a folder, a larger file, binary or undecodable bytes). The content is
    never echoed."""
    if not path.is_file():  # devices (/dev/zero), pipes and folders are not files to read
        raise ValueError(f"{what} {path} is not a regular file" + ("" if path.exists() else " (it does not exist)"))
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise ValueError(f"cannot read {what} {path}: {e.strerror or type(e).__name__}") from None
    if len(data) > max_bytes:
        raise ValueError(f"{what} {path} is larger than {max_bytes // 2**20} MiB; it is not a hierarchy table")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise ValueError(f"{what} {path} is not UTF-8 text (a binary file?); give a CSV or JSON table of classes")
    return text


# --------------------------------------------------------------------------------------------
# decoding a dendrogram
# --------------------------------------------------------------------------------------------
def _as_int_array(values: ArrayLike, name: str) -> np.ndarray:
    arr = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _class_indices(values: ArrayLike, name: str, C: int) -> np.ndarray:
    """Integer class indices in ``[0, C)`` (a negative index would silently wrap around)."""
    arr = _as_int_array(values, name)
    if arr.size and (arr.min() < 0 or arr.max() >= C):
        raise ValueError(f"{name} must hold class indices in [0, {C}) (the hierarchy's C = {C} classes), "
                         f"found {arr.min()}..{arr.max()}")
    return arr


def _as_points(points: ArrayLike, name: str = "points") -> Tensor:
    x = points.detach() if isinstance(points, Tensor) else torch.as_tensor(np.asarray(points))
    if x.dim() != 2:
        raise ValueError(f"{name} must be a 2-D array (n, D), got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        x = x.double()
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _condensed(x: Tensor, fn: Callable[[Tensor, Tensor], Tensor], rows: int) -> np.ndarray:
    """``[fn(x_i, x_j) for i < j]`` in scipy's condensed order, ``rows`` query rows per block."""
    n = x.shape[0]
    out = np.empty(n * (n - 1) // 2)
    pos = 0
    for s in range(0, n - 1, rows):
        e = min(s + rows, n - 1)
        block = fn(x[s:e], x[s + 1 :]).cpu().numpy()  # (e - s, n - s - 1): row i = s + r, column j = s + 1 + col
        for r in range(e - s):
            m = n - s - 1 - r
            out[pos : pos + m] = block[r, r:]
            pos += m
    return out


def _pairwise_lca_depth(a: Tensor, b: Tensor, c: float) -> Tensor:
    r""":func:`chestlab.poincare.lca_depth` of every row of ``a`` (B, D) with every row of ``b`` (M, D)
    -> (B, M), float64, from one Gram matrix instead of a (B, M, D) broadcast (~10x less work).

    Same closed form, with :math:`\|a \wedge b\|^2 = \|a\|^2\|b\|^2 - \langle a,b\rangle^2` and
    :math:`\|a-b\|^2 = \|a\|^2 + \|b\|^2 - 2\langle a,b\rangle`; the pairs where either cancels
    (below 1e-6 of its scale: near-duplicate or near-parallel points, where relative errors would
    exceed ~1e-10) are recomputed with ``poincare.lca_depth`` itself.
    """
    a2 = a.pow(2).sum(1)[:, None]
    b2 = b.pow(2).sum(1)[None, :]
    g = a @ b.T
    sq = (a2 + b2 - 2 * g).clamp_min(0)
    wedge2 = (a2 * b2 - g * g).clamp_min(0)
    bad = (sq <= 1e-6 * (a2 + b2)) | (wedge2 <= 1e-6 * (a2 * b2))
    al = poincare.alpha(a, c)[:, None] * poincare.alpha(b, c)[None, :]
    s = 2 * wedge2.sqrt() / (sq * (al + c * sq)).clamp_min(torch.finfo(a.dtype).tiny).sqrt()
    depth = s if c == 0 else torch.asinh(math.sqrt(c) * s) / math.sqrt(c)
    if bool(bad.any()):
        i, j = bad.nonzero(as_tuple=True)
        depth = depth.index_put((i, j), poincare.lca_depth(a[i], b[j], c))
    return depth


#: Peak bytes per pair of points in :func:`decode`: the condensed float64 matrix and up to three
#: working copies of it (measured: 33 bytes per pair for "lca" at n = 6000, 21 for "average", 13 for
#: "single").
_DECODE_BYTES_PER_PAIR = 32


def _memory_bytes() -> int:
    """The machine's physical memory in bytes (16 GiB where the OS does not report it)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 16 * 2**30


def _check_decode_size(n: int) -> None:
    """Refuse, before anything is allocated, ``n`` points whose ``n (n - 1) / 2`` pairs at
    ``_DECODE_BYTES_PER_PAIR`` bytes would take more than half of the machine's memory."""
    memory = _memory_bytes()
    pairs = memory // 2 // _DECODE_BYTES_PER_PAIR
    n_max = (1 + math.isqrt(1 + 8 * pairs)) // 2  # the largest n with n (n - 1) / 2 <= pairs
    if n > n_max:
        need = n * (n - 1) // 2 * _DECODE_BYTES_PER_PAIR
        raise ValueError(
            f"decode: n = {n:,} points need ~{need / 2**30:,.0f} GiB ({_DECODE_BYTES_PER_PAIR} bytes for each of the "
            f"n(n-1)/2 pairs); the bound is half of this machine's {memory / 2**30:.0f} GiB of memory, n <= {n_max:,}: "
            f"decode fewer points (class means, proxies or a subset)"
        )


def decode(
    points: ArrayLike,
    c: Optional[poincare.Curvature],
    method: str = DEFAULT_DECODER,
    *,
    normalize: Optional[bool] = None,
) -> np.ndarray:
    r"""A dendrogram of ``n`` points (class means, proxies) as a scipy linkage matrix, in the Poincaré
    ball of curvature ``-c`` or, for ``c=None``, in Euclidean space.

    ``points``: ``(n, D)``, ``n >= 2``, inside the ball when ``c`` is given; computed in float64.
    Returns ``Z``: ``(n - 1, 4)`` float64, row ``k`` merging clusters ``Z[k, 0]`` and ``Z[k, 1]`` at
    height ``Z[k, 2]`` into cluster ``n + k`` of ``Z[k, 3]`` leaves -- valid
    (``scipy.cluster.hierarchy.is_valid_linkage``) and monotone, so scipy's ``dendrogram``,
    ``cophenet``, ``fcluster``... work on it.

    Each method is one rule applied to the space's own distance, so the ball and the plane are decoded
    alike: :math:`d` is the Poincaré distance :math:`D_c` (:func:`chestlab.poincare.pairwise_dist`)
    for a curvature ``c`` and the Euclidean :math:`\|x - y\|` for ``c=None``; as ``c -> 0``,
    :math:`D_c \to 2\|x - y\|` and every height tends to twice its Euclidean value (the same tree).

    ``method``:

    * ``"average"`` (the default of every hierarchy metric), ``"single"`` -- scipy's average (UPGMA)
      / single linkage on the condensed matrix of :math:`d(x_i, x_j)`; heights are distances.
      Isometries of the space (rotations; in the ball also gyro-translations :math:`a \oplus_c x`)
      leave the tree unchanged.
    * ``"lca"`` -- HypHC's decoding (Chami et al. 2020): pairs are merged greedily by the depth of
      their LCA, :math:`d_o(x_i, x_j)` = :func:`chestlab.poincare.lca_depth` (the distance from the
      origin to the geodesic through the two points; for ``c=None`` the Euclidean distance from the
      origin to the line through them, half its ``c -> 0`` limit), deepest first, with a union-find:
      whenever a pair's points are still in different clusters, those clusters merge.  That is
      single linkage on any decreasing function of :math:`d_o`; the merge height is

      .. math:: h_{ij} = 2\,(R - d_o(x_i, x_j)), \qquad R = \max_k d(0, x_k),

      which is :math:`\ge 0` (the geodesic is no farther from the origin than its end points),
      non-decreasing along the merges (deepest first), and the length of the path leaf -> LCA ->
      leaf for two leaves at the outermost radius ``R``.  The origin is the root, so unlike the
      linkages this decoding is not invariant to translations.  HypHC decodes leaves at one radius
      (then only the angles matter; two points on one ray from the origin have :math:`d_o = 0`, their
      geodesic passing through the origin): ``normalize`` (default ``True`` for ``"lca"``) first moves
      every point along its ray to radius ``R`` (points at the origin stay).  ``normalize=False``
      decodes the points where they are -- Eq. 9's LCA reading, which the CHEST loss applies to
      proxies of any radius.

    Ties: scipy breaks exact ties deterministically, from the order of the leaves.  Single linkage
    (and so ``"lca"``) runs on a minimum spanning tree; a tie changes the binary order within the tie
    but never the cophenetic distances.  Average linkage runs a nearest-neighbour chain: the chain
    starts at the lowest-numbered cluster left and steps from each cluster to its nearest one,
    keeping the cluster it came from when that is as near, else the lowest-numbered of the equally
    near ones; the merges are then sorted by height, stably.  There a tie can change the tree, so two
    spaces (or an isometry) that agree on the distances up to rounding agree merge for merge only
    when no two candidate merges are within rounding of each other.

    Pairwise quantities are computed in row blocks (a few times 16 MiB at a time); the condensed
    matrix itself (``n (n - 1) / 2`` float64) is what scipy needs.
    """
    if method not in DECODE_METHODS:
        raise ValueError(f"method must be one of {DECODE_METHODS}, got {method!r}")
    if normalize is None:
        normalize = method == "lca"
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be True, False or None (HypHC's choice for the method), got {normalize!r}")
    if normalize and method != "lca":
        raise ValueError(f"normalize=True moves the points to one radius for method='lca' only, not {method!r}")
    euclid = c is None
    if not euclid:
        poincare.check_curvature(c)
    # the plane's LCA decoding is the ball's at c = 0 with every length halved (exact in floating point)
    cf = 0.0 if euclid else float(c)
    x = _as_points(points).to(torch.float64)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"decode needs at least 2 points, got {n}")
    _check_decode_size(n)
    if not euclid:
        poincare.check_in_ball(x, cf, "points")
    rows = metrics.default_chunk_size(n)
    with torch.no_grad(), poincare.checks(False):
        if method != "lca":
            if euclid:
                dists = _condensed(x, poincare.pairwise_euclidean, rows)
            else:
                dists = _condensed(x, lambda a, b: poincare.pairwise_dist(a, b, cf), rows)
            return sch.linkage(dists, method=method)
        r0 = poincare.dist0(x, cf)
        big = float(r0.max())
        if normalize:
            # move each point along its ray to radius R (points at the origin stay)
            x = poincare.expmap0(poincare.logmap0(x, cf) * (big / r0.clamp_min(1e-300)).unsqueeze(-1), cf)
            x = torch.where((r0 > 0).unsqueeze(-1), x, torch.zeros_like(x))
        depth = _condensed(x, lambda a, b: _pairwise_lca_depth(a, b, cf), rows)
        heights = np.clip(2.0 * (big - depth), 0.0, None)
        return sch.linkage(heights / 2 if euclid else heights, method="single")


# --------------------------------------------------------------------------------------------
# scoring a dendrogram
# --------------------------------------------------------------------------------------------
def _check_linkage(Z: ArrayLike) -> np.ndarray:
    Z = np.asarray(Z, dtype=np.float64)
    sch.is_valid_linkage(Z, throw=True, name="Z")
    return Z


def _square(matrix: ArrayLike, n: int, name: str) -> np.ndarray:
    m = np.asarray(matrix.detach().cpu() if isinstance(matrix, Tensor) else matrix, dtype=np.float64)
    if m.ndim == 1:
        if m.shape[0] != n * (n - 1) // 2:
            raise ValueError(
                f"condensed {name} must have n(n-1)/2 = {n * (n - 1) // 2} entries for n = {n}, got {m.shape[0]}"
            )
        return squareform(m, checks=False)
    if m.shape != (n, n):
        raise ValueError(f"{name} must be ({n}, {n}) for a tree with {n} leaves, got {m.shape}")
    if not np.allclose(m, m.T, rtol=1e-10, atol=1e-12):
        raise ValueError(f"{name} must be symmetric")
    return m


def dasgupta_cost(Z: ArrayLike, similarity: ArrayLike) -> float:
    r"""Dasgupta's cost (2016) of the tree ``Z`` under the similarities ``W``:

    .. math:: \mathrm{cost}(T) = \sum_{i<j} W_{ij}\,|\mathrm{leaves}(T[i \vee j])|
              = \sum_k |A_k \cup B_k| \sum_{i \in A_k,\, j \in B_k} W_{ij},

    merge ``k`` joining clusters ``A_k`` and ``B_k``: every unordered pair counted once (HypHC's code
    reports twice this).  Lower is better: similar leaves should meet low in the tree.

    ``Z``: ``(n - 1, 4)`` linkage matrix; ``similarity``: ``(n, n)`` symmetric (diagonal ignored) or
    condensed ``(n (n - 1) / 2,)``.  ``O(n^2)`` time.  Bounds: ``2 sum W <= cost <= n sum W``.
    """
    Z = _check_linkage(Z)
    n = Z.shape[0] + 1
    W = _square(similarity, n, "similarity")
    members: list[Optional[np.ndarray]] = [np.array([i]) for i in range(n)] + [None] * (n - 1)
    cost = 0.0
    for k, (a, b, _, _) in enumerate(Z):
        A, B = members[int(a)], members[int(b)]
        cost += (len(A) + len(B)) * float(W[np.ix_(A, B)].sum())
        members[n + k] = np.concatenate([A, B])
        members[int(a)] = members[int(b)] = None
    return cost


def dendrogram_purity(Z: ArrayLike, labels: ArrayLike) -> float:
    r"""Dendrogram purity (Heller & Ghahramani 2005) of the tree ``Z`` for leaf labels ``labels``:

    .. math:: \mathrm{DP} = \frac{1}{|P|} \sum_{(i,j) \in P}
              \frac{|\{l \in \mathrm{leaves}(T[i \vee j]) : y_l = y_i\}|}{|\mathrm{leaves}(T[i \vee j])|},

    ``P`` the unordered pairs of distinct leaves with the same label: the mean, over such pairs, of the
    fraction of their LCA's leaves that share their label.  1 when every label is a subtree.  For a
    dendrogram of class means or proxies, ``labels`` is a coarser level of the known hierarchy (e.g.
    ``Hierarchy.groups(1)``, the super-classes).

    ``Z``: ``(n - 1, 4)``; ``labels``: ``(n,)`` ints.  ``nan`` when no two leaves share a label.
    Computed per merge from label counts: merge of ``A`` and ``B`` adds
    :math:`\sum_y c_A(y)\,c_B(y)\,(c_A(y) + c_B(y)) / (|A| + |B|)`, ``O(n * labels)``.
    """
    Z = _check_linkage(Z)
    n = Z.shape[0] + 1
    y = _as_int_array(labels, "labels").reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"labels must have one entry per leaf (n = {n}), got {y.shape[0]}")
    _, y = np.unique(y, return_inverse=True)
    y = y.reshape(-1)
    n_labels = int(y.max()) + 1
    sizes = np.bincount(y, minlength=n_labels)
    n_pairs = float((sizes * (sizes - 1) // 2).sum())
    if n_pairs == 0:
        return math.nan
    counts: dict[int, np.ndarray] = {}
    total = 0.0
    for k, (a, b, _, size) in enumerate(Z):
        ca = counts.pop(int(a)) if a >= n else np.bincount(y[int(a) : int(a) + 1], minlength=n_labels)
        cb = counts.pop(int(b)) if b >= n else np.bincount(y[int(b) : int(b) + 1], minlength=n_labels)
        both = ca + cb
        total += float((ca * cb * both).sum()) / float(size)
        counts[n + k] = both
    return total / n_pairs


def cophenetic_correlation(Z: ArrayLike, true_distances: ArrayLike) -> float:
    """Cophenetic correlation: Pearson's r between the tree's cophenetic distances (the merge height
    of each pair's LCA) and ``true_distances`` (e.g. LCA heights in the known hierarchy), via
    ``scipy.cluster.hierarchy.cophenet``.

    ``Z``: ``(n - 1, 4)``; ``true_distances``: ``(n, n)`` symmetric or condensed.  ``nan`` when
    either side is constant (no correlation is defined).
    """
    Z = _check_linkage(Z)
    n = Z.shape[0] + 1
    y = squareform(_square(true_distances, n, "true_distances"), checks=False)
    coph = sch.cophenet(Z)
    if np.ptp(y) == 0 or np.ptp(coph) == 0:
        return math.nan
    return float(sch.cophenet(Z, y)[0])


def tree_scores(Z: ArrayLike, leaf_classes: ArrayLike, hierarchy: Hierarchy, *, level: int = 1) -> dict[str, float]:
    r"""Agreement of a dendrogram with a known hierarchy; leaf ``i`` of ``Z`` is class ``leaf_classes[i]``.

    Returns

    * ``"cophenet"``: :func:`cophenetic_correlation` against the LCA heights
      ``hierarchy.lca_height`` of the leaves' classes;
    * ``"purity"``: :func:`dendrogram_purity` with the leaves labelled by their level-``level``
      ancestor (default 1: super-classes);
    * ``"dasgupta"``: :func:`dasgupta_cost` under :math:`W_{ij}` = ``hierarchy.lca_level`` (levels
      shared: deeper LCA = more similar), normalised by its upper bound :math:`n \sum_{i<j} W_{ij}`
      (every pair split at the root), so it lies in ``[2/n, 1]``; lower is better.

    ``Z``: ``(n - 1, 4)``; ``leaf_classes``: ``(n,)`` class indices (repeats allowed, e.g. ``K``
    proxies per class).  ``O(n^2)`` memory.
    """
    cls = _as_int_array(leaf_classes, "leaf_classes").reshape(-1)
    if cls.size and (cls.min() < 0 or cls.max() >= hierarchy.num_classes):
        raise ValueError(f"leaf_classes must be in [0, {hierarchy.num_classes}), got {cls.min()}..{cls.max()}")
    n = cls.shape[0]
    shared = hierarchy.lca_level(cls[:, None], cls[None, :]).astype(np.float64)
    heights = hierarchy.depth - shared
    np.fill_diagonal(shared, 0.0)
    norm = n * shared.sum() / 2
    return {
        "cophenet": cophenetic_correlation(Z, heights),
        "purity": dendrogram_purity(Z, hierarchy.groups(level)[cls]),
        "dasgupta": float(dasgupta_cost(Z, shared) / norm) if norm > 0 else math.nan,
    }


# --------------------------------------------------------------------------------------------
# retrieval with a hierarchy
# --------------------------------------------------------------------------------------------
def class_means(x: ArrayLike, labels: ArrayLike, c: Optional[poincare.Curvature] = None) -> tuple[Tensor, Tensor]:
    r"""Mean embedding of each class present: ``(K, D)`` means and ``(K,)`` their class ids (sorted).

    Euclidean mean for ``c=None``; in the ball (``c`` given) the gyro-midpoint of the class,
    :func:`chestlab.poincare.weighted_midpoint` with equal weights,

    .. math:: m_k = \tfrac12 \otimes_c \frac{\sum_{i \in k} 2 x_i / \alpha_i}{\sum_{i \in k} (1 + c\|x_i\|^2)/\alpha_i},
              \qquad \tfrac12 \otimes_c y = \frac{y}{1 + \sqrt{1 - c\|y\|^2}},

    which moves with the points under every isometry of the ball (a gyro-translation
    :math:`a \oplus_c x` of the class moves its midpoint to :math:`a \oplus_c m_k`), so the dendrogram of
    the class means depends on the embedding's shape and not on where the origin is; it tends to the
    Euclidean mean as ``c -> 0``.  The sums are accumulated in float64, rows taken in chunks (a few
    8 MiB blocks at a time whatever ``N``); returned in float64.
    """
    x = _as_points(x, "x")
    y = torch.as_tensor(_as_int_array(labels, "labels"), device=x.device).reshape(-1)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but labels has {y.shape[0]}")
    if c is not None:
        poincare.check_curvature(c)
        poincare.check_in_ball(x, c, "x")
    ids, inverse = torch.unique(y, return_inverse=True)
    sums = torch.zeros(len(ids), x.shape[1], dtype=torch.float64, device=x.device)
    den = torch.zeros(len(ids), dtype=torch.float64, device=x.device)
    rows = max(1, _BLOCK_ELEMENTS // 4 // max(1, x.shape[1]))  # 8 MiB float64 blocks
    with poincare.checks(False):
        for s in range(0, x.shape[0], rows):
            v, idx = x[s : s + rows].double(), inverse[s : s + rows]
            if c is None:
                sums.index_add_(0, idx, v)
                den.index_add_(0, idx, torch.ones_like(v[:, 0]))
            else:  # weighted_midpoint's numerator and denominator, summed per class
                inv_alpha = 1 / poincare.alpha(v, c)
                sums.index_add_(0, idx, v * (2 * inv_alpha).unsqueeze(1))
                den.index_add_(0, idx, (1 + float(c) * v.pow(2).sum(1)) * inv_alpha)
        means = sums / den.unsqueeze(1)
        if c is not None:
            root = (1 - float(c) * means.pow(2).sum(1)).clamp_min(0).sqrt()
            means = poincare.project(means / (1 + root).unsqueeze(1), c)
    return means, ids


#: Candidates per query kept by the cheap ranking of :func:`nearest_neighbours` and re-ranked exactly.
_CANDIDATES = 8
#: Above one cancelling pair in this many, :func:`nearest_neighbours` recomputes a whole block directly.
_DENSE_CLOSE = 64


@torch.no_grad()
def nearest_neighbours(
    x: ArrayLike,
    metric: str = "euclidean",
    c: Optional[poincare.Curvature] = None,
    *,
    chunk_size: Optional[int] = None,
) -> Tensor:
    r"""Index of each row's nearest *other* row: ``(N, D) -> (N,)`` int64.

    ``metric``: ``"euclidean"`` or ``"poincare"`` (curvature ``c``; rows must be in the ball).
    Queries go in chunks of ``chunk_size`` rows (default :func:`chestlab.metrics.default_chunk_size`,
    a 16 MiB float32 block), so memory is O(chunk x N): 60k x 384 float32 embeddings need about
    70 MiB on top of the data.  A row is ranked by a score that orders it like the distance --
    :math:`\|x-y\|^2` (Euclidean) or :math:`\|x-y\|^2/\alpha_y` (Poincaré: Eq. 2 increases with
    :math:`\|x-y\|^2/(\alpha_x\alpha_y)` and :math:`\alpha_x` is fixed along the row, with
    :math:`\alpha_y = 1 - c\|y\|^2` from :func:`chestlab.poincare.alpha`) -- expanded through one
    ``addmm`` per chunk, with the pairs where the expansion cancels (:math:`\|x-y\|^2` below 1e-2 of
    :math:`\|x\|^2 + \|y\|^2`; 1e-4 in float64) recomputed from :math:`x - y`, as
    :func:`chestlab.poincare.pairwise_dist` does (the whole block at once, by ``torch.cdist``'s direct
    route, when more than 1/64 of it cancels: tight clusters in a few dimensions); the best 8 candidates of each row are then
    re-ranked from the differences themselves.  Runs on ``x``'s device, in its precision (float32
    unless float64).
    """
    if metric not in ("euclidean", "poincare"):
        raise ValueError(f"metric must be 'euclidean' or 'poincare', got {metric!r}")
    x = _as_points(x, "x")
    if x.dtype != torch.float64:
        x = x.float()
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"nearest_neighbours needs at least 2 rows, got {n}")
    if metric == "poincare":
        if c is None:
            raise ValueError("c must be given for metric='poincare' (a curvature c >= 0)")
        poincare.check_curvature(c)
        c = float(c)
        poincare.check_in_ball(x, c, "x")
    chunk = metrics.default_chunk_size(n) if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    sq = x.pow(2).sum(1)
    inv_alpha = 1 / poincare.alpha(x, c) if metric == "poincare" else None
    k = min(_CANDIDATES, n - 1)
    tol = 1e-4 if x.dtype == torch.float64 else 1e-2
    out = torch.empty(n, dtype=torch.long, device=x.device)
    with poincare.checks(False):  # x was checked once above
        for s in range(0, n, chunk):
            q = x[s : s + chunk]
            q2 = sq[s : s + chunk, None]
            score = torch.addmm(sq.unsqueeze(0), q, x.T, alpha=-2).add_(q2).clamp_min_(0)  # ||q - y||^2, (B, N)
            rows = torch.arange(q.shape[0], device=x.device)
            score[rows, rows + s] = math.inf  # not the query itself
            # the expansion loses ~eps (|q|^2 + |y|^2) / ||q - y||^2 relative: redo the close pairs exactly
            close = score < tol * (q2 + sq)
            n_close = int(close.sum())
            if n_close * _DENSE_CLOSE > close.numel():
                # tight clusters in a few dimensions cancel in many pairs: the whole block from the
                # differences (cdist's direct route costs about one matmul there; gathering them would not)
                score = torch.cdist(q, x, compute_mode="donot_use_mm_for_euclid_dist").square_()
                score[rows, rows + s] = math.inf
            elif n_close:
                idx = close.nonzero(as_tuple=True)
                score[idx] = (q[idx[0]] - x[idx[1]]).pow(2).sum(-1)
            del close
            if inv_alpha is not None:
                score.mul_(inv_alpha)
            cand = score.topk(k, dim=1, largest=False).indices  # (B, k)
            del score
            # the same scores from the differences themselves: no cancellation for close pairs
            exact = (q.unsqueeze(1) - x[cand]).pow(2).sum(-1)  # (B, k)
            if inv_alpha is not None:
                exact = exact * inv_alpha[cand]
            out[s : s + q.shape[0]] = cand.gather(1, exact.argmin(1, keepdim=True)).squeeze(1)
    return out


def hierarchical_retrieval(
    x: ArrayLike,
    labels: ArrayLike,
    hierarchy: Hierarchy,
    metric: str = "euclidean",
    c: Optional[poincare.Curvature] = None,
    *,
    chunk_size: Optional[int] = None,
) -> dict[str, float]:
    r"""Mistake severity and super-class Recall@1 of top-1 retrieval (every row queries the others).

    With :math:`\nu(i)` the nearest other row (:func:`nearest_neighbours`) and :math:`y` the classes:

    * ``"severity"``: mean ``hierarchy.lca_height(y_i, y_nu(i))`` over the queries whose top-1 is
      wrong (:math:`y_{\nu(i)} \ne y_i`) -- how far up the tree the mistakes go (1 = a sibling class,
      ``depth`` = another super-class); ``nan`` when there is no mistake;
    * ``"super_R@1"``: fraction of queries whose top-1 has the same level-1 ancestor (super-class).

    As Recall@1 in :mod:`chestlab.metrics`, a query is skipped when nothing can answer it: for the
    severity when its class occurs only once, for ``super_R@1`` when its super-class does.
    ``x``: ``(N, D)``; ``labels``: ``(N,)`` class indices into ``hierarchy``; ``metric``, ``c``,
    ``chunk_size``: as :func:`nearest_neighbours`.
    """
    y = _as_int_array(labels, "labels").reshape(-1)
    if y.size and (y.min() < 0 or y.max() >= hierarchy.num_classes):
        raise ValueError(f"labels must be class indices in [0, {hierarchy.num_classes}) of the hierarchy")
    if len(y) != len(x):
        raise ValueError(f"x has {len(x)} rows but labels has {len(y)}")
    nn = nearest_neighbours(x, metric, c, chunk_size=chunk_size).cpu().numpy()
    counts = np.bincount(y)
    wrong = (counts[y] >= 2) & (y[nn] != y)
    severity = float(hierarchy.lca_height(y[wrong], y[nn[wrong]]).mean()) if wrong.any() else math.nan
    sup = hierarchy.groups(1)[y]
    answerable = np.bincount(sup)[sup] >= 2
    super_r1 = float((sup[nn] == sup)[answerable].mean()) if answerable.any() else math.nan
    return {"severity": severity, "super_R@1": super_r1}


# --------------------------------------------------------------------------------------------
# one entry point for the evaluator
# --------------------------------------------------------------------------------------------
def _capped(n: int, cap: int) -> np.ndarray:
    """``arange(n)``, or a fixed (seed 0) sorted random subset of ``cap`` of it."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, cap, replace=False))


def _tree_scores_of(points: Tensor, leaf_classes: np.ndarray, hierarchy: Hierarchy, c: Optional[float],
                    methods: Sequence[str]) -> dict[str, float]:
    """``tree_scores`` of the dendrogram ``decode`` gives for each method: ``{"cophenet": .., ...}`` for
    the first, ``{"<method>_cophenet": .., ...}`` for the others; nan with fewer than two leaves."""
    out: dict[str, float] = {}
    for i, m in enumerate(methods):
        prefix = "" if i == 0 else f"{m}_"
        if len(leaf_classes) >= 2:
            scores = tree_scores(decode(points, c, m), leaf_classes, hierarchy)
        else:
            scores = dict.fromkeys(("cophenet", "purity", "dasgupta"), math.nan)
        out.update({prefix + k: v for k, v in scores.items()})
    return out


def hierarchy_metrics(
    emb: Mapping[str, Any],
    hierarchy: Optional[Hierarchy],
    c: poincare.Curvature,
    proxies: Union[None, ArrayLike, Mapping[str, Any]] = None,
    *,
    proxy_hierarchy: Optional[Hierarchy] = None,
    method: str = DEFAULT_DECODER,
    lca: bool = True,
    max_leaves: int = 2048,
    chunk_size: Optional[int] = None,
) -> dict[str, float]:
    """Hierarchy-aware metrics of an embedding dict, as flat keys to log, computed alike in both spaces.

    ``emb``: :meth:`chestlab.engine.evaluator.Evaluator.embed`'s ``{"x_e": (N, D_E), "x_h": (N, D_H),
    "labels": (N,), "super": (N,)}``.  ``hierarchy``: the known hierarchy of the split's classes
    (:func:`hierarchy_of`); ``None`` uses the two levels ``labels`` -> ``super`` of ``emb``.  ``c``:
    the head's curvature.  Each space is scored by the same named method on its own distance: ``H``
    is ``x_h`` with the Poincaré distance at ``c``, ``E`` is ``x_e`` with the Euclidean distance.
    Returns, for ``S`` in ``H`` and ``E``:

    * ``"S/severity"``, ``"S/super_R@1"`` -- :func:`hierarchical_retrieval`;
    * ``"S/cophenet"``, ``"S/purity"``, ``"S/dasgupta"`` -- :func:`tree_scores` (purity of the
      super-classes) of the dendrogram of the class means (:func:`class_means`: the gyro-midpoint in
      the ball, the mean in the plane) decoded by :func:`decode` with ``method`` (default average
      linkage);
    * with ``lca`` (and ``method`` other than ``"lca"``): ``"S/lca_cophenet"``, ``"S/lca_purity"``,
      ``"S/lca_dasgupta"`` -- the same leaves decoded by HypHC's LCA decoding
      (``decode(..., "lca")``, leaves brought to one radius, the origin as root);
    * with ``proxies`` (``(C, D_H)`` or ``(C, K, D_H)`` ball points, or the loss's ``proxy_points()``
      dict: its ``"h"`` scored in ``H`` and its ``"e"``, when present, in ``E``; ``C`` classes of
      ``proxy_hierarchy``, default ``hierarchy`` -- proxies belong to the *train* classes, so pass the
      train split's hierarchy when ``emb`` is the test split): ``"S/proxy_cophenet"``,
      ``"S/proxy_purity"``, ``"S/proxy_dasgupta"`` (and ``"S/proxy_lca_*"``) for the proxies' tree.

    The ``H`` keys of ``method`` are invariant to isometries of the ball (gyro-translations too), the
    ``lca_`` keys are not (they read the origin as the root).  Dendrograms are ``O(n^2)``: above
    ``max_leaves`` leaves a fixed random subset of classes is used.  Undefined values are ``nan``.
    """
    if method not in DECODE_METHODS:
        raise ValueError(f"method must be one of {DECODE_METHODS}, got {method!r}")
    for key in ("x_e", "x_h", "labels"):
        if key not in emb:
            raise ValueError(f"emb lacks {key!r}; expected Evaluator.embed's dict with x_e, x_h, labels, super")
    labels = _as_int_array(emb["labels"], "emb['labels']").reshape(-1)
    if hierarchy is None:
        if "super" not in emb:
            raise ValueError("give a hierarchy, or an emb with per-sample 'super' labels")
        hierarchy = Hierarchy.from_super_labels(labels, emb["super"])
    if labels.size and labels.max() >= hierarchy.num_classes:
        raise ValueError(f"label {labels.max()} is out of range for the hierarchy's {hierarchy.num_classes} classes")
    methods = (method, "lca") if lca and method != "lca" else (method,)
    cf = float(c)
    out: dict[str, float] = {}
    spaces = (("H", "x_h", "poincare", cf), ("E", "x_e", "euclidean", None))
    for space, key, metric, cs in spaces:
        x = _as_points(emb[key], f"emb[{key!r}]")
        if x.shape[0] >= 2:
            res = hierarchical_retrieval(x, labels, hierarchy, metric, cs, chunk_size=chunk_size)
        else:
            res = {"severity": math.nan, "super_R@1": math.nan}
        out.update({f"{space}/{k}": v for k, v in res.items()})
        means, ids = class_means(x, labels, cs)
        keep = _capped(len(ids), max_leaves)
        scores = _tree_scores_of(means[keep], ids[keep].numpy(), hierarchy, cs, methods)
        out.update({f"{space}/{k}": v for k, v in scores.items()})

    if proxies is not None:
        given = dict(proxies) if isinstance(proxies, Mapping) else {"h": proxies}
        ph = proxy_hierarchy if proxy_hierarchy is not None else hierarchy
        for space, key, cs in (("H", "h", cf), ("E", "e", None)):
            if given.get(key) is None:
                continue
            p = given[key]
            p = p.detach().cpu() if isinstance(p, Tensor) else torch.as_tensor(np.asarray(p))
            if p.dim() == 2:
                p = p.unsqueeze(1)
            if p.dim() != 3:
                raise ValueError(f"proxies must be (C, D) or (C, K, D), got shape {tuple(p.shape)}")
            n_cls, k_per = p.shape[:2]
            if n_cls != ph.num_classes:
                raise ValueError(
                    f"there are {n_cls} proxy classes but the hierarchy has {ph.num_classes} classes; proxies "
                    "belong to the train classes: pass proxy_hierarchy=hierarchy_of(<dataset>, 'train')"
                )
            keep = _capped(n_cls, max(1, max_leaves // k_per))
            pts = p[torch.as_tensor(keep)].reshape(-1, p.shape[-1])
            scores = _tree_scores_of(pts, np.repeat(keep, k_per), ph, cs, methods)
            out.update({f"{space}/proxy_{k}": v for k, v in scores.items()})
    return out
