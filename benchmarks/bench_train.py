"""Training-engine targets: demo-tree speed and learning, demo-shapes learning, and (on a GPU) the
cub200 preset's throughput and the share of step time spent in the CHEST loss.

    .venv/bin/python benchmarks/bench_train.py              # demo-tree + demo-shapes on the CPU
    .venv/bin/python benchmarks/bench_train.py --quick      # demo-tree only
    .venv/bin/python benchmarks/bench_train.py --cub --device cuda   # GPU: cub200 with random CUB-layout data

Targets (issue "Data, models and one training engine"):
- demo-tree: >= 50 optimizer steps/s on a 2-core CPU; untrained H-space Recall@1 on unseen classes
  < 0.6; >= 0.85 within 30 s of training (wall clock, evaluations included).
- demo-shapes: a clear gain in H-space Recall@1 on unseen classes within 3 minutes on the CPU.
- cub200 (GPU): images/s, and the loss's share of the step time < 5%.

The reference for the step rate is the same step without the loss (backbone forward/backward and
the optimizer only), so the ratio shows what the loss costs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)

from chestlab.data.fake import make_fake_cub  # noqa: E402
from chestlab.train import EvalEvent, StepEvent, Trainer, TrainConfig  # noqa: E402


def learn(preset: str, budget_s: float, target: float | None, device: str, eval_every: int, max_steps: int) -> dict:
    """Train a preset until `budget_s` of wall clock (evaluations included) or `max_steps`."""
    tr = Trainer(TrainConfig.preset(preset, device=device, eval_every=eval_every, eval_train=False, steps=max_steps))
    r0 = tr.evaluate(("test",)).metrics["test/H/R@1"]
    best, reached_at, curve = r0, None, []
    t0 = time.perf_counter()
    step_times = []
    for ev in tr.run():
        if isinstance(ev, StepEvent):
            step_times.append(ev.step_time)
        elif isinstance(ev, EvalEvent):
            elapsed = time.perf_counter() - t0
            r1 = ev.metrics["test/H/R@1"]
            curve.append((ev.step, elapsed, r1))
            best = max(best, r1)
            if target is not None and reached_at is None and r1 >= target:
                reached_at = elapsed
        if time.perf_counter() - t0 > budget_s:
            break
    steady = sorted(step_times[5:]) or sorted(step_times)
    median = steady[len(steady) // 2]
    return {"untrained": r0, "best": best, "reached_at": reached_at, "curve": curve, "steps_per_s": 1 / median,
            "final": curve[-1][2] if curve else r0, "elapsed": time.perf_counter() - t0}


def step_rate_without_loss(preset: str, device: str, n: int = 200) -> float:
    """Steps/s of the same model, batch and optimizer with a trivial loss (the reference)."""
    tr = Trainer(TrainConfig.preset(preset, device=device))
    times = []
    for s in range(n):
        t0 = time.perf_counter()
        x, y, _ = tr.batch(s)
        x_e, x_h = tr.model(x)
        loss = x_e.pow(2).mean() + x_h.pow(2).mean()
        tr.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        tr.optimizer.step()
        times.append(time.perf_counter() - t0)
    times = sorted(times[5:])
    return 1 / times[len(times) // 2]


def cub_throughput(device: str, steps: int, **overrides) -> dict:
    """Images/s of the cub200 preset (random weights, random CUB-layout images) and the loss's share
    of the step time. ``overrides`` change the preset (the smoke test uses a small batch)."""
    with tempfile.TemporaryDirectory() as tmp:
        make_fake_cub(tmp, per_class=4, size=256)
        cfg = TrainConfig.preset("cub200", **{"data_root": tmp, "device": device, "pretrained": False, "m_per_class": 2,
                                              "workers": 0, **overrides})
        tr = Trainer(cfg)
        total, loss_t = [], []
        for s in range(steps):
            x, y, _ = tr.batch(s)
            _common.sync(device)
            t0 = time.perf_counter()
            with torch.autocast(tr.device.type, dtype=tr.amp_dtype, enabled=tr.use_amp):
                x_e, x_h = tr.model(x)
            # the loss alone, forward + backward, on detached copies of the embeddings
            xe, xh = x_e.detach().requires_grad_(), x_h.detach().requires_grad_()
            _common.sync(device)
            t1 = time.perf_counter()
            out = tr.criterion(xe, xh, y)
            out.loss.backward()
            _common.sync(device)
            t2 = time.perf_counter()
            tr.optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward([x_e, x_h], [xe.grad.to(x_e.dtype), xh.grad.to(x_h.dtype)])
            tr.optimizer.step()
            _common.sync(device)
            t3 = time.perf_counter()
            if s >= min(3, steps - 1):
                total.append(t3 - t0)
                loss_t.append(t2 - t1)
        med = sorted(total)[len(total) // 2]
        return {"images_per_s": cfg.batch_size / med, "step_ms": 1e3 * med,
                "loss_share": sorted(loss_t)[len(loss_t) // 2] / med}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--quick", action="store_true", help="demo-tree only, shorter budgets")
    p.add_argument("--cub", action="store_true", help="also measure the cub200 preset (meant for a GPU)")
    p.add_argument("--cub-steps", type=int, default=20, help="steps for the cub200 measurement")
    args = p.parse_args()
    _common.check_device(args.device)
    print("\n".join(_common.env_lines(args.device, None)))

    rows, notes, ok_all = [], [], True
    tree = learn("demo-tree", budget_s=15 if args.quick else 30, target=0.85, device=args.device, eval_every=50, max_steps=3000)
    ref_rate = step_rate_without_loss("demo-tree", args.device)
    ok_rate = tree["steps_per_s"] >= 50
    ok_raw = tree["untrained"] < 0.6
    ok_learn = tree["reached_at"] is not None and tree["reached_at"] <= 30
    ok_all &= ok_rate and ok_raw and ok_learn
    rows += [
        ["demo-tree steps/s (CHEST)", f"{tree['steps_per_s']:.0f}", f"{ref_rate:.0f} without loss", ">= 50", _common.verdict(ok_rate)],
        ["demo-tree H R@1 untrained (unseen classes)", f"{tree['untrained']:.3f}", "", "< 0.6", _common.verdict(ok_raw)],
        ["demo-tree time to H R@1 >= 0.85", "—" if tree["reached_at"] is None else f"{tree['reached_at']:.1f} s",
         f"best {tree['best']:.3f}", "<= 30 s", _common.verdict(ok_learn)],
    ]
    notes.append("demo-tree curve (step, s, H R@1): " + ", ".join(f"({s}, {t:.1f}, {r:.3f})" for s, t, r in tree["curve"][:8]))
    if not args.quick:
        shapes = learn("demo-shapes", budget_s=180, target=None, device=args.device, eval_every=200, max_steps=5000)
        gain = shapes["best"] - shapes["untrained"]
        ok_gain = gain >= 0.3
        ok_all &= ok_gain
        rows.append(["demo-shapes H R@1 untrained -> best in 3 min", f"{shapes['untrained']:.3f} -> {shapes['best']:.3f}",
                     f"{shapes['steps_per_s']:.1f} steps/s", "clear gain (>= +0.3)", _common.verdict(ok_gain)])
        notes.append("demo-shapes curve (step, s, H R@1): " + ", ".join(f"({s}, {t:.0f}, {r:.3f})" for s, t, r in shapes["curve"]))
    if args.cub:
        cub = cub_throughput(args.device, args.cub_steps)
        ok_share = cub["loss_share"] < 0.05
        rows.append(["cub200 images/s (ViT-S/16, B=200, random CUB-layout data)", f"{cub['images_per_s']:.0f}",
                     f"{cub['step_ms']:.0f} ms/step", "", ""])
        rows.append(["cub200 loss share of step time", f"{100 * cub['loss_share']:.1f} %", "", "< 5 %", _common.verdict(ok_share)])
    print(_common.table(["Training engine targets"], ["what", "ours", "reference / detail", "target", "verdict"], rows, notes))
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
