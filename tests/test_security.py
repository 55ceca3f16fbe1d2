"""Nothing runs, nothing leaks: a crafted checkpoint or CIFAR pickle is refused without running
its code; a link cannot name a file on the server; text echoed from a link is shown, never
rendered; a file read as a hierarchy is capped in size and never echoed."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from chestlab import train
from chestlab.engine import checkpoint
from chestlab.evaluate import main as evaluate_main

TINY = ["--quiet", "--set", "batch_size=16", "--set", "dim_e=8", "--set", "dim_h=4", "--set", "M=4",
        "--set", "eval_max=120", "--set", "eval_train=false", "--set", "threads=1"]


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: the proof that a loader ran the file's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ck") / "run"
    assert train.main([*TINY, "--steps", "2", "--set", "eval_every=0", "--out", str(run)]) == 0
    return run


def test_a_checkpoint_loads_with_weights_only(run_folder):
    state = torch.load(run_folder / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 2 and "system" in state


@pytest.mark.parametrize("form", ["zip", "raw-pickle"])
def test_a_crafted_checkpoint_stays_inert_on_evaluate_and_resume(run_folder, tmp_path, capsys, form):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_folder, run)
    marker = tmp_path / "ran"
    good = torch.load(run / "checkpoint.pt", weights_only=True)
    crafted = {**good, "history": [_Payload(marker)]}  # a real checkpoint with one object slipped in
    if form == "zip":
        torch.save(crafted, run / "checkpoint.pt")
    else:
        (run / "checkpoint.pt").write_bytes(pickle.dumps(crafted))
    capsys.readouterr()
    assert evaluate_main([str(run)]) == 2
    assert train.main([*TINY, "--steps", "4", "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not marker.exists()
    assert len(err) == 2 and all(e.startswith("error:") and "retrain" in e for e in err), err


def test_plain_turns_numpy_and_paths_into_safe_types_and_names_anything_else():
    out = checkpoint.plain({"a": np.float32(1.5), "b": [np.arange(3), Path("/x")], "c": (np.int64(2),)})
    assert out["a"] == 1.5 and type(out["a"]) is float
    assert torch.equal(out["b"][0], torch.arange(3)) and out["b"][1] == "/x" and out["c"] == (2,)
    with pytest.raises(TypeError, match=r"state\['k'\]\[1\] is a object"):
        checkpoint.plain({"k": [1, object()]})
