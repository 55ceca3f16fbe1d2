"""Losses built from terms (issue 18 item 2): a loss is the weighted sum of its named terms; a term
that joins any loss (HIER's, or a plug-in's) is added by composition in one line; each rule, default
and validator is stated once; what is particular to a loss sits behind hooks of the loss class, so
the engine and the dashboard name no loss."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import chestlab.losses as L
from chestlab.dashboard import runner
from chestlab.losses import checks
from chestlab.losses.base import _LOSSES
from chestlab.models import HyperbolicHead
from chestlab.settings import TrainConfig, check, setting

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# a plug-in term, joined to two base losses by one line each
# ------------------------------------------------------------------------------------------------
class NormTerm(L.Term):
    """Mean squared norm of x^E, weighted by ``norm_weight``; one learned offset ``b`` in its own group."""

    @dataclass
    class Settings:
        norm_weight: float = setting(0.25, group="loss", live=True, low=0, high=10.0, help="weight of the norm term")

    part, weight, attr, group, extras = "l_norm", "norm_weight", "norm", "norm_group", ("norms",)

    def __init__(self) -> None:
        super().__init__()
        self.b = torch.nn.Parameter(torch.tensor(0.5))

    @classmethod
    def create(cls, settings, ctx):
        return cls()

    @classmethod
    def rules(cls, cfg):
        if cfg.norm_weight > 5:
            yield L.base.Problem(("norm_weight",), "norm_weight > 5 is too much", "warning")

    def group_hparams(self, cfg):
        return {"lr": 0.123, "weight_decay": 0.0}

    def forward(self, step, s):
        return step.x_e.pow(2).sum(1).mean() + self.b, {"norms": step.x_e.norm(dim=1)}


@pytest.fixture(scope="module")
def composed():
    names = {"chest": "t18_chest_norm", "pair_ce": "t18_pair_ce_norm"}
    out = {}
    for base, name in names.items():
        out[base] = L.register_loss(name)(L.get_loss(base).with_terms(NormTerm))  # the one line
    yield out
    for name in names.values():  # leave the registry as it was (the sections stay: harmless)
        _LOSSES.pop(name, None)


def _ctx(head, dim_e=6, seed=0):
    return L.LossContext(num_classes=4, dim_e=dim_e, dim_h=4, head=head, seed=seed)


@pytest.mark.parametrize("base", ["chest", "pair_ce"])
def test_a_joined_term_adds_its_weighted_value_to_the_base_loss(composed, base):
    torch.manual_seed(0)
    head = HyperbolicHead(6, 4, c=0.7, r=2.0)
    cls = composed[base]
    base_cls = L.get_loss(base)
    assert issubclass(cls, base_cls) and cls.parts == (*base_cls.parts, "l_norm")
    fields = [f.name for f in dataclasses.fields(cls.Settings)]
    assert fields == [f.name for f in dataclasses.fields(base_cls.Settings)] + ["norm_weight"]
    cfg = TrainConfig(loss=cls.name, norm_weight=0.75, M=8) if base == "chest" else TrainConfig(loss=cls.name, norm_weight=0.75)
    loss = cls.build(cfg.section(), _ctx(head))
    ref = base_cls.build(TrainConfig(loss=base, **({"M": 8} if base == "chest" else {})).section(), _ctx(head))
    x_e = torch.randn(12, 6)
    y = torch.arange(12) % 4
    out, want = loss(x_e, head(x_e), y), ref(x_e, head(x_e), y)
    norm = x_e.pow(2).sum(1).mean() + 0.5
    assert out.parts.keys() == {*want.parts, "l_norm"}
    torch.testing.assert_close(out.parts["l_norm"], norm)
    torch.testing.assert_close(out.total, want.total + 0.75 * norm)
    torch.testing.assert_close(out.norms, x_e.norm(dim=1))
    # its parameter trains in its own optimizer group, with its hyperparameters; the base's are kept
    groups = {g["name"]: g for g in loss.param_groups(cfg, exclude=frozenset(id(p) for p in head.parameters()))}
    assert [p for p in groups["norm_group"]["params"]] == [loss.norm.b] and groups["norm_group"]["lr"] == 0.123
    assert loss.group_hparams("norm_group", cfg) == {"lr": 0.123, "weight_decay": 0.0}
    assert all(p is not loss.norm.b for n, g in groups.items() if n != "norm_group" for p in g["params"])
    assert ("proxies" in groups) == (base == "chest")
    # its state dict: the base's keys plus the term's under its attribute
    assert set(loss.state_dict()) == set(ref.state_dict()) | {"norm.b"}
    # a live change of its weight applies; weight 0 skips it (part 0, no extras, total = the base's)
    loss.set(norm_weight=0.0)
    out0 = loss(x_e, head(x_e), y)
    assert float(out0.parts["l_norm"]) == 0.0 and out0.extras["norms"] is None
    torch.testing.assert_close(out0.total, ref(x_e, head(x_e), y).total)
    # its rules join the base loss's in the settings' check
    msgs = [p.message for p in check(cfg.replace(norm_weight=6.0))]
    assert "norm_weight > 5 is too much" in msgs


def test_a_loss_of_terms_alone():
    """``Loss.with_terms`` on the base class: a loss whose sum is its terms (as pair_ce and mix are)."""
    cls = L.Loss.with_terms(NormTerm)
    head = HyperbolicHead(6, 4, c=0.7, r=2.0)
    loss = cls(cls.Settings(norm_weight=2.0), _ctx(head))
    x = torch.randn(5, 6)
    out = loss(x, head(x), torch.zeros(5, dtype=torch.long))
    torch.testing.assert_close(out.total, 2.0 * (x.pow(2).sum(1).mean() + 0.5))
    assert cls.parts == ("l_norm",) and [type(t) for t in loss.terms()] == [NormTerm]


def test_terms_sum_in_order_and_skip_zero_weights():
    """CHEST's total is eta_h l_h + eta_e l_e + tau l_hyphc, summed left to right (bit for bit), and a
    zero weight skips its term."""
    torch.manual_seed(1)
    head = HyperbolicHead(6, 4, c=0.5, r=2.0)
    loss = L.CHESTLoss(4, 3, 6, head, M=5, eta_e=0.3, tau=0.7, seed=2)
    assert [t.part for t in loss.terms()] == ["l_h", "l_e", "l_hyphc"]
    assert [t.weight for t in loss.terms()] == ["eta_h", "eta_e", "tau"]
    x = torch.randn(8, 6)
    y = torch.arange(8) % 4
    out = loss(x, head(x), y)
    p = out.parts
    assert torch.equal(out.total, 1.0 * p["l_h"] + 0.3 * p["l_e"] + 0.7 * p["l_hyphc"])
    loss.set(eta_h=0.0)
    out = loss(x, head(x), y)
    assert float(out.parts["l_h"]) == 0.0 and out.s_h is None and out.s_e is not None


# ------------------------------------------------------------------------------------------------
# HIER is a term joined by composition
# ------------------------------------------------------------------------------------------------
def test_hier_losses_are_compositions_not_mixins():
    from chestlab.losses import hier

    assert not hasattr(hier, "HIERMixin")
    for name, base in (("chest_hier", L.CHESTLoss), ("pair_ce_hier", L.PairCELoss)):
        cls = L.get_loss(name)
        assert cls.__bases__ == (base,) and cls.joined[-1] is hier.HIERTerm
    src = (ROOT / "chestlab/losses/hier.py").read_text()
    assert "loss.settings = settings" not in src and '__dict__.get("ctx")' not in src


def test_chest_hier_checkpoint_keys_are_unchanged():
    """The state-dict keys of the composed loss are those of the mixin-built one (old checkpoints load)."""
    head = HyperbolicHead(6, 4, c=0.7, r=2.0)
    loss = L.get_loss("chest_hier").build(TrainConfig(loss="chest_hier", M=8, hier_proxies=6).section(), _ctx(head))
    assert set(loss.state_dict()) == {"proxies", "head.linear.weight", "head.linear.bias", "_extra_state",
                                      "hier.xi", "hier._extra_state"}
    loss2 = L.get_loss("pair_ce_hier").build(TrainConfig(loss="pair_ce_hier", hier_proxies=6).section(), _ctx(head))
    assert set(loss2.state_dict()) == {"hier.xi", "hier._extra_state"}


# ------------------------------------------------------------------------------------------------
# one place for each rule, default and validator
# ------------------------------------------------------------------------------------------------
def test_m_default_comes_from_the_declared_setting():
    head = HyperbolicHead(6, 4, c=0.7)
    declared = {f.name: f.default for f in dataclasses.fields(L.CHESTSettings)}["M"]
    assert L.CHESTLoss(3, 2, 6, head).settings.M == declared == TrainConfig(loss="chest").M


def test_tau_k_rule_is_one_function_used_everywhere():
    msg = checks.hyphc_needs_two_proxies(0.5, 1)
    assert msg and "K >= 2" in msg and checks.hyphc_needs_two_proxies(0.5, 2) is None
    assert checks.hyphc_needs_two_proxies(0.0, 1) is None
    assert L.hyphc_needs_two_proxies is checks.hyphc_needs_two_proxies
    # the settings' rule, the module and the functional core all give its message
    assert [p.message for p in check(TrainConfig(loss="chest", K=1, tau=0.5)) if p.keys == ("tau", "K")] == [msg]
    head = HyperbolicHead(6, 4, c=0.7)
    with pytest.raises(ValueError) as e:
        L.CHESTLoss(3, 1, 6, head, tau=0.5)
    assert str(e.value) == msg
    x = torch.randn(4, 6)
    pe = torch.randn(3, 1, 6)
    with pytest.raises(ValueError) as e:
        L.chest_loss(x, head(x), torch.arange(4) % 3, pe, head(pe.view(3, 6)).view(3, 1, 4),
                     torch.zeros(1, 3, dtype=torch.long), c=0.7, delta_e=1.0, delta_h=1.0, tau=0.5)
    assert str(e.value) == msg


def test_validators_are_defined_once_in_checks():
    names = ["check_positive", "check_real", "check_values", "check_overflow", "check_labels", "check_hyphc",
             "check_chest_inputs", "check_batch", "check_count", "check_index_tensor", "hyphc_needs_two_proxies"]
    for f in sorted((ROOT / "chestlab").rglob("*.py")):
        if f.name == "checks.py" and f.parent.name == "losses":
            continue
        defs = set(re.findall(r"^\s*def (\w+)\(", f.read_text(), re.M))
        assert not defs & {*names, "_check_batch", "_check_count", "_check_index_tensor"}, f
    for n in names:
        assert getattr(checks, n).__module__ == "chestlab.losses.checks"


# ------------------------------------------------------------------------------------------------
# the hooks: no loss name in the engine's trainer or the dashboard's runner
# ------------------------------------------------------------------------------------------------
def test_no_loss_name_in_the_engine_or_the_runner():
    for rel in ("chestlab/engine/trainer.py", "chestlab/engine/reports.py", "chestlab/dashboard/runner.py"):
        src = (ROOT / rel).read_text()
        assert not re.search(r"\.loss\s*[!=]=\s*['\"]", src), rel


def test_divergence_hint_and_hints_are_hooks_of_the_loss():
    big = TrainConfig(loss="chest", lambda_h=1000.0, delta_h=20.0)
    assert "lambda * delta" in L.CHESTLoss.divergence_hint(big)
    assert L.CHESTLoss.divergence_hint(TrainConfig(loss="chest")) is None
    assert L.PairCELoss.divergence_hint(TrainConfig(loss="pair_ce")) is None
    assert L.get_loss("chest_hier").divergence_hint(TrainConfig(loss="chest_hier", lambda_h=1000.0, delta_h=20.0))
    only_hyphc = dict(eta_h=0.0, eta_e=0.0, tau=0.5)
    assert runner.hints(TrainConfig(loss="chest", **only_hyphc)) == L.CHESTLoss.hints(TrainConfig(loss="chest", **only_hyphc))
    assert runner.hints(TrainConfig(loss="chest", **only_hyphc))
    assert not runner.hints(TrainConfig(loss="chest"))
    # with HIER on, the data are in the loss: no such note; with HIER off the note holds again
    assert not runner.hints(TrainConfig(loss="chest_hier", **only_hyphc))
    assert runner.hints(TrainConfig(loss="chest_hier", hier_weight=0.0, **only_hyphc))
    assert runner.hints(TrainConfig(loss="pair_ce")) == []


def test_trainer_message_names_the_loss_hint(monkeypatch):
    """A diverged step's message gives the loss's own likely cause (its hook), whatever the loss's name."""
    from chestlab import train

    cfg = TrainConfig.preset("demo-tree", loss="chest_hier", steps=1, eval_every=0, batch_size=16, m_per_class=4,
                             dim_e=8, dim_h=4, M=4, eval_train=False, threads=1, hier_proxies=8, hier_triplets=4,
                             hier_topk=6)
    tr = train.Trainer(cfg)
    tr.set(lambda_h=1e30, delta_h=1e10)  # logits overflow float32 (each within its bound)
    with pytest.raises(train.TrainingDiverged, match="lambda \\* delta is very large"):
        tr.train_step()
    monkeypatch.setattr(L.CHESTLoss, "divergence_hint", classmethod(lambda cls, cfg: "the hook's cause"))
    with pytest.raises(train.TrainingDiverged, match="the hook's cause"):
        tr.train_step()


def test_with_terms_refuses_clashes():
    class Clash(NormTerm):
        @dataclass
        class Settings:
            tau: float = setting(0.5, group="loss", live=True, low=0, high=1.0, help="clashes with CHEST's tau")

    with pytest.raises(ValueError, match="clash"):
        L.CHESTLoss.with_terms(Clash)
    with pytest.raises(ValueError, match="already has a part"):
        L.CHESTLoss.with_terms(NormTerm).with_terms(NormTerm)
    with pytest.raises(TypeError):
        L.CHESTLoss.with_terms(torch.nn.Linear)
