"""Benchmark: the (B, N) Poincaré distance matrix, ``chestlab.poincare.pairwise_dist`` vs geoopt.

Three ways to get all distances between B batch points and N proxies in the ball (float32, c = 0.5):

* ours         ``chestlab.poincare.pairwise_dist(x, y, c)``: one matmul and the norms, O(B·N) memory;
* geoopt bcast ``geoopt.manifolds.stereographic.math.dist(x[:, None], y[None], k=-c)``: builds
               (B, N, D) tensors (Möbius addition, then the norm);
* row loop     ``torch.stack([dist(x[i:i+1], y, k=-c) for i in range(B)])`` with geoopt: (N, D)
               tensors at a time.

Scales (CHEST paper, Table 1, ViT-S): CUB B=200, N=C·K=100·10=1000, D=384; SOP B=75,
N=11318·2=22636, D=384. Points are ``expmap0(clip_features(g, r=2.3), c)`` of standard Gaussian
vectors g. For each scale two passes are timed: forward only, and forward + backward of
``d.sum()`` w.r.t. both x and y. Each case runs in a fresh process (see ``_common.py``). The last
column compares the values (forward) or the gradients (fwd+bwd) with geoopt's.

Targets, printed with PASS/FAIL: at CUB scale ``pairwise_dist`` is >= 10x faster and needs
>= 50x less peak memory than geoopt broadcasting.

    .venv/bin/python benchmarks/bench_geometry.py            # full run (a few minutes on 2 cores)
    .venv/bin/python benchmarks/bench_geometry.py --quick    # smoke run, CUB scale only
    .venv/bin/python benchmarks/bench_geometry.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as cm  # noqa: E402

SCALES = {
    "CUB": dict(B=200, N=1000, D=384),
    "SOP": dict(B=75, N=22636, D=384),
}
IMPLS = ("ours", "geoopt", "loop")
IMPL_NAMES = {"ours": "ours", "geoopt": "geoopt bcast", "loop": "row loop"}
SPEED_TARGET = 10.0  # x faster than geoopt broadcasting at CUB scale
MEM_TARGET = 50.0  # x less peak memory than geoopt broadcasting at CUB scale

# Peak-memory estimate of a case, in units of one float32 (B, N, D) tensor (measured at CUB scale
# on CPU, rounded up); only used to skip cases that would not fit (--max-gib).
_BND_FACTOR = {("geoopt", False): 3.2, ("geoopt", True): 5.4, ("loop", False): 0.0, ("loop", True): 5.5,
               ("ours", False): 0.0, ("ours", True): 0.0}


def estimate_gib(impl: str, backward: bool, B: int, N: int, D: int) -> float:
    per = B * N * D * 4 / 2**30
    extra = (8 * B * N + 4 * (B + N) * D) * 4 / 2**30 + (4 * N * D * 4 / 2**30 if impl == "loop" else 0.0)
    return _BND_FACTOR[(impl, backward)] * per + extra


# --------------------------------------------------------------------------------------------
# one case, in a fresh process
# --------------------------------------------------------------------------------------------
def _build(impl: str, backward: bool, B: int, N: int, D: int, c: float, r: float, device: str,
           seed: int, checks: bool):
    import torch
    import geoopt.manifolds.stereographic.math as gmath
    from chestlab import poincare

    g = torch.Generator().manual_seed(seed)

    def points(n: int) -> torch.Tensor:
        v = torch.randn(n, D, generator=g, dtype=torch.float32)
        return poincare.expmap0(poincare.clip_features(v, r), c).to(device)

    x, y = points(B), points(N)
    k = torch.tensor(-c, dtype=torch.float32, device=device)
    if backward:
        x.requires_grad_(True)
        y.requires_grad_(True)

    if impl == "ours":
        def f():
            with poincare.checks(checks):
                return poincare.pairwise_dist(x, y, c)
    elif impl == "geoopt":
        def f():
            return gmath.dist(x[:, None], y[None], k=k)
    elif impl == "loop":
        def f():
            return torch.stack([gmath.dist(x[i:i + 1], y, k=k) for i in range(x.shape[0])])
    else:
        raise ValueError(impl)

    if not backward:
        def run():
            with torch.no_grad():
                return f()

        def extract(out):
            return {"d": out.detach().float().cpu().numpy()}
    else:
        def run():
            x.grad = y.grad = None
            d = f()
            d.sum().backward()
            return None

        def extract(_):
            return {"gx": x.grad.float().cpu().numpy(), "gy": y.grad.float().cpu().numpy()}
    return run, extract


def case_worker(case: dict, args: argparse.Namespace) -> dict:
    import torch

    cm.setup_worker(args.threads)
    common = dict(impl=case["impl"], backward=case["backward"], c=args.c, r=args.r, device=args.device,
                  seed=args.seed, checks=not args.no_checks)
    # warm-up on tiny inputs: thread pools, TorchScript profiling of geoopt's functions, lazy init
    tiny, _ = _build(B=4, N=16, D=case["D"], **common)
    tiny()
    tiny()
    del tiny
    run, extract = _build(B=case["B"], N=case["N"], D=case["D"], **common)
    res = cm.measure(run, args.device, args)
    if case["values"]:
        res["values"] = extract(run())
    res.pop("out", None)
    del run, extract
    torch.cuda.empty_cache() if torch.device(args.device).type == "cuda" else None
    return res


# --------------------------------------------------------------------------------------------
def max_abs_diff(a: Optional[dict], b: Optional[dict]) -> Optional[tuple[float, float]]:
    """(max |a - b|, that divided by max |b|) over the arrays of two results."""
    import numpy as np

    if a is None or b is None:
        return None
    ab = rel = 0.0
    for k in a:
        d = float(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)).max())
        ab = max(ab, d)
        rel = max(rel, d / max(float(np.abs(b[k]).max()), 1e-30))
    return ab, rel


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description="Poincaré distance matrix (B, N): chestlab.poincare.pairwise_dist vs geoopt broadcasting "
                    "vs a row-by-row geoopt loop, at the CHEST paper's CUB and SOP scales. Prints one table: "
                    "median time (ms), peak memory (MiB), ratios, max |difference| vs geoopt, and the CUB targets "
                    "(>= 10x faster, >= 50x less memory than geoopt broadcasting) with PASS/FAIL.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--scales", default="CUB,SOP", help="comma-separated subset of CUB,SOP (--quick: CUB)")
    p.add_argument("--c", type=float, default=0.5, help="curvature c (geoopt k = -c)")
    p.add_argument("--r", type=float, default=2.3, help="feature-clipping radius before expmap0")
    p.add_argument("--seed", type=int, default=0, help="seed of the Gaussian points")
    p.add_argument("--no-checks", action="store_true",
                   help="run pairwise_dist inside poincare.checks(False), as the trainer does (else input checks on)")
    cm.add_common_args(p)
    args = p.parse_args(argv)
    cm.resolve_quick(args)
    cm.check_device(args.device)
    scales = ["CUB"] if args.quick else [s.strip().upper() for s in args.scales.split(",") if s.strip()]
    for s in scales:
        if s not in SCALES:
            p.error(f"unknown scale {s!r}; choose from {', '.join(SCALES)}")
    max_gib = args.max_gib if args.max_gib is not None else cm.default_max_gib(args.device)
    env = cm.env_lines(args.device, args.threads)

    results: dict = {}
    skipped: dict = {}
    for scale in scales:
        dims = SCALES[scale]
        for backward in (False, True):
            for impl in IMPLS:
                key = (scale, backward, impl)
                est = estimate_gib(impl, backward, **dims)
                label = f"{scale} {'fwd+bwd' if backward else 'fwd'} {IMPL_NAMES[impl]}"
                if est > max_gib:
                    skipped[key] = f"est. {est:.1f} GiB > --max-gib {max_gib:.1f}"
                    print(f"[skip] {label}: {skipped[key]}", file=sys.stderr, flush=True)
                    continue
                print(f"[run ] {label} ...", file=sys.stderr, flush=True)
                case = dict(impl=impl, backward=backward, values=True, **dims)
                try:
                    results[key] = cm.run_isolated(case_worker, case, args)
                except cm.CaseFailed as e:
                    skipped[key] = str(e)
                    print(f"[fail] {label}: {e}", file=sys.stderr, flush=True)
                    continue
                r = results[key]
                print(f"       {r['ms']:.2f} ms (median of {r['n']}), {r['mib']:.1f} MiB", file=sys.stderr, flush=True)

    # ---------------------------------------------------------------------------------------
    headers = ["scale (B×N×D)", "pass", "ours ms", "bcast ms", "loop ms", "faster vs bcast", "vs loop",
               "ours MiB", "bcast MiB", "loop MiB", "less mem vs bcast", "vs loop", "max abs Δ vs geoopt"]
    rows = []
    for scale in scales:
        dims = SCALES[scale]
        for backward in (False, True):
            get = lambda impl: results.get((scale, backward, impl))  # noqa: E731
            o, gb, lp = get("ours"), get("geoopt"), get("loop")
            ref = gb or lp
            diff = max_abs_diff(o["values"] if o else None, ref["values"] if ref else None)
            dtxt = "—" if diff is None else cm.fmt_err(diff[0])
            if diff is not None and backward:
                dtxt = f"grads {dtxt} (rel {cm.fmt_err(diff[1])})"
            if diff is not None and gb is None:
                dtxt += " vs loop"
            ms = lambda r: r["ms"] if r else None  # noqa: E731
            mb = lambda r: r["mib"] if r else None  # noqa: E731
            rows.append([
                f"{scale} ({dims['B']}×{dims['N']}×{dims['D']})", "fwd+bwd" if backward else "fwd",
                cm.fmt_ms(ms(o)), cm.fmt_ms(ms(gb)), cm.fmt_ms(ms(lp)),
                cm.fmt_ratio(ms(gb), ms(o)), cm.fmt_ratio(ms(lp), ms(o)),
                cm.fmt_mib(mb(o)), cm.fmt_mib(mb(gb)), cm.fmt_mib(mb(lp)),
                cm.fmt_ratio(mb(gb), mb(o)), cm.fmt_ratio(mb(lp), mb(o)), dtxt,
            ])

    is_cuda = args.device.startswith("cuda")
    mem_what = ("peak torch.cuda.max_memory_allocated growth during one call" if is_cuda else cm.cpu_mem_method())
    title = [
        f"Poincaré distance matrix, float32, c={args.c:g}, points = expmap0(clip_r(N(0, I)), r={args.r:g})"
        + ("" if not args.no_checks else ", pairwise_dist under checks(False)"),
        "ours = chestlab.poincare.pairwise_dist(x, y, c); bcast = geoopt dist(x[:, None], y[None], k=-c); "
        "loop = stack([geoopt dist(x[i:i+1], y) for i]); fwd+bwd = d.sum().backward() w.r.t. x and y",
        f"time: median wall ms (warm-up {args.warmup}, up to {args.repeats} repeats, {args.budget:g} s budget per case); "
        f"memory: {mem_what}; ratios = reference / ours",
        *env,
    ]
    notes = []
    for key, why in skipped.items():
        notes.append(f"skipped {key[0]} {'fwd+bwd' if key[1] else 'fwd'} {IMPL_NAMES[key[2]]}: {why}")
    failed = False
    for backward in (False, True):
        o, gb = results.get(("CUB", backward, "ours")), results.get(("CUB", backward, "geoopt"))
        pas = "fwd+bwd" if backward else "fwd"
        if o is None or gb is None:
            notes.append(f"TARGET CUB {pas}: not measured (n/a)")
            continue
        sp, mr = gb["ms"] / o["ms"], gb["mib"] / max(o["mib"], 1e-9)
        ok_t, ok_m = sp >= SPEED_TARGET, mr >= MEM_TARGET
        failed |= not (ok_t and ok_m)
        notes.append(f"TARGET CUB {pas}: pairwise_dist >= {SPEED_TARGET:g}x faster than geoopt bcast: "
                     f"{sp:.1f}x {cm.verdict(ok_t)}; >= {MEM_TARGET:g}x less peak memory: "
                     f"{cm.fmt_ratio(gb['mib'], o['mib'])} {cm.verdict(ok_m)}")
    if hasattr(os, "getloadavg"):
        notes.append("load avg at end %.1f/%.1f/%.1f (times are inflated when other processes share the cores)"
                     % os.getloadavg())
    print(cm.table(title, headers, rows, notes), flush=True)
    return 1 if (failed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
