"""chestlab.results: the lessons' studies computed once, shipped as JSON, recomputed when stale."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chestlab import results as R

ROOT = Path(__file__).resolve().parents[1]


class Counter:
    def __init__(self):
        self.calls = []

    def __call__(self, **params):
        self.calls.append(params)
        return {"sum": params["a"] + params["b"], "arr": np.arange(3) * params["a"], "nan": math.nan}


def test_cached_stores_then_reads_without_recomputing(tmp_path):
    f = Counter()
    first = R.cached("toy", f, params={"a": 1, "b": 2}, version="1", folder=tmp_path)
    again = R.cached("toy", f, params={"a": 1, "b": 2}, version="1", folder=tmp_path)
    assert len(f.calls) == 1
    assert first == again == {"sum": 3, "arr": [0, 1, 2], "nan": None}  # JSON form, fresh or stored alike
    doc = json.loads((tmp_path / "toy.json").read_text())  # plain JSON, no pickle
    assert doc["params"] == {"a": 1, "b": 2} and doc["version"] == "1"
    assert doc["command"] == "python -m chestlab.results regenerate toy"


@pytest.mark.parametrize("change", ["params", "version", "tampered", "garbage"])
def test_cached_recomputes_a_stale_entry(tmp_path, change):
    f = Counter()
    R.cached("toy", f, params={"a": 1, "b": 2}, version="1", folder=tmp_path)
    params, version = {"a": 1, "b": 2}, "1"
    p = tmp_path / "toy.json"
    if change == "params":
        params = {"a": 5, "b": 2}
    elif change == "version":
        version = "2"
    elif change == "tampered":  # params edited by hand: the key no longer matches
        doc = json.loads(p.read_text())
        doc["params"]["a"] = 5
        p.write_text(json.dumps(doc))
        params = {"a": 5, "b": 2}
    else:
        p.write_text("{not json")
    out = R.cached("toy", f, params=params, version=version, folder=tmp_path)
    assert len(f.calls) == 2 and out["sum"] == params["a"] + params["b"]
    assert R.read("toy", params=params, version=version, folder=tmp_path) == out  # the fresh one replaced it


def test_to_json_refuses_what_json_cannot_hold():
    assert R.to_json({"x": (np.float32(0.5), np.int64(3), np.bool_(True), float("inf"))}) == {"x": [0.5, 3, True, None]}
    with pytest.raises(TypeError):
        R.to_json({"x": object()})


def test_float32_arrays_round_trip_exactly():
    a = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    back = np.asarray(json.loads(json.dumps(R.to_json(R._float32_json(a)))), dtype=np.float32)
    assert back.shape == a.shape and np.array_equal(back, a)


def test_every_entry_is_shipped_and_current():
    """The shipped files were computed with the params and code version the lessons ask for (else the
    lessons would retrain in class)."""
    for name, e in R.ENTRIES.items():
        assert R.path_of(name).is_file(), f"{name} is not shipped: python -m chestlab.results regenerate {name}"
        assert R.read(name, params=e.full(), version=e.version) is not None, f"{name} is stale"


def test_shipped_margin_run_is_what_the_code_computes():
    """Recompute one cell of lesson 05's shipped slider grid (one 300-step run) and compare."""
    e = R.ENTRIES["lesson05_margins"]
    full = e.full()
    grid = R.read("lesson05_margins", params=full, version=e.version)
    assert grid is not None
    eta_e, delta_h = 0.0, 5.0  # the setting lesson 05 draws directly
    fresh = R.to_json(R.margin_run(eta_e, delta_h, full["steps"], full["eval_max"]))
    shipped = grid[R.grid_label(eta_e, delta_h)]
    assert fresh["r1"] == pytest.approx(shipped["r1"], abs=1e-3)
    for k, v in shipped["components"].items():
        assert fresh["components"][k] == pytest.approx(v, rel=1e-4, abs=1e-5), k
    for k in ("h_pos", "h_neg", "e_pos", "e_neg"):
        if shipped["sim"][k] is None:
            assert fresh["sim"][k] is None
        else:
            np.testing.assert_allclose(fresh["sim"][k], shipped["sim"][k], rtol=1e-4, atol=1e-4, err_msg=k)
    assert fresh["sim"]["step"] == shipped["sim"]["step"] == full["steps"]


def test_shipped_hier_study_seed0_is_what_the_code_computes():
    """Recompute seed 0 of lesson 07's shipped study (both arms, 150 steps each) and compare the scores
    and η_HIER·L_HIER's share with the shipped ones."""
    e = R.ENTRIES["lesson07_hier_study"]
    full = e.full()
    study = R.read("lesson07_hier_study", params=full, version=e.version)
    assert study is not None
    assert study["steps"] == full["steps"] and study["seeds"] == full["seeds"]
    assert sorted((r["arm"], r["seed"]) for r in study["rows"]) == sorted(
        (arm, s) for arm in ("CHEST", "CHEST + HIER") for s in full["seeds"])
    assert len(study["shares"]) == len(full["seeds"]) and all(0 < x < 0.05 for x in study["shares"])
    fresh = R.to_json(R.hier_study([0], full["steps"], full["eval_max"]))
    for row in fresh["rows"]:
        shipped = next(r for r in study["rows"] if r["arm"] == row["arm"] and r["seed"] == 0)
        assert set(row) == set(shipped)
        for k in ("R@1", "MAP@R", "super_R@1", "severity", "cophenet", "purity"):
            assert row[k] == pytest.approx(shipped[k], abs=2e-3), (row["arm"], k)
    assert fresh["shares"][0] == pytest.approx(study["shares"][0], rel=1e-3)


@pytest.mark.parametrize("name", ["lesson00_nk_sweep", "lesson06_wide_tree_fits"])
def test_shipped_tree_fits_of_seed0_are_what_the_code_computes(name):
    """Refit seed 0 of a shipped direct tree embedding study (disk and plane at the smallest dimension,
    with the learning rate the study chose) and compare the scores."""
    e = R.ENTRIES[name]
    full = e.full()
    rows = R.read(name, params=full, version=e.version)
    assert rows is not None
    assert sorted({(r["space"], r["D"], r["seed"]) for r in rows}) == sorted(
        (sp, d, s) for sp in ("disk", "plane") for d in full["dims"] for s in full["seeds"])
    dim = min(full["dims"])
    for space in ("disk", "plane"):
        shipped = next(r for r in rows if r["space"] == space and r["D"] == dim and r["seed"] == 0)
        assert shipped["lr"] in full["lrs"]
        fresh = R.tree_sweep(full["branching"], [dim], [0], full["steps"], [shipped["lr"]])
        got = next(r for r in fresh if r["space"] == space)
        for k in ("MAP", "MAP (edges)", "distortion", "worst", "loss"):
            assert got[k] == pytest.approx(shipped[k], rel=1e-5, abs=1e-9), (space, k)


def test_shipped_wide_spaces_seed0_is_what_the_code_computes():
    """Retrain seed 0 of lesson 06's shipped H-only / E-only study (two 400-step networks) and compare."""
    e = R.ENTRIES["lesson06_wide_spaces"]
    full = e.full()
    rows = R.read("lesson06_wide_spaces", params=full, version=e.version)
    assert rows is not None and sorted((r["space"], r["seed"]) for r in rows) == sorted(
        (sp, s) for sp in ("H", "E") for s in full["seeds"])
    fresh = R.space_study(full["preset"], full["dim"], [0], full["steps"], full["eval_max"])
    for row in fresh:
        shipped = next(r for r in rows if r["space"] == row["space"] and r["seed"] == 0)
        for k in ("R@1", "MAP@R", "super_R@1", "severity"):
            assert row[k] == pytest.approx(shipped[k], abs=2e-3), (row["space"], k)


def test_shipped_umap_of_lesson06_is_of_the_lessons_samples():
    """The shipped UMAP disk of lesson 06 holds one point inside the disk per test sample of the lesson's
    fixed subset (the subset does not depend on training: an untrained trainer draws the same)."""
    from chestlab import poincare
    from chestlab.engine import Trainer
    from chestlab.settings import TrainConfig

    e = R.ENTRIES["lesson06_umap_disk"]
    full = e.full()
    u = R.read("lesson06_umap_disk", params=full, version=e.version)
    assert u is not None
    tr = Trainer(TrainConfig.preset("demo-digits", batch_size=30, eval_every=0))
    te = tr.embed("test", max_n=full["n"])
    assert u["index"] == te["index"].tolist()
    xy = np.asarray(u["xy"])
    assert xy.shape == (full["n"], 2) and np.isfinite(xy).all()
    assert (np.linalg.norm(xy, axis=1) < 1 / math.sqrt(tr.config.c)).all()
    assert len(np.unique(xy.round(6), axis=0)) > 0.9 * full["n"]  # a layout, not a collapsed point
    untrained = float(poincare.dist0(te["x_h"].double(), tr.config.c).mean())
    assert u["mean_dist0"] != pytest.approx(untrained, rel=1e-3)  # the trained network's embeddings, not these


def test_load_recompute_computes_the_full_version_and_stores_nothing(tmp_path, monkeypatch):
    calls = []

    def compute(**params):
        calls.append(params)
        return {"n": params["n"], "arr": np.arange(params["n"])}

    monkeypatch.setitem(R.ENTRIES, "tiny", R.Entry(compute, lambda: {"n": 3}, lambda: {"n": 1}, version="t1"))
    R.write("tiny", {"n": -1, "arr": []}, params={"n": 3}, version="t1", folder=tmp_path)  # a current entry
    before = (tmp_path / "tiny.json").read_text()
    assert R.load("tiny", fast=False, folder=tmp_path) == {"n": -1, "arr": []} and calls == []  # read
    assert R.load("tiny", fast=False, folder=tmp_path, recompute=True) == {"n": 3, "arr": [0, 1, 2]}
    assert calls == [{"n": 3}] and (tmp_path / "tiny.json").read_text() == before  # computed, not stored


def test_regenerate_cli_writes_a_current_entry_that_load_reads(tmp_path, monkeypatch, capsys):
    tiny = R.Entry(R.margin_grid, lambda: {"eta_es": [1.0], "delta_hs": [2.0], "steps": 3, "eval_max": 64},
                   lambda: {"eta_es": [1.0], "delta_hs": [2.0], "steps": 2, "eval_max": 64}, version="t1")
    monkeypatch.setitem(R.ENTRIES, "tiny", tiny)
    assert R.main(["regenerate", "tiny", "--folder", str(tmp_path)]) == 0
    stored = json.loads((tmp_path / "tiny.json").read_text())
    run = stored["result"][R.grid_label(1.0, 2.0)]
    assert run["sim"]["step"] == 3 and len(run["sim"]["h_pos"]) > 0
    R.main(["list", "--folder", str(tmp_path)])
    assert any(line.startswith("tiny") and "current" in line and "STALE" not in line
               for line in capsys.readouterr().out.splitlines())
    # load reads the stored entry instead of training; the fast version is computed and never stored
    monkeypatch.setitem(R.ENTRIES, "tiny", R.Entry(lambda **_: pytest.fail("recomputed"), tiny.full, tiny.fast, "t1"))
    assert R.load("tiny", fast=False, folder=tmp_path) == stored["result"]
    monkeypatch.setitem(R.ENTRIES, "tiny", tiny)
    quick = R.load("tiny", fast=True, folder=tmp_path)
    assert quick[R.grid_label(1.0, 2.0)]["sim"]["step"] == 2
    assert json.loads((tmp_path / "tiny.json").read_text()) == stored
    ev = R.similarity_event(run)
    assert ev.h_pos.dtype == np.float32 and ev.h_pos.shape == (len(run["sim"]["h_pos"]),)


def test_module_cli_runs():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "chestlab.results", "list"], capture_output=True, text=True, env=env,
                         timeout=120, check=True).stdout
    assert all(name in out for name in R.ENTRIES)
