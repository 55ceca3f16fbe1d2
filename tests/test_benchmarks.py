"""Smoke tests of the benchmark scripts: their measuring functions run on tiny inputs, so a change in
the library's API cannot leave a benchmark broken until someone runs it on a GPU (it happened once:
`Trainer.batch` grew the sample index and bench_train.py still unpacked two values)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench_train():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("bench_train")
    finally:
        sys.path.remove(str(BENCH))


def test_bench_train_reference_step_rate_runs(bench_train) -> None:
    rate = bench_train.step_rate_without_loss("demo-tree", "cpu", n=8)
    assert rate > 0


def test_bench_train_cub_throughput_runs_on_a_small_batch(bench_train) -> None:
    out = bench_train.cub_throughput("cpu", steps=2, batch_size=4, K=2, M=8, dim_h=16, amp=False)
    assert out["images_per_s"] > 0 and 0 < out["loss_share"] < 1


def test_bench_train_learn_runs(bench_train) -> None:
    out = bench_train.learn("demo-tree", budget_s=2.0, target=0.85, device="cpu", eval_every=5, max_steps=12)
    assert 0 <= out["untrained"] <= 1 and out["steps_per_s"] > 0


def test_bench_loss_cases_run_on_tiny_inputs() -> None:
    """Every case of bench_loss.py (ours, checks off, the matmuls-alone floor, the geoopt reference,
    the HypHC rows) builds and steps at a tiny scale, and ours equals the reference."""
    import argparse

    import numpy as np

    sys.path.insert(0, str(BENCH))
    try:
        bench_loss = importlib.import_module("bench_loss")
    finally:
        sys.path.remove(str(BENCH))
    pytest.importorskip("geoopt")
    args = argparse.Namespace(device="cpu", c=0.5, r=2.3, tau=0.5, seed=0)
    dims = dict(B=6, C=4, K=2, D=8, M=5, delta_h=1.0, delta_e=1.0)
    values = {}
    for impl in (*bench_loss.IMPLS, bench_loss.FLOOR_IMPL):
        run, extract = bench_loss._build(impl, **dims, args=args)
        values[impl] = extract(run())
        assert np.isfinite(values[impl]["loss"]).all()
    assert abs(values["ours"]["loss"][0] - values["ref"]["loss"][0]) < 1e-4
    for impl in bench_loss.HYPHC_IMPLS:
        run, extract = bench_loss._build_hyphc(impl, **{k: dims[k] for k in "CKDM"}, args=args)
        assert np.isfinite(extract(run())["loss"]).all()
