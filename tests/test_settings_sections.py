"""A term owns its settings section (issue 18 item 2): CHEST's three terms each declare theirs, the
loss keeps what both proxy terms share, and the registered section ``chest`` is their union, so flat
names, ``chest.NAME``, stored configs, presets and checkpoints read as before. And ``euclid_space``
is a model setting whose ``auto`` the loss decides: the live path and pretraining do not name it."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import chestlab.losses as L
from chestlab import settings
from chestlab.losses import chest
from chestlab.models import HyperbolicHead
from chestlab.settings import TrainConfig, check, get_setting, parse_assignments, schema, setting

ROOT = Path(__file__).resolve().parents[1]

#: The loss settings of a chest run's config.json as main wrote it at 2c22697 (before the split):
#: ``python -m chestlab.train --preset demo-tree --set K=3 --set M=7 ...``, every CHEST setting off
#: its default, in the order that commit wrote them.
OLD_CHEST = {"K": 3, "M": 7, "proxy_std": 0.5, "gamma_e": 6.0, "gamma_h": 4.0, "lambda_e": 24.0, "lambda_h": 16.0,
             "delta_e": 3.0, "delta_h": 2.0, "eta_e": 0.9, "eta_h": 0.7, "tau": 0.25, "gamma_hyp": 1.5, "hyphc": "pairwise"}
OLD_CORE = {"dataset": "tree", "data_root": None, "data_options": {}, "hierarchy_file": None, "batch_size": 16,
            "m_per_class": 4, "workers": 0, "backbone": "mlp", "pretrained": False, "weights": None, "pretrain_steps": 0,
            "dim_e": 8, "dim_h": 4, "euclid_space": "backbone", "loss": "chest", "c": 0.5, "r": 2.3, "lr": 0.002,
            "lr_head": None, "lr_proxy": 0.01, "weight_decay": 0.0001, "grad_clip": 10.0, "steps": 2, "eval_every": 0,
            "eval_max": 4000, "eval_train": True, "ks": [1, 2, 4, 8], "eval_hierarchy": True, "checkpoint_every": 0,
            "seed": 0, "device": "auto", "amp": True, "threads": 0}
#: ``TrainConfig(loss="chest_hier", ...).to_dict()``'s loss settings at 2c22697.
OLD_CHEST_HIER = {"K": 3, "M": 7, "proxy_std": 1.0, "gamma_e": 5.0, "gamma_h": 4.0, "lambda_e": 24.0, "lambda_h": 20.0,
                  "delta_e": 1.0, "delta_h": 2.0, "eta_e": 0.9, "eta_h": 1.0, "tau": 0.25, "gamma_hyp": 1.5,
                  "hyphc": "pairwise", "hier_weight": 0.3, "hier_proxies": 32, "hier_margin": 0.2, "hier_tau": 0.1,
                  "hier_topk": 20, "hier_triplets": 20, "hier_lr_scale": None, "hier_weight_decay": 0.0}

#: The split the issue asks for: each term's own section, and what stays the loss's.
OWN = {"loss": ["K", "proxy_std"],
       "l_h": ["gamma_h", "lambda_h", "delta_h", "eta_h"],
       "l_e": ["gamma_e", "lambda_e", "delta_e", "eta_e"],
       "l_hyphc": ["tau", "M", "gamma_hyp", "hyphc"]}
PAPER_ORDER = [*OWN["loss"], *OWN["l_h"], *OWN["l_e"], *OWN["l_hyphc"]]


def _names(section) -> list[str]:
    return [f.name for f in dataclasses.fields(section)]


# ------------------------------------------------------------------------------------------------
# the split
# ------------------------------------------------------------------------------------------------
def test_each_chest_term_owns_its_section_and_the_loss_keeps_what_they_share():
    assert _names(chest.CHESTProxySettings) == OWN["loss"]
    assert [t.part for t in chest.CHEST_TERMS] == ["l_h", "l_e", "l_hyphc"]
    for t in chest.CHEST_TERMS:
        assert _names(t.Settings) == OWN[t.part], t
        assert t.weight in OWN[t.part]  # each term's weight is its own setting
    # the loss's section is the union, in the paper's order: γ, λ, δ, η per space, then τ, M, γ_hyp
    assert L.CHESTLoss.Settings is L.CHESTSettings
    assert _names(L.CHESTSettings) == PAPER_ORDER
    assert [k for k, s in schema().items() if s.section == "chest"] == PAPER_ORDER
    # a built loss holds the terms in the order of the sum, each under its attr
    head = HyperbolicHead(6, 4, c=0.5)
    loss = L.CHESTLoss(3, 2, 6, head)
    assert [type(t) for t in loss.terms()] == list(chest.CHEST_TERMS)
    assert [getattr(loss, t.attr) for t in chest.CHEST_TERMS] == loss.terms()
    # the composed HIER loss: CHEST's section, then HIER's, each declared once
    hier = L.get_loss("chest_hier").Settings
    assert _names(hier) == PAPER_ORDER + _names(L.HIERSettings)
    assert [k for k in TrainConfig(loss="chest_hier").keys() if k in OLD_CHEST_HIER] == PAPER_ORDER + _names(L.HIERSettings)


def test_help_and_sidebar_list_the_loss_settings_by_term_in_the_paper_order():
    rows = [line.split()[0] for line in settings.help_table().splitlines() if line.startswith("  ") and line[2] != " "]
    loss = rows[rows.index("[loss]") + 1:]
    assert loss[:len(PAPER_ORDER) + 1] == ["loss", *PAPER_ORDER]
    table = settings.help_table()
    # the symbols in that order; each help line reads on its own (a tooltip), naming its space
    assert [schema()[k].symbol for k in OWN["l_h"] + OWN["l_e"]] == ["γ_H", "λ_H", "δ_H", "η_H", "γ_E", "λ_E", "δ_E", "η_E"]
    assert "gamma_e           temperature of the soft similarity over the K proxies, in Euclidean space" in table
    assert not [k for k in PAPER_ORDER if schema()[k].help.startswith("the same")]
    from chestlab.dashboard.values import shown_keys

    shown = shown_keys({"loss": "chest"})
    assert [k for k in shown if schema()[k].group == "loss"] == ["loss", *PAPER_ORDER]


def test_settings_section_refuses_a_setting_declared_twice():
    @dataclass
    class Again:
        gamma_h: float = setting(1.0, group="loss", help="gamma_h once more")

    with pytest.raises(ValueError, match=r"Again's settings \['gamma_h'\] clash with CHESTProxyTermH's"):
        L.settings_section("X", chest.CHESTProxySettings, chest.CHESTProxyTermH, Again,
                           owners=("CHESTProxySettings", "CHESTProxyTermH", "Again"))
    with pytest.raises(TypeError, match="dataclass"):
        L.settings_section("X", int)


# ------------------------------------------------------------------------------------------------
# old names, files and spellings
# ------------------------------------------------------------------------------------------------
def test_an_old_config_json_loads_and_gives_the_same_settings(tmp_path):
    old = {**OLD_CORE, **OLD_CHEST}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old, indent=2))
    cfg = TrainConfig.from_dict(json.loads(path.read_text()))
    assert cfg.to_dict() == old  # every value, the same keys (only their order follows the terms)
    for k, v in OLD_CHEST.items():
        assert getattr(cfg, k) == v and cfg[f"chest.{k}"] == v
    # the loss built from it holds those values
    head = HyperbolicHead(8, 4, c=0.5)
    loss = L.CHESTLoss.build(cfg.section(), L.LossContext(5, 8, 4, head, 0, "backbone"))
    assert {k: getattr(loss.settings, k) for k in OLD_CHEST} == OLD_CHEST
    hier = TrainConfig.from_dict({**OLD_CORE, "loss": "chest_hier", **OLD_CHEST_HIER})
    assert hier.to_dict() == {**OLD_CORE, "loss": "chest_hier", **OLD_CHEST_HIER}


def test_flat_and_qualified_names_still_resolve():
    assert parse_assignments(["gamma_h=4", "chest.tau=0.1", "K=3"]) == {"gamma_h": 4.0, "tau": 0.1, "K": 3}
    for k in PAPER_ORDER:
        assert get_setting(k).name == k and get_setting(f"chest.{k}") is get_setting(k)
        assert get_setting(k, "chest_hier") is get_setting(k)  # one setting, shared by the composed loss
    cfg = TrainConfig.preset("demo-tree", tau=0.0)
    assert cfg.replace(**{"chest.eta_h": 0.0}).eta_h == 0.0


def test_live_hparams_of_a_checkpoint_restore_by_name():
    """A checkpoint stores the loss's live settings by field name: the names did not change."""
    head = HyperbolicHead(6, 4, c=0.5)
    a = L.CHESTLoss(3, 2, 6, head, seed=1)
    a.set(**{k: v for k, v in OLD_CHEST.items() if k not in ("K", "proxy_std")})
    b = L.CHESTLoss(3, 2, 6, head, seed=1)
    b.load_state_dict(a.state_dict())
    assert b.hparams() == a.hparams() == {k: v for k, v in OLD_CHEST.items() if k not in ("K", "proxy_std")}
    assert set(a.state_dict()) == {"proxies", "head.linear.weight", "head.linear.bias", "_extra_state"}


def test_the_tau_k_rule_fires_once_naming_both_settings():
    problems = [p for p in check(TrainConfig(loss="chest", K=1, tau=0.5)) if p.level == "error"]
    assert [p.keys for p in problems] == [("tau", "K")]
    assert re.search(r"tau = 0.5 > 0 needs K >= 2 .* got K = 1; set tau = 0 or K >= 2", problems[0].message)
    assert [p.keys for p in check(TrainConfig(loss="chest_hier", K=1, tau=0.5)) if p.level == "error"] == [("tau", "K")]
    stated = [f for f in sorted((ROOT / "chestlab").rglob("*.py")) if re.search(r"tau\s*>\s*0 and K\s*<\s*2", f.read_text())]
    assert [f.relative_to(ROOT).as_posix() for f in stated] == ["chestlab/losses/checks.py"]


# ------------------------------------------------------------------------------------------------
# euclid_space: a model setting whose auto the loss decides
# ------------------------------------------------------------------------------------------------
def test_euclid_space_is_named_only_where_it_is_declared_built_or_read():
    for rel in ("chestlab/engine/live.py", "chestlab/engine/pretrain.py"):
        assert "euclid_space" not in (ROOT / rel).read_text(), rel
    s = get_setting("euclid_space")
    assert s.section == "model" and "the loss decides" in s.help


def test_pretraining_keeps_the_runs_model_settings_and_resolves_auto_for_its_loss():
    from chestlab.engine import build
    from chestlab.engine.pretrain import pretrain_config

    run = TrainConfig(dataset="tree", pretrain_steps=3, eta_h=0.0, tau=0.0)  # the run's auto: head
    assert build.euclid_space(run) == "head"
    pre = pretrain_config(run)
    assert pre.euclid_space == "auto" and build.euclid_space(pre) == "backbone"  # the pretraining loss has eta_h = 1
    forced = pretrain_config(run.replace(euclid_space="head"))
    assert build.resolved(forced) == {"euclid_space": "head"}  # a model setting given explicitly is the run's


def test_live_changes_resolve_the_model_settings_again_on_what_holds_them():
    from chestlab.engine import build

    class Model(torch.nn.Module):
        euclid_space = "unset"

    head = HyperbolicHead(6, 4, c=0.5)
    model, loss = Model(), L.CHESTLoss(3, 2, 6, head)
    model.euclid_space = "backbone"
    build.apply_resolved(TrainConfig(eta_h=0.0, tau=0.0), model, loss)
    assert model.euclid_space == loss.euclid_space == "head"
    build.apply_resolved(TrainConfig(eta_h=0.0, tau=0.0, euclid_space="backbone"), model, loss)
    assert model.euclid_space == loss.euclid_space == "backbone"
    other = L.get_loss("pair_ce").build(TrainConfig(loss="pair_ce").section(), L.LossContext(3, 6, 4, head))
    build.apply_resolved(TrainConfig(loss="pair_ce"), model, other)  # a loss that does not read it is left alone
    assert "euclid_space" not in vars(other)
