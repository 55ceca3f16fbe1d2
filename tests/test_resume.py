"""Nothing lost, nothing silent: a run interrupted at any moment resumes to the same events as an
uninterrupted run, bit for bit; --resume and run folders tell the truth and touch only their own
files; evaluate honours --max-n; every setting's bad values are refused on the command line."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from chestlab import train
from chestlab.evaluate import main as evaluate_main
from chestlab.settings import schema

TINY = ["--quiet", "--set", "batch_size=16", "--set", "dim_e=8", "--set", "dim_h=4", "--set", "M=4",
        "--set", "eval_max=120", "--set", "eval_train=false", "--set", "threads=1"]


def _records(run: Path, kinds=("step", "eval")) -> list[dict]:
    out = []
    for ln in (run / "events.jsonl").read_text().splitlines():
        rec = json.loads(ln)
        if rec["kind"] in kinds:
            rec = {k: v for k, v in rec.items() if k not in ("step_time", "eval_time")}
            out.append(rec)
    return out


# ------------------------------------------------------------------------------------------------
# §1 exact resume under any interrupt
# ------------------------------------------------------------------------------------------------
def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "chestlab.train", *argv]


def test_interrupt_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    steps = "400"
    common = [*TINY, "--steps", steps, "--set", "eval_every=20", "--set", "checkpoint_every=7"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "ref"
    subprocess.run(_cli(*common, "--out", str(ref)), check=True, env=env, timeout=300)
    want = _records(ref)
    assert len([r for r in want if r["kind"] == "step"]) == 400 and len([r for r in want if r["kind"] == "eval"]) == 20

    rng = random.Random(0)
    run = tmp_path / "run"
    first = True
    interrupts = 0
    for attempt in range(9):
        args = common + ["--out", str(run)] + ([] if first else ["--resume"])
        events = run / "events.jsonl"
        before = events.read_text().count("\n") if events.exists() and not first else 0
        proc = subprocess.Popen(_cli(*args), env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:  # wait for training to be under way
            if events.exists() and events.read_text().count("\n") > before + 3:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.7))  # then a random moment: in a step, an evaluation or a save
        # interrupt the first 8 attempts only, so a slow (loaded) machine still reaches the end
        if proc.poll() is None and attempt < 8:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
        # 130: stopped after a step, its evaluation and checkpoint, or during start-up (one line, nothing
        # written); -2: before the program's handler was in
        assert proc.returncode in (0, 130, -signal.SIGINT), err
        interrupts += proc.returncode == 130 and "Continue with --resume" in err
        if (run / "checkpoint.pt").exists():
            first = False
        if proc.returncode == 0:
            break
    assert proc.returncode == 0 and interrupts >= 2
    assert _records(run) == want


def test_a_second_ctrl_c_stops_inside_a_step_and_the_resume_is_still_exact(tmp_path, monkeypatch):
    """Interrupts that land inside a step (after the batch, after the HypHC triplets were drawn) or
    inside an evaluation: the samplers are restored and the evaluation is redone on resume."""
    cfg = train.TrainConfig.preset("demo-tree", steps=12, eval_every=4, batch_size=16, dim_e=8, dim_h=4, M=4,
                                   eval_max=120, eval_train=False)
    ref = train.Trainer(cfg, out_dir=tmp_path / "ref")
    list(ref.run())
    want = _records(tmp_path / "ref")

    from chestlab.losses import parts

    original_hyphc, original_eval = parts.HypHCTerm.forward, train.Trainer.evaluate
    calls = {"n": 0}

    def hyphc_then_interrupt(self, *a, **k):
        out = original_hyphc(self, *a, **k)  # the triplets are drawn: the generator has moved
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return out

    def eval_interrupted(self, splits=None):
        if self.step_count == 8 and splits is None and not calls.get("eval"):
            calls["eval"] = True
            self.pending_eval = True
            raise KeyboardInterrupt
        return original_eval(self, splits)

    monkeypatch.setattr(parts.HypHCTerm, "forward", hyphc_then_interrupt)
    monkeypatch.setattr(train.Trainer, "evaluate", eval_interrupted)
    run = tmp_path / "run"
    for resume in (False, True, True):
        tr = train.Trainer(cfg, out_dir=run, resume=resume)
        try:
            list(tr.run())
            break
        except KeyboardInterrupt:
            assert tr.consistent
            tr.save_checkpoint()
    assert _records(run) == want


# ------------------------------------------------------------------------------------------------
# §2 --resume and run folders
# ------------------------------------------------------------------------------------------------
def test_resume_applies_live_changes_logs_them_and_refuses_structural_ones(tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main([*TINY, "--steps", "6", "--set", "eval_every=0", "--out", str(run)]) == 0
    capsys.readouterr()
    for sets, word in ([["--set", "K=3"], "K = 3"], [["--set", "seed=1"], "seed = 1"],
                       [["--set", "data_options={\"depth\": 2}"], "data_options"], [["--steps", "3"], "below"]):
        assert train.main([*TINY, "--out", str(run), "--resume", *sets]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and word in err, err
    assert train.main([*TINY, "--out", str(run), "--resume", "--steps", "9", "--set", "delta_h=5", "--set", "tau=0",
                       "--set", "lr=0.05"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["delta_h"] == 5.0 and cfg["tau"] == 0.0 and cfg["lr"] == 0.05 and cfg["steps"] == 9
    assert cfg["history"][0]["step"] == 6 and cfg["history"][0]["changes"]["delta_h"] == [1.0, 5.0]
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["config"]["delta_h"] == 5.0 and ck["step"] == 9
    steps = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in steps].count("settings") == 1
    assert all(r["l_hyphc"] == 0.0 for r in steps if r["kind"] == "step" and r["step"] > 6)
    lrs = [r["lr/backbone"] for r in steps if r["kind"] == "step"]
    assert lrs[5] == 2e-3 and lrs[6] == 0.05


def test_run_folders_hold_one_run_and_only_its_files_are_touched(tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main([*TINY, "--steps", "3", "--set", "eval_every=0", "--out", str(run)]) == 0
    (run / "my_analysis.csv").write_text("a,b\n1,2\n")
    before = (run / "checkpoint.pt").read_bytes()
    assert train.main([*TINY, "--steps", "3", "--out", str(run)]) == 2
    assert "holds another run" in capsys.readouterr().err and (run / "checkpoint.pt").read_bytes() == before
    # a foreign CSV does not disturb a resume, nor does a last line cut short by a kill
    with open(run / "events.jsonl", "a") as fh:
        fh.write('{"kind": "step", "st')
    assert train.main([*TINY, "--steps", "5", "--out", str(run), "--resume"]) == 0
    assert (run / "my_analysis.csv").read_text() == "a,b\n1,2\n"
    assert [json.loads(x)["step"] for x in (run / "events.jsonl").read_text().splitlines() if '"step", "step"' in x or True][-1] == 5
    # --overwrite replaces the run's own files only
    assert train.main([*TINY, "--steps", "2", "--set", "eval_every=0", "--out", str(run), "--overwrite"]) == 0
    assert (run / "my_analysis.csv").exists() and torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 2
    capsys.readouterr()
    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv, word in (([*TINY, "--out", str(afile)], "is a file"), ([*TINY, "--resume"], "--resume needs --out"),
                       ([*TINY, "--resume", "--out", str(tmp_path / "none")], "config.json not found")):
        assert train.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and word in err, err


@pytest.mark.parametrize("damage", ["truncated", "empty", "foreign", "config_list", "config_string_K"])
def test_damaged_run_files_give_one_line(tmp_path, capsys, damage):
    run = tmp_path / "run"
    assert train.main([*TINY, "--steps", "2", "--set", "eval_every=0", "--out", str(run)]) == 0
    ck = run / "checkpoint.pt"
    if damage == "truncated":
        ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    elif damage == "empty":
        ck.write_bytes(b"")
    elif damage == "foreign":
        torch.save([1, 2, 3], ck)
    elif damage == "config_list":
        (run / "config.json").write_text("[1, 2]")
    else:
        cfg = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**cfg, "K": "2"}))
    capsys.readouterr()
    assert train.main([*TINY, "--steps", "4", "--out", str(run), "--resume"]) == 2
    assert evaluate_main([str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("error:") for e in err), err


# ------------------------------------------------------------------------------------------------
# §4 evaluate
# ------------------------------------------------------------------------------------------------
def test_evaluate_honours_max_n_and_refuses_bad_values(tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main([*TINY, "--steps", "2", "--set", "eval_every=0", "--out", str(run)]) == 0
    capsys.readouterr()
    from chestlab.evaluate import evaluate_run

    from chestlab.engine import Evaluator

    calls = []
    original = Evaluator.embed

    def spy(self, split="test", max_n=None, batch_size=256):
        calls.append(max_n)
        return original(self, split, max_n, batch_size)

    Evaluator.embed = spy
    try:
        evaluate_run(str(run), max_n=50)
    finally:
        Evaluator.embed = original
    assert calls == [50]  # the checkpoint's eval_max = 120 does not win
    for bad in ("0", "1", "-3", "abc"):  # 1: a sample needs a neighbour
        assert evaluate_main([str(run), "--max-n", bad]) == 2
        assert "--max-n" in capsys.readouterr().err
    assert evaluate_main([str(tmp_path / "nothing")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------------
# §7 every setting's bad values, generated from the schema
# ------------------------------------------------------------------------------------------------
def _bad_values(s) -> list[str]:
    bad = {"int": ["abc", "1.5"], "float": ["abc", "nan"], "bool": ["maybe", "2"], "tuple": ["abc", "1,x"], "dict": ["notjson", "[1]"]}
    out = list(bad.get(s.type.__name__, []))
    if s.type is float and s.finite:
        out.append("inf")
    if s.low is not None:  # the bound itself when it is excluded, else below it (-1e30 - 1 == -1e30: ten times)
        out.append(str(s.low) if s.low_open else str(int(s.low) - 1) if s.type is not float else f"{s.low - max(1, 9 * abs(s.low)):g}")
    if s.high is not None:  # just above an integer bound; ten times a real one (1e30 + 1 == 1e30)
        out.append(str(int(s.high) + 1) if s.type in (int, tuple) else f"{s.high * 10:g}")
    if s.options() is not None:
        out.append("not-an-option")
    if s.pattern:
        out.append("tpu")
    return out


# the kit's settings at collection time (other test modules register plug-in sections later)
SCHEMA = dict(schema())
CASES = [(k, v) for k, s in SCHEMA.items() for v in _bad_values(s) if not (s.nullable and v.lower() == "none")]


@pytest.mark.parametrize("key,value", CASES)
def test_every_bad_value_of_every_setting_exits_2_with_one_line(key, value, capsys, tmp_path):
    assert train.main(["--quiet", "--set", f"{key}={value}", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {key} = ") and "allowed" in err, err
    assert "Traceback" not in err and not (tmp_path / "run").exists()  # refused before anything was written


def test_the_table_holds_the_upper_bound_of_every_size():
    bounded = {k for k, s in SCHEMA.items() if s.high is not None}
    assert {"dim_h", "dim_e", "batch_size", "K", "M", "threads", "seed", "ks", "eval_max", "lr", "proxy_std",
            "hier_triplets", "unsup_max_n"} <= bounded
    above = {k for k, v in CASES if SCHEMA[k].high is not None and v not in ("abc", "1.5", "nan", "inf", "1,x")}
    assert bounded <= above


# ------------------------------------------------------------------------------------------------
# §3 weights files and failures in the middle of a run
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,word", [("missing", "no such file"), ("text", "not a readable"), ("random", "not a readable"),
                                       ("truncated", "not a readable"), ("list", "holds a list"), ("shapes", "wrong shapes"),
                                       ("good", "")])
def test_weights_files_are_checked_before_training(tmp_path, capsys, kind, word):
    from chestlab import models

    path = tmp_path / "w.pt"
    net = models.create_backbone("mlp", (32,), 8)
    if kind == "text":
        path.write_text("hello")
    elif kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        torch.save(net.state_dict(), path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "list":
        torch.save([1, 2], path)
    elif kind == "shapes":
        torch.save(models.create_backbone("mlp", (32,), 5).state_dict(), path)
    elif kind == "good":
        ref = train.Trainer(train.TrainConfig.preset("demo-tree", dim_e=8, dim_h=4, batch_size=16))
        torch.save(ref.model.backbone.state_dict(), path)
    rc = train.main([*TINY, "--steps", "1", "--set", "eval_every=0", "--weights", str(path)])
    err = capsys.readouterr().err.strip()
    if kind == "good":
        assert rc == 0, err
    else:
        assert rc == 2 and len(err.splitlines()) == 1 and word.replace("not a readable", "not a readable") in err and "weights" in err, err


def test_a_failure_in_the_middle_of_a_run_saves_a_checkpoint_that_resumes_exactly(tmp_path, capsys, monkeypatch):
    ref = tmp_path / "ref"
    assert train.main([*TINY, "--steps", "8", "--set", "eval_every=4", "--out", str(ref)]) == 0
    original = train.Trainer.batch

    def corrupt_at_6(self, step):
        if step == 5:
            raise OSError("image file is truncated (corrupt image)")
        return original(self, step)

    monkeypatch.setattr(train.Trainer, "batch", corrupt_at_6)
    run = tmp_path / "run"
    assert train.main([*TINY, "--steps", "8", "--set", "eval_every=4", "--out", str(run)]) == 1
    assert "corrupt image" in capsys.readouterr().err
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 5
    monkeypatch.setattr(train.Trainer, "batch", original)
    assert train.main([*TINY, "--steps", "8", "--set", "eval_every=4", "--out", str(run), "--resume"]) == 0
    assert _records(run) == _records(ref)
