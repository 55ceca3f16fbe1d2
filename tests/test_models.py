"""Backbone registry, the hyperbolic head and the CHEST model."""

from __future__ import annotations

import math

import pytest
import torch

from chestlab import models, poincare


def test_registry_names_and_errors():
    names = models.list_backbones()
    assert {"mlp", "cnn", "vit_tiny_patch16_224", "vit_small_patch16_224"} <= set(names)
    with pytest.raises(ValueError, match="backbone = 'resnet9000' is unknown"):
        models.create_backbone("resnet9000", (3, 32, 32))
    with pytest.raises(ValueError, match="needs images"):
        models.create_backbone("cnn", (32,))
    with pytest.raises(ValueError, match="needs images"):
        models.create_backbone("vit_tiny_patch16_224", (32,))


@pytest.mark.parametrize("name,shape", [("mlp", (32,)), ("cnn", (3, 32, 32)), ("cnn", (1, 8, 8))])
def test_small_backbones_and_chest_model(name, shape):
    net = models.create_backbone(name, shape, 24)
    model = models.CHESTModel(net, dim_h=5, c=0.5, r=2.3)
    x_e, x_h = model(torch.randn(6, *shape))
    assert x_e.shape == (6, 24) and x_h.shape == (6, 5)
    # clipping at r keeps x_h within tanh(sqrt(c) r)/sqrt(c) of the origin
    assert float(x_h.detach().norm(dim=-1).max()) <= math.tanh(math.sqrt(0.5) * 2.3) / math.sqrt(0.5) + 1e-6
    head_model = models.CHESTModel(net, dim_h=5, euclid_space="head")
    x_e2, _ = head_model(torch.randn(6, *shape))
    assert x_e2.shape == (6, 5)  # W x + b: the eta_H = 0 ablation rule


def test_hyperbolic_head_live_curvature_and_errors():
    head = models.HyperbolicHead(8, 3, c=1.0, r=1.0)
    v = torch.randn(4, 8)
    x1 = head(v)
    head.c = 0.1
    x2 = head(v)
    assert not torch.allclose(x1, x2)
    torch.testing.assert_close(x2, poincare.expmap0(poincare.clip_features(head.linear(v), 1.0), 0.1))
    with pytest.raises(ValueError, match="c >= 0"):
        head.c = -1.0
    with pytest.raises(ValueError, match="r = 0"):
        head.r = 0.0


def test_timm_vit_random_init_and_local_weights(tmp_path):
    net = models.create_backbone("vit_tiny_patch16_224", (3, 32, 32))
    assert net.out_dim == 192
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 192)
    weights = tmp_path / "vit_tiny.pt"
    torch.save(net.model.state_dict(), weights)
    again = models.create_backbone("vit_tiny_patch16_224", (3, 32, 32), weights=str(weights))
    for p, q in zip(net.parameters(), again.parameters()):
        assert torch.equal(p, q)
    torch.save({"something": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not match"):
        models.create_backbone("vit_tiny_patch16_224", (3, 32, 32), weights=str(tmp_path / "bad.pt"))
    with pytest.raises(ValueError, match="produces D_E = 192"):
        models.create_backbone("vit_tiny_patch16_224", (3, 32, 32), 64)


def test_pretrained_offline_falls_back_to_random_init_with_a_warning(monkeypatch):
    import timm

    real = timm.create_model

    def offline(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("no network")
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.warns(UserWarning, match="--weights FILE"):
        net = models.create_backbone("vit_tiny_patch16_224", (3, 32, 32), pretrained=True)
    assert net.out_dim == 192
