"""Losses are plug-ins: a loss defined in a file outside the package, with only the public API and
imported before ``chestlab.train.main([...])``, is listed by ``--help``, trains with
``--set loss=NAME``, takes its settings from ``--set``, and logs its parts in ``steps.csv`` — with no
edit inside ``chestlab/``. A subclass of a registered loss, registered under a new name with no other
change, trains as is. (Run in a subprocess so the registry of the other tests stays as shipped.)"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
#: the plug-in of docs/extending.md: the documentation shows exactly what this test runs
PLUGIN = DOC.read_text().split("```python\n", 1)[1].split("```", 1)[0]


SCRIPT = '''
import sys
sys.path.insert(0, {folder!r})
import my_losses  # registers the plug-ins
from chestlab import train
sys.exit(train.main(sys.argv[1:]))
'''


def _run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    (tmp_path / "my_losses.py").write_text(PLUGIN)
    script = tmp_path / "run_train.py"
    script.write_text(SCRIPT.format(folder=str(tmp_path)))
    return subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


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


def test_a_run_of_an_unregistered_loss_names_the_fix(tmp_path):
    run = tmp_path / "run"
    assert _run(tmp_path, "--set", "loss=centroid_pull", "--out", str(run), *SMALL).returncode == 0
    from chestlab.evaluate import main as evaluate_main  # this process has not imported the plug-in

    assert evaluate_main([str(run)]) == 2


DATASET_PLUGIN = '''
from chestlab.data import dataset_info, load_dataset, register_dataset

# a dataset plug-in: the tree world, three levels deep, under its own name
register_dataset("tree3", lambda split, *, data_root=None, seed=0: load_dataset("tree", split, seed=seed, depth=3),
                 lambda: dataset_info("tree", depth=3))
'''


def test_a_plugin_dataset_is_one_register_call_and_trains(tmp_path):
    (tmp_path / "my_data.py").write_text(DATASET_PLUGIN)
    script = tmp_path / "run_data.py"
    script.write_text(SCRIPT.replace("import my_losses  # registers the plug-ins", "import my_data").format(folder=str(tmp_path)))
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, str(script), "--set", "dataset=tree3", "--out", str(run), *SMALL],
                          capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "config.json").read_text())["dataset"] == "tree3" and len(_steps(run)) == 4
    # without the plug-in the name is refused with the registered ones listed
    bad = _run(tmp_path, "--set", "dataset=tree3", *SMALL)
    assert bad.returncode == 2 and "tree3" in bad.stderr and "tree" in bad.stderr.replace("tree3", "")
