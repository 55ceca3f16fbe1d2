"""Namespaced settings: a plug-in section may declare a setting whose name another section uses
(``c`` is the core curvature, ``t`` is pair_ce's temperature); it is addressed as ``section.name``
(``--set spring.c=0.5``, config.json, :class:`TrainConfig`, ``--help``), while flat names keep
meaning what they meant: the core setting of that name, else the only one, else the chosen loss's.
A flat name that is still ambiguous is refused with one line listing the qualified names.

The plug-in loss is registered in this process by a fixture that restores the registries (and the plug-ins loaded) after
each test, so the other tests see the registry as shipped."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from chestlab import plugins, settings, train
from chestlab.losses import Loss, LossOutput, base, register_loss
from chestlab.settings import AmbiguousSettingError, SettingError, TrainConfig, get_setting, parse_assignments, schema, setting

SMALL = ["--steps", "3", "--quiet", "--set", "eval_every=0", "--set", "eval_max=100", "--set", "eval_train=false",
         "--set", "batch_size=16", "--set", "dim_e=8", "--set", "dim_h=4", "--device", "cpu",
         "--set", "eval_hierarchy=false", "--set", "threads=1"]


def _define() -> type[Loss]:
    @register_loss("spring")
    class Spring(Loss):
        """x^E pulled to its class mean with stiffness c; a softmax over the class means at temperature t."""

        @dataclass
        class Settings:
            c: float = setting(2.0, group="loss", low=0, high=10, help="stiffness of the pull to the class mean")
            t: float = setting(0.3, group="loss", live=True, low=0, low_open=True, high=10, help="temperature of the softmax")
            pull_only: bool = setting(False, group="loss", help="drop the softmax term")

        parts = ("pull", "ce")

        def forward(self, x_e, x_h, labels):
            classes, inv = labels.unique(return_inverse=True)
            counts = torch.bincount(inv).clamp_min(1).unsqueeze(1).to(x_e.dtype)
            means = torch.zeros(len(classes), x_e.shape[1], dtype=x_e.dtype).index_add(0, inv, x_e) / counts
            pull = (x_e - means[inv]).pow(2).sum(1).mean()
            ce = torch.nn.functional.cross_entropy(-torch.cdist(x_e, means) / self.settings.t, inv)
            total = self.settings.c * pull + (0 if self.settings.pull_only else ce)
            return LossOutput(total, {"pull": pull, "ce": ce})

    return Spring


@pytest.fixture
def spring():
    """The plug-in loss ``spring`` (settings ``c``, ``t``, ``pull_only``), registered for one test."""
    saved = (dict(settings._SECTIONS), dict(settings._SPECS), {k: dict(v) for k, v in settings._FIELDS.items()},
             dict(settings._LOSS_OWNERS), list(settings._RULES), dict(base._LOSSES), dict(plugins._LOADED))
    try:
        yield _define()
    finally:
        for live, old in zip((settings._SECTIONS, settings._SPECS, settings._FIELDS, settings._LOSS_OWNERS, settings._RULES,
                              base._LOSSES, plugins._LOADED), saved):
            live.clear()
            live.update(old) if isinstance(live, dict) else live.extend(old)
        settings._index()


def test_names_sections_share_are_qualified_and_flat_names_keep_their_meaning(spring):
    keys = schema()
    assert {"spring.c", "spring.t", "pair_ce.t", "c", "pull_only"} <= set(keys)
    assert "t" not in keys  # two losses declare t: each is keyed by its section
    assert get_setting("c").section == "geometry" and get_setting("c") is get_setting("geometry.c")
    assert get_setting("spring.c").section == "spring" and get_setting("spring.c").field == "c"
    assert get_setting("pull_only") is get_setting("spring.pull_only")  # unique: flat and qualified
    assert (get_setting("spring.c").default, get_setting("c").default) == (2.0, 0.5)
    # each spelling validates with its own declaration: 50 is a curvature, not a stiffness (<= 10)
    assert TrainConfig(c=50.0).c == 50.0
    with pytest.raises(SettingError, match=r"^spring\.c = 50\.0: out of range; allowed: spring\.c >= 0 and spring\.c <= 10"):
        TrainConfig(**{"spring.c": 50.0})
    # a section name never holds the separator; a loss never takes a core section's name
    with pytest.raises(ValueError, match="section name"):
        settings.register_section("my.loss", spring.Settings)
    with pytest.raises(ValueError, match="core section"):
        settings.register_section("geometry", spring.Settings, loss=spring)


def test_flat_c_is_the_core_curvature_and_the_section_holds_its_own(spring):
    cfg = TrainConfig(loss="spring", c=0.1, **{"spring.c": 0.5})
    assert cfg.c == 0.1 and cfg["c"] == 0.1 and cfg["geometry.c"] == 0.1 and cfg.section("geometry").c == 0.1
    assert cfg["spring.c"] == 0.5 and getattr(cfg, "spring.c") == 0.5 and cfg.section().c == 0.5
    assert cfg.section() == spring.Settings(c=0.5, t=0.3, pull_only=False)
    assert cfg.replace(c=0.2)["spring.c"] == 0.5 and cfg.replace(**{"spring.c": 3.0}).c == 0.1
    with pytest.raises(SettingError, match="c and geometry.c are one setting; give it once"):
        cfg.replace(c=0.2, **{"geometry.c": 0.3})


def test_an_ambiguous_flat_name_is_refused_with_the_qualified_choices(spring, capsys):
    # chest's run: t could be pair_ce's or spring's
    with pytest.raises(AmbiguousSettingError) as err:
        TrainConfig(t=0.2)
    msg = str(err.value)
    assert "\n" not in msg and "pair_ce.t" in msg and "spring.t" in msg, msg
    with pytest.raises(AttributeError, match=r"pair_ce\.t or spring\.t"):
        TrainConfig().t
    with pytest.raises(SettingError, match=r"pair_ce\.t or spring\.t"):
        parse_assignments(["t=0.2"])
    assert train.main(["--set", "t=0.2", *SMALL]) == 2
    err_line = capsys.readouterr().err.strip().splitlines()
    assert len(err_line) == 1 and "pair_ce.t or spring.t" in err_line[0], err_line
    # the run's own loss settles it: its section is the one whose t it trains with
    mine = TrainConfig(loss="spring", t=0.2)
    assert mine["spring.t"] == 0.2 and mine["pair_ce.t"] == get_setting("pair_ce.t").default and mine.t == 0.2
    theirs = TrainConfig(loss="pair_ce").replace(t=0.05)
    assert theirs["pair_ce.t"] == 0.05 and theirs["spring.t"] == 0.3
    assert parse_assignments(["loss=spring", "t=0.4"]) == {"loss": "spring", "spring.t": 0.4}
    assert parse_assignments(["t=0.4"], loss="pair_ce") == {"pair_ce.t": 0.4}


def test_a_plugin_section_trains_from_the_cli_and_round_trips_config_json(spring, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(["--set", "loss=spring", "--set", "spring.c=0.5", "--set", "t=0.4", "--set", "c=0.25",
                       "--out", str(run), *SMALL]) == 0, capsys.readouterr().err
    stored = json.loads((run / "config.json").read_text())
    assert (stored["c"], stored["spring.c"], stored["spring.t"], stored["pull_only"]) == (0.25, 0.5, 0.4, False)
    assert "t" not in stored and "pair_ce.t" not in stored  # the core sections and the run's loss section
    cfg = TrainConfig.from_dict(stored)
    assert cfg.section() == spring.Settings(c=0.5, t=0.4) and cfg.c == 0.25
    assert cfg.to_dict() == {k: v for k, v in stored.items() if k not in settings.RECORDS}
    # the settings reach the loss, and a bad value of the section is one line, exit 2
    assert train.main(["--set", "loss=spring", "--set", "spring.c=-1", *SMALL]) == 2
    assert capsys.readouterr().err.strip() == "error: spring.c = -1.0: out of range; allowed: spring.c >= 0 and spring.c <= 10, a number"
    # resume changes a live setting of the section by its flat name (the run's loss settles t)
    assert train.main(["--resume", "--out", str(run), "--steps", "5", "--quiet", "--set", "t=0.6"]) == 0, capsys.readouterr().err
    stored = json.loads((run / "config.json").read_text())
    assert (stored["spring.t"], stored["steps"], stored["spring.c"], stored["c"]) == (0.6, 5, 0.5, 0.25)


def test_live_changes_of_a_qualified_setting_reach_the_loss_and_core_c_reaches_the_model(spring):
    cfg = TrainConfig(loss="spring", dim_e=8, dim_h=4, batch_size=16, eval_train=False, eval_max=100, device="cpu", threads=1,
                      **{"spring.c": 0.5})
    tr = train.Trainer(cfg)
    try:
        assert tr.criterion.settings == spring.Settings(c=0.5, t=0.3)
        tr.set(**{"spring.t": 0.7})
        tr.set(t=0.8)  # the run's loss settles the flat name
        tr.set(c=0.2)
        assert tr.criterion.settings == spring.Settings(c=0.5, t=0.8)  # the loss's c is not the curvature
        assert tr.model.head.c == pytest.approx(0.2) and tr.config.c == 0.2 and tr.config["spring.t"] == 0.8
        with pytest.raises(ValueError, match="cannot change during training"):
            tr.set(**{"spring.c": 1.0})  # not live
    finally:
        tr.close()


def test_a_run_stored_with_flat_names_loads_when_a_plugin_shares_them(spring):
    # a pair_ce run written before spring was loaded: its flat t is pair_ce's
    stored = {**TrainConfig(loss="pair_ce").to_dict(), "plugins": []}
    stored.pop("pair_ce.t")
    stored["t"] = 0.07
    cfg = TrainConfig.from_dict(stored)
    assert cfg["pair_ce.t"] == 0.07 and cfg.t == 0.07 and "pair_ce.t" in cfg.to_dict()


def test_help_lists_qualified_names_with_their_section(spring):
    table = settings.help_table()
    rows = {line.split()[0]: line for line in table.splitlines() if line.startswith("  ") and line.split() and
            not line.startswith("   ")}
    assert "[spring]" in rows["spring.c"] and "[spring]" in rows["spring.t"] and "[pair_ce]" in rows["pair_ce.t"]
    assert "curvature" in rows["c"] and "[" not in rows["c"].split("—")[-1]
    assert "stiffness" in rows["spring.c"]


def test_rules_that_need_another_module_are_registered_there():
    # settings imports no engine: the engine registers the rule that pretraining needs other classes
    import chestlab.engine  # noqa: F401  (what every trainer, CLI and the dashboard import)
    from chestlab.engine import pretrain

    assert pretrain.pretrain_rules in [rule for _, rule in settings._RULES]
    problems = settings.check(TrainConfig(dataset="shapes", pretrain_steps=3))
    assert [p.keys for p in problems if p.level == "error"] == [("pretrain_steps", "dataset")]
    assert not settings.check(TrainConfig(dataset="tree", pretrain_steps=3))
