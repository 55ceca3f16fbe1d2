"""Benchmark: one CHEST training step of the loss, ``chestlab.losses.CHESTLoss`` vs a geoopt reference.

A step here is everything between the backbone's output and the gradients:
``x_h = head(x_e)``; the loss maps the C·K Euclidean proxies through the same
``chestlab.models.HyperbolicHead`` (``exp_0(clip_r(W p + b))``), samples M HypHC triplets and
evaluates Eq. (10); then ``loss.backward()`` (gradients for the backbone output ``x_e``, the head
and the proxies).

* ours       ``CHESTLoss(..., head=HyperbolicHead(...))``, default settings (input checks on): its
             training path (``chestlab.losses.parts``) computes, for D_H and for D_E, the distances of
             the batch to the proxies (one matmul each) and Eq. 5-7 in one fused autograd Function
             (``parts.points_proxy_term``), with a hand-derived backward pass;
* ours, no checks   the same inside ``poincare.checks(False)``, as the trainer's inner loop runs it;
* reference  the same loss written straightforwardly in this file with geoopt: the head's exp map is
             ``geoopt...math.expmap0``, ``D_H`` of the batch to the proxies is geoopt's broadcasting
             ``dist(x_h[:, None], p_h[None], k=-c)`` (a (B, C·K, D) tensor), ``D_E`` is
             ``torch.cdist``, the HypHC term uses geoopt ``dist`` for S and the closed-form LCA depth
             (geoopt has none) written here. Same weights, proxies, labels and triplets as ours, so
             the loss values and gradients can be compared (last columns);
* matmuls alone   the step's 12 matrix products at the same shapes and nothing else: the floor of
             any implementation on the device (the target lines give the step's share of it).

Scales (CHEST paper, Table 1, ViT-S): CUB B=200, C=100, K=10, D_E=D_H=384, M=100, delta_h=20,
delta_e=1; SOP B=75, C=11318, K=2, D=384, M=11318, delta_h=1, delta_e=5 (the paper's best margins;
they do not change the cost). tau=0.5, c=0.5, r=2.3, gamma=5, lambda=20 everywhere.

Two more rows per scale time the HypHC term alone (Eq. 9, ``hyphc_loss(...).mean().backward()`` on
the C·K proxies, M triplets): ours (``parts.hyphc_term``, the training path: one fused Function from
the triplets' Gram matrices, the values of ``hyphc_loss``) vs the elementwise route written in this file (``poincare.dist`` and ``poincare.lca_depth`` on
(M, 3, D) pairs, how ``hyphc_loss`` computed it before), same proxies and triplets; the last
columns compare the values and gradients.

Targets, printed with PASS/FAIL (the step times are defined for 2 torch threads): CUB step
and SOP step each at most 1.4x its matmuls alone (medians, checks on, same run), SOP peak memory
< 300 MiB, the loss equal to the geoopt reference's to 1e-6 (relative), HypHC values equal to the
elementwise route's to 1e-6.

The step times need a quiet machine: other processes on the same cores inflate the wall time (the
"CPU ms" columns, the process's CPU time per step, much less). geoopt is optional: without it the
reference columns are skipped, with a note.

    .venv/bin/python benchmarks/bench_loss.py --threads 2   # full run, the targets' thread count
    .venv/bin/python benchmarks/bench_loss.py --quick    # smoke run, CUB scale only
    .venv/bin/python benchmarks/bench_loss.py --device cuda
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the repository root too, so that the spawned workers import chestlab from a fresh clone, uninstalled
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _common as cm  # noqa: E402

SCALES = {
    "CUB": dict(B=200, C=100, K=10, D=384, M=100, delta_h=20.0, delta_e=1.0),
    "SOP": dict(B=75, C=11318, K=2, D=384, M=11318, delta_h=1.0, delta_e=5.0),
}
IMPLS = ("ours", "ours_nochecks", "ref")
#: the step's matrix products alone, same shapes: the floor no rewrite of the rest can go below
FLOOR_IMPL = "matmuls"
IMPL_NAMES = {"ours": "ours", "ours_nochecks": "ours, checks(False)", "ref": "geoopt reference",
              "matmuls": "the step's matmuls alone",
              "hyphc_ours": "HypHC term ours", "hyphc_ours_nochecks": "HypHC term ours, checks(False)",
              "hyphc_ref": "HypHC term elementwise route"}
HYPHC_IMPLS = ("hyphc_ours", "hyphc_ours_nochecks", "hyphc_ref")
#: the step's time over its matmuls alone (both at 2 threads, same run): the target for each scale
FLOOR_RATIO_TARGET = 1.4
TARGET_THREADS = 2
SOP_MIB_TARGET = 300.0
HYPHC_VALUE_TARGET = 1e-6
#: |loss - reference loss| / |reference loss|
LOSS_VALUE_TARGET = 1e-6
#: on a GPU (H100/H200), the CUB step: at most this many ms and this many times faster than the reference
GPU_CUB_MS_TARGET = 3.0
GPU_VS_REF_TARGET = 3.0


def estimate_gib(impl: str, B: int, C: int, K: int, D: int, M: int, **_) -> float:
    """Rough peak-memory estimate (GiB), only used to skip cases that would not fit (--max-gib)."""
    N = C * K
    if impl.startswith("hyphc"):
        per_pair = 90 if impl == "hyphc_ref" else 2  # the elementwise route keeps ~90 (M, 3, D) tensors
        return (4 * N * D + per_pair * 3 * M * D) * 4 / 2**30
    base = (12 * N * D + 20 * B * N + 30 * M * D) * 4 / 2**30
    if impl == "ref":
        return base + 5.5 * B * N * D * 4 / 2**30  # geoopt broadcasting, fwd+bwd
    return base


# --------------------------------------------------------------------------------------------
# the reference: the same loss, written straightforwardly with geoopt
# --------------------------------------------------------------------------------------------
def reference_step_fns(head, proxies, c: float, r: float, hp: dict, generator):
    import torch
    import torch.nn.functional as F
    import geoopt.manifolds.stereographic.math as gmath
    from chestlab.losses import sample_triplets

    def ref_head(v, k):
        u = head.linear(v)
        norm = u.norm(dim=-1, keepdim=True).clamp_min(1e-15)
        u = u * torch.clamp(r / norm, max=1.0)  # feature clipping
        return gmath.project(gmath.expmap0(u, k=k), k=k)

    def lca_depth(a, b, sqrt_c):
        cc = sqrt_c * sqrt_c
        a2, b2, ab = (a * a).sum(-1), (b * b).sum(-1), (a * b).sum(-1)
        wedge = (a2 * b2 - ab * ab).clamp_min(1e-30).sqrt()
        sq = (a - b).pow(2).sum(-1).clamp_min(1e-30)
        s = 2 * wedge / (sq.sqrt() * ((1 - cc * a2) * (1 - cc * b2) + cc * sq).sqrt())
        return torch.asinh(sqrt_c * s) / sqrt_c

    def loss(x_e, x_h, labels, k):
        C, K, D = proxies.shape
        p_h = ref_head(proxies.reshape(C * K, D), k)
        onehot = F.one_hot(labels, C).to(x_e.dtype)
        d_h = gmath.dist(x_h[:, None], p_h[None], k=k).view(-1, C, K)
        s_h = -(torch.softmax(-d_h / hp["gamma"], -1) * d_h).sum(-1)
        l_h = F.cross_entropy(hp["lam"] * (s_h - hp["delta_h"] * onehot), labels)
        d_e = torch.cdist(x_e, proxies.reshape(C * K, D)).view(-1, C, K)
        s_e = -(torch.softmax(-d_e / hp["gamma"], -1) * d_e).sum(-1)
        l_e = F.cross_entropy(hp["lam"] * (s_e - hp["delta_e"] * onehot), labels)
        t = sample_triplets(C, K, hp["M"], generator).to(x_e.device)
        p = p_h[t]  # (M, 3, D)
        pa, pb = p[:, [0, 0, 1]], p[:, [1, 2, 2]]
        S = torch.exp(-gmath.dist(pa, pb, k=k)).detach()
        w = torch.softmax(lca_depth(pa, pb, math.sqrt(c)) / 1.0, -1)
        l_hyp = (S.sum(-1) - (S * w).sum(-1)).mean()
        return l_h + l_e + hp["tau"] * l_hyp

    return ref_head, loss


def hyphc_elementwise(proxies_h, triplets, c):
    """The HypHC term as hyphc_loss computed it before the Gram route: Eq. 8-9 with poincare.dist
    and poincare.lca_depth on the (M, 3, D) pairs (i, j), (i, k), (j, k) of the triplets."""
    import torch
    from chestlab import poincare

    flat = proxies_h.reshape(-1, proxies_h.shape[-1])
    p = flat[triplets]
    pa, pb = p[:, [0, 0, 1]], p[:, [1, 2, 2]]
    S = torch.exp(-poincare.dist(pa, pb, c)).detach()
    w = torch.softmax(poincare.lca_depth(pa, pb, c), dim=-1)
    return S.sum(-1) - (S * w).sum(-1)


def _build_hyphc(impl: str, C: int, K: int, D: int, M: int, args: argparse.Namespace, **_):
    import torch
    from chestlab import poincare
    from chestlab.losses import sample_triplets
    from chestlab.losses.parts import hyphc_term

    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(args.seed)
    v = torch.randn(C * K, D, generator=g)
    proxies_h = poincare.expmap0(poincare.clip_features(v, args.r), args.c).view(C, K, D).to(dev).requires_grad_(True)
    triplets = sample_triplets(C, K, M, g).to(dev)
    checks = impl != "hyphc_ours_nochecks"

    def loss_fn(p, t, c):
        if impl == "hyphc_ref":
            return hyphc_elementwise(p, t, c).mean()
        # the training path: parts.hyphc_term, one fused Function on the flat (C·K, D) proxies
        return hyphc_term(p.view(-1, D), t, c)

    def run():
        proxies_h.grad = None
        with poincare.checks(checks):
            loss = loss_fn(proxies_h, triplets, args.c)
        loss.backward()
        return loss.detach()

    def extract(loss):
        return {"loss": loss.double().cpu().numpy().reshape(1), "proxies": proxies_h.grad.float().cpu().numpy()}
    return run, extract


# --------------------------------------------------------------------------------------------
# one case, in a fresh process
# --------------------------------------------------------------------------------------------
def _build(impl: str, B: int, C: int, K: int, D: int, M: int, delta_h: float, delta_e: float,
           args: argparse.Namespace):
    import torch
    from chestlab import poincare
    from chestlab.losses import CHESTLoss
    from chestlab.models import HyperbolicHead

    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    head = HyperbolicHead(D, D, c=args.c, r=args.r)
    crit = CHESTLoss(C, K, D, head, M=M, delta_e=delta_e, delta_h=delta_h, tau=args.tau, seed=args.seed)
    crit.to(dev)  # moves the proxies and the head
    g = torch.Generator().manual_seed(args.seed + 7)
    x_e = torch.randn(B, D, generator=g).to(dev).requires_grad_(True)
    labels = torch.randint(C, (B,), generator=g).to(dev)
    params = [x_e, crit.proxies, *head.parameters()]

    if impl == FLOOR_IMPL:
        W, bias = head.linear.weight.detach(), head.linear.bias.detach()
        P, x = crit.proxies.detach().reshape(C * K, D), x_e.detach()

        def run():
            # the 12 products of the step: the head on the batch and on the C·K proxies (forward, and
            # the gradients for the input and for W), the Euclidean and the hyperbolic (B, C·K)
            # similarity products (forward, and the gradients for both sides)
            th, tp = torch.addmm(bias, x, W.T), torch.addmm(bias, P, W.T)
            s_e, s_h = x @ P.T, th @ tp.T
            out = [s_e @ P, s_e.T @ x, s_h @ tp, s_h.T @ th, tp @ W, tp.T @ P, th @ W, th.T @ x]
            return sum(o[0, 0] for o in out)
    elif impl in ("ours", "ours_nochecks"):
        checks = impl == "ours"

        def run():
            for p in params:
                p.grad = None
            with poincare.checks(checks):
                out = crit(x_e, head(x_e), labels)
            out.loss.backward()
            return out.loss.detach()
    elif impl == "ref":
        hp = dict(gamma=5.0, lam=20.0, delta_h=delta_h, delta_e=delta_e, tau=args.tau, M=M)
        gen = torch.Generator().manual_seed(args.seed + 1)  # CHESTLoss's triplet generator seed
        ref_head, ref_loss = reference_step_fns(head, crit.proxies, args.c, args.r, hp, gen)
        k = torch.tensor(-args.c, device=dev)

        def run():
            for p in params:
                p.grad = None
            loss = ref_loss(x_e, ref_head(x_e, k), labels, k)
            loss.backward()
            return loss.detach()
    else:
        raise ValueError(impl)

    def extract(loss):
        if impl == FLOOR_IMPL:
            return {"loss": loss.double().cpu().numpy().reshape(1)}
        return {"loss": loss.double().cpu().numpy().reshape(1),
                **{name: p.grad.float().cpu().numpy() for name, p in
                   (("x_e", x_e), ("proxies", crit.proxies), ("W", head.linear.weight))}}
    return run, extract


def case_worker(case: dict, args: argparse.Namespace) -> dict:
    import torch

    cm.setup_worker(args.threads)
    dims = {k: case[k] for k in SCALES["CUB"]}
    build = _build_hyphc if case["impl"].startswith("hyphc") else _build
    tiny, _ = build(case["impl"], **{**dims, "B": 4, "C": 3, "M": 4}, args=args)
    tiny()
    tiny()
    del tiny
    run, extract = build(case["impl"], **dims, args=args)
    res = cm.measure(run, args.device, args)
    if torch.device(args.device).type == "cpu":
        # CPU time of the process per call (all threads): the work done, which other processes on
        # shared cores inflate far less than the wall time (with 1 thread it is the wall time unloaded)
        cpu = []
        for _ in range(max(1, min(5, res["n"]))):
            t0 = time.process_time()
            run()
            cpu.append((time.process_time() - t0) * 1e3)
        res["cpu_ms"] = statistics.median(cpu)
    # values from a fresh build (first step: same triplets for ours and the reference)
    run, extract = build(case["impl"], **dims, args=args)
    res["values"] = extract(run())
    res.pop("out", None)
    del run, extract
    if torch.device(args.device).type == "cuda":
        torch.cuda.empty_cache()
    return res


def _diffs(a: dict, b: dict) -> tuple[float, float]:
    """|loss difference|, max over the gradients of max|Δ| / max|ref|."""
    import numpy as np

    dl = float(abs(a["loss"][0] - b["loss"][0]))
    rel = 0.0
    for k in ("x_e", "proxies", "W"):
        if k not in b:
            continue
        ref = b[k].astype(np.float64)
        rel = max(rel, float(np.abs(a[k].astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30)))
    return dl, rel


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description="CHEST loss forward+backward (batch head + proxy mapping through the HyperbolicHead + Eq. 10 + "
                    "backward) at the paper's CUB and SOP scales: chestlab.losses.CHESTLoss vs a straightforward "
                    "geoopt implementation, and the HypHC term alone (Gram route vs elementwise route). Prints one "
                    "table: median time (ms), peak memory (MiB), ratios, value agreement, and the targets (2 threads: "
                    "CUB and SOP step <= 1.4x its matmuls alone; SOP peak < 300 MiB; loss = reference to 1e-6; HypHC values "
                    "to 1e-6) with PASS/FAIL.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--scales", default="CUB,SOP", help="comma-separated subset of CUB,SOP (--quick: CUB)")
    p.add_argument("--c", type=float, default=0.5, help="curvature c")
    p.add_argument("--r", type=float, default=2.3, help="feature-clipping radius of the head")
    p.add_argument("--tau", type=float, default=0.5, help="HypHC weight tau")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, proxies, inputs, labels, triplets")
    p.add_argument("--no-hyphc", action="store_true", help="skip the rows of the HypHC term alone")
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
    impls = IMPLS + (FLOOR_IMPL,) + (() if args.no_hyphc else HYPHC_IMPLS)
    try:
        import geoopt  # noqa: F401  (only the reference step needs it)
        no_geoopt = None
    except ImportError:
        no_geoopt = "geoopt is not installed (pip install geoopt): reference column skipped"
    for scale in scales:
        dims = SCALES[scale]
        for impl in impls:
            est = estimate_gib(impl, **dims)
            label = f"{scale} {IMPL_NAMES[impl]}"
            if impl == "ref" and no_geoopt:
                skipped[(scale, impl)] = no_geoopt
                print(f"[skip] {label}: {no_geoopt}", file=sys.stderr, flush=True)
                continue
            if est > max_gib:
                skipped[(scale, impl)] = f"est. {est:.1f} GiB > --max-gib {max_gib:.1f}"
                print(f"[skip] {label}: {skipped[(scale, impl)]}", file=sys.stderr, flush=True)
                continue
            print(f"[run ] {label} ...", file=sys.stderr, flush=True)
            try:
                results[(scale, impl)] = r = cm.run_isolated(case_worker, dict(impl=impl, **dims), args)
            except cm.CaseFailed as e:
                skipped[(scale, impl)] = str(e)
                print(f"[fail] {label}: {e}", file=sys.stderr, flush=True)
                continue
            print(f"       {r['ms']:.2f} ms (median of {r['n']}), {r['mib']:.1f} MiB", file=sys.stderr, flush=True)

    headers = ["scale", "ours ms", "no-checks ms", "matmuls alone ms", "ref ms", "faster vs ref", "ours CPU ms", "ref CPU ms",
               "ours MiB", "no-checks MiB", "ref MiB", "less mem vs ref", "abs Δ loss", "max rel Δ grad"]
    rows = []
    hyphc_diffs = {}
    ms = lambda r: r["ms"] if r else None  # noqa: E731
    mb = lambda r: r["mib"] if r else None  # noqa: E731
    cpu = lambda r: r.get("cpu_ms") if r else None  # noqa: E731
    groups = [(IMPLS, "{scale} (B={B}, C={C}, K={K}, D={D}, M={M})")]
    if not args.no_hyphc:
        groups.append((HYPHC_IMPLS, "{scale} HypHC term only (C·K={CK}, M={M})"))
    for group, label in groups:
        for scale in scales:
            d = SCALES[scale]
            o, n, rf = (results.get((scale, i)) for i in group)
            dl = dg = None
            if o and rf:
                dl, dg = _diffs(o["values"], rf["values"])
                if group is HYPHC_IMPLS:
                    hyphc_diffs[scale] = dl
            fl = results.get((scale, FLOOR_IMPL)) if group is IMPLS else None
            rows.append([
                label.format(scale=scale, CK=d["C"] * d["K"], **d),
                cm.fmt_ms(ms(o)), cm.fmt_ms(ms(n)), cm.fmt_ms(ms(fl)), cm.fmt_ms(ms(rf)), cm.fmt_ratio(ms(rf), ms(o)),
                cm.fmt_ms(cpu(o)), cm.fmt_ms(cpu(rf)),
                cm.fmt_mib(mb(o)), cm.fmt_mib(mb(n)), cm.fmt_mib(mb(rf)), cm.fmt_ratio(mb(rf), mb(o)),
                cm.fmt_err(dl), cm.fmt_err(dg),
            ])

    is_cuda = args.device.startswith("cuda")
    mem_what = ("peak torch.cuda.max_memory_allocated growth during one step" if is_cuda else cm.cpu_mem_method())
    title = [
        f"CHEST loss step, float32: x_h = head(x_e); CHESTLoss (proxies through the same HyperbolicHead, M triplets); "
        f"backward. c={args.c:g}, r={args.r:g}, tau={args.tau:g}, gamma=5, lambda=20",
        "ours = chestlab CHESTLoss + HyperbolicHead (checks on; 'no-checks' = inside poincare.checks(False)); "
        "ref = same loss with geoopt expmap0 + broadcasting dist (B, C·K, D), torch.cdist, same weights/triplets",
        "matmuls alone = the step's 12 matrix products at the same shapes (head on batch and proxies, both (B, C·K) "
        "similarities; forward and backward), nothing else: the floor of any implementation on this device",
        "HypHC term rows: hyphc_loss(...).mean() fwd+bwd on C·K proxies; ours = fused Gram route (losses.parts.hyphc_term), "
        "ref = elementwise route (poincare.dist + lca_depth on (M, 3, D) pairs), same proxies/triplets",
        f"time: median wall ms of fwd+bwd (warm-up {args.warmup}, up to {args.repeats} repeats, {args.budget:g} s budget "
        f"per case); CPU ms: median process CPU time per call (all threads; less sensitive to other load than wall "
        f"time); memory: {mem_what}; ratios = ref / ours",
        *env,
    ]
    notes = []
    for (scale, impl), why in skipped.items():
        notes.append(f"skipped {scale} {IMPL_NAMES[impl]}: {why}")
    failed = False
    nt = args.threads if args.threads is not None else _torch_threads()
    tnote = "" if nt == TARGET_THREADS else f" [target defined for {TARGET_THREADS} threads, measured with {nt}]"
    if is_cuda:
        o, rf = results.get(("CUB", "ours")), results.get(("CUB", "ref"))
        if o is not None:
            speed = rf["ms"] / o["ms"] if rf else None
            ok = o["ms"] <= GPU_CUB_MS_TARGET and (speed is None or speed >= GPU_VS_REF_TARGET)
            failed |= not ok
            vs = f"{speed:.1f}x faster than the reference" if speed else "reference not run"
            notes.append(f"TARGET GPU CUB step <= {GPU_CUB_MS_TARGET:g} ms and >= {GPU_VS_REF_TARGET:g}x faster than the "
                         f"geoopt reference: {o['ms']:.2f} ms, {vs} {cm.verdict(ok)}")
    for scale in ("CUB", "SOP"):
        o, fl = results.get((scale, "ours")), results.get((scale, FLOOR_IMPL))
        what = f"TARGET {scale} step <= {FLOOR_RATIO_TARGET:g}x its matmuls alone"
        if o is None or fl is None:
            why = "--quick" if args.quick and scale == "SOP" else "not run"
            notes.append(f"{what}: not measured (n/a, {why})")
            continue
        ratio = o["ms"] / fl["ms"]
        ok = ratio <= FLOOR_RATIO_TARGET
        failed |= not ok
        n = results.get((scale, "ours_nochecks"))
        extra = (f" (checks(False): {n['ms'] / fl['ms']:.2f}x {cm.verdict(n['ms'] / fl['ms'] <= FLOOR_RATIO_TARGET)})"
                 if n else "")
        notes.append(f"{what}: {ratio:.2f}x ({o['ms']:.1f} / {fl['ms']:.1f} ms) {cm.verdict(ok)}{extra}{tnote}")
    o = results.get(("SOP", "ours"))
    if o is not None:
        ok = o["mib"] < SOP_MIB_TARGET
        failed |= not ok
        n = results.get(("SOP", "ours_nochecks"))
        extra = f" (checks(False): {n['mib']:.0f} MiB {cm.verdict(n['mib'] < SOP_MIB_TARGET)})" if n else ""
        notes.append(f"TARGET SOP peak memory < {SOP_MIB_TARGET:g} MiB: {o['mib']:.0f} MiB {cm.verdict(ok)}{extra}")
    else:
        notes.append(f"TARGET SOP peak memory < {SOP_MIB_TARGET:g} MiB: not measured (n/a" + (", --quick)" if args.quick else ")"))
    for scale in scales:
        o, rf = results.get((scale, "ours")), results.get((scale, "ref"))
        if o and rf:
            ref_loss = float(rf["values"]["loss"][0])
            rel = abs(float(o["values"]["loss"][0]) - ref_loss) / max(abs(ref_loss), 1e-30)
            ok = rel <= LOSS_VALUE_TARGET
            failed |= not ok
            notes.append(f"TARGET {scale} loss equals the geoopt reference to {LOSS_VALUE_TARGET:g} (relative): "
                         f"{rel:.1e} {cm.verdict(ok)}; gradients: max |Δ| / max |ref| {_diffs(o['values'], rf['values'])[1]:.1e} "
                         f"(float32 on both sides)")
    for scale, dl in hyphc_diffs.items():
        ok = dl <= HYPHC_VALUE_TARGET
        failed |= not ok
        notes.append(f"TARGET {scale} HypHC term equals the elementwise route to {HYPHC_VALUE_TARGET:g}: "
                     f"|Δ loss| {dl:.1e} {cm.verdict(ok)}")
    if hasattr(os, "getloadavg"):
        notes.append("load avg at end %.1f/%.1f/%.1f (times are inflated when other processes share the cores)"
                     % os.getloadavg())
    print(cm.table(title, headers, rows, notes), flush=True)
    return 1 if (failed and args.strict) else 0


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())
