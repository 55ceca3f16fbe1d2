"""``device = auto`` on the dashboard (:func:`chestlab.dashboard.runner.pick_device`): the embedded
demos' tiny models train on the CPU (launch-bound on a GPU, slower there), real backbones on the
GPU; an explicit device is kept. No GPU is needed: CUDA's presence is an argument, and the build is
checked with ``torch.cuda.is_available`` patched to True (a tiny model never touches CUDA)."""

from __future__ import annotations

import pytest
import torch

from chestlab.dashboard import runner
from chestlab.dashboard.defaults import BASE


def test_auto_without_cuda_is_the_cpu() -> None:
    assert runner.pick_device(BASE.replace(device="auto"), cuda=False) == "cpu"
    assert runner.pick_device(BASE.replace(device="auto", backbone="cnn", dataset="shapes"), 10**9, cuda=False) == "cpu"


def test_auto_with_cuda_decides_by_parameter_count() -> None:
    cfg = BASE.replace(device="auto")
    assert cfg.backbone == "mlp"
    assert runner.pick_device(cfg, cuda=True) == "cpu"  # not built yet: a demo backbone starts on the CPU
    assert runner.pick_device(cfg, runner.TINY_PARAMS, cuda=True) == "cpu"
    assert runner.pick_device(cfg, runner.TINY_PARAMS + 1, cuda=True) == "cuda"
    vit = cfg.replace(backbone="vit_small_patch16_224")
    assert runner.pick_device(vit, cuda=True) == "cuda"  # a real backbone: the GPU, without building it first
    assert runner.pick_device(vit, 10, cuda=True) == "cuda"


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1"])
def test_an_explicit_device_is_kept(device: str) -> None:
    assert runner.pick_device(BASE.replace(device=device), 10, cuda=True) == device
    assert runner.pick_device(BASE.replace(device=device), 10**9, cuda=False) == device


def test_the_demo_model_is_tiny_and_built_on_the_cpu_where_cuda_is_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    run = runner.build(BASE.replace(device="auto"))
    n = runner.n_parameters(run.trainer)
    assert 1_000 < n <= runner.TINY_PARAMS, n  # the page's default demo (tree + mlp) is tiny
    assert run.trainer.device.type == "cpu"
    assert run.built == runner.structural(BASE.replace(device="auto"))  # the run still reads as device=auto
