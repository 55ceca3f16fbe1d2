"""The four benchmarks of the paper and CIFAR-100, read from a folder with their conventional splits.

Nothing is downloaded: each loader looks for the files of the official release under ``data_root``
(also accepting ``data_root`` pointing at the dataset folder itself) and raises one
:class:`~chestlab.data.base.DatasetError` naming every place it looked and how to fix it.
Images are opened lazily, one ``__getitem__`` at a time; a file that is missing or cannot be
decoded raises a ``DatasetError`` naming it.

=========  ===================================================  ========================================
name       expected files (relative to the dataset folder)      split / hierarchy
=========  ===================================================  ========================================
cub200     ``images.txt``, ``image_class_labels.txt``,          classes 1-100 train, 101-200 test;
           ``classes.txt``, ``images/...``                      super-class: last word of the class name
                                                                (``Albatross``, ``Warbler``...)
cars196    ``cars_annos.mat``, ``car_ims/...``                  classes 1-98 train, 99-196 test;
                                                                super-class: the make (``BMW``...)
sop        ``Ebay_train.txt``, ``Ebay_test.txt``, ``<cat>_final/...``  the two files; super-class:
                                                                ``super_class_id`` (``bicycle``...)
inshop     ``list_eval_partition.txt``, ``img/...``             status train / query / gallery
                                                                (``test`` = query + gallery);
                                                                super-class: ``WOMEN/Dresses``...
cifar100   ``cifar-100-python/{train,test,meta}``               fine classes 0-49 train, 50-99 test,
                                                                images of both official files;
                                                                super-class: the 20 coarse classes
=========  ===================================================  ========================================
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .base import SPLITS, DatasetError, MetricDataset, remap_labels
from .transforms import paper_transforms

__all__ = [
    "ImageListDataset",
    "ArrayImageDataset",
    "resolve_data_root",
    "load_cub200",
    "load_cars196",
    "load_sop",
    "load_inshop",
    "load_cifar100",
    "INSHOP_SPLITS",
    "DATA_ROOT_ENV",
]

#: Environment variable consulted when no ``data_root`` is given.
DATA_ROOT_ENV = "CHESTLAB_DATA_ROOT"
INSHOP_SPLITS: tuple[str, ...] = ("train", "test", "query", "gallery")
PAPER = "paper"  # sentinel value of `transform`: use paper_transforms(split, image_size)

Transform = Callable[[Image.Image], Any] | None


def resolve_data_root(data_root: str | os.PathLike[str] | None) -> Path:
    """``data_root`` if given, else ``$CHESTLAB_DATA_ROOT``, else ``./data``."""
    if data_root is not None:
        return Path(data_root).expanduser()
    return Path(os.environ.get(DATA_ROOT_ENV, "data")).expanduser()


def _pick_transform(transform: Transform | str, split: str, image_size: int) -> Transform:
    if isinstance(transform, str):
        if transform != PAPER:
            raise ValueError(f"transform must be a callable, None or 'paper', got {transform!r}")
        return paper_transforms(split, image_size)
    return transform


def open_rgb(path: Path) -> Image.Image:
    """Open an image file as RGB, fully decoded now, or raise a ``DatasetError`` naming it."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")  # convert() decodes: truncated files fail here, not later
    except FileNotFoundError as e:
        raise DatasetError(
            f"image file {path} is missing; the dataset's list files mention it. "
            "Re-extract the dataset archive into the same folder."
        ) from e
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise DatasetError(
            f"cannot decode image {path} ({type(e).__name__}: {e}); the file is corrupt or not an "
            "image. Re-download or re-extract it."
        ) from e


class ImageListDataset(MetricDataset):
    """Images listed by path, opened lazily; yields ``(transform(PIL image), label)``.

    Args:
        paths: ``N`` image files.
        transform: applied to the RGB PIL image; ``None`` returns the PIL image itself.
        **label_space: ``labels``, ``classes``, ``class_to_super``, ``superclasses``, ``name``,
            ``split`` as in :class:`~chestlab.data.base.MetricDataset`.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Sequence[int] | np.ndarray,
        classes: Sequence[str],
        class_to_super: Sequence[int] | np.ndarray,
        superclasses: Sequence[str],
        *,
        transform: Transform = None,
        name: str = "",
        split: str = "",
    ) -> None:
        super().__init__(labels, classes, class_to_super, superclasses, name=name, split=split)
        if len(paths) != len(self.labels):
            raise ValueError(f"{len(paths)} paths but {len(self.labels)} labels")
        self.paths: list[Path] = [Path(p) for p in paths]
        self.transform = transform

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = open_rgb(self.paths[index])
        return (self.transform(image) if self.transform else image), int(self.labels[index])


class ArrayImageDataset(MetricDataset):
    """Images held in memory as ``(N, H, W, 3)`` uint8 (CIFAR); yields ``(transform(PIL), label)``."""

    def __init__(
        self,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        classes: Sequence[str],
        class_to_super: Sequence[int] | np.ndarray,
        superclasses: Sequence[str],
        *,
        transform: Transform = None,
        name: str = "",
        split: str = "",
    ) -> None:
        super().__init__(labels, classes, class_to_super, superclasses, name=name, split=split)
        if images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(self.labels):
            raise ValueError(f"images must be (N, H, W, 3) with N = {len(self.labels)}, got {images.shape}")
        self.images = images
        self.transform = transform

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = Image.fromarray(self.images[index])
        return (self.transform(image) if self.transform else image), int(self.labels[index])


# ---------------------------------------------------------------------------------------------
# Locating files
def _locate(
    name: str,
    root: Path,
    candidates: Sequence[str],
    required: Sequence[str],
    fix: str,
) -> Path:
    """Return the first ``root/candidate`` folder holding all ``required`` files.

    Raises one ``DatasetError`` listing, for every candidate, which required files were missing.
    """
    tried: list[str] = []
    for cand in candidates:
        folder = root / cand if cand else root
        missing = [f for f in required if not (folder / f).is_file()]
        if not missing:
            return folder
        tried += [f"  {folder / f}" for f in missing]
    where = "" if root.is_dir() else f" (the data root {root} does not exist)"
    raise DatasetError(
        f"{name}: dataset files not found{where}. Looked for:\n" + "\n".join(tried) + f"\nFix: {fix}"
    )


def _read_rows(path: Path, ncols: int, skip: int = 0) -> list[list[str]]:
    """Whitespace-separated rows of a text file with at least ``ncols`` fields, after ``skip``
    header lines; a malformed line raises a ``DatasetError`` naming file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or type(e).__name__}; re-extract the dataset") from None
    except UnicodeDecodeError:
        raise DatasetError(f"cannot read {path}: it is not UTF-8 text; re-extract the dataset") from None
    rows = []
    for lineno, line in enumerate(lines[skip:], start=skip + 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=ncols - 1) if ncols > 1 else line.split()
        if len(parts) < ncols:
            raise DatasetError(
                f"{path}, line {lineno}: expected {ncols} whitespace-separated fields, got {len(parts)}; "
                "the file is truncated or corrupt, re-extract the dataset"
            )
        rows.append(parts)
    return rows


def _int(path: Path, value: str) -> int:
    try:
        return int(value)
    except ValueError:  # the value is not echoed: error messages never show a file's content
        raise DatasetError(f"{path}: an id column holds a value that is not an integer; the file is corrupt, "
                           "re-extract the dataset") from None


def _check_split(name: str, split: str, allowed: Sequence[str] = SPLITS) -> None:
    if split not in allowed:
        raise ValueError(f"unknown split {split!r} for {name!r}; choose one of {tuple(allowed)}")


def _split_by_class_id(
    name: str, class_id: np.ndarray, split: str, last_train_id: int
) -> np.ndarray:
    """Row indices of ``split`` for the conventional "first half of the classes trains" rule."""
    rows = np.flatnonzero(class_id <= last_train_id if split == "train" else class_id > last_train_id)
    if len(rows) == 0:
        raise DatasetError(
            f"{name}: no images of the {split} split (class ids {'<=' if split == 'train' else '>'} "
            f"{last_train_id}) were listed; the annotation files are incomplete"
        )
    return rows


# ---------------------------------------------------------------------------------------------
# CUB-200-2011
def _cub_family(class_name: str) -> str:
    """``'001.Black_footed_Albatross'`` -> ``'Albatross'`` (the bird family, the last word)."""
    return class_name.split(".", 1)[-1].split("_")[-1]


def load_cub200(
    split: str,
    data_root: str | os.PathLike[str] | None = None,
    *,
    image_size: int = 224,
    transform: Transform | str = PAPER,
    seed: int = 0,
) -> ImageListDataset:
    """CUB-200-2011: classes 1-100 train, 101-200 test (11 788 images).

    Args:
        split: ``"train"`` or ``"test"``.
        data_root: folder containing ``CUB_200_2011/`` (or that folder itself).
        image_size: output side of the paper transform.
        transform: ``"paper"`` (default), a callable on PIL images, or ``None`` for PIL images.
        seed: unused (the split is fixed); accepted for interface uniformity.
    """
    _check_split("cub200", split)
    root = resolve_data_root(data_root)
    folder = _locate(
        "cub200",
        root,
        ["CUB_200_2011", "", "CUB_200_2011/CUB_200_2011"],
        ["images.txt", "image_class_labels.txt", "classes.txt"],
        f"point data_root (--data-root) at the folder that contains CUB_200_2011/ (now {root}); "
        "get CUB_200_2011.tgz from https://www.vision.caltech.edu/datasets/cub_200_2011/ and "
        "extract it there.",
    )
    files = {f: folder / f for f in ("images.txt", "image_class_labels.txt", "classes.txt")}
    images = {_int(files["images.txt"], i): p for i, p in _read_rows(files["images.txt"], 2)}
    image_class = {
        _int(files["image_class_labels.txt"], i): _int(files["image_class_labels.txt"], c)
        for i, c in _read_rows(files["image_class_labels.txt"], 2)
    }
    class_names = {_int(files["classes.txt"], c): n for c, n in _read_rows(files["classes.txt"], 2)}
    if set(images) != set(image_class):
        odd = sorted(set(images) ^ set(image_class))[:5]
        raise DatasetError(
            f"{files['images.txt']} and {files['image_class_labels.txt']} list different image ids "
            f"(e.g. {odd}); re-extract the dataset"
        )
    ids = sorted(images)
    class_id = np.array([image_class[i] for i in ids])
    unknown = sorted(set(class_id.tolist()) - set(class_names))
    if unknown:
        raise DatasetError(f"{files['classes.txt']} lacks class ids {unknown[:5]}; re-extract the dataset")
    rows = _split_by_class_id("cub200", class_id, split, 100)
    labels, kept_ids = remap_labels(class_id[rows])
    families = sorted({_cub_family(n) for n in class_names.values()})
    return ImageListDataset(
        [folder / "images" / images[ids[r]] for r in rows],
        labels,
        [class_names[c] for c in kept_ids],
        [families.index(_cub_family(class_names[c])) for c in kept_ids],
        families,
        transform=_pick_transform(transform, split, image_size),
        name="cub200",
        split=split,
    )


# ---------------------------------------------------------------------------------------------
# Cars196
_TWO_WORD_MAKES = ("AM General", "Aston Martin", "Land Rover")


def _car_make(class_name: str) -> str:
    """``'BMW M3 Coupe 2012'`` -> ``'BMW'``; knows the makes written in two words."""
    for make in _TWO_WORD_MAKES:
        if class_name.startswith(make + " "):
            return make
    return class_name.split(" ", 1)[0] if class_name else "car"


def _mat_str(value: Any) -> str:
    return str(np.asarray(value).reshape(-1)[0]) if np.asarray(value).size else ""


def load_cars196(
    split: str,
    data_root: str | os.PathLike[str] | None = None,
    *,
    image_size: int = 224,
    transform: Transform | str = PAPER,
    seed: int = 0,
) -> ImageListDataset:
    """Stanford Cars196: classes 1-98 train, 99-196 test (16 185 images), from ``cars_annos.mat``.

    Args as :func:`load_cub200`; ``data_root`` is the folder holding ``cars_annos.mat`` and
    ``car_ims/`` (or its parent, if the folder is called ``cars196``/``CARS196``/``stanford_cars``).
    """
    _check_split("cars196", split)
    root = resolve_data_root(data_root)
    folder = _locate(
        "cars196",
        root,
        ["", "cars196", "CARS196", "Cars196", "stanford_cars"],
        ["cars_annos.mat"],
        f"point data_root (--data-root) at the folder that contains cars_annos.mat and car_ims/ "
        f"(now {root}); get car_ims.tgz and cars_annos.mat from the Stanford Cars page "
        "(https://ai.stanford.edu/~jkrause/cars/car_dataset.html) and extract them there.",
    )
    mat_path = folder / "cars_annos.mat"
    import scipy.io  # local: scipy.io is only needed here

    try:
        mat = scipy.io.loadmat(mat_path, simplify_cells=True)
        annos = mat["annotations"]
        annos = [annos] if isinstance(annos, dict) else list(annos)
        rel_paths = [_mat_str(a["relative_im_path"]) for a in annos]
        class_id = np.array([int(np.asarray(a["class"]).reshape(-1)[0]) for a in annos])
    except Exception as e:  # scipy raises several types on a bad file; report one clear error
        raise DatasetError(
            f"cannot parse {mat_path} ({type(e).__name__}); expected a MATLAB file with an "
            "'annotations' struct array (fields relative_im_path, class). Re-download it."
        ) from None
    if len(class_id) == 0 or class_id.min() < 1:
        raise DatasetError(f"{mat_path}: no annotations, or a class id < 1; re-download it")
    names = [str(n) for n in np.asarray(mat.get("class_names", []), dtype=object).reshape(-1)]
    names += [f"car_{i + 1}" for i in range(len(names), int(class_id.max()))]  # if names lack
    rows = _split_by_class_id("cars196", class_id, split, 98)
    labels, kept_ids = remap_labels(class_id[rows])
    makes = sorted({_car_make(n) for n in names})
    return ImageListDataset(
        [folder / rel_paths[r] for r in rows],
        labels,
        [names[c - 1] for c in kept_ids],
        [makes.index(_car_make(names[c - 1])) for c in kept_ids],
        makes,
        transform=_pick_transform(transform, split, image_size),
        name="cars196",
        split=split,
    )


# ---------------------------------------------------------------------------------------------
# Stanford Online Products
def load_sop(
    split: str,
    data_root: str | os.PathLike[str] | None = None,
    *,
    image_size: int = 224,
    transform: Transform | str = PAPER,
    seed: int = 0,
) -> ImageListDataset:
    """Stanford Online Products: ``Ebay_train.txt`` (11 318 classes) / ``Ebay_test.txt`` (11 316).

    Columns ``image_id class_id super_class_id path`` after one header line; ``super_class_id``
    (12 product categories) is the hierarchy.  Args as :func:`load_cub200`.
    """
    _check_split("sop", split)
    root = resolve_data_root(data_root)
    file = "Ebay_train.txt" if split == "train" else "Ebay_test.txt"
    folder = _locate(
        "sop",
        root,
        ["Stanford_Online_Products", ""],
        [file],
        f"point data_root (--data-root) at the folder that contains Stanford_Online_Products/ "
        f"(now {root}); get Stanford_Online_Products.zip from "
        "https://cvgl.stanford.edu/projects/lifted_struct/ and extract it there.",
    )
    path = folder / file
    rows = _read_rows(path, 4, skip=1)
    class_id = np.array([_int(path, r[1]) for r in rows])
    super_id = np.array([_int(path, r[2]) for r in rows])
    if len(rows) == 0 or super_id.min() < 1:
        raise DatasetError(
            f"{path}: expected image rows with super_class_id >= 1 after the header line; "
            "the file is empty or corrupt, re-extract the dataset"
        )
    labels, kept_ids = remap_labels(class_id)
    # super_class_id 1..12 -> index 0..11; name from the image folder, "bicycle_final" -> "bicycle".
    n_super = int(super_id.max())
    super_names = [f"super_{i + 1}" for i in range(n_super)]
    for r, s in zip(rows, super_id):
        super_names[s - 1] = r[3].split("/", 1)[0].removesuffix("_final")
    first = {}
    for lab, s in zip(labels, super_id):
        first.setdefault(int(lab), int(s) - 1)
    return ImageListDataset(
        [folder / r[3] for r in rows],
        labels,
        [f"product_{c}" for c in kept_ids],
        [first[c] for c in range(len(kept_ids))],
        super_names,
        transform=_pick_transform(transform, split, image_size),
        name="sop",
        split=split,
    )


# ---------------------------------------------------------------------------------------------
# In-shop clothes retrieval
def load_inshop(
    split: str,
    data_root: str | os.PathLike[str] | None = None,
    *,
    image_size: int = 224,
    transform: Transform | str = PAPER,
    seed: int = 0,
) -> ImageListDataset:
    """In-shop Clothes Retrieval (DeepFashion): ``list_eval_partition.txt``.

    Splits: ``"train"`` (3 997 items), ``"query"`` (14 218 images), ``"gallery"`` (12 612), and
    ``"test"`` = query + gallery.  Query, gallery and test share one label numbering (over the
    3 985 test items), so a query's label equals its gallery matches' label.  The super-class is
    the clothing category, the two folders above the item (``WOMEN/Dresses``).

    ``data_root`` holds ``list_eval_partition.txt`` and ``img/`` (or the official layout
    ``Eval/list_eval_partition.txt`` + ``Img/img/``).  Other args as :func:`load_cub200`.
    """
    _check_split("inshop", split, INSHOP_SPLITS)
    root = resolve_data_root(data_root)
    file = "list_eval_partition.txt"
    names = ["", "InShop", "inshop", "In-shop", "in-shop", "In-shop Clothes Retrieval Benchmark"]
    candidates = names + [f"{n}/Eval" if n else "Eval" for n in names]
    folder = _locate(
        "inshop",
        root,
        candidates,
        [file],
        f"point data_root (--data-root) at the folder that contains list_eval_partition.txt and "
        f"img/ (now {root}); get them from the DeepFashion In-shop Clothes Retrieval Benchmark "
        "(https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html).",
    )
    image_base = folder.parent / "Img" if folder.name == "Eval" else folder
    path = folder / file
    rows = _read_rows(path, 3, skip=2)  # line 1: image count, line 2: column names
    statuses = {"train", "query", "gallery"}
    bad = [r for r in rows if r[2].strip() not in statuses]
    if bad:
        raise DatasetError(
            f"{path}: evaluation_status must be one of {sorted(statuses)}, but {len(bad)} row(s) hold "
            "something else; the file is corrupt"
        )
    status = np.array([r[2].strip() for r in rows])
    item = np.array([r[1] for r in rows])
    category = np.array(["/".join(r[0].split("/")[1:3]) for r in rows])
    categories = sorted(set(category.tolist()))
    # One numbering for query, gallery and test: the items of query + gallery.
    pool = status == "train" if split == "train" else status != "train"
    if split in ("train", "test"):
        keep = np.flatnonzero(pool)
    else:
        keep = np.flatnonzero(status == split)
    if len(keep) == 0:
        raise DatasetError(f"{path} lists no {split!r} images; the file is incomplete")
    item_ids, pool_labels = np.unique(item[pool], return_inverse=True)
    label_of = dict(zip(item_ids.tolist(), range(len(item_ids))))
    cat_of_item = dict(zip(item[pool].tolist(), category[pool].tolist()))
    return ImageListDataset(
        [image_base / rows[r][0] for r in keep],
        [label_of[i] for i in item[keep]],
        item_ids.tolist(),
        [categories.index(cat_of_item[i]) for i in item_ids.tolist()],
        categories,
        transform=_pick_transform(transform, split, image_size),
        name="inshop",
        split=split,
    )


# ---------------------------------------------------------------------------------------------
# CIFAR-100
#: The globals a CIFAR-100 pickle may name: NumPy's array reconstruction, under its numpy 1 and
#: numpy 2 module names (``_frombuffer``: protocol 5), and ``_codecs.encode`` (bytes in protocol 2).
#: Nothing else can be looked up, so a planted file cannot call anything.
_CIFAR_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")]
    + [(f"{pkg}.multiarray", "_reconstruct") for pkg in ("numpy._core", "numpy.core")]
    + [(f"{pkg}.numeric", "_frombuffer") for pkg in ("numpy._core", "numpy.core")])


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, numbers, bytes and NumPy arrays
    (:data:`_CIFAR_GLOBALS`); any other global is refused before it is looked up."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError("it calls code other than NumPy's array constructors (refused; nothing in it ran)")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    """A CIFAR-100 python file (a pickled dict), read by :class:`_CifarUnpickler`: a file that names
    any other class or function is refused without running it."""
    try:
        with path.open("rb") as f:
            raw = _CifarUnpickler(f, encoding="bytes").load()
        if not isinstance(raw, dict):
            raise pickle.UnpicklingError(f"it holds a {type(raw).__name__}, not a dict")
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}
    except pickle.UnpicklingError as e:
        raise DatasetError(f"cannot read {path}: {e}; expected the python version of CIFAR-100 "
                           "(cifar-100-python.tar.gz). Re-download and re-extract it.") from None
    except Exception as e:  # pickle raises many types on a damaged file
        raise DatasetError(
            f"cannot read {path} ({type(e).__name__}); expected the python version of "
            "CIFAR-100 (cifar-100-python.tar.gz). Re-download and re-extract it."
        ) from None


def _strings(values: Sequence[Any]) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def load_cifar100(
    split: str,
    data_root: str | os.PathLike[str] | None = None,
    *,
    image_size: int = 32,
    transform: Transform | str = PAPER,
    seed: int = 0,
) -> ArrayImageDataset:
    """CIFAR-100 split by class: fine labels 0-49 train, 50-99 test.

    Each split takes all 600 images of its classes, from both official files (``train`` and
    ``test``), so the test split has 30 000 images of 50 unseen classes.  The 20 coarse classes are
    the hierarchy (most of them have fine classes on both sides).  ``image_size`` defaults to
    the native 32; use 224 for an ImageNet ViT.  Other args as :func:`load_cub200`.
    """
    _check_split("cifar100", split)
    root = resolve_data_root(data_root)
    folder = _locate(
        "cifar100",
        root,
        ["cifar-100-python", ""],
        ["train", "test", "meta"],
        f"point data_root (--data-root) at the folder that contains cifar-100-python/ (now "
        f"{root}); get cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
        "and extract it there.",
    )
    meta = _unpickle(folder / "meta")
    images, fine, coarse = [], [], []
    for part in ("train", "test"):
        d = _unpickle(folder / part)
        try:
            data = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            fine.append(np.asarray(d["fine_labels"], dtype=np.int64))
            coarse.append(np.asarray(d["coarse_labels"], dtype=np.int64))
        except (KeyError, ValueError) as e:
            raise DatasetError(
                f"{folder / part}: missing or malformed entry ({e}); expected keys data "
                "(N x 3072 uint8), fine_labels, coarse_labels. Re-download CIFAR-100 (python)."
            ) from e
        if not len(data) == len(fine[-1]) == len(coarse[-1]):
            raise DatasetError(f"{folder / part}: data and label counts differ; the file is corrupt")
        images.append(data.transpose(0, 2, 3, 1))  # -> (N, 32, 32, 3) for PIL
    x, fine_all, coarse_all = np.concatenate(images), np.concatenate(fine), np.concatenate(coarse)
    fine_names = _strings(meta.get("fine_label_names", [f"fine_{i}" for i in range(100)]))
    coarse_names = _strings(meta.get("coarse_label_names", [f"coarse_{i}" for i in range(20)]))
    rows = np.flatnonzero(fine_all < 50 if split == "train" else fine_all >= 50)
    labels, kept = remap_labels(fine_all[rows])
    coarse_of = dict(zip(fine_all.tolist(), coarse_all.tolist()))  # fine -> coarse is a function
    return ArrayImageDataset(
        np.ascontiguousarray(x[rows]),
        labels,
        [fine_names[c] for c in kept],
        [coarse_of[int(c)] for c in kept],
        coarse_names,
        transform=_pick_transform(transform, split, image_size),
        name="cifar100",
        split=split,
    )
