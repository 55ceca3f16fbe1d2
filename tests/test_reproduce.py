"""The reproduction scripts: the ablation grid matches Tables 6-7, its outputs, crash-resume, each
figure sub-command, ``tables``, and clear errors for missing benchmark data. Tiny steps throughout."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from chestlab import paper, reproduce
from chestlab.reproduce import ABLATION_ROWS, PAPER_R1, TRAININGS, grid_configs, main
from chestlab.reproduce import papers as repro_papers
from chestlab.viz import paper as vpaper
from chestlab.reproduce import runner

TINY = ["--steps", "6", "--quiet"]


def _pngs_ok(*paths: Path) -> None:
    for p in paths:
        assert p.exists() and p.stat().st_size > 1000, p
        if p.suffix == ".png":
            assert p.read_bytes()[:4] == b"\x89PNG"
        if p.suffix == ".pdf":
            assert p.read_bytes()[:4] == b"%PDF"


def test_grid_matches_the_papers_rows():
    got = [(r.name, r.space, r.eta_h, r.eta_e, r.multi, r.tau) for r in ABLATION_ROWS]
    assert got == [
        ("H only", "H", 1, 0, False, 0.0), ("E only", "E", 0, 1, False, 0.0),
        ("H+E (E)", "E", 1, 1, False, 0.0), ("H+E (H)", "H", 1, 1, False, 0.0),
        ("H+Multi", "H", 1, 0, True, 0.0), ("E+Multi", "E", 0, 1, True, 0.0),
        ("H+E+Multi (E)", "E", 1, 1, True, 0.0), ("H+E+Multi (H)", "H", 1, 1, True, 0.0),
        ("H+Multi+HypHC", "H", 1, 0, True, 0.5), ("CHEST (E)", "E", 1, 1, True, 0.5), ("CHEST (H)", "H", 1, 1, True, 0.5),
    ]
    # rows evaluated in both spaces share one training: 8 trainings per seed
    assert len(TRAININGS) == 8
    assert PAPER_R1["cars196"] == (84.5, 83.1, 88.3, 88.8, 85.2, 83.4, 88.4, 89.0, 85.0, 88.5, 89.1)
    assert len(PAPER_R1["inshop"]) == 11 and PAPER_R1["inshop"][-1] == 93.5
    for grid, K in (("cars196", 10), ("inshop", 2), ("toy", 10)):
        plans = grid_configs(grid, seeds=(0, 1))
        assert len(plans) == 16 and len({p.run_id for p in plans}) == 16
        by = {p.training: p.config for p in plans if p.seed == 1}
        assert (by["CHEST"].eta_h, by["CHEST"].eta_e, by["CHEST"].K, by["CHEST"].tau, by["CHEST"].seed) == (1, 1, K, 0.5, 1)
        assert (by["E"].eta_h, by["E"].K, by["E"].tau) == (0, 1, 0.0)
        assert by["H+Multi+HypHC"].eta_e == 0 and by["H+Multi+HypHC"].tau == 0.5
    # the real grids keep Table 1's settings (preset), e.g. Cars196's margins and steps
    cars = grid_configs("cars196", seeds=(0,))[0].config
    assert (cars.batch_size, cars.steps, cars.delta_h, cars.delta_e, cars.backbone) == (198, 1800, 1.0, 5.0, "vit_small_patch16_224")


def test_ablation_writes_outputs_and_resumes_after_a_crash(tmp_path, monkeypatch):
    out = tmp_path / "abl"
    built = []
    real_trainer = runner.Trainer  # train_run builds its Trainer in chestlab.reproduce.runner

    class CountingTrainer(real_trainer):
        def __init__(self, *a, **kw):
            built.append(Path(kw["out_dir"]).name + (" (resumed)" if kw.get("resume") else ""))
            if len(built) == 3 and crash:
                raise RuntimeError("simulated crash")
            super().__init__(*a, **kw)

    monkeypatch.setattr(runner, "Trainer", CountingTrainer)
    args = ["ablation", "--grid", "toy", "--seeds", "0", "--only", "H", "E", "CHEST", "--out", str(out), *TINY]
    crash = True
    assert main(args) == 2  # the crash is reported, the first two runs are saved
    assert sorted(p.name for p in (out / "runs").iterdir() if (p / "result.json").exists()) == ["e_seed0", "h_seed0"]
    assert len(list(csv.DictReader(open(out / "ablation.csv")))) == 4  # saved at once: 2 runs x 2 spaces
    crash = False
    built.clear()
    assert main(args) == 0
    assert built == ["chest_seed0"]  # only the unfinished run trained
    built.clear()
    assert main(args) == 0 and built == []  # nothing left to do
    # killed after the last checkpoint but before result.json: resumed from the checkpoint, not retrained
    (out / "runs" / "chest_seed0" / "result.json").unlink()
    assert main(args) == 0 and built == ["chest_seed0 (resumed)"]
    assert json.loads((out / "runs" / "chest_seed0" / "result.json").read_text())["step"] == 6

    rows = list(csv.DictReader(open(out / "ablation.csv")))
    assert len(rows) == 6 and {r["space"] for r in rows} == {"H", "E"}
    assert {r["table_row"] for r in rows} >= {"H only", "E only", "CHEST (E)", "CHEST (H)"}
    assert all(0 <= float(r["R@1"]) <= 1 for r in rows)
    md = (out / "ablation.md").read_text()
    assert "| Losses | Space | η_H | η_E | K | τ | R@1 (ours) |" in md and "R@1 (paper)" not in md
    assert md.count("\n| ") == 12  # header + 11 rows, untrained rows shown as "–"
    assert "| CHEST loss | H | 1 | 1 | 10 | 0.5 |" in md
    _pngs_ok(out / "ablation.png")
    # a finished run with other settings is refused, not silently mixed in
    assert main(["ablation", "--grid", "toy", "--seeds", "0", "--only", "H", "--out", str(out), "--steps", "7", "--quiet"]) == 2


def test_summary_and_markdown_with_seeds_and_paper_column():
    results = []
    for seed, r1 in ((0, 0.80), (1, 0.90)):
        for t in TRAININGS:
            results.append({"training": t, "seed": seed, "metrics": {f"test/{s}/{m}": r1 for s in "HE" for m in ("R@1", "MAP@R")}})
    summary = reproduce.summarize("cars196", results)
    assert [s["name"] for s in summary] == [r.name for r in ABLATION_ROWS]
    assert summary[0]["mean"] == pytest.approx(0.85) and summary[0]["std"] == pytest.approx(0.0707, abs=1e-3)
    md = reproduce.ablation_markdown("cars196", summary, seeds=(0, 1), steps=1800, K_multi=10)
    assert "| Hyperbolic | H | 1 | 0 | 1 | 0.0 | 85.0 ± 7.1 | 85.0 ± 7.1 | 84.5 |" in md
    assert md.strip().endswith("| CHEST loss | H | 1 | 1 | 10 | 0.5 | 85.0 ± 7.1 | 85.0 ± 7.1 | 89.1 |")
    fig = vpaper.ablation_bars(summary, title="cars196")  # paper's R@1 drawn as diamonds
    assert len(fig.axes[0].collections) >= 1 and fig.axes[0].get_legend() is not None


@pytest.mark.parametrize("grid, missing", [("cars196", "cars_annos.mat"), ("inshop", "list_eval_partition.txt")])
def test_real_grid_without_data_names_what_is_missing(tmp_path, capsys, grid, missing, monkeypatch):
    monkeypatch.delenv("CHESTLAB_DATA_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./data here
    assert main(["ablation", "--grid", grid, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--data-root" in err and missing in err
    assert main(["ablation", "--grid", grid, "--data-root", str(tmp_path / "nowhere"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere") in err and missing in err
    assert not (tmp_path / "o").exists()  # failed before any training


def test_fig3_writes_png_and_pdf(tmp_path):
    assert main(["fig3", "--out", str(tmp_path), "--steps", "5", "--quiet"]) == 0
    _pngs_ok(tmp_path / "fig3.png", tmp_path / "fig3.pdf")
    assert "h_e: median S_H positive" in (tmp_path / "fig3.txt").read_text()
    assert (tmp_path / "runs" / "fig3_h_seed0" / "similarity.npz").exists()


def test_fig2_writes_disks_and_retrieval_grid(tmp_path):
    assert main(["fig2", "--out", str(tmp_path), "--preset", "demo-tree", "--steps", "5", "--projection", "tangent_pca",
                 "--max-n", "300", "--queries", "2", "--quiet"]) == 0
    _pngs_ok(*(tmp_path / f"fig2_{n}.{e}" for n in ("disk_train", "disk_test", "retrieval") for e in ("png", "pdf")))


def test_fig2_tiles_show_images(tmp_path):
    from chestlab.data import load_dataset
    from chestlab.data.fake import make_fake_cub

    for ds in (load_dataset("shapes", "test", seed=0),
               load_dataset("cub200", "test", data_root=make_fake_cub(tmp_path, num_classes=102, per_class=1, size=16).parent)):
        img = repro_papers._tile(ds, 0)
        assert img.ndim == 3 and img.shape[-1] == 3 and 0 <= img.min() and img.max() <= 1
    assert isinstance(repro_papers._tile(load_dataset("tree", "test", seed=0), 0), str)


def test_hardneg_figures(tmp_path):
    assert main(["hardneg-fig2", "--out", str(tmp_path), "--t", "0.1", "0.5", "--c", "0.1", "--steps", "5", "--quiet"]) == 0
    _pngs_ok(tmp_path / "hardneg_fig2.png", tmp_path / "hardneg_fig2.pdf")
    rows = list(csv.DictReader(open(tmp_path / "hardneg_fig2.csv")))
    assert {(r["geometry"], r["t"]) for r in rows} == {(g, t) for g in ("sphere", "hyperbolic c = 0.1") for t in ("0.1", "0.5")}
    assert all(0 <= float(r["R@1"]) <= 1 for r in rows)
    assert main(["hardneg-fig3", "--out", str(tmp_path), "--steps", "5", "--quiet"]) == 0
    assert main(["hardneg-fig3", "--out", str(tmp_path / "rnd"), "--random", "--quiet"]) == 0
    _pngs_ok(tmp_path / "hardneg_fig3.png", tmp_path / "hardneg_fig3.pdf", tmp_path / "rnd" / "hardneg_fig3.png")


def test_tables_prints_tables_2_to_5_layout(tmp_path, capsys):
    main(["fig3", "--out", str(tmp_path), "--steps", "4", "--quiet"])
    capsys.readouterr()
    assert main(["tables", str(tmp_path / "runs" / "fig3_h_seed0")]) == 0
    out = capsys.readouterr().out
    assert "| tree (test, step 4) | R@1 | R@2 | R@4 | R@8 | MAP@R |" in out
    assert "CHEST, Euclidean space (x^E)" in out and "CHEST, hyperbolic space (x^H)" in out
    assert main(["tables", str(tmp_path)]) == 0  # every run of an output folder
    assert capsys.readouterr().out.count("| tree (test") == 2
    assert main(["tables", str(tmp_path / "nothing")]) == 2


def test_help_of_every_subcommand(capsys):
    for cmd in ("ablation", "fig3", "fig2", "hardneg-fig2", "hardneg-fig3", "tables", "hyphc", "hier-ratios", "unsup-pretrained"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
    assert "H+Multi+HypHC" in capsys.readouterr().out


def test_package_keeps_the_old_modules_names():
    old_all = {"AblationRow", "ABLATION_ROWS", "GRIDS", "PAPER_R1", "GridSpec", "RunMismatch", "grid_configs",
               "run_ablation", "summarize", "ablation_markdown", "train_run", "main"}
    assert old_all | {"TRAININGS"} <= set(reproduce.__all__)
    assert all(hasattr(reproduce, name) for name in reproduce.__all__)
    # the paper's rows and numbers are chestlab.paper's, re-exported (same objects)
    for name in ("ABLATION_ROWS", "TRAININGS", "PAPER_R1", "AblationRow"):
        assert getattr(reproduce, name) is getattr(paper, name)
    assert reproduce.train_run is runner.train_run and reproduce.fig2 is repro_papers.fig2


def test_python_dash_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "chestlab.reproduce", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "python -m chestlab.reproduce ablation --grid toy" in res.stdout and "hardneg-fig3" in res.stdout


def test_dims_and_hier_commands_write_their_tables(tmp_path):
    """The hierarchy experiments at toy size: every run is scored in its own space with R@1, super-class
    R@1, mistake severity and cophenetic correlation, the tables hold one row per group, and dims pairs
    the spaces by seed (H − E ± standard error)."""
    from chestlab.reproduce.hierarchy import dims, hier, paired_differences

    rows = dims(tmp_path / "dims", datasets=("tree",), dims=(2, 4), seeds=(0,), steps=3, progress=False)
    assert [(r["D"], r["space"]) for r in rows] == [(2, "H"), (2, "E"), (4, "H"), (4, "E")]
    assert all(0 <= r["R@1"] <= 1 and 0 <= r["super_R@1"] <= 1 and r["severity"] >= 0 for r in rows)
    md = (tmp_path / "dims" / "dims.md").read_text()
    assert md.count("\n| tree |") == 4 + 2 and (tmp_path / "dims" / "dims.png").stat().st_size > 10_000
    assert "Paired by seed, H − E" in md and "super-class R@1 (%)" in md
    # like with like: the same network and head width, only the geometry differs
    cfgs = {s: json.loads((tmp_path / "dims" / "tree" / f"{s}_D4_seed0" / "result.json").read_text())["config"]
            for s in "HE"}
    assert cfgs["H"]["dim_h"] == cfgs["E"]["dim_h"] == 4 and cfgs["H"]["dim_e"] == cfgs["E"]["dim_e"]
    assert (cfgs["H"]["eta_e"], cfgs["E"]["eta_h"], cfgs["E"]["euclid_space"]) == (0.0, 0.0, "head")
    # a second seed at D = 4 (seed 0 is read back): the paired differences H − E over the two seeds
    two = dims(tmp_path / "dims", datasets=("tree",), dims=(4,), seeds=(0, 1), steps=3, progress=False)
    (d,) = paired_differences(two, ("dataset", "D"))
    h, e = ({r["seed"]: r for r in two if r["space"] == s} for s in "HE")
    dd = [h[s]["R@1"] - e[s]["R@1"] for s in (0, 1)]  # the oracle: by hand; standard error = std / sqrt(n)
    assert d["R@1"] == pytest.approx(sum(dd) / 2) and d["R@1 n"] == 2
    assert d["R@1 se"] == pytest.approx(abs(dd[0] - dd[1]) / 2)
    assert (tmp_path / "dims" / "dims_paired.csv").read_text().count("\n") == 2
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from chestlab.reproduce.hierarchy import METRICS, summary_table
    from chestlab.viz.reproduce import dims_figure

    for spread in ((2, 4), (2, 8, 64)):  # the x axis labels exactly the dimensions run, no log-axis minor labels
        fig = dims_figure(summary_table([{**r, "D": d} for d in spread for r in rows if r["D"] == 2], ("dataset", "D", "space")),
                          METRICS)
        FigureCanvasAgg(fig).draw()
        for ax in fig.axes:
            assert [t.get_text() for t in ax.get_xticklabels()] == [str(d) for d in spread]
            assert not [t.get_text() for t in ax.get_xminorticklabels() if t.get_text()]
    again = dims(tmp_path / "dims", datasets=("tree",), dims=(2, 4), seeds=(0,), steps=3, progress=False)
    assert again == rows  # finished runs are read back, not retrained
    # two runs at once, in spawned single-thread processes: the same results as one after the other
    pooled = dims(tmp_path / "dims2", datasets=("tree",), dims=(2, 4), seeds=(0,), steps=3, progress=False, jobs=2)
    assert pooled == rows
    assert main(["dims", "--out", str(tmp_path / "dims3"), "--jobs", "0", "--quiet"]) == 2  # refused, one line
    h = hier(tmp_path / "hier", seeds=(0,), steps=3, progress=False)
    assert {r["run"] for r in h} == {"untrained", "CHEST", "CHEST + HIER", "unsupervised"}
    assert main(["dims", "--out", str(tmp_path / "dims"), "--datasets", "tree", "--dims", "2", "4", "--seeds", "0",
                 "--steps", "3", "--quiet"]) == 0


def test_paired_statistics_against_numpy_and_scipy():
    """The standard error is scipy's sem; paired differences match seed by seed, whatever the row order."""
    import numpy as np
    from scipy import stats

    from chestlab.reproduce.paired import format_pm, mean_se, paired_differences

    v = [0.3, 0.5, 0.2, 0.9, 0.4]
    m, se = mean_se(v)
    assert m == pytest.approx(np.mean(v)) and se == pytest.approx(stats.sem(v))
    assert mean_se([1.0, float("nan")])[0] == 1.0 and np.isnan(mean_se([1.0])[1]) and np.isnan(mean_se([])[0])
    base = [{"seed": s, "x": x} for s, x in zip(range(5), v)]
    arm = [{"seed": s, "x": x + d} for s, x, d in zip(range(4, -1, -1), v[::-1], (0.1, -0.2, 0.3, 0.05, 0.0))]
    d = paired_differences(base, arm, "x")
    want = [0.0, 0.05, 0.3, -0.2, 0.1]  # by seed 0..4
    assert d["seeds"] == [0, 1, 2, 3, 4] and d["deltas"] == pytest.approx(want) and d["up"] == 3 and d["n"] == 5
    assert d["se"] == pytest.approx(stats.sem(want)) and d["mean"] == pytest.approx(np.mean(want))
    assert paired_differences(base, arm[:2], "x")["n"] == 2  # only the seeds both arms have
    assert format_pm(0.0123, 0.0045, 100, ".1f", sign=True) == "+1.2 ± 0.4" and format_pm(float("nan"), 0.1) == "—"


def test_regulariser_studies_write_their_tables(tmp_path, capsys):
    """hyphc, hier-ratios and unsup-pretrained at toy size: one row per run (and space), the proxies' tree
    and Eq. 8 similarities measured, paired changes in the tables, finished runs read back."""
    from chestlab.reproduce import regularisers as reg

    small = dict(data_options={"branching": [2, 2, 2], "samples_per_class": 8}, dim_e=8, dim_h=4, batch_size=16,
                 eval_max=None)
    rows = reg.hyphc(tmp_path / "hc", seeds=(0, 1), radii=(1.0,), taus=(0.0, 2.0), steps=3, progress=False, **small)
    assert [(r["tau"], r["seed"]) for r in rows] == [(0.0, 0), (0.0, 1), (2.0, 0), (2.0, 1)]
    assert all(r["share"] == 0 for r in rows[:2]) and all(0 < r["share"] < 1 for r in rows[2:])
    assert all(0 < r["omega q10"] <= r["omega median"] <= r["omega q90"] <= 1 and 0 <= r["class purity"] <= 1 for r in rows)
    md = (tmp_path / "hc" / "hyphc.md").read_text()
    assert "| 1 | 2 | 2 |" in md and "of 2 up)" in md
    assert reg.hyphc(tmp_path / "hc", seeds=(0, 1), radii=(1.0,), taus=(0.0, 2.0), steps=3, progress=False, **small) == rows

    h = reg.hier_ratios(tmp_path / "hr", seeds=(0,), steps=2, progress=False, arms=("CHEST", "CHEST + HIER (authors' ratios)"),
                        hier_proxies=8, hier_topk=2, **small)
    assert {(r["arm"], r["space"]) for r in h} == {(a, s) for a in ("CHEST", "CHEST + HIER (authors' ratios)") for s in "HE"}
    assert all(0 <= r["R@1"] <= 1 and 0 <= r["super_R@1"] <= 1 for r in h)
    assert "CHEST + HIER (authors' ratios) − CHEST" in (tmp_path / "hr" / "hier_ratios.md").read_text()

    u = reg.unsup_pretrained(tmp_path / "up", seeds=(0,), pretrain_steps=2, steps=2, progress=False, unsup_levels=(2, 4),
                             **small)
    assert [r["arm"] for r in u[::2]] == ["untrained", "unsupervised", "pretrained", "pretrained + unsupervised"]
    assert "pretrained + unsupervised − pretrained" in (tmp_path / "up" / "unsup_pretrained.md").read_text()
    assert main(["hyphc", "--taus", "0.5", "0", "--out", str(tmp_path / "x"), "--quiet"]) == 2  # tau = 0 must come first
    assert "start with 0" in capsys.readouterr().err
    for argv in (["unsup-pretrained", "--pretrain-steps", "100000000"], ["hyphc", "--seeds", "-1"],
                 ["hier-ratios", "--steps", "0"]):  # sizes bounded as every setting's
        with pytest.raises(SystemExit) as ex:
            main(argv)
        assert ex.value.code == 2 and "allowed:" in capsys.readouterr().err


def test_proxy_similarities_against_geoopt():
    """Eq. 8's ω = e^(−d_H) between proxies: quantiles over the distinct pairs and medians within and
    across classes, against geoopt's distance (float64, k = −c) and numpy's quantiles."""
    gm = pytest.importorskip("geoopt.manifolds.stereographic.math")
    import numpy as np
    import torch

    from chestlab.reproduce.regularisers import proxy_similarities

    c, C, K = 0.7, 4, 3
    p = 0.2 * torch.randn(C, K, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    flat = p.reshape(C * K, 5)
    d = gm.dist(flat[:, None], flat[None, :], k=torch.tensor(-c, dtype=torch.float64)).numpy()
    i, j = np.triu_indices(C * K, 1)
    w, same = np.exp(-d[i, j]), i // K == j // K
    got = proxy_similarities(p, c)
    want = {"omega q10": np.quantile(w, 0.1), "omega median": np.median(w), "omega q90": np.quantile(w, 0.9),
            "omega same": np.median(w[same]), "omega other": np.median(w[~same])}
    assert got == pytest.approx(want, rel=1e-9)
    assert np.isnan(proxy_similarities(p[:, :1], c)["omega same"])  # K = 1: no pair of one class
