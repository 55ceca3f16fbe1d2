"""The GPU path: geometry and losses on CUDA against float64 on the CPU, and the trainer with AMP.

Skipped where there is no GPU (CI has none). On a machine with one:

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_cuda.py

These tests import only torch and chestlab, so they also run where the test extras (geoopt,
pytorch-metric-learning) are not installed.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from chestlab import poincare
from chestlab.losses import functional as F
from chestlab.train import EvalEvent, StepEvent, Trainer, TrainConfig

# CHESTLAB_TEST_DEVICE=cpu runs the same checks on the CPU (to check the tests themselves)
DEVICE = os.environ.get("CHESTLAB_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device(DEVICE)
SMALL = dict(steps=60, eval_every=0, eval_max=600, batch_size=32, m_per_class=4, dim_e=32, dim_h=8, M=16)


def _ball(n: int, d: int, c: float, seed: int, r: float = 2.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return poincare.expmap0(poincare.clip_features(torch.randn(n, d, generator=g, dtype=torch.float64) * 3, r), c)


@pytest.mark.parametrize("c", [0.1, 0.5, 2.0])
def test_geometry_on_cuda_float32_matches_cpu_float64(c: float) -> None:
    x, y = _ball(200, 384, c, 0), _ball(1000, 384, c, 1)
    ref = poincare.pairwise_dist(x, y, c)
    got = poincare.pairwise_dist(x.float().to(CUDA), y.float().to(CUDA), c).double().cpu()
    # float32 resolves D_H to ~1e-3 at the clipping radius (1 - sqrt(c)|x| ~ 1e-2)
    torch.testing.assert_close(got, ref, rtol=2e-4, atol=2e-3)
    v = poincare.clip_features(torch.randn(64, 16, dtype=torch.float64) * 2, 2.3)  # the kit's clipping radius r
    torch.testing.assert_close(poincare.logmap0(poincare.expmap0(v.float().to(CUDA), c), c).double().cpu(), v, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(poincare.mobius_add(x[:50].float().to(CUDA), y[:50].float().to(CUDA), c).double().cpu(),
                               poincare.mobius_add(x[:50], y[:50], c), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("hyphc", ["lca", "pairwise"])
def test_chest_loss_and_gradients_on_cuda_match_cpu(hyphc: str) -> None:
    torch.manual_seed(0)
    B, C, K, D, c = 64, 20, 2, 16, 0.5
    x_e = torch.randn(B, D, dtype=torch.float64)
    x_h = _ball(B, D, c, 2)
    labels = torch.randint(0, C, (B,))
    p_e = torch.randn(C, K, D, dtype=torch.float64)
    p_h = _ball(C * K, D, c, 3).reshape(C, K, D)
    triplets = F.sample_triplets(C, K, 32, torch.Generator().manual_seed(0))
    kw = dict(c=c, delta_e=1.0, delta_h=1.0, tau=0.5, hyphc=hyphc)

    def run(device: torch.device, dtype: torch.dtype):
        leaves = [t.detach().to(device, dtype).clone().requires_grad_() for t in (x_e, x_h, p_e, p_h)]
        out = F.chest_loss(leaves[0], leaves[1], labels.to(device), leaves[2], leaves[3], triplets.to(device), **kw)
        out.loss.backward()
        return out.loss.detach().double().cpu(), [t.grad.double().cpu() for t in leaves]

    ref_total, ref_grads = run(torch.device("cpu"), torch.float64)
    total, grads = run(CUDA, torch.float32)
    torch.testing.assert_close(total, ref_total, rtol=1e-4, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-4 * float(r.abs().max()))  # float32 vs float64


@pytest.mark.parametrize("c", [None, 0.5])
@pytest.mark.parametrize("K", [1, 10])
def test_fused_proxy_term_on_cuda_matches_float64(c, K) -> None:
    """The training path's fused Function (distance -> soft similarity -> cross-entropy,
    ``parts.points_proxy_term``) in float32 on the device against float64 on the CPU, at a
    CUB-like shape: loss, S and the gradients of the points and the proxies."""
    from chestlab.losses.parts import points_proxy_term, proxy_term

    B, C, D = 200, 20, 64
    if c is None:
        g = torch.Generator().manual_seed(4)
        x, y = torch.randn(B, D, generator=g, dtype=torch.float64), torch.randn(C * K, D, generator=g, dtype=torch.float64)
    else:
        x, y = _ball(B, D, c, 4), _ball(C * K, D, c, 5)
    labels = torch.arange(B) % C

    def two_step(xs, ys, labels, K, c, *hp):  # the readable route: the distance matrix, then Eq. 5-7
        d = poincare.pairwise_euclidean(xs, ys) if c is None else poincare.pairwise_dist(xs, ys, c)
        return proxy_term(d.view(xs.shape[0], -1, K), labels, *hp)

    def run(fn, device: torch.device, dtype: torch.dtype):
        xs, ys = x.to(device, dtype).requires_grad_(), y.to(device, dtype).requires_grad_()
        loss, S = fn(xs, ys, labels.to(device), K, c, 5.0, 20.0, 1.0)
        gx, gy = torch.autograd.grad(loss, (xs, ys))
        return [t.detach().double().cpu() for t in (loss, S, gx, gy)]

    ref = run(two_step, torch.device("cpu"), torch.float64)
    got = run(points_proxy_term, CUDA, torch.float32)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=0)
    torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-5 * float(ref[1].abs().max()))
    for g, r in zip(got[2:], ref[2:]):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-4 * float(r.abs().max()))


def test_chestloss_training_path_on_cuda_matches_float64() -> None:
    """CHESTLoss (the fused terms, the head on the proxies, HypHC) on the device in float32 against
    the same module in float64 on the CPU: the loss and the gradients of x_e, the proxies and W."""
    from chestlab.losses import CHESTLoss
    from chestlab.models import HyperbolicHead

    def run(device: torch.device, dtype: torch.dtype):
        torch.manual_seed(0)
        head = HyperbolicHead(32, 16, c=0.5, r=2.3)
        crit = CHESTLoss(20, 4, 32, head, M=64, delta_e=1.0, delta_h=2.0, seed=0).to(device, dtype)
        g = torch.Generator().manual_seed(1)
        x_e = torch.randn(64, 32, generator=g, dtype=torch.float64).to(device, dtype).requires_grad_()
        labels = (torch.arange(64) % 20).to(device)
        out = crit(x_e, head(x_e), labels)
        grads = torch.autograd.grad(out.loss, (x_e, crit.proxies, head.linear.weight))
        return [out.loss.detach().double().cpu(), *(t.double().cpu() for t in grads)]

    ref = run(torch.device("cpu"), torch.float64)
    got = run(CUDA, torch.float32)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=0)
    for g, r in zip(got[1:], ref[1:]):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-4 * float(r.abs().max()))


@pytest.mark.parametrize("amp", [True, False])
def test_trainer_on_cuda_learns_with_and_without_amp(amp: bool) -> None:
    tr = Trainer(TrainConfig.preset("demo-tree", **SMALL, device=DEVICE, amp=amp))
    assert tr.device.type == CUDA.type and tr.use_amp == (amp and CUDA.type == "cuda")
    before = tr.evaluate(("test",)).metrics["test/H/R@1"]
    events = list(tr.run())
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert len(steps) == 60 and all(math.isfinite(e.loss) for e in steps)
    after = [e for e in events if isinstance(e, EvalEvent)][-1].metrics["test/H/R@1"]
    assert after > before + 0.1, (before, after)
    assert all(p.device.type == CUDA.type for p in tr.model.parameters())


def test_cuda_resume_continues_the_run(tmp_path) -> None:
    """Interrupted at step 20 and resumed: the same losses as one uninterrupted run.

    cuBLAS and scatter kernels are not bitwise deterministic on every GPU, so this compares to 1e-4
    (on the CPU, tests/test_resume.py checks resume bit for bit)."""
    cfg = TrainConfig.preset("demo-tree", **{**SMALL, "steps": 40}, device=DEVICE, amp=False)
    full = [e.loss for e in Trainer(cfg).run(eval_at_end=False) if isinstance(e, StepEvent)]
    first = Trainer(cfg, out_dir=tmp_path / "run")
    list(first.run(20, eval_at_end=False))  # checkpoints at its last step
    second = Trainer(cfg, out_dir=tmp_path / "run", resume=True)
    rest = [e.loss for e in second.run(eval_at_end=False) if isinstance(e, StepEvent)]
    assert len(rest) == 20
    torch.testing.assert_close(torch.tensor(rest), torch.tensor(full[20:]), rtol=1e-4, atol=1e-5)


def test_evaluation_on_cuda_matches_cpu() -> None:
    tr = Trainer(TrainConfig.preset("demo-tree", **{**SMALL, "steps": 30}, device=DEVICE, amp=False))
    list(tr.run(eval_at_end=False))
    gpu = tr.evaluate(("test",)).metrics
    cpu_tr = Trainer(TrainConfig.preset("demo-tree", **{**SMALL, "steps": 30}, device="cpu"))
    cpu_tr.system.load_state_dict(tr.system.state_dict())  # copies the GPU tensors into the CPU ones
    cpu = cpu_tr.evaluate(("test",)).metrics
    for key in ("test/H/R@1", "test/E/R@1", "test/H/MAP@R"):
        assert abs(gpu[key] - cpu[key]) <= 0.01, (key, gpu[key], cpu[key])
