"""Tests of ``chestlab.data``: embedded datasets, benchmark parsers on fake folders, the sampler."""

from __future__ import annotations

import pickle
import re
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import DataLoader

from chestlab.data import (
    DatasetError,
    DigitsDataset,
    MPerClassSampler,
    ShapesDataset,
    TreeDataset,
    available_datasets,
    dataset_info,
    load_dataset,
    paper_transforms,
)
from chestlab.data.shapes import FAMILIES, TEST_VARIANTS, make_shapes
from chestlab.data.tree import make_tree_world

ALL_NAMES = {"tree", "shapes", "digits", "cub200", "cars196", "sop", "inshop", "cifar100"}
EMBEDDED = ["tree", "shapes", "digits"]


def recall_at_1(x: torch.Tensor, y: torch.Tensor) -> float:
    """Leave-one-out Euclidean 1-NN Recall@1, plain torch."""
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    return (y[d.argmin(dim=1)] == y).float().mean().item()


# ---------------------------------------------------------------------------------------------
# Registry
def test_registry_names_and_errors() -> None:
    assert set(available_datasets()) == ALL_NAMES
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*'tree'.*'cifar100'"):
        load_dataset("mnist", "train")
    with pytest.raises(ValueError, match=r"unknown split 'val'.*'train', 'test'"):
        load_dataset("tree", "val")
    with pytest.raises(ValueError, match=r"'query'"):
        load_dataset("cub200", "query")
    with pytest.raises(ValueError, match=r"unknown option.*'colour'.*accepts"):
        load_dataset("shapes", "train", colour="red")
    with pytest.raises(ValueError, match="unknown dataset"):
        dataset_info("nope")


def test_dataset_info() -> None:
    tree = dataset_info("tree")
    assert (tree.kind, tree.input_dim, tree.channels) == ("vector", 32, None)
    assert tree.num_classes == {"train": 32, "test": 32}
    assert dataset_info("tree", depth=2, branching=(8, 4), input_dim=16).input_shape == (16,)
    shapes = dataset_info("shapes", size=64)
    assert (shapes.kind, shapes.input_shape) == ("image", (3, 64, 64))
    assert (shapes.image_size, shapes.channels, shapes.input_dim) == (64, 3, None)
    assert dataset_info("digits").input_shape == (1, 8, 8)
    cub = dataset_info("cub200")
    assert cub.input_shape == (3, 224, 224) and not cub.embedded and cub.num_classes["train"] == 100
    assert dataset_info("cub200", image_size=64).image_size == 64
    assert set(dataset_info("inshop").splits) == {"train", "test", "query", "gallery"}


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_common_interface(name: str) -> None:
    info = dataset_info(name)
    for split in ("train", "test"):
        ds = load_dataset(name, split, seed=0)
        assert ds.labels.dtype == torch.long and ds.labels.shape == (len(ds),)
        assert ds.num_classes == len(ds.classes) == info.num_classes[split]
        assert set(ds.labels.tolist()) == set(range(ds.num_classes))  # every class present
        assert len(ds.hierarchy) == ds.num_classes
        assert all(0 <= s < len(ds.superclasses) for s in ds.hierarchy.values())
        assert torch.equal(ds.super_labels, ds.class_to_super[ds.labels])
        x, y = ds[len(ds) - 1]
        assert isinstance(y, int) and y == int(ds.labels[-1])
        assert x.dtype == torch.float32 and tuple(x.shape) == info.input_shape
        assert torch.isfinite(ds.data).all()
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    assert not set(train.classes) & set(test.classes), "test classes must be unseen in training"
    assert train.superclasses == test.superclasses  # global super-class numbering
    batch = next(iter(DataLoader(train, batch_size=8)))
    assert batch[0].shape == (8, *info.input_shape) and batch[1].dtype == torch.long


# ---------------------------------------------------------------------------------------------
# tree
def test_tree_deterministic_and_fast() -> None:
    make_tree_world.cache_clear()
    t0 = time.perf_counter()
    a = TreeDataset("train", seed=3)
    elapsed = time.perf_counter() - t0
    make_tree_world.cache_clear()
    b = TreeDataset("train", seed=3)
    c = TreeDataset("train", seed=4)
    assert elapsed < 1.0, f"generation took {elapsed:.2f} s"
    assert torch.equal(a.data, b.data) and torch.equal(a.labels, b.labels)
    assert a.classes == b.classes
    assert not torch.allclose(a.data, c.data)
    assert a.data.shape == (32 * 60, 32) and a.data.dtype == torch.float32


def test_tree_hierarchy_and_sibling_split() -> None:
    train, test = TreeDataset("train"), TreeDataset("test")
    world = train.world
    assert len(world.centres) == 64
    assert not set(train.leaf_ids.tolist()) & set(test.leaf_ids.tolist())
    assert sorted(train.leaf_ids.tolist() + test.leaf_ids.tolist()) == list(range(64))
    for ds in (train, test):
        assert ds.ancestors.shape == ds.paths.shape == (ds.num_classes, 3)
        for c, name in enumerate(ds.classes):
            path = ds.paths[c].tolist()
            letter = "ABCD"[path[0]]
            assert name == letter + "." + ".".join(map(str, path[1:]))  # e.g. "C.0.3"
            # each ancestor's name is a prefix of the leaf's name; the super-classes read "branch A..D"
            for level, node in enumerate(ds.ancestors[c].tolist()[1:], start=1):
                assert ds.node_names[node] == letter + "." + ".".join(map(str, path[1 : level + 1]))
            assert ds.node_names[ds.ancestors[c, 0]] == ds.superclasses[ds.hierarchy[c]] == f"branch {letter}"
    # sibling holdout: every parent of leaves has 2 train and 2 test children
    parents_train = torch.bincount(train.ancestors[:, 1] - 4, minlength=16)
    parents_test = torch.bincount(test.ancestors[:, 1] - 4, minlength=16)
    assert parents_train.tolist() == [2] * 16 and parents_test.tolist() == [2] * 16
    # offsets shrink with depth: siblings closer than cousins, on average
    c = torch.tensor(world.centres)  # world arrays are read-only: copy
    d = torch.cdist(c, c)
    paths = torch.tensor(world.paths)
    same = (paths[:, None, :] == paths[None, :, :]).long().cumprod(-1).sum(-1)  # LCA depth
    assert d[same == 2].mean() < d[same == 1].mean() < d[same == 0].mean()
    assert torch.equal(train.lca_level(0, torch.arange(2)), torch.tensor([3, 2]))


def test_tree_options() -> None:
    sub_train = TreeDataset("train", holdout="subtree")
    sub_test = TreeDataset("test", holdout="subtree")
    assert not set(sub_train.ancestors[:, 0].tolist()) & set(sub_test.ancestors[:, 0].tolist())
    small = TreeDataset("test", depth=2, branching=(8, 4), samples_per_class=10, input_dim=16)
    assert small.num_classes == 16 and small.data.shape == (160, 16) and small.depth == 2
    assert len(small.superclasses) == 8
    fine = TreeDataset("train", superclass_level=2)
    assert len(fine.superclasses) == 16
    with pytest.raises(ValueError, match="holdout"):
        TreeDataset("train", holdout="random")
    with pytest.raises(ValueError, match="depth=2 disagrees"):
        TreeDataset("train", depth=2, branching=(4, 4, 4))


def test_tree_seed_changes_the_classes_alone() -> None:
    """Another tree_seed: other leaf centres (other classes), the same noise draws and the same split; the
    default tree_seed is the seed itself."""
    a, b = make_tree_world(3), make_tree_world(3, tree_seed=11)
    assert np.abs(a.centres - b.centres).min() > 0 and not np.allclose(a.x, b.x)
    np.testing.assert_array_equal(a.is_test, b.is_test)
    np.testing.assert_allclose(a.latent - a.centres[a.leaf], b.latent - b.centres[b.leaf], atol=1e-6)
    np.testing.assert_array_equal(make_tree_world(3, tree_seed=3).x, a.x)
    assert TreeDataset("train", seed=3, tree_seed=11).data.shape == TreeDataset("train", seed=3).data.shape


def test_tree_calibration_raw_data_hides_test_structure() -> None:
    """The trainer's tests rely on this: raw vectors give a mediocre Recall@1 on the test classes,
    though the hierarchy is present in the latent space and learnable (see the next test)."""
    test = TreeDataset("test", seed=0)
    raw = recall_at_1(test.data, test.labels)
    assert 0.2 < raw < 0.6, raw
    assert recall_at_1(test.latent, test.labels) > 0.95
    torch.manual_seed(0)
    random_mlp = torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64))
    with torch.no_grad():
        assert recall_at_1(random_mlp(test.data), test.labels) < 0.6


def test_tree_is_learnable_on_unseen_siblings() -> None:
    """A small MLP trained with a proxy softmax on the train classes transfers to the test ones."""
    torch.manual_seed(0)
    train, test = TreeDataset("train", seed=0), TreeDataset("test", seed=0)
    net = torch.nn.Sequential(
        torch.nn.Linear(32, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 64),
    )  # fmt: skip
    proxies = torch.nn.Parameter(torch.randn(train.num_classes, 64))
    opt = torch.optim.Adam([*net.parameters(), proxies], lr=1e-3)
    for _ in range(400):
        idx = torch.randint(len(train), (256,))
        e = torch.nn.functional.normalize(net(train.data[idx]), dim=1)
        p = torch.nn.functional.normalize(proxies, dim=1)
        loss = torch.nn.functional.cross_entropy(16 * e @ p.T, train.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        r1 = recall_at_1(torch.nn.functional.normalize(net(test.data), dim=1), test.labels)
    assert r1 > 0.8, r1


# ---------------------------------------------------------------------------------------------
# shapes
def test_shapes_splits_and_hierarchy() -> None:
    train, test = ShapesDataset("train"), ShapesDataset("test")
    assert train.num_classes == test.num_classes == 24
    assert len(train) == 24 * 50 and train.class_counts().min() >= 40
    assert {c.split("/")[1] for c in test.classes} == set(TEST_VARIANTS)
    assert train.superclasses == list(FAMILIES)
    for ds in (train, test):
        for c, name in enumerate(ds.classes):
            assert ds.superclasses[ds.hierarchy[c]] == name.split("/")[0]
        assert sorted(set(ds.hierarchy.values())) == list(range(6))  # every family in both splits
    assert train.data.shape[1:] == (3, 32, 32)
    assert -1.01 <= float(train.data.min()) and float(train.data.max()) <= 1.01
    assert 0 <= float(ShapesDataset.denormalise(train.data[0]).min())


def test_shapes_deterministic_and_options(tmp_path: Path) -> None:
    a = make_shapes(seed=5, size=24, per_class=2)[0]
    make_shapes.cache_clear()
    b = make_shapes(seed=5, size=24, per_class=2)[0]
    c = make_shapes(seed=6, size=24, per_class=2)[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    big = ShapesDataset("test", size=64, per_class=2)
    assert big[0][0].shape == (3, 64, 64) and len(big) == 48
    cached = ShapesDataset("train", seed=5, size=24, per_class=2, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    make_shapes.cache_clear()
    again = ShapesDataset("train", seed=5, size=24, per_class=2, cache_dir=tmp_path)  # from the file
    assert torch.equal(cached.data, again.data)
    for garbage in (b"PK\x03\x04broken zip", b"not an npz"):  # a damaged cache is regenerated
        next(tmp_path.glob("*.npz")).write_bytes(garbage)
        make_shapes.cache_clear()
        fresh = ShapesDataset("train", seed=5, size=24, per_class=2, cache_dir=tmp_path)
        assert torch.equal(fresh.data, cached.data)


# ---------------------------------------------------------------------------------------------
# digits
def test_digits() -> None:
    train, test = DigitsDataset("train"), DigitsDataset("test")
    assert train.classes == ["0", "1", "2", "3", "4"] and test.classes == ["5", "6", "7", "8", "9"]
    assert len(train) + len(test) == 1797
    assert train[0][0].shape == (1, 8, 8)
    assert test.superclasses == ["round", "straight", "curvy"]
    groups = [test.superclasses[test.hierarchy[c]] for c in range(5)]
    assert groups == ["curvy", "round", "straight", "round", "round"]  # digits 5..9
    assert load_dataset("digits", "train", image_size=16)[0][0].shape == (1, 16, 16)


# ---------------------------------------------------------------------------------------------
# Fake benchmark folders in the exact layouts of the real releases
def write_image(path: Path, colour: int = 128, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 14), (colour, 255 - colour, 40)).save(path, format=fmt)


def make_cub(root: Path) -> Path:
    base = root / "CUB_200_2011"
    classes = {1: "001.Black_footed_Albatross", 2: "002.Laysan_Albatross",
               101: "101.White_Pelican", 150: "150.Sage_Thrasher"}  # fmt: skip
    images, labels, i = [], [], 0
    for c, name in classes.items():
        for k in range(2):
            i += 1
            rel = f"{name}/{name.split('.')[1]}_{k}.jpg"
            write_image(base / "images" / rel, colour=c)
            images.append(f"{i} {rel}")
            labels.append(f"{i} {c}")
    (base / "images.txt").write_text("\n".join(images) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (base / "classes.txt").write_text("\n".join(f"{c} {n}" for c, n in classes.items()) + "\n")
    return base


def test_cub200(tmp_path: Path) -> None:
    base = make_cub(tmp_path)
    train = load_dataset("cub200", "train", data_root=tmp_path, image_size=32)
    test = load_dataset("cub200", "test", data_root=tmp_path, image_size=32)
    assert train.classes == ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    assert test.classes == ["101.White_Pelican", "150.Sage_Thrasher"]
    assert train.labels.tolist() == [0, 0, 1, 1] and test.labels.tolist() == [0, 0, 1, 1]
    assert train.superclasses == ["Albatross", "Pelican", "Thrasher"]
    assert train.hierarchy == {0: 0, 1: 0} and test.hierarchy == {0: 1, 1: 2}
    x, y = train[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 1
    # root pointing directly at CUB_200_2011/ works too; transform=None gives PIL images
    raw = load_dataset("cub200", "test", data_root=base, transform=None)
    assert isinstance(raw[0][0], Image.Image) and raw[0][0].size == (20, 14)


def test_cub200_missing_and_corrupt(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "CUB_200_2011" / "images.txt"))) as err:
        load_dataset("cub200", "train", data_root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "images.txt") in message  # every place it looked
    assert "--data-root" in message and "contains CUB_200_2011/" in message
    base = make_cub(tmp_path)
    (base / "classes.txt").unlink()
    with pytest.raises(DatasetError, match=re.escape(str(base / "classes.txt"))):
        load_dataset("cub200", "train", data_root=tmp_path)
    base = make_cub(tmp_path)
    bad = base / "images" / "101.White_Pelican" / "White_Pelican_1.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    test = load_dataset("cub200", "test", data_root=tmp_path, image_size=32)  # lazy: no error yet
    test[0]
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        test[1]
    (base / "images.txt").write_text("1\n")
    with pytest.raises(DatasetError, match=r"images.txt, line 1"):
        load_dataset("cub200", "test", data_root=tmp_path)


def make_cars(root: Path) -> None:
    dtype = [("relative_im_path", "O"), ("bbox_x1", "O"), ("class", "O"), ("test", "O")]
    annos = []
    for i, c in enumerate([1, 1, 2, 99, 196, 196]):
        rel = f"car_ims/{i + 1:06d}.jpg"
        write_image(root / rel, colour=c)
        annos.append((rel, 1, c, i % 2))
    names = [f"Model {i} Sedan 2012" for i in range(196)]
    names[0], names[1] = "AM General Hummer SUV 2000", "BMW M3 Coupe 2012"
    names[98], names[195] = "Aston Martin V8 Vantage Coupe 2012", "BMW X6 SUV 2012"
    scipy.io.savemat(
        root / "cars_annos.mat",
        {"annotations": np.array(annos, dtype=dtype).reshape(1, -1),
         "class_names": np.array(names, dtype=object).reshape(1, -1)},
    )  # fmt: skip


def test_cars196(tmp_path: Path) -> None:
    make_cars(tmp_path)
    train = load_dataset("cars196", "train", data_root=tmp_path, image_size=32)
    test = load_dataset("cars196", "test", data_root=tmp_path, image_size=32)
    assert train.classes == ["AM General Hummer SUV 2000", "BMW M3 Coupe 2012"]
    assert test.classes == ["Aston Martin V8 Vantage Coupe 2012", "BMW X6 SUV 2012"]
    assert train.labels.tolist() == [0, 0, 1] and test.labels.tolist() == [0, 1, 1]
    sup = train.superclasses
    assert [sup[s] for s in train.hierarchy.values()] == ["AM General", "BMW"]
    assert [sup[s] for s in test.hierarchy.values()] == ["Aston Martin", "BMW"]
    assert test[2][0].shape == (3, 32, 32)
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "nowhere" / "cars_annos.mat"))):
        load_dataset("cars196", "train", data_root=tmp_path / "nowhere")
    (tmp_path / "cars_annos.mat").write_bytes(b"MATLAB 5.0 garbage")
    with pytest.raises(DatasetError, match=r"cannot parse .*cars_annos.mat"):
        load_dataset("cars196", "train", data_root=tmp_path)


def make_sop(root: Path) -> Path:
    base = root / "Stanford_Online_Products"
    header = "image_id class_id super_class_id path"
    train = [(1, 1, 1, "bicycle_final/111_0.JPG"), (2, 1, 1, "bicycle_final/111_1.JPG"),
             (3, 2, 2, "cabinet_final/222_0.JPG")]  # fmt: skip
    test = [(4, 11319, 1, "bicycle_final/333_0.JPG"), (5, 11320, 2, "cabinet_final/444_0.JPG"),
            (6, 11320, 2, "cabinet_final/444_1.JPG")]  # fmt: skip
    for file, rows in (("Ebay_train.txt", train), ("Ebay_test.txt", test)):
        for r in rows:
            write_image(base / r[3], fmt="JPEG")
        (base / file).write_text("\n".join([header, *(" ".join(map(str, r)) for r in rows)]) + "\n")
    return base


def test_sop(tmp_path: Path) -> None:
    make_sop(tmp_path)
    train = load_dataset("sop", "train", data_root=tmp_path, image_size=32)
    test = load_dataset("sop", "test", data_root=tmp_path, image_size=32)
    assert train.labels.tolist() == [0, 0, 1] and test.labels.tolist() == [0, 1, 1]
    assert train.classes == ["product_1", "product_2"] and test.classes == ["product_11319", "product_11320"]
    assert train.superclasses == ["bicycle", "cabinet"]
    assert test.hierarchy == {0: 0, 1: 1}
    assert test[1][0].shape == (3, 32, 32)
    expected = tmp_path / "elsewhere" / "Stanford_Online_Products" / "Ebay_train.txt"
    with pytest.raises(DatasetError, match=re.escape(str(expected))):
        load_dataset("sop", "train", data_root=tmp_path / "elsewhere")


def make_inshop(root: Path, official: bool = False) -> None:
    """``official``: the DeepFashion archive layout, ``Eval/list_eval_partition.txt`` + ``Img/img``."""
    rows = [
        ("img/WOMEN/Dresses/id_00000001/01_1_front.jpg", "id_00000001", "train"),
        ("img/WOMEN/Dresses/id_00000001/01_2_side.jpg", "id_00000001", "train"),
        ("img/MEN/Denim/id_00000002/01_1_front.jpg", "id_00000002", "train"),
        ("img/WOMEN/Dresses/id_00000003/01_1_front.jpg", "id_00000003", "query"),
        ("img/WOMEN/Dresses/id_00000003/01_2_side.jpg", "id_00000003", "gallery"),
        ("img/MEN/Denim/id_00000004/01_1_front.jpg", "id_00000004", "gallery"),
        ("img/MEN/Denim/id_00000004/01_2_side.jpg", "id_00000004", "query"),
    ]
    for r in rows:
        write_image(root / "Img" / r[0] if official else root / r[0])
    lines = [str(len(rows)), "image_name item_id evaluation_status"]
    lines += [f"{a}    {b}    {c}" for a, b, c in rows]  # the real file pads with spaces
    listing = root / "Eval" / "list_eval_partition.txt" if official else root / "list_eval_partition.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("\n".join(lines) + "\n")


def test_inshop(tmp_path: Path) -> None:
    make_inshop(tmp_path)
    kw = dict(data_root=tmp_path, image_size=32)
    train = load_dataset("inshop", "train", **kw)
    query, gallery = load_dataset("inshop", "query", **kw), load_dataset("inshop", "gallery", **kw)
    test = load_dataset("inshop", "test", **kw)
    assert train.classes == ["id_00000001", "id_00000002"] and train.labels.tolist() == [0, 0, 1]
    assert query.classes == gallery.classes == test.classes == ["id_00000003", "id_00000004"]
    assert query.labels.tolist() == [0, 1] and gallery.labels.tolist() == [0, 1]
    assert len(test) == 4
    assert train.superclasses == ["MEN/Denim", "WOMEN/Dresses"]
    assert train.hierarchy == {0: 1, 1: 0}
    assert query[1][0].shape == (3, 32, 32)
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "x" / "list_eval_partition.txt"))):
        load_dataset("inshop", "train", data_root=tmp_path / "x")
    make_inshop(tmp_path / "official", official=True)
    gallery = load_dataset("inshop", "gallery", data_root=tmp_path / "official", transform=None)
    assert gallery.paths[0].is_file() and gallery[0][1] == 0


def make_cifar(root: Path, protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
    """A small CIFAR-100 folder in the real layout (pickled dicts of bytes keys and NumPy arrays)."""
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for part, per_class in (("train", 2), ("test", 1)):
        fine = np.repeat(np.arange(100), per_class)
        d = {b"data": rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8),
             b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist()}  # fmt: skip
        (base / part).write_bytes(pickle.dumps(d, protocol=protocol))
    meta = {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}  # fmt: skip
    (base / "meta").write_bytes(pickle.dumps(meta, protocol=protocol))


def test_cifar100(tmp_path: Path) -> None:
    make_cifar(tmp_path)
    train = load_dataset("cifar100", "train", data_root=tmp_path)
    test = load_dataset("cifar100", "test", data_root=tmp_path)
    assert len(train) == len(test) == 150  # 50 classes x (2 + 1) images from both files
    assert train.classes == [f"fine{i}" for i in range(50)]
    assert test.classes == [f"fine{i}" for i in range(50, 100)]
    assert len(train.superclasses) == 20 and test.hierarchy[0] == 10
    assert torch.equal(train.class_counts(), torch.full((50,), 3))
    x, y = test[0]
    assert x.shape == (3, 32, 32) and y == 0
    (tmp_path / "cifar-100-python" / "meta").unlink()
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "cifar-100-python" / "meta"))):
        load_dataset("cifar100", "train", data_root=tmp_path)
    (tmp_path / "cifar-100-python" / "meta").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match=r"cannot read .*meta"):
        load_dataset("cifar100", "train", data_root=tmp_path)


def test_data_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_sop(tmp_path)
    monkeypatch.setenv("CHESTLAB_DATA_ROOT", str(tmp_path))
    assert len(load_dataset("sop", "train", transform=None)) == 3


def test_paper_transforms() -> None:
    image = Image.new("RGB", (50, 40), (200, 10, 10))
    torch.manual_seed(0)
    assert paper_transforms("train", 32)(image).shape == (3, 32, 32)
    test_t = paper_transforms("test", 32)
    a, b = test_t(image), test_t(image)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32 and torch.equal(a, b)
    assert abs(float(a[0].mean()) - (200 / 255 - 0.485) / 0.229) < 1e-2  # ImageNet normalisation
    assert "Resize(size=[256]" in repr(paper_transforms("gallery"))
    with pytest.raises(ValueError, match="unknown split"):
        paper_transforms("val")


# ---------------------------------------------------------------------------------------------
# MPerClassSampler
def check_batches(sampler: MPerClassSampler, labels: np.ndarray) -> list[list[int]]:
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        assert len(batch) == sampler.batch_size
        classes, counts = np.unique(labels[batch], return_counts=True)
        assert len(classes) == sampler.batch_size // sampler.m and (counts == sampler.m).all()
    return batches


def test_sampler_properties_and_determinism() -> None:
    labels = np.repeat(np.arange(10), 7)
    s = MPerClassSampler(labels, m=4, batch_size=16, seed=1)
    assert len(s) == 70 // 16
    first = check_batches(s, labels)
    assert first == list(MPerClassSampler(labels, m=4, batch_size=16, seed=1))
    assert first == list(s)  # same epoch -> same batches
    s.set_epoch(1)
    assert check_batches(s, labels) != first
    assert list(MPerClassSampler(labels, m=4, batch_size=16, seed=2)) != first
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    from_g1 = list(MPerClassSampler(labels, 4, 16, generator=g1))
    assert from_g1 == list(MPerClassSampler(labels, 4, 16, generator=g2))
    # within a class, samples are drawn without replacement when it has enough of them
    long = MPerClassSampler(labels, m=2, batch_size=10, num_batches=50)
    for batch in long:
        assert len(set(batch)) == len(batch)


def test_sampler_small_classes_and_errors() -> None:
    labels = np.array([0, 1, 1, 2, 2, 2, 2, 2])
    s = MPerClassSampler(torch.as_tensor(labels), m=4, batch_size=8, num_batches=20)
    for batch in check_batches(s, labels):
        for c in (0, 1):  # classes smaller than m: all their samples, then repeats
            if c in labels[batch]:
                assert set(np.flatnonzero(labels == c)) <= set(batch)
    with pytest.raises(ValueError, match=r"batch_size=10 is not a multiple of m=4.*8 or 12"):
        MPerClassSampler(labels, m=4, batch_size=10)
    with pytest.raises(ValueError, match=r"needs 4 distinct classes.*only 3"):
        MPerClassSampler(labels, m=2, batch_size=8)
    with pytest.raises(ValueError, match="at least one label"):
        MPerClassSampler([], m=2, batch_size=4)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=2, max_size=12),
    m=st.integers(1, 4),
    k=st.integers(1, 12),
    seed=st.integers(0, 2**31),
)
def test_sampler_invariants(sizes: list[int], m: int, k: int, seed: int) -> None:
    labels = np.repeat(np.arange(len(sizes)) * 3 + 5, sizes)  # non-contiguous class ids
    k = min(k, len(sizes))
    check_batches(MPerClassSampler(labels, m=m, batch_size=k * m, seed=seed, num_batches=7), labels)


def test_sampler_with_dataloader_on_tree() -> None:
    train = TreeDataset("train")
    sampler = MPerClassSampler(train, m=5, batch_size=40, seed=0)
    assert len(sampler) == len(train) // 40
    x, y = next(iter(DataLoader(train, batch_sampler=sampler)))
    assert x.shape == (40, 32) and torch.bincount(y).max() == 5
