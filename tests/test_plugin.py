"""Losses and datasets are plug-ins: a loss defined in a file outside the package, with only the
public API and imported before ``chestlab.train.main([...])``, is listed by ``--help``, trains with
``--set loss=NAME``, takes its settings from ``--set``, and logs its parts in ``steps.csv`` — with no
edit inside ``chestlab/``. A subclass of a registered loss, registered under a new name with no other
change, trains as is.

The plug-ins of docs/extending.md (``my_losses``, ``my_data``) load at every entry point
(:mod:`chestlab.plugins`): ``--plugin MODULE`` and ``CHESTLAB_PLUGINS`` on ``train``, ``evaluate``
and ``reproduce``; the run records them and ``evaluate`` / ``--resume`` / ``reproduce tables`` load
them again; the dashboard builds their widgets; a name that is a path is refused, nothing written.
(Run in subprocesses so the registry of the other tests stays as shipped.)"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chestlab import plugins

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"


def _doc_block(after: str) -> str:
    """The first Python block of docs/extending.md after the heading ``after``."""
    return DOC.read_text().split(after, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


#: the plug-ins of docs/extending.md: the documentation shows exactly what these tests run
PLUGIN = _doc_block("## Add a loss")
DATASET_PLUGIN = _doc_block("## Add a dataset")
PANEL_PLUGIN = _doc_block("## Add a dashboard panel")


SCRIPT = '''
import sys
sys.path.insert(0, {folder!r})
import my_losses  # registers the plug-ins
from chestlab import train
sys.exit(train.main(sys.argv[1:]))
'''


def _env(*path: Path, **extra: str) -> dict:
    """A clean environment: this checkout first on the path (then ``path``), one thread."""
    return {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join(map(str, (ROOT, *path))),
            **extra}


def _run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    (tmp_path / "my_losses.py").write_text(PLUGIN)
    script = tmp_path / "run_train.py"
    script.write_text(SCRIPT.format(folder=str(tmp_path)))
    return subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=300, env=_env())


SMALL = ["--steps", "4", "--quiet", "--set", "eval_every=0", "--set", "eval_max=100", "--set", "eval_train=false",
         "--set", "batch_size=16", "--set", "dim_e=8", "--set", "dim_h=4", "--set", "M=4"]


def _steps(run: Path) -> list[dict]:
    with open(run / "steps.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_plugin_loss_is_listed_trained_set_and_logged(tmp_path):
    help_ = _run(tmp_path, "--help")
    assert help_.returncode == 0, help_.stderr
    assert "centroid_pull" in help_.stdout and "chest_copy" in help_.stdout
    assert "push_margin" in help_.stdout and "[centroid_pull]" in help_.stdout

    run = tmp_path / "run"
    done = _run(tmp_path, "--set", "loss=centroid_pull", "--set", "push_margin=0.3", "--set", "pull=2", "--out", str(run), *SMALL)
    assert done.returncode == 0, done.stderr
    rows = _steps(run)
    assert len(rows) == 4 and {"pull", "push", "loss"} <= set(rows[0]) and "l_h" not in rows[0]
    assert float(rows[0]["loss"]) > 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["loss"] == "centroid_pull" and cfg["push_margin"] == 0.3 and cfg["pull"] == 2.0 and "delta_h" not in cfg
    assert "test/H/R@1" in (run / "eval.csv").read_text()

    bad = _run(tmp_path, "--set", "loss=centroid_pull", "--set", "push_margin=-1", *SMALL)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "push_margin = -1" in bad.stderr and "push_margin >= 0" in bad.stderr


def test_a_subclass_registered_under_a_new_name_trains_as_is(tmp_path):
    run = tmp_path / "copy"
    done = _run(tmp_path, "--set", "loss=chest_copy", "--set", "delta_h=3", "--out", str(run), *SMALL)
    assert done.returncode == 0, done.stderr
    rows = _steps(run)
    assert {"l_h", "l_e", "l_hyphc", "lr/proxies"} <= set(rows[0])
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["loss"] == "chest_copy" and cfg["delta_h"] == 3.0 and cfg["K"] == 2
    # the inherited rules hold too: tau > 0 needs K >= 2
    bad = _run(tmp_path, "--set", "loss=chest_copy", "--set", "K=1", *SMALL)
    assert bad.returncode == 2 and "K >= 2" in bad.stderr


def test_a_plugin_term_joins_two_losses_by_one_line_each(tmp_path):
    """The doc's ``Spread`` term, composed with CHEST and with the pairwise cross-entropy: its setting
    is set from the command line, its part is logged next to the base loss's, and its weight applies."""
    help_ = _run(tmp_path, "--help")
    assert "[chest_spread]" in help_.stdout and "spread_radius" in help_.stdout
    for name, base_parts in (("chest_spread", {"l_h", "l_e", "l_hyphc"}), ("pair_ce_spread", {"pair_ce"})):
        run = tmp_path / name
        done = _run(tmp_path, "--set", f"loss={name}", "--set", "spread_weight=0.5", "--out", str(run), *SMALL)
        assert done.returncode == 0, done.stderr
        rows = _steps(run)
        assert {*base_parts, "l_spread", "loss"} <= set(rows[0])
        assert float(rows[0]["l_spread"]) > 0
        cfg = json.loads((run / "config.json").read_text())
        assert cfg["loss"] == name and cfg["spread_weight"] == 0.5
    # the base loss's rules hold for the composed one
    bad = _run(tmp_path, "--set", "loss=chest_spread", "--set", "K=1", *SMALL)
    assert bad.returncode == 2 and "K >= 2" in bad.stderr


def test_a_run_of_an_unregistered_loss_names_the_fix(tmp_path):
    run = tmp_path / "run"
    assert _run(tmp_path, "--set", "loss=centroid_pull", "--out", str(run), *SMALL).returncode == 0
    from chestlab.evaluate import main as evaluate_main  # this process has not imported the plug-in

    assert evaluate_main([str(run)]) == 2


def test_a_plugin_dataset_is_one_register_call_and_trains(tmp_path):
    (tmp_path / "my_data.py").write_text(DATASET_PLUGIN)
    script = tmp_path / "run_data.py"
    script.write_text(SCRIPT.replace("import my_losses  # registers the plug-ins", "import my_data").format(folder=str(tmp_path)))
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, str(script), "--set", "dataset=tree3", "--out", str(run), *SMALL],
                          capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "config.json").read_text())["dataset"] == "tree3" and len(_steps(run)) == 4
    # without the plug-in the name is refused with the registered ones listed
    bad = _run(tmp_path, "--set", "dataset=tree3", *SMALL)
    assert bad.returncode == 2 and "tree3" in bad.stderr and "tree" in bad.stderr.replace("tree3", "")


# ------------------------------------------------------------------------------------------------
# plug-ins at every entry point (chestlab.plugins)
# ------------------------------------------------------------------------------------------------
def _plugin_folder(tmp_path: Path) -> Path:
    """The two plug-ins of docs/extending.md as modules ``my_losses`` and ``my_data`` of a folder."""
    folder = tmp_path / "plugins"
    folder.mkdir(exist_ok=True)
    (folder / "my_losses.py").write_text(PLUGIN)
    (folder / "my_data.py").write_text(DATASET_PLUGIN)
    return folder


def _cli(module: str, *argv: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


def test_plugin_option_trains_and_the_recorded_plugin_evaluates_and_resumes(tmp_path, capsys):
    from chestlab.evaluate import main as evaluate_main

    folder = _plugin_folder(tmp_path)
    run = tmp_path / "run"
    done = _cli("chestlab.train", "--plugin", "my_losses", "--set", "loss=centroid_pull", "--out", str(run), *SMALL,
                env=_env(folder), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "plug-ins: my_losses" in done.stderr
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["loss"] == "centroid_pull" and cfg["plugins"] == ["my_losses"]
    # no --plugin: the run's config.json names the module, evaluate and --resume import it again
    ev = _cli("chestlab.evaluate", str(run), "--json", env=_env(folder), cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert f"plug-ins of run {run}: my_losses" in ev.stderr and json.loads(ev.stdout)["step"] == 4
    more = _cli("chestlab.train", "--resume", "--out", str(run), "--set", "steps=6", "--quiet", env=_env(folder), cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert len(_steps(run)) == 6 and json.loads((run / "config.json").read_text())["plugins"] == ["my_losses"]
    # where the module cannot be imported (this process: the folder is not on its path), one line
    # names the run and the module
    assert evaluate_main([str(run)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"run {run} used plug-in module my_losses, which cannot be imported: ModuleNotFoundError" in err


def test_environment_variable_loads_plugins_for_help_reproduce_and_its_tables(tmp_path):
    folder = _plugin_folder(tmp_path)
    env = _env(folder, CHESTLAB_PLUGINS=f"my_losses,{os.pathsep}my_data")
    help_ = _cli("chestlab.train", "--help", env=env, cwd=tmp_path)
    assert help_.returncode == 0 and "tree3" in help_.stdout and "[centroid_pull]" in help_.stdout
    out = tmp_path / "fig3"
    done = _cli("chestlab.reproduce", "fig3", "--out", str(out), "--steps", "3", "--bins", "5", "--quiet",
                "--set", "dataset=tree3", "--set", "loss=chest_copy", *SMALL[3:], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 2 and (out / "fig3.png").is_file()
    for r in runs:
        cfg = json.loads((r / "config.json").read_text())
        assert cfg["dataset"] == "tree3" and cfg["loss"] == "chest_copy" and cfg["plugins"] == ["my_losses", "my_data"]
    # no variable: reproduce tables loads each run's recorded plug-ins
    tables = _cli("chestlab.reproduce", "tables", str(runs[0]), "--max-n", "100", env=_env(folder), cwd=tmp_path)
    assert tables.returncode == 0, tables.stderr
    assert "plug-ins of run" in tables.stderr and "my_losses, my_data" in tables.stderr and "R@1" in tables.stdout


@pytest.mark.parametrize("name", ["./my_losses.py", "/tmp/my_losses", "my_losses.py", "..\\evil", "a/b", "", "1x", "my-losses"])
def test_a_path_is_not_a_plugin_name(tmp_path, capsys, name):
    from chestlab.engine.cli import main as train_main

    run = tmp_path / "run"
    with pytest.raises(plugins.PluginError, match="not a module name"):
        plugins.check_name(name)
    assert train_main(["--plugin", name, "--out", str(run), *SMALL]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"--plugin {name}: not a module name" in err
    assert not run.exists()


def test_a_path_refused_from_the_variable_and_a_run(tmp_path, capsys):
    from chestlab.evaluate import main as evaluate_main

    with pytest.raises(plugins.PluginError, match="CHESTLAB_PLUGINS /tmp/x: not a module name"):
        plugins.from_env({"CHESTLAB_PLUGINS": "my_losses, /tmp/x"})
    assert plugins.from_env({"CHESTLAB_PLUGINS": f" my_losses ,my_pkg.data{os.pathsep}x"}) == ["my_losses", "my_pkg.data", "x"]
    # a run folder whose config.json names a file: refused before anything is imported or read
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / "config.json").write_text(json.dumps({"loss": "chest", "plugins": ["../../evil.py"]}))
    assert evaluate_main([str(forged)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not a module name" in err and "../../evil.py" in err
    for name in ("antigravity", "os.path", "webbrowser"):  # installed, but never a plug-in
        with pytest.raises(plugins.PluginError, match="standard library is not a plug-in"):
            plugins.load_recorded({"plugins": [name]}, forged)
    (forged / "config.json").write_text(json.dumps({"loss": "chest", "plugins": "my_losses"}))
    with pytest.raises(plugins.PluginError, match="list of module names"):
        plugins.load_recorded_file(forged / "config.json")


def test_entry_points_of_installed_packages_name_plugins(tmp_path, monkeypatch):
    dist = tmp_path / "my_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[chestlab.plugins]\nlosses = my_pkg.losses\nbad = my_pkg.x:thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert sorted(plugins.from_entry_points()) == ["my_pkg.losses", "my_pkg.x"]


def test_the_dashboard_names_a_plugin_it_cannot_import(monkeypatch):
    monkeypatch.setattr(plugins, "_ENVIRONMENT", None)
    monkeypatch.setenv(plugins.ENV, "surely_no_such_module_18,../x")
    names, errors = plugins.load_environment()
    assert "surely_no_such_module_18" not in names and len(errors) == 1
    assert "CHESTLAB_PLUGINS ../x: not a module name" in errors[0]
    monkeypatch.setattr(plugins, "_ENVIRONMENT", None)
    monkeypatch.setenv(plugins.ENV, "surely_no_such_module_18")
    names, errors = plugins.load_environment()
    assert errors == ["CHESTLAB_PLUGINS surely_no_such_module_18: the plug-in module cannot be imported: "
                      "ModuleNotFoundError: No module named 'surely_no_such_module_18'"]


APP_SCRIPT = '''
import json, sys
from streamlit.testing.v1 import AppTest
from chestlab.dashboard.widgets import LAZY_SECTIONS

at = AppTest.from_file({app!r}, default_timeout=120)
for key in LAZY_SECTIONS:
    at.session_state[key] = True
at.run()
out = {{"exceptions": [e.value for e in at.exception], "captions": [c.value for c in at.sidebar.caption],
        "losses": at.radio(key="w_loss").options,
        "datasets": [w.options for w in [*at.radio, *at.selectbox] if w.key == "w_dataset"][0]}}
at.radio(key="w_loss").set_value("centroid_pull").run()
out["exceptions"] += [e.value for e in at.exception]
out["widgets"] = sorted(w.key for w in [*at.slider, *at.number_input, *at.select_slider] if w.key)
print(json.dumps(out))
'''


def _app_test(tmp_path: Path, script: str, folder: Path, plugins: str, timeout: int) -> dict:
    """Run an AppTest ``script`` (formatted with the app's path) in a subprocess with
    ``CHESTLAB_PLUGINS=plugins`` and ``folder`` on the path; its last line of output, as JSON."""
    path = tmp_path / "app_test.py"
    path.write_text(script.format(app=str(ROOT / "app.py")))
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
                          env=_env(folder, CHESTLAB_PLUGINS=plugins))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_dashboard_builds_the_controls_of_plugins_named_by_the_environment(tmp_path):
    out = _app_test(tmp_path, APP_SCRIPT, _plugin_folder(tmp_path), "my_losses,my_data", timeout=300)
    assert out["exceptions"] == []
    assert "plug-ins: my_losses, my_data" in out["captions"]
    assert {"centroid_pull", "chest_copy"} <= set(out["losses"]) and "tree3" in out["datasets"]
    assert {"w_pull", "w_push_margin"} <= set(out["widgets"])


PANEL_SCRIPT = '''
import json
from streamlit.testing.v1 import AppTest

at = AppTest.from_file({app!r}, default_timeout=180)
at.run()
before = [m.value for m in at.markdown]
at.button(key="btn_step").click().run()
out = {{"exceptions": [e.value for e in at.exception], "captions": [c.value for c in at.sidebar.caption],
        "before": before, "after": [m.value for m in at.markdown],
        "warnings": [w.value for w in at.warning], "bars": len(at.get("arrow_vega_lite_chart")) + len(at.get("vega_lite_chart"))}}
print(json.dumps(out))
'''


def test_a_plugin_panel_of_the_docs_is_drawn_for_the_run(tmp_path):
    """docs/extending.md's my_panel.py, named by CHESTLAB_PLUGINS: the page draws its bar chart of the
    last step's loss parts under the built-in panels, with no edit inside chestlab/."""
    (tmp_path / "my_panel.py").write_text(PANEL_PLUGIN)
    out = _app_test(tmp_path, PANEL_SCRIPT, tmp_path, "my_panel", timeout=600)
    assert out["exceptions"] == [] and "plug-ins: my_panel" in out["captions"]
    title = "**Loss parts — the last step's terms**"
    assert title in out["after"], out["after"]
    assert out["bars"] >= 1 and not any("Loss parts" in w for w in out["warnings"])  # drawn, not a failure line


def test_register_panel_checks_the_interface():
    from chestlab.dashboard import panels as P

    class NoSlot:
        TITLE = "x"
        render = staticmethod(lambda ctx, box: None)

    with pytest.raises(ValueError, match=r"SLOT = None; allowed: one of left, right, below"):
        P.register_panel(NoSlot)
    with pytest.raises(ValueError, match="TITLE must be a non-empty string"):
        P.register_panel(type("T", (), {"SLOT": "left", "render": staticmethod(lambda ctx, box: None)}))
    with pytest.raises(ValueError, match=r"needs a render\(ctx, box\) function"):
        P.register_panel(type("T", (), {"SLOT": "left", "TITLE": "t"}))
    assert P.run_panels() == P.RUN_PANELS  # nothing registered by a refused panel
