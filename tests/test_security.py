"""Nothing runs, nothing leaks: a crafted checkpoint or CIFAR pickle is refused without running
its code; a link cannot name a file on the server; text echoed from a link is shown, never
rendered; a file read as a hierarchy is capped in size and never echoed."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from chestlab import train
from chestlab.engine import checkpoint
from chestlab.evaluate import main as evaluate_main
from test_data import make_cifar

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
    sd = torch.nn.BatchNorm1d(2).state_dict()  # its version (2) tells load_state_dict how to read it
    assert checkpoint.plain(sd)._metadata == sd._metadata


# ------------------------------------------------------------------------------------------------
# hierarchy files: capped, text only, never echoed
# ------------------------------------------------------------------------------------------------
def test_a_hierarchy_file_is_capped_and_its_content_never_echoed(tmp_path, monkeypatch):
    from chestlab import hierarchy as H

    secret = "root:x:0:0:SECRET-TOKEN:/root:/bin/bash"
    f = tmp_path / "passwd"
    f.write_text(secret + "\ndaemon:x:1:1:SECRET-TOKEN:/usr/sbin\n")
    with pytest.raises(ValueError) as e:
        H.Hierarchy.from_file(f, classes=["a", "b"])
    assert "SECRET" not in str(e.value) and "no ancestors" in str(e.value) and "\n" not in str(e.value)
    dup = tmp_path / "dup.csv"
    dup.write_text(f"{secret},X\n{secret},Y\n")
    with pytest.raises(ValueError, match="row 2") as e:
        H.Hierarchy.from_file(dup)
    assert "SECRET" not in str(e.value)
    cases = {
        "binary": (tmp_path / "b.csv", b"\xff\xfe\x00\x01" * 64, "not UTF-8 text"),
        "nul": (tmp_path / "n.csv", b"a,b\x00c\n", "not UTF-8 text"),
        "deep json": (tmp_path / "d.json", b"[" * 200_000, "nested too deeply"),
    }
    for name, (path, data, want) in cases.items():
        path.write_bytes(data)
        with pytest.raises(ValueError, match=want):
            H.Hierarchy.from_file(path)
    with pytest.raises(ValueError, match="not a regular file"):
        H.Hierarchy.from_file("/dev/zero")  # refused before any read (a device never ends)
    with pytest.raises(ValueError, match="does not exist"):
        H.Hierarchy.from_file(tmp_path / "missing.csv")
    monkeypatch.setattr(H, "MAX_HIERARCHY_FILE_BYTES", 1000)
    big = tmp_path / "big.csv"
    big.write_text("a,b\n" * 300)
    with pytest.raises(ValueError, match="larger than"):
        H.Hierarchy.from_file(big)
    monkeypatch.setattr(H, "MAX_HIERARCHY_CELLS", 100)  # a long row pads every short one
    wide = tmp_path / "wide.csv"
    wide.write_text("a," + ",".join(f"n{i}" for i in range(60)) + "\nb,x\n")
    with pytest.raises(ValueError, match="2 classes x 61 levels"):
        H.Hierarchy.from_file(wide)


def test_hierarchy_codes_keyed_by_parent_and_name_equal_the_prefix_definition():
    """The codes are built level by level from (parent's code, name) -- linear in the depth, where
    keying by the whole prefix was quadratic (a file's long row made it hang) -- and equal the
    definition: same code at level l iff same path prefix of length l + 1, numbered in order of
    first appearance; padding unique to its class."""
    import random

    from chestlab.hierarchy import Hierarchy

    rng = random.Random(0)
    for _ in range(20):
        table = {f"k{i}": [rng.choice("ab") for _ in range(rng.randint(0, 6))] for i in range(12)}
        h = Hierarchy.from_paths(table)
        for level in range(h.depth):
            seen: dict = {}
            for k, p in enumerate(h.paths):
                want = seen.setdefault(p[: level + 1], len(seen)) if level < len(p) else -1 - k
                assert h.codes[k, level] == want
    deep = Hierarchy.from_paths({"a": [f"n{i}" for i in range(3000)], "b": [f"n{i}" for i in range(2999)] + ["m"], "c": []})
    assert deep.depth == 3001 and (deep.codes[0, :2999] == deep.codes[1, :2999]).all() and deep.codes[0, 2999] != deep.codes[1, 2999]


# ------------------------------------------------------------------------------------------------
# CIFAR-100: a restricted unpickler
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_files_load_through_the_restricted_unpickler(tmp_path, protocol):
    from chestlab.data import load_dataset

    make_cifar(tmp_path, protocol)
    train = load_dataset("cifar100", "train", data_root=tmp_path, transform=None)
    assert len(train) == 150 and train.classes[:2] == ["fine0", "fine1"]


@pytest.mark.parametrize("part", ["meta", "train"])
def test_a_planted_cifar_pickle_is_refused_and_its_code_never_runs(tmp_path, part):
    from chestlab.data import DatasetError, load_dataset

    marker = tmp_path / "ran"
    make_cifar(tmp_path)
    f = tmp_path / "cifar-100-python" / part
    d = pickle.loads(f.read_bytes())
    d[b"x"] = _Payload(marker)
    f.write_bytes(pickle.dumps(d))
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar100", "train", data_root=tmp_path)
    assert not marker.exists()
    assert "nothing in it ran" in str(e.value) and "\n" not in str(e.value) and str(f) in str(e.value)


# ------------------------------------------------------------------------------------------------
# links and the page: no path, nothing rendered from a link
# ------------------------------------------------------------------------------------------------
def test_no_link_or_widget_can_name_a_file():
    from chestlab.dashboard import fields, urlcodec, values
    from chestlab.dashboard.state import DashState
    from chestlab.settings import SettingError, path_keys, schema

    paths = path_keys()
    assert {"data_root", "hierarchy_file", "weights"} <= paths
    state, session = DashState(), {}
    values.init(state, session)
    query = {**{k: "/etc/passwd" for k in paths}, "dataset": "shapes", "backbone": "cnn",
             "data_options": '{"cache_dir": "/tmp/elsewhere", "size": 16}'}
    problems = urlcodec.load_url(state, session, query)
    assert len(problems) == len(paths) + 1, problems
    assert all("path on the server" in p and "command line" in p and "passwd" not in p for p in problems), problems
    assert all(state.values[k] is None for k in paths) and state.values["data_options"] == {}
    assert state.values["dataset"] == "shapes"  # the link's other settings apply
    assert not paths & set(values.shown_keys({**state.values, "dataset": "cub200"}))  # no widget, any dataset
    for k in paths:
        with pytest.raises(SettingError, match="command line"):
            fields.from_widget(schema()[k], "/etc/passwd")
    with pytest.raises(SettingError, match="cache_dir"):
        fields.from_widget(schema()["data_options"], '{"cache_dir": "/tmp/x"}')
    state.values["hierarchy_file"] = "/etc/passwd"  # a value that got in anyway is never used
    assert values.config(state).hierarchy_file is None


def test_text_echoed_from_a_link_is_shown_never_rendered():
    """Keys, values, preset and scenario names of a link are echoed in a code span: parsed as
    CommonMark (the browser's Markdown), the warnings hold no link, image or emphasis."""
    import re

    from markdown_it import MarkdownIt
    from streamlit.testing.v1 import AppTest

    app = Path(__file__).resolve().parents[1] / "app.py"
    at = AppTest.from_file(str(app), default_timeout=120)
    at.session_state["sb_data"] = True
    hostile = {"bogus": "[click me](https://example.org)", "c": "![img](https://example.org/x.png)",
               "preset": "**bold** _em_ :red[red] ``tick", "scenario": "<b>x</b>\n\n[y](https://example.org)",
               "[k](https://example.org)": "1", "hierarchy_file": "/etc/passwd", "cmp": "*x*:1"}
    at.query_params.update(hostile)
    at.run()
    assert not at.exception
    shown = [w.value for w in at.warning if w.value.startswith("Ignored a URL setting")]
    assert len(shown) == len(hostile), shown
    md = MarkdownIt("commonmark")
    for text in shown:
        html = md.render(text)
        assert not re.search(r"<(a|img|strong|em|b|h\d)\b", html), html
        assert "\n" not in text
    joined = " ".join(shown)
    assert "`bogus=[click me](https://example.org)`" in joined and "``preset=**bold** _em_ :red[red] ``tick``" in joined
    assert "/etc/passwd" not in joined and not any(w.key == "w_hierarchy_file" for w in at.text_input)
