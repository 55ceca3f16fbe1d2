"""The settings schema: every setting declared once, values validated from it (types, ranges,
choices), one-line errors with exit status 2 on the command line, the rules between settings, and
configs that round-trip through JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from chestlab import paper, settings, train
from chestlab.losses import CHESTLoss, chest_loss, sample_triplets
from chestlab.models import HyperbolicHead
from chestlab.settings import GROUPS, ConfigError, SettingError, TrainConfig, check, get_setting, live_keys, schema

PACKAGE = Path(__file__).resolve().parents[1] / "chestlab"


def test_every_setting_is_declared_once_with_help_group_and_a_valid_default():
    src = {p: p.read_text() for p in PACKAGE.rglob("*.py")}
    for name, s in schema().items():
        if not settings.sections()[s.section].__module__.startswith("chestlab."):
            continue  # a plug-in registered by another test
        decl = re.compile(rf"^\s+{re.escape(name)}: [^=]+= setting\(", re.M)
        hits = [str(p.relative_to(PACKAGE)) for p, text in src.items() if decl.search(text)]
        assert len(hits) == 1, (name, hits)
        assert s.help and s.group in GROUPS and s.section
        assert s.validate(s.default_value()) == s.default_value(), name
    # the old hand-written lists are gone: no module spells the live settings out
    for p, text in src.items():
        assert "LIVE_KEYS = frozenset(" not in text and "HPARAMS = (" not in text, p


def test_live_keys_come_from_the_schema():
    live = live_keys()
    assert {"c", "r", "delta_h", "tau", "lr", "t", "mix_lam", "steps"} <= live
    assert not {"K", "dataset", "backbone", "dim_h", "loss", "seed"} & live
    assert live == frozenset(k for k, s in schema().items() if s.live)
    assert train.LIVE_KEYS == live


@pytest.mark.parametrize("key,text,value", [
    ("delta_h", "5", 5.0), ("K", "3", 3), ("ks", "1,2,4", (1, 2, 4)), ("amp", "off", False), ("eval_max", "none", None),
    ("data_options", '{"depth": 3}', {"depth": 3}), ("hyphc", "pairwise", "pairwise"), ("device", "cuda:1", "cuda:1"),
    ("r", "inf", float("inf")), ("grad_clip", "None", None), ("dim_h", "2", 2),
])
def test_parse_by_type(key, text, value):
    assert get_setting(key).parse(text) == value


@pytest.mark.parametrize("key,text,allowed", [
    ("delta_h", "abc", "a number"), ("batch_size", "abc", "batch_size >= 2 and batch_size <= 4096, an integer"), ("steps", "-5", "steps >= 1"), ("steps", "0", "steps >= 1"),
    ("c", "-1", "c >= 0"), ("seed", "1.5", "an integer"), ("amp", "maybe", "true or false"), ("ks", "abc", "integers"),
    ("ks", "", "integers"), ("ks", "0", "ks >= 1"), ("data_options", "notjson", "JSON object"), ("device", "tpu", "cuda:N"),
    ("dim_e", "-1", "dim_e >= 1"), ("dim_e", "0", "dim_e >= 1"), ("grad_clip", "-1", "grad_clip > 0"), ("lr", "-0.1", "lr > 0"),
    ("weight_decay", "-1", "weight_decay >= 0"), ("eval_every", "-1", "eval_every >= 0"), ("delta_h", "nan", "a number"),
    ("delta_h", "inf", "a number"), ("hyphc", "centroid", "lca, pairwise"), ("loss", "nope", "chest, pair_ce, mix"),
    ("K", "0", "K >= 1"), ("t", "0", "t > 0"), ("dataset", "imagenet", "tree"),
])
def test_bad_values_are_refused_with_key_value_and_range(key, text, allowed):
    with pytest.raises(SettingError) as err:
        get_setting(key).parse(text)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{key} = ") and allowed in msg, msg


@pytest.mark.parametrize("argv", [
    ["--set", "delta_h=abc"], ["--set", "batch_size=abc"], ["--set", "steps=-5"], ["--steps", "-5"], ["--steps", "x"],
    ["--set", "K=1"], ["--set", "nokey=1"], ["--set", "delta_h"], ["--set", "hyphc=foo"], ["--device", "tpu"],
    ["--set", "eta_h=0", "--set", "eta_e=0", "--set", "tau=0"], ["--preset", "nope"],
])
def test_cli_refuses_bad_values_with_one_line_and_status_2(argv, capsys, tmp_path):
    assert train.main(argv + ["--quiet", "--out", str(tmp_path / "run")]) == 2 if argv[0] != "--preset" else True
    if argv[0] == "--preset":  # argparse's own choices check: also one line, status 2
        with pytest.raises(SystemExit) as ex:
            train.main(argv)
        assert ex.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_help_lists_every_setting_with_its_symbol_and_range(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    for name, s in schema().items():
        assert re.search(rf"^\s+{re.escape(name)}\s", out, re.M), name
    for text in ("δ_H", "Eq. 7", "[geometry]", "[loss]", "tau >= 0", "one of lca, pairwise", "(live)"):
        assert text in out, text


def test_check_returns_problems_the_trainer_refuses():
    base = TrainConfig.preset("demo-tree", steps=2)
    assert [p for p in check(base) if p.level == "error"] == []
    bad = base.replace(tau=0.5, K=1)
    problems = check(bad)
    assert [p.keys for p in problems] == [("tau", "K")] and "K >= 2" in problems[0].message
    with pytest.raises(ConfigError, match="K >= 2"):
        train.Trainer(bad)
    assert any(p.level == "error" for p in check(base.replace(eta_h=0.0, eta_e=0.0, tau=0.0)))
    warn = check(base.replace(eta_h=0.0, tau=0.0, euclid_space="backbone"))
    assert [p.level for p in warn] == ["warning"] and "Sec. 4.4" in warn[0].message
    assert any("m_per_class" in p.message for p in check(base.replace(batch_size=4, m_per_class=8)))
    # a batch of m samples per class: batch_size a multiple of m (refused before the sampler is built)
    odd = check(base.replace(batch_size=30, m_per_class=4))
    assert [p.keys for p in odd] == [("batch_size", "m_per_class")] and "use batch_size = 28 or 32" in odd[0].message
    with pytest.raises(ConfigError, match="not a multiple of m_per_class"):
        train.Trainer(base.replace(batch_size=30, m_per_class=4))
    assert check(TrainConfig.preset("demo-tree-unsup", batch_size=30)) == []  # random batches, no m
    # rules of a loss apply only while it is chosen
    assert check(base.replace(loss="pair_ce", tau=0.5, K=1)) == []


def test_config_round_trips_and_json_values_are_not_parsed(tmp_path):
    cfg = TrainConfig.preset("cub200", delta_h=7.0, ks=(1, 5))
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.ks == (1, 5) and again.dim_e is None
    assert set(cfg.to_dict()) == set(cfg.keys()) and "t" not in cfg.to_dict() and "delta_h" in cfg.to_dict()
    assert "t" in TrainConfig(loss="pair_ce").to_dict() and "delta_h" not in TrainConfig(loss="pair_ce").to_dict()
    with pytest.raises(SettingError, match="K = 2"):
        TrainConfig.from_dict({"K": "2"})
    with pytest.raises(ConfigError, match="JSON object"):
        TrainConfig.from_dict([1, 2])
    with pytest.raises(ConfigError, match="import the module"):
        TrainConfig.from_dict({"loss": "not_registered_anywhere"})
    with pytest.raises(AttributeError, match="immutable"):
        cfg.K = 3
    with pytest.raises(SettingError, match="unknown setting"):
        cfg.replace(delta_x=1.0)


def test_presets_and_ablation_rows_live_in_paper():
    assert set(paper.PRESETS) >= {"demo-tree", "demo-shapes", "demo-digits", "cub200", "cars196", "sop", "inshop"}
    for name in paper.PRESETS:
        cfg = TrainConfig.preset(name)
        assert [p for p in check(cfg) if p.level == "error"] == [], name
    assert len(paper.ABLATION_ROWS) == 11 and len(paper.TRAININGS) == 8
    for rows in paper.PAPER_R1.values():
        assert len(rows) == len(paper.ABLATION_ROWS)
    chest = dict(paper.training_rows("cars196"))
    assert [s for r, s in paper.training_rows("cars196") if r.training == "CHEST"] == [{"E": 88.5, "H": 89.1}]
    assert paper.ABLATION_ROWS[-1].settings(10) == dict(loss="chest", eta_h=1.0, eta_e=1.0, K=10, tau=0.5)
    assert paper.ABLATION_ROWS[0].settings(10)["K"] == 1
    for name, preset in paper.LOSS_PRESETS.items():
        TrainConfig(**{k: v for k, v in preset.items() if v is not None})
    assert chest


def test_chest_module_equals_the_functional_core():
    """CHESTLoss is composed from parts (two ProxyTerms and a HypHCTerm); chest_loss is one function.
    The two must agree on every part, on the total and on the gradients."""
    torch.manual_seed(0)
    C, K, DE, DH, B, M = 5, 3, 6, 4, 12, 9
    head = HyperbolicHead(DE, DH, c=0.7)
    mod = CHESTLoss(C, K, DE, head, M=M, delta_e=2.0, delta_h=3.0, gamma_e=2.0, gamma_h=4.0, tau=0.7, eta_e=0.6, seed=3)
    x_e = torch.randn(B, DE, requires_grad=True)
    labels = torch.randint(C, (B,))
    gen = torch.Generator().manual_seed(0)
    gen.set_state(mod.generator.get_state())
    out = mod(x_e, head(x_e), labels)
    trip = sample_triplets(C, K, M, gen)
    ref = chest_loss(x_e, head(x_e), labels, mod.proxies_e(), mod.proxies_h(), trip, c=0.7, gamma_e=2.0, gamma_h=4.0,
                     delta_e=2.0, delta_h=3.0, eta_e=0.6, tau=0.7)
    for name in ("l_h", "l_e", "l_hyphc"):
        torch.testing.assert_close(out.parts[name], getattr(ref, name), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out.total, ref.loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out.s_h, ref.s_h)
    g1 = torch.autograd.grad(out.total, [x_e, mod.proxies], retain_graph=True)
    g2 = torch.autograd.grad(ref.loss, [x_e, mod.proxies])
    for a, b in zip(g1, g2):  # the module's hand-derived backward vs autograd, both float32
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


def test_set_through_the_trainer_validates_from_the_schema():
    tr = train.Trainer(TrainConfig.preset("demo-tree", steps=2, batch_size=16, dim_e=8, dim_h=4, M=4, eval_every=0))
    for kw, match in [({"delta_h": float("nan")}, "delta_h"), ({"grad_clip": -1.0}, "grad_clip"), ({"hyphc": "x"}, "hyphc"),
                      ({"K": 3}, "cannot change"), ({"eta_h": 0.0, "eta_e": 0.0, "tau": 0.0}, "nothing trains")]:
        before = tr.config
        with pytest.raises(ValueError, match=match):
            tr.set(**kw)
        assert tr.config == before and tr.criterion.delta_h == before.delta_h
    with pytest.raises(ValueError, match="delta_h"):
        tr.criterion.set(delta_h=float("inf"))
    tr.set(delta_h=4.0, t=0.3)  # a setting of another loss section just changes the config
    assert tr.criterion.delta_h == 4.0 and tr.config.t == 0.3
    assert settings.SettingError is SettingError


# ------------------------------------------------------------------------------------------------
# upper bounds: every size a user can set, and the sizes several settings make together
# ------------------------------------------------------------------------------------------------
def test_every_number_a_user_can_set_has_an_upper_bound_stated_in_help(capsys):
    own = {k: s for k, s in schema().items() if settings.sections()[s.section].__module__.startswith("chestlab.")}
    unbounded = [k for k, s in own.items() if s.type in (int, float, tuple) and s.high is None]
    assert unbounded == []
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    for text in ("dim_h <= 4096", "K <= 1000", "seed <= 4294967295", "threads <= 1024", "ks <= 1000", "lr <= 1e+30"):
        assert text in out, text
    assert get_setting("r").validate(float("inf")) == float("inf")  # r = inf (no clipping) stays allowed


@pytest.mark.parametrize("dataset,options,words", [
    ("tree", {"depth": "x"}, "depth = 'x': not an integer; allowed: an integer 1..16"),
    ("tree", {"depth": float("inf")}, "depth = inf: not an integer"),  # JSON's 1e400
    ("tree", {"depth": 50}, "depth = 50: out of range; allowed: an integer 1..16"),
    ("tree", {"depth": 100}, "depth = 100: out of range"),
    ("tree", {"depth": 9}, "262,144 leaves (classes); allowed: at most 65,536 leaves"),
    ("tree", {"branching": [2] * 17}, "branching = [2, 2"),
    ("tree", {"branching": True}, "branching = True: not an integer"),
    ("tree", {"samples_per_class": 10**5}, "samples_per_class x 52 dimensions"),
    ("tree", {"input_dim": 10**6}, "input_dim = 1000000: out of range; allowed: an integer 1..2048"),
    ("tree", {"noise": "x"}, "noise = 'x': not a finite number"),
    ("tree", {"test_fraction": 1.0}, "test_fraction = 1.0: out of range; allowed: a number in (0, 1)"),
    ("tree", {"holdout": "random"}, "holdout = 'random': not a valid value; allowed: one of sibling, subtree"),
    ("tree", {"superclass_level": 4}, "superclass_level = 4 is deeper than the tree (3 levels)"),
    ("tree", {"transform": "x"}, "transform = 'x': not a function"),
    ("tree", {"colour": 1}, "unknown option(s) ['colour']"),
    ("shapes", {"size": 4096}, "size = 4096: out of range"),
    ("shapes", {"size": 256, "per_class": 500}, "floats; allowed: at most 536,870,912"),
    ("digits", {"image_size": 100000}, "image_size = 100000: out of range; allowed: an integer 1..256"),
    ("cub200", {"image_size": 10**6}, "image_size = 1000000: out of range; allowed: an integer 1..1024"),
])
def test_data_options_are_checked_per_dataset_before_anything_is_generated(dataset, options, words, capsys, tmp_path):
    from chestlab.data import dataset_info, dataset_options, load_dataset

    cfg = TrainConfig(dataset=dataset, data_options=options)
    errors = [p for p in check(cfg) if p.level == "error"]
    assert len(errors) == 1 and errors[0].keys[0] == "data_options", errors
    assert errors[0].message.startswith(f"data_options = {json.dumps(options)}: ") and words in errors[0].message
    for call in (lambda: dataset_options(dataset, options), lambda: dataset_info(dataset, **options),
                 lambda: load_dataset(dataset, "train", data_root=str(tmp_path), **options)):
        with pytest.raises(ValueError, match=re.escape(words)):
            call()
    assert train.main(["--quiet", "--set", f"dataset={dataset}", "--set", f"data_options={json.dumps(options)}",
                       "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and not (tmp_path / "run").exists(), err


def test_data_options_within_bounds_are_kept_and_normalised():
    from chestlab.data import dataset_options

    assert dataset_options("tree", {"depth": 4.0, "branching": 2}) == {"depth": 4, "branching": 2}
    assert dataset_options("tree", {"branching": [4, 4, 4, 4], "decay": 1.0}) == {"branching": (4, 4, 4, 4), "decay": 1.0}
    assert check(TrainConfig.preset("demo-tree-wide")) == []


@pytest.mark.parametrize("values,keys,words", [
    (dict(dataset="sop", K=1000, dim_e=4096, batch_size=64), ("K", "dim_e"), "the proxies (C = 11318 classes x K = 1000 x D_E = 4096)"),
    (dict(dataset="sop", K=1000, dim_e=8, batch_size=4096), ("K", "batch_size"), "K <= 23 here"),
    (dict(M=100_000, dim_h=4096), ("M", "dim_h"), "M <= 87381 here"),
    (dict(loss="chest_hier", hier_triplets=1000, hier_proxies=4096), ("hier_triplets", "hier_proxies", "batch_size"),
     "hier_triplets <= 31 here"),
    (dict(loss="unsup", batch_size=2048, m_per_class=2), ("batch_size",), "batch_size <= 1024"),
    (dict(dataset="cub200", batch_size=4096, m_per_class=2, data_options={"image_size": 1024}), ("batch_size", "data_options"),
     "batch_size <= 341 here"),
])
def test_sizes_several_settings_make_together_are_bounded(values, keys, words):
    problems = [p for p in check(TrainConfig(**values)) if p.level == "error"]
    assert [p.keys for p in problems] == [keys], problems
    msg = problems[0].message
    assert "\n" not in msg and words in msg and "4 GiB" in msg, msg


def test_warnings_for_what_evaluation_cannot_compute_and_more_threads_than_cores():
    import os

    warn = [p for p in check(TrainConfig(ks=(1, 2, 200), eval_max=100)) if p.keys == ("ks", "eval_max")]
    assert [p.level for p in warn] == ["warning"] and "R@200 needs more than k samples" in warn[0].message
    many = (os.cpu_count() or 1) + 1
    assert [p.level for p in check(TrainConfig(threads=many)) if p.keys == ("threads",)] == ["warning"]
