"""Nothing runs, nothing leaks, at the level of a run folder: one writer per folder (a lock with
stale-lock detection), eval.csv stays aligned when a resumed run changes what it evaluates, a full
disk is one line with the last good checkpoint kept, SIGTERM and Ctrl-C are handled by train,
evaluate and reproduce alike (one line, exit 128 + signal), and a start that fails writes nothing."""

from __future__ import annotations

import csv
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from chestlab import train
from chestlab.engine import checkpoint
from chestlab.engine.lock import LOCK, STALE_AFTER, RunLock
from chestlab.evaluate import main as evaluate_main
from chestlab.interrupts import run_main
from chestlab.settings import ConfigError

from _helpers import run_records

TINY = ["--quiet", "--set", "batch_size=16", "--set", "dim_e=8", "--set", "dim_h=4", "--set", "M=4",
        "--set", "eval_max=120", "--set", "eval_train=false", "--set", "threads=1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _python_m(module: str, *argv: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *argv], env=ENV, stderr=subprocess.PIPE, text=True, **kw)


def _wait_for(cond, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------------
# one writer per run folder
# ------------------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_and_sigterm_stops_the_first_with_its_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    proc = _python_m("chestlab.train", *TINY, "--steps", "100000", "--set", "eval_every=0", "--out", str(run))
    _wait_for(lambda: _lines(run / "steps.csv") > 3, proc)
    for extra in (["--overwrite"], ["--resume"], []):  # a second run into the same folder, however asked
        assert train.main([*TINY, "--steps", "5", "--out", str(run), *extra]) == 2
        line = _one_line(capsys.readouterr().err)
        assert "in use by another training" in line and f"process {proc.pid}" in line, line
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "checkpoint saved" in err and "Traceback" not in err, err
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "steps.csv"))]
    assert steps == list(range(1, len(steps) + 1))  # one writer: 1 2 3 ..., not 1 1 2 2 ...
    assert not (run / LOCK).exists()
    last = checkpoint.load_state(run / "checkpoint.pt")["step"]
    assert train.main([*TINY, "--steps", str(last + 2), "--set", "eval_every=0", "--out", str(run), "--resume"]) == 0
    assert not (run / LOCK).exists()


def test_stale_locks_are_taken_over_and_live_ones_refused(tmp_path):
    lock = tmp_path / LOCK
    me = socket.gethostname()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    cases = [  # (holder, age in seconds, taken over?)
        ({"host": me, "pid": int(gone.stdout)}, 0, True),  # its process has ended (a kill -9)
        ({"host": me, "pid": os.getpid()}, 0, True),  # an earlier trainer of this very process
        ({"host": me, "pid": os.getppid()}, 0, False),  # a live process here
        ({"host": "elsewhere", "pid": 1}, 0, False),  # another host, refreshed lately
        ({"host": "elsewhere", "pid": 1}, STALE_AFTER + 5, True),  # another host, silent for too long
        ("half written", 0, False),
        ("half written", 60, True),
    ]
    for holder, age, taken in cases:
        lock.write_text(holder if isinstance(holder, str) else json.dumps({**holder, "token": "theirs"}))
        os.utime(lock, (time.time() - age, time.time() - age))
        mine = RunLock(tmp_path)
        if taken:
            mine.acquire()
            assert json.loads(lock.read_text())["token"] == mine.token
            mine.release()
            assert not lock.exists()
        else:
            with pytest.raises(ConfigError, match="in use by another training") as err:
                mine.acquire()
            assert "\n" not in str(err.value) and str(lock) in str(err.value)
            assert lock.exists() and not mine.held
    # release removes only its own lock
    mine = RunLock(tmp_path).acquire()
    lock.write_text(json.dumps({"host": me, "pid": os.getppid(), "token": "theirs"}))
    mine.release()
    assert json.loads(lock.read_text())["token"] == "theirs"


# ------------------------------------------------------------------------------------------------
# eval.csv when a resumed run changes what it evaluates
# ------------------------------------------------------------------------------------------------
def test_resume_with_a_changed_evaluation_setting_keeps_eval_csv_aligned(tmp_path):
    run = tmp_path / "run"
    args = [*TINY, "--set", "eval_every=2", "--out", str(run)]
    assert train.main([*args, "--steps", "2", "--set", "eval_hierarchy=false"]) == 0
    narrow = next(csv.reader(open(run / "eval.csv")))
    assert train.main([*args, "--steps", "4", "--resume", "--set", "eval_hierarchy=true"]) == 0  # more columns
    assert train.main([*args, "--steps", "6", "--resume", "--set", "eval_hierarchy=false"]) == 0  # fewer again
    table = list(csv.reader(open(run / "eval.csv")))
    header = table[0]
    assert header[: len(narrow)] == narrow and len(header) > len(narrow) and "test/H/cophenet" in header
    assert all(len(row) == len(header) for row in table)
    evals = [r for r in map(json.loads, (run / "events.jsonl").read_text().splitlines()) if r["kind"] == "eval"]
    assert [int(row[0]) for row in table[1:]] == [e["step"] for e in evals] == [2, 4, 6]
    for row, ev in zip(table[1:], evals):  # every value under its own column, or empty
        for key, cell in zip(header, row):
            if key in ev:
                want = float(ev[key])
                assert (math.isnan(want) and cell == "nan") or float(cell) == want, (key, cell, ev[key])
            else:
                assert cell == "", (key, cell)
    assert "test/H/cophenet" in evals[1] and "test/H/cophenet" not in evals[2]


# ------------------------------------------------------------------------------------------------
# a full disk
# ------------------------------------------------------------------------------------------------
def _file_size_limit(n_bytes: int):
    def limit() -> None:  # in the child: writes beyond n_bytes fail with EFBIG (SIGXFSZ ignored)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))
    return limit


def test_a_full_disk_is_one_line_leaves_no_temporary_file_and_resume_continues(tmp_path):
    args = [*TINY, "--set", "eval_every=2"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert train.main([*args, "--steps", "6", "--out", str(ref)]) == 0
    assert train.main([*args, "--steps", "4", "--out", str(run)]) == 0
    # the checkpoint (about 1 MB) cannot be written under a 40 KiB file-size limit (`ulimit -f 40`)
    proc = subprocess.run([sys.executable, "-m", "chestlab.train", *args, "--steps", "6", "--out", str(run), "--resume"],
                          env=ENV, capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(40 * 1024))
    assert proc.returncode == 1, proc.stderr
    line = _one_line(proc.stderr)
    assert line.startswith(f"error: cannot write {run / 'checkpoint.pt'}") and "checkpoint of step 4 is kept" in line, line
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json", "eval.csv", "events.jsonl", "steps.csv"]
    assert checkpoint.load_state(run / "checkpoint.pt")["step"] == 4
    assert train.main([*args, "--steps", "6", "--out", str(run), "--resume"]) == 0
    assert run_records(run) == run_records(ref)


def test_a_failed_write_removes_its_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"the good one")

    def broken(obj, f, *a, **k):
        Path(f).write_bytes(b"half")
        raise RuntimeError("basic_ios::clear: iostream error")  # what torch's writer raises on EFBIG

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(checkpoint.WriteError, match=r"cannot write .*checkpoint.pt: the disk refused"):
        checkpoint.atomic_save({"a": 1}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"] and path.read_bytes() == b"the good one"


# ------------------------------------------------------------------------------------------------
# signals: reproduce under SIGTERM, Ctrl-C while starting
# ------------------------------------------------------------------------------------------------
def test_reproduce_under_sigterm_checkpoints_and_says_how_to_continue(tmp_path):
    out = tmp_path / "fig3"
    proc = _python_m("chestlab.reproduce", "fig3", "--out", str(out), "--steps", "100000", *TINY)
    run = out / "runs" / "fig3_h_seed0"
    _wait_for(lambda: _lines(run / "steps.csv") > 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("interrupted: finished runs are saved") and "re-run the same command" in err
    assert checkpoint.load_state(run / "checkpoint.pt")["step"] >= 3 and not (run / LOCK).exists()


def _catches_sigterm(pid: int) -> bool:
    """The process has installed its own SIGTERM handler (chestlab.interrupts.run_main)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("SigCgt:")), 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the signal mask from /proc")
@pytest.mark.parametrize("module,argv", [("chestlab.train", ["--steps", "3", "--quiet", "--out", "OUT"]),
                                         ("chestlab.evaluate", ["OUT"]),
                                         ("chestlab.reproduce", ["fig3", "--steps", "3", "--quiet", "--out", "OUT"])])
def test_ctrl_c_while_starting_is_one_line(tmp_path, module, argv):
    proc = _python_m(module, *[str(tmp_path / "o") if a == "OUT" else a for a in argv])
    _wait_for(lambda: _catches_sigterm(proc.pid), proc)  # the handlers are in; torch is still loading
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert _one_line(err).startswith("interrupted"), err
    assert not (tmp_path / "o").exists()


def test_run_main_turns_an_interrupt_while_importing_into_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "slow_start.py").write_text("raise KeyboardInterrupt  # as if Ctrl-C came while torch loaded\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert run_main("slow_start", "interrupted while starting") == 130
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    assert _one_line(capsys.readouterr().err) == "interrupted while starting"


# ------------------------------------------------------------------------------------------------
# a start that fails writes nothing
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra,word", [
    (["--set", "device=cuda:99"], "device = cuda:99"),
    (["--set", "hierarchy_file=/nonexistent"], "hierarchy_file = /nonexistent"),
    (["--set", "hierarchy_file=GARBAGE"], "hierarchy_file = "),
    (["--steps", "12", "--set", "steps=14"], "--steps 12 and --set steps=14 disagree"),
])
def test_bad_values_found_while_starting_write_nothing(tmp_path, capsys, extra, word):
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(os.urandom(2048))
    extra = [x.replace("GARBAGE", str(garbage)) for x in extra]
    out = tmp_path / "new" / "run"
    assert train.main([*TINY, *extra, "--out", str(out)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error: ") and word in line, line
    assert not (tmp_path / "new").exists()


def test_an_interrupt_while_building_removes_the_folder_it_made(tmp_path, monkeypatch):
    from chestlab.engine import build

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "create_datasets", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.Trainer(train.TrainConfig.preset("demo-tree", steps=2), out_dir=tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(KeyboardInterrupt):
        train.Trainer(train.TrainConfig.preset("demo-tree", steps=2), out_dir=tmp_path / "kept")
    assert (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / LOCK).exists()  # not ours to remove


def test_evaluate_max_n_has_the_bounds_of_eval_max(tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main([*TINY, "--steps", "1", "--set", "eval_every=0", "--out", str(run)]) == 0
    capsys.readouterr()
    for bad in ("1", "0", "100000000", "x"):
        assert evaluate_main([str(run), "--max-n", bad]) == 2
        line = _one_line(capsys.readouterr().err)
        assert f"--max-n = {bad}: allowed: an integer from 2" in line and "10000000" in line, line
    assert evaluate_main([str(run), "--max-n", "2", "--json"]) == 0  # two samples: a neighbour each


def test_reproduce_sizes_are_bounded_with_one_line(capsys):
    from chestlab.reproduce import main

    for argv in (["fig3", "--bins", "100000000"], ["fig2", "--max-n", "1"], ["fig3", "--seed", "18446744073709551616"],
                 ["hardneg-fig3", "--n", "5000"], ["dims", "--dims", "100000"]):
        with pytest.raises(SystemExit) as ex:
            main(argv)
        assert ex.value.code == 2
        line = _one_line(capsys.readouterr().err)
        assert line.startswith("error: argument") and "allowed:" in line, line


def test_a_cuda_index_beyond_the_machines_devices_is_refused(monkeypatch):
    from chestlab.engine import build

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"device = cuda:99: this machine has 2 CUDA device\(s\); allowed: cuda:0..cuda:1"):
        build.resolve_device("cuda:99")
    assert build.resolve_device("cuda:1") == torch.device("cuda", 1)


_SWALLOWED = '''
import gc, signal, sys, time, weakref
from chestlab import interrupts as I
signal.signal(signal.SIGINT, I._raise)
signal.signal(signal.SIGTERM, I._raise)
sys.unraisablehook = I._unraisable(sys.unraisablehook)
class A: pass
a = A()
def callback(ref):  # where Python ignores exceptions, as the import machinery's module-lock callback
    raise I.Interrupted({signum})
r = weakref.ref(a, callback)
try:
    del a
    gc.collect()
    for _ in range(20000):
        time.sleep(0.0001)
    print("not interrupted")
except KeyboardInterrupt as err:
    print("interrupted", err.signum)
'''


@pytest.mark.parametrize("signum", [int(signal.SIGINT), int(signal.SIGTERM)])
def test_a_signal_swallowed_by_a_callback_still_ends_the_program(signum):
    """Ctrl-C that lands in a weakref callback of the import machinery (seen while torch loads) is not
    printed as "Exception ignored" and lost: run_main's unraisable hook sends it again, outside."""
    done = subprocess.run([sys.executable, "-c", _SWALLOWED.format(signum=signum)], capture_output=True, text=True,
                          timeout=60, env=ENV)
    assert done.stdout.strip() == f"interrupted {signum}", (done.stdout, done.stderr)
    assert "Exception ignored" not in done.stderr
