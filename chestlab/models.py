"""Backbones, the hyperbolic head and the CHEST model (Sec. 3.2)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from . import poincare

__all__ = ["HyperbolicHead", "CHESTModel", "MLP", "SmallCNN", "TimmBackbone", "create_backbone", "list_backbones",
           "register_backbone", "load_weights"]


class HyperbolicHead(nn.Module):
    r"""The hyperbolic head of Sec. 3.2: :math:`x^H = \exp_0(\operatorname{clip}_r(W x^E + b))`.

    The same head maps the data and the Euclidean proxies, so both live in one ball. ``c`` (curvature,
    ``>= 0``) and ``r`` (clipping radius, ``> 0``, ``inf`` = no clipping) are plain attributes that
    may change between steps.
    """

    def __init__(self, dim_in: int, dim_out: int, c: float = 0.5, r: float = 2.3) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        self.c = c
        self.r = r

    @property
    def c(self) -> float:
        return self._c

    @c.setter
    def c(self, value: float) -> None:
        poincare.check_curvature(value)
        self._c = float(value)

    @property
    def r(self) -> float:
        return self._r

    @r.setter
    def r(self, value: float) -> None:
        value = float(value)
        if not value > 0:
            raise ValueError(f"r = {value!r}: the clipping radius must be > 0 (inf disables clipping)")
        self._r = value

    def tangent(self, x: Tensor) -> Tensor:
        """``W x + b`` (N, D_H): the head's output before the exp map (used by the eta_H = 0 ablation)."""
        return self.linear(x)

    def from_tangent(self, t: Tensor) -> Tensor:
        """``exp_0(clip_r(t))`` in float32 (fp16 under AMP cannot resolve the ball near its boundary)."""
        return poincare.expmap0_clipped(t.float(), self.r, self.c)  # = expmap0(clip_features(t, r), c), one norm scaling

    def forward(self, x: Tensor) -> Tensor:
        return self.from_tangent(self.linear(x))

    def extra_repr(self) -> str:
        return f"c={self.c:g}, r={self.r:g}"


# ------------------------------------------------------------------------------------------------
# backbones: a registry, one name -> one model (as timm)
# ------------------------------------------------------------------------------------------------
_BACKBONES: dict[str, "callable"] = {}


def register_backbone(name: str):
    """Decorator: ``@register_backbone("mlp")`` on a builder ``(input_shape, dim_e, **kw) -> nn.Module``.
    The module must expose ``out_dim`` (= ``D_E``)."""

    def deco(fn):
        _BACKBONES[name] = fn
        return fn

    return deco


def list_backbones() -> list[str]:
    return sorted(_BACKBONES)


def create_backbone(name: str, input_shape: tuple[int, ...], dim_e: int | None = None, **kw) -> nn.Module:
    """Build a backbone by name for inputs of shape ``input_shape`` ((D,) or (C, H, W))."""
    if name not in _BACKBONES:
        raise ValueError(f"backbone = {name!r} is unknown; choose one of {', '.join(list_backbones())}")
    return _BACKBONES[name](tuple(input_shape), dim_e, **kw)


class MLP(nn.Module):
    """A small MLP for vector data (the ``tree`` dataset): Linear-LayerNorm-GELU blocks."""

    def __init__(self, dim_in: int, dim_e: int = 64, hidden: int = 256, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = dim_in
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.LayerNorm(hidden), nn.GELU()]
            d = hidden
        layers.append(nn.Linear(d, dim_e))
        self.net = nn.Sequential(*layers)
        self.out_dim = dim_e

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class SmallCNN(nn.Module):
    """A small CNN for the ``shapes`` (3×32×32 / 64×64) and ``digits`` (1×8×8) images."""

    def __init__(self, in_channels: int, dim_e: int = 64, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.features = nn.Sequential(
            block(in_channels, width), block(width, width), nn.MaxPool2d(2),
            block(width, 2 * width), block(2 * width, 2 * width), nn.MaxPool2d(2),
            block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(4 * width, dim_e)
        self.out_dim = dim_e

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def load_weights(module: nn.Module, path: str, *, ignore_prefixes: tuple[str, ...] = ()) -> nn.Module:
    """Load a state-dict file into ``module`` (``{"state_dict": ...}`` / ``{"model": ...}`` wrappers
    accepted); every way a file can be wrong gives one ``ValueError`` line that names it. Keys under
    ``ignore_prefixes`` (a classifier head the backbone dropped) may be left over."""
    import os

    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights = {path}: no such file; give a torch state-dict file (.pt / .pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - text, random bytes, a cut file: the unpickler raises anything
        raise ValueError(f"weights = {path} is not a readable torch state-dict file ({type(err).__name__}); "
                         "save one with torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict):
        state = state.get("state_dict", state.get("model", state))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights = {path} holds a {type(state).__name__}, not a state dict of tensors")
    own = module.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and not k.startswith(ignore_prefixes)]
    if wrong or missing or unexpected:
        what = "; ".join(x for x in (f"wrong shapes {wrong[:3]}" if wrong else "", f"missing {missing[:3]}" if missing else "",
                                     f"unexpected {unexpected[:3]}" if unexpected else "") if x)
        raise ValueError(f"weights = {path} does not match this backbone ({what}); was it saved from the same backbone and dim_e?")
    module.load_state_dict(state, strict=False)
    return module


@register_backbone("mlp")
def _mlp(input_shape, dim_e=None, hidden: int = 256, depth: int = 2, weights: str | None = None, **_):
    net = MLP(int(math.prod(input_shape)), dim_e or 64, hidden, depth)
    return load_weights(net, weights) if weights else net


@register_backbone("cnn")
def _cnn(input_shape, dim_e=None, width: int = 32, weights: str | None = None, **_):
    if len(input_shape) != 3:
        raise ValueError(f"backbone 'cnn' needs images (C, H, W), got inputs of shape {input_shape}; use 'mlp'")
    net = SmallCNN(input_shape[0], dim_e or 64, width)
    return load_weights(net, weights) if weights else net


class TimmBackbone(nn.Module):
    """A timm model without its classifier; ``out_dim`` = its feature width (ViT-S: 384)."""

    def __init__(self, name: str, pretrained: bool = False, weights: str | None = None, img_size: int | None = None) -> None:
        super().__init__()
        import timm

        kw = {"num_classes": 0}
        if img_size is not None:
            kw["img_size"] = img_size
        model = None
        if pretrained and weights is None:
            try:
                model = timm.create_model(name, pretrained=True, **kw)
            except Exception as err:  # offline: fall back to random init, loudly
                import warnings

                warnings.warn(
                    f"could not fetch pretrained weights for {name!r} ({type(err).__name__}: {err}); using random "
                    f"init. Pass --weights FILE (a timm/torch state dict) to use local weights.",
                    stacklevel=2,
                )
        if model is None:
            model = timm.create_model(name, pretrained=False, **kw)
        if weights is not None:
            load_weights(model, weights, ignore_prefixes=("head",))
        self.model = model
        self.out_dim = model.num_features

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def _register_timm(name: str) -> None:
    @register_backbone(name)
    def _build(input_shape, dim_e=None, pretrained: bool = False, weights: str | None = None, **_):
        img = input_shape[-1] if len(input_shape) == 3 else None
        if img is None:
            raise ValueError(f"backbone {name!r} needs images (3, H, W), got inputs of shape {input_shape}")
        net = TimmBackbone(name, pretrained, weights, img_size=img if img != 224 else None)
        if dim_e is not None and dim_e != net.out_dim:
            raise ValueError(f"{name} produces D_E = {net.out_dim} features; leave dim_e unset or set it to {net.out_dim}")
        return net


for _name in ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224"):
    _register_timm(_name)


# ------------------------------------------------------------------------------------------------
# the CHEST model
# ------------------------------------------------------------------------------------------------
class CHESTModel(nn.Module):
    r"""Backbone + hyperbolic head (Sec. 3.2): ``forward(x) -> (x_e, x_h)``.

    ``x_e = f(x)`` is the Euclidean embedding (D_E), ``x_h = exp_0(clip_r(W x_e + b))`` the hyperbolic
    one (D_H). ``euclid_space="head"`` returns ``W x_e + b`` as ``x_e`` instead: the paper's rule for
    the ablation rows with ``eta_H = 0, eta_E = 1`` (Sec. 4.4). ``euclid_space`` is a model setting;
    its ``auto`` is the loss's to decide (``Loss.auto_euclid_space``), resolved by
    :func:`chestlab.engine.build.euclid_space` before the model is built.
    """

    def __init__(self, backbone: nn.Module, dim_h: int, c: float = 0.5, r: float = 2.3, euclid_space: str = "backbone") -> None:
        super().__init__()
        if euclid_space not in ("backbone", "head"):
            raise ValueError(f"euclid_space = {euclid_space!r}: choose 'backbone' or 'head'")
        self.backbone = backbone
        self.head = HyperbolicHead(backbone.out_dim, dim_h, c, r)
        self.euclid_space = euclid_space

    @property
    def dim_e(self) -> int:
        return self.head.linear.out_features if self.euclid_space == "head" else self.backbone.out_dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.backbone(x)
        t = self.head.tangent(f)
        x_h = self.head.from_tangent(t)
        return (t if self.euclid_space == "head" else f), x_h
