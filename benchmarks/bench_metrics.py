"""Time and peak memory of ``chestlab.metrics.retrieval_metrics`` at CUB and SOP test-set sizes.

Cases (random clustered embeddings, D = 384, labels with the datasets' class structure):

* CUB200 test size: 5,924 × 384, 100 classes — euclidean and poincaré (c = 0.5), Recall@{1,2,4,8}
  + MAP@R, and pytorch-metric-learning's ``AccuracyCalculator`` (precision_at_1 + MAP@R, exact
  k-NN with ``CustomKNN(LpDistance())``, no faiss) on the same data for comparison;
* SOP test size: 60,502 × 384, 11,316 classes of 2–12 images — euclidean and poincaré,
  Recall@{1,10,100,1000} + MAP@R.

What is measured
----------------
Each case runs in a fresh Python process, so allocations of one case cannot hide those of the next.
Inside it, the data are built, one small warm-up call is made, then the peak-RSS mark is reset
(``/proc/self/clear_refs`` = 5) just before the timed call.

* ``time``: wall-clock seconds of that one call (``time.perf_counter``), torch's default CPU threads
  unless ``--threads`` says otherwise;
* ``peak extra``: ``VmHWM`` after the call minus ``VmRSS`` before it: the largest amount of resident
  memory the call added on top of its inputs (torch CPU tensors included, which ``tracemalloc``
  cannot see). Where ``clear_refs`` is not writable the script falls back to ``ru_maxrss`` minus
  the RSS before the call, which is then a lower bound and marked ``>=``.
* ``N×N f32`` is the size a full distance matrix would have, for scale.

Run ``python benchmarks/bench_metrics.py`` (several minutes on 2 cores; the SOP poincaré case
dominates) or ``--quick`` (seconds; CUB size and a 12,000-point SOP-like set).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

CASES_FULL = [
    # name, n, n_classes_or_sizes, metric, impl, ks
    ("CUB", 5_924, "cub", "euclidean", "chestlab", (1, 2, 4, 8)),
    ("CUB", 5_924, "cub", "poincare", "chestlab", (1, 2, 4, 8)),
    ("CUB", 5_924, "cub", "euclidean", "pml", (1,)),
    ("SOP", 60_502, "sop", "euclidean", "chestlab", (1, 10, 100, 1000)),
    ("SOP", 60_502, "sop", "poincare", "chestlab", (1, 10, 100, 1000)),
]
CASES_QUICK = [
    ("CUB", 5_924, "cub", "euclidean", "chestlab", (1, 2, 4, 8)),
    ("CUB", 5_924, "cub", "poincare", "chestlab", (1, 2, 4, 8)),
    ("CUB", 5_924, "cub", "euclidean", "pml", (1,)),
    ("SOP/5", 12_000, "sop", "euclidean", "chestlab", (1, 10, 100, 1000)),
    ("SOP/5", 12_000, "sop", "poincare", "chestlab", (1, 10, 100, 1000)),
]
DIM = 384
C = 0.5  # the paper's curvature
CLIP_R = 2.3  # the paper's feature-clipping radius


# --------------------------------------------------------------------------------------------
# worker: one case in this (fresh) process
# --------------------------------------------------------------------------------------------
def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(key + r":\s+(\d+)", f.read()).group(1))


def _make_data(n: int, structure: str, metric: str, seed: int):
    import torch

    from chestlab import poincare

    g = torch.Generator().manual_seed(seed)
    if structure == "cub":  # 100 classes of ~59 images
        labels = torch.randint(0, 100, (n,), generator=g)
    else:  # SOP test: 11,316 products, 2-12 images each (mean ~5.3)
        sizes = torch.randint(2, 10, (n,), generator=g)
        sizes = sizes[: int((sizes.cumsum(0) < n).sum()) + 1]
        labels = torch.repeat_interleave(torch.arange(len(sizes)), sizes)[:n]
        if (labels == labels[-1]).sum() == 1:  # no lone item at the end
            labels[-1] = labels[-2]
    n_classes = int(labels.max()) + 1
    centers = torch.randn(n_classes, DIM, generator=g)
    x = centers[labels]
    x += 3.0 * torch.randn(n, DIM, generator=g)  # noise: R@1 ~ 0.6 at CUB size, like a weak model
    if metric == "poincare":
        x = poincare.expmap0(poincare.clip_features(x, CLIP_R), C)
    return x, labels


def _worker(spec: dict) -> dict:
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    from chestlab.metrics import retrieval_metrics

    x, labels = _make_data(spec["n"], spec["structure"], spec["metric"], spec["seed"])
    c = C if spec["metric"] == "poincare" else None
    ks = tuple(spec["ks"])

    if spec["impl"] == "chestlab":
        def call():
            return retrieval_metrics(x, labels, ks, spec["metric"], c)

        warm = lambda: retrieval_metrics(x[:300], labels[:300], (1,), spec["metric"], c)  # noqa: E731
    else:
        from pytorch_metric_learning.distances import LpDistance
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
        from pytorch_metric_learning.utils.inference import CustomKNN

        calc = AccuracyCalculator(
            include=("precision_at_1", "mean_average_precision_at_r"),
            k="max_bin_count",
            knn_func=CustomKNN(LpDistance(normalize_embeddings=False)),
            device=torch.device("cpu"),
        )

        def call():
            out = calc.get_accuracy(x, labels, x, labels, ref_includes_query=True)
            return {"R@1": out["precision_at_1"], "MAP@R": out["mean_average_precision_at_r"]}

        warm = lambda: calc.get_accuracy(x[:300], labels[:300], x[:300], labels[:300], True)  # noqa: E731

    warm()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        exact = True
    except OSError:
        exact = False
    before = _status_kib("VmRSS")
    t0 = time.perf_counter()
    out = call()
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": seconds,
        "peak_extra_mib": (peak - before) / 1024,
        "exact": exact,
        "threads": torch.get_num_threads(),
        "metrics": out,
    }


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------
def _run_case(case, threads: int, seed: int) -> dict:
    name, n, structure, metric, impl, ks = case
    spec = dict(n=n, structure=structure, metric=metric, impl=impl, ks=list(ks), threads=threads, seed=seed)
    res = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=(
            "Time and peak extra resident memory of chestlab.metrics.retrieval_metrics at CUB "
            "(5,924 x 384) and SOP (60,502 x 384) test-set sizes on random data, euclidean and "
            "poincaré (c = 0.5), against pytorch-metric-learning's AccuracyCalculator at CUB size. "
            "Each case runs in its own process; memory is the peak RSS during the call minus the "
            "RSS before it. CPU only."
        ),
        epilog="The full run takes minutes on 2 cores (the SOP poincaré case dominates).",
    )
    parser.add_argument("--quick", action="store_true", help="CUB size and a 12,000-point SOP-like set only")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads per case (default: torch's default)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random data (default: 0)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return

    cases = CASES_QUICK if args.quick else CASES_FULL
    header = (
        f"{'set':<6} {'N':>7} {'metric':<10} {'impl':<9} {'time s':>8} {'peak extra MiB':>15} "
        f"{'N×N f32 MiB':>12}  {'threads':>7}  metrics"
    )
    print(header)
    print("-" * len(header))
    for case in cases:
        name, n, _, metric, impl, _ = case
        r = _run_case(case, args.threads, args.seed)
        mem = f"{'' if r['exact'] else '>='}{r['peak_extra_mib']:.0f}"
        vals = " ".join(f"{k}={v:.4f}" for k, v in r["metrics"].items())
        impl_name = "PML" if impl == "pml" else "chestlab"
        print(
            f"{name:<6} {n:>7,} {metric:<10} {impl_name:<9} {r['seconds']:>8.2f} {mem:>15} "
            f"{n * n * 4 / 2**20:>12,.0f}  {r['threads']:>7}  {vals}",
            flush=True,
        )


if __name__ == "__main__":
    main()
