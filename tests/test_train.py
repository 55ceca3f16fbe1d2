"""The training engine: events, live settings, determinism, exact resume, atomic checkpoints,
divergence reports, the CLI, and DistributedDataParallel on two gloo processes."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from chestlab import train
from chestlab.evaluate import evaluate_run, format_table
from chestlab.train import CheckpointEvent, EvalEvent, SimilarityEvent, StepEvent, Trainer, TrainConfig, TrainingDiverged

SMALL = dict(steps=30, eval_every=15, eval_max=600, batch_size=32, m_per_class=4, dim_e=32, dim_h=8, M=16)


def small(**kw) -> TrainConfig:
    return TrainConfig.preset("demo-tree", **{**SMALL, **kw})


def test_training_learns_and_emits_every_event(tmp_path):
    tr = Trainer(small(steps=60, eval_every=30), out_dir=tmp_path)
    before = tr.evaluate(("test",)).metrics["test/H/R@1"]
    events = list(tr.run(similarity_every=20))
    kinds = {type(e) for e in events}
    assert kinds == {StepEvent, EvalEvent, SimilarityEvent, CheckpointEvent}
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [e.step for e in steps] == list(range(1, 61))
    assert set(steps[0].components) == {"l_h", "l_e", "l_hyphc"} and set(steps[0].lrs) == {"backbone", "head", "proxies"}
    evals = [e for e in events if isinstance(e, EvalEvent)]
    assert [e.step for e in evals] == [30, 60]
    after = evals[-1].metrics["test/H/R@1"]
    assert after > before + 0.1, (before, after)
    for key in ("test/H/R@1", "test/E/R@1", "test/H/MAP@R", "test/E/MAP@R", "train/H/R@1", "train/E/MAP@R"):
        assert 0 <= evals[-1].metrics[key] <= 1
    sim = next(e for e in events if isinstance(e, SimilarityEvent))
    assert sim.h_pos.shape == (32,) and sim.h_neg.shape == (32 * (tr.train_set.num_classes - 1),)
    # logs: JSONL of every event, CSV per numeric kind, config, checkpoint
    recs = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "step" for r in recs) == 60 and sum(r["kind"] == "eval" for r in recs) == 2
    assert (tmp_path / "steps.csv").read_text().count("\n") == 61
    assert "test/H/R@1" in (tmp_path / "eval.csv").read_text().splitlines()[0]
    assert json.loads((tmp_path / "config.json").read_text())["dataset"] == "tree"
    assert (tmp_path / "checkpoint.pt").exists()


def test_live_settings_take_effect_at_the_next_step():
    tr = Trainer(small())
    tr.train_step()
    tr.set(c=0.1, r=1.0, delta_h=5.0, lr=1e-4, tau=0.0)
    assert tr.model.head.c == 0.1 and tr.criterion.c == 0.1 and tr.criterion.delta_h == 5.0
    assert {g["name"]: g["lr"] for g in tr.optimizer.param_groups}["backbone"] == 1e-4
    ev = tr.train_step()
    assert ev.components["l_hyphc"] == 0.0
    # the hyperbolic embeddings now live in the smaller ball of radius tanh(sqrt(c) r) / sqrt(c)
    emb = tr.embed("test", max_n=100)
    assert float(emb["x_h"].norm(dim=-1).max()) <= (torch.tanh(torch.tensor(0.1**0.5 * 1.0)) / 0.1**0.5) + 1e-5
    with pytest.raises(ValueError, match="K.*cannot change during training"):
        tr.set(K=3)
    with pytest.raises(ValueError, match="c >= 0"):
        tr.set(c=-1.0)
    with pytest.raises(ValueError, match="K >= 2"):
        Trainer(small(K=1, tau=0.5))


def test_deterministic_for_a_seed():
    a = [e.loss for e in Trainer(small()).run(10) if isinstance(e, StepEvent)]
    b = [e.loss for e in Trainer(small()).run(10) if isinstance(e, StepEvent)]
    c = [e.loss for e in Trainer(small(seed=1)).run(10) if isinstance(e, StepEvent)]
    assert a == b and a != c


def test_resume_gives_exactly_the_uninterrupted_run(tmp_path):
    full = Trainer(small(), out_dir=tmp_path / "full")
    full_events = list(full.run())
    first = Trainer(small(), out_dir=tmp_path / "cut")
    list(first.run(steps=12))  # ends with a checkpoint at step 12
    resumed = Trainer(small(), out_dir=tmp_path / "cut", resume=True)
    assert resumed.step_count == 12
    rest = list(resumed.run())
    losses_full = [e.loss for e in full_events if isinstance(e, StepEvent)][12:]
    losses_rest = [e.loss for e in rest if isinstance(e, StepEvent)]
    assert losses_full == losses_rest
    assert [e.metrics for e in full_events if isinstance(e, EvalEvent)][-1] == [e.metrics for e in rest if isinstance(e, EvalEvent)][-1]
    for p, q in zip(full.system.parameters(), resumed.system.parameters()):
        assert torch.equal(p, q)
    # the resumed run's log holds each step once
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "events.jsonl").read_text().splitlines() if '"step"' in x and '"kind": "step"' in x]
    assert steps == list(range(1, 31))


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    tr = Trainer(small(), out_dir=tmp_path)
    list(tr.run(steps=3))
    good = (tmp_path / "checkpoint.pt").read_bytes()

    def broken_save(obj, f, *a, **k):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        tr.save_checkpoint()
    assert (tmp_path / "checkpoint.pt").read_bytes() == good


def test_divergence_is_reported_with_the_step_and_the_model_kept(tmp_path):
    tr = Trainer(small(), out_dir=tmp_path)
    list(tr.run(steps=4))
    before = [p.detach().clone() for p in tr.system.parameters()]
    tr.set(lambda_h=1e30, delta_h=1e10)  # logits overflow float32 (each within its bound)
    with pytest.raises(TrainingDiverged, match=r"diverged at step 5: the loss became .*Likely cause: .*lambda") as err:
        tr.train_step()
    assert err.value.step == 4
    assert all(torch.equal(p, q) for p, q in zip(before, tr.system.parameters()))
    # the diagnosis names the geometry when points may reach the float32 boundary
    tr2 = Trainer(small(r=float("inf"), c=4.0))
    tr2.set(lambda_h=1e30, delta_h=1e10)
    with pytest.raises(TrainingDiverged, match=r"c = 4 and r = inf.*lower r"):
        tr2.train_step()


@pytest.mark.parametrize("loss", ["pair_ce", "mix"])
def test_pairwise_baselines_train(loss):
    for space in ("sphere", "hyperbolic"):
        tr = Trainer(small(loss=loss, pair_space=space))
        evs = [e for e in tr.run(5) if isinstance(e, StepEvent)]
        assert all(torch.isfinite(torch.tensor(e.loss)) for e in evs) and tr.proxies() is None
        assert set(evs[0].components) == {loss}


def test_eta_h_zero_uses_the_head_output_as_euclidean_embedding():
    tr = Trainer(small(eta_h=0.0, tau=0.0))
    assert tr.model.euclid_space == "head" and tr.criterion.euclid_space == "head"
    e = tr.embed("test", max_n=10)
    assert e["x_e"].shape[1] == 8  # D_H, not D_E = 32
    ev = tr.train_step()
    assert ev.components["l_h"] == 0.0 and ev.components["l_e"] > 0
    # the rule follows eta_h live (euclid_space="auto")
    tr.set(eta_h=1.0)
    assert tr.model.euclid_space == "backbone" and tr.embed("test", max_n=10)["x_e"].shape[1] == 32
    tr.train_step()
    tr.set(eta_h=0.0)
    assert tr.criterion.euclid_space == "head"
    fixed = Trainer(small(eta_h=0.0, tau=0.0, euclid_space="backbone"))
    fixed.set(eta_h=1.0)
    assert fixed.model.euclid_space == "backbone"


def test_cli_help_train_evaluate_and_interrupt(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    for word in ("delta_h", "gamma_hyp", "Poincaré", "demo-tree", "cub200", "--resume"):
        assert word in out
    run = tmp_path / "run"
    assert train.main(["--preset", "demo-tree", "--steps", "20", "--out", str(run), "--quiet", "--set", "eval_every=10", "--set", "dim_h=4"]) == 0
    assert (run / "checkpoint.pt").exists()
    res = evaluate_run(str(run))
    assert res["step"] == 20 and set(res) >= {"H", "E"}
    table = format_table(res)
    assert "hyperbolic space" in table and "MAP@R" in table
    assert train.main(["--set", "delta_x=1"]) == 2
    assert "delta_x" in capsys.readouterr().err
    assert train.main(["--steps", "5", "--quiet", "--set", "c=-1"]) == 2

    # Ctrl-C: the checkpoint of the last finished step is saved and the run resumes from it
    original = Trainer.train_step

    def interrupted(self):
        if self.step_count == 7:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    run2 = tmp_path / "run2"
    assert train.main(["--steps", "20", "--out", str(run2), "--quiet"]) == 130
    assert torch.load(run2 / "checkpoint.pt", weights_only=True)["step"] == 7
    monkeypatch.setattr(Trainer, "train_step", original)
    assert train.main(["--steps", "20", "--out", str(run2), "--quiet", "--resume"]) == 0
    assert torch.load(run2 / "checkpoint.pt", weights_only=True)["step"] == 20


# ------------------------------------------------------------------------------------------------
# DistributedDataParallel on CPU (gloo), two processes
# ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        tr = Trainer(small(steps=6, eval_every=0, eval_max=200, device="cpu"), out_dir=Path(out) / "run")
        assert tr.distributed and tr.world == 2
        list(tr.run())
        flat = torch.cat([p.detach().flatten() for p in tr.system.parameters()])
        torch.save(flat, Path(out) / f"params{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_two_gloo_processes_stay_in_sync(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    p0, p1 = torch.load(tmp_path / "params0.pt"), torch.load(tmp_path / "params1.pt")
    assert torch.equal(p0, p1)
    single = Trainer(small(steps=6, eval_every=0, eval_max=200))
    list(single.run())
    flat = torch.cat([p.detach().flatten() for p in single.system.parameters()])
    assert not torch.equal(flat, p0)  # two ranks saw two batches per step: a different run
    run = tmp_path / "run"
    assert (run / "checkpoint.pt").exists()
    recs = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "step" for r in recs) == 6  # rank 0 alone logs


@pytest.mark.parametrize("workers", [0, 1])
def test_image_benchmark_layout_trains_through_dataloader_workers(tmp_path, workers):
    from chestlab.data.fake import make_fake_cub

    make_fake_cub(tmp_path, num_classes=110, per_class=3, size=40)
    cfg = TrainConfig(dataset="cub200", data_root=str(tmp_path), data_options={"image_size": 32}, backbone="cnn",
                      dim_e=16, dim_h=4, K=2, M=8, batch_size=8, m_per_class=2, steps=4, eval_every=0,
                      eval_train=False, workers=workers, ks=(1, 2))
    tr = Trainer(cfg)
    assert not tr._feed.in_memory and tr.train_set.num_classes == 100 and tr.test_set.num_classes == 10
    events = list(tr.run())
    assert [e.step for e in events if isinstance(e, StepEvent)] == [1, 2, 3, 4]
    assert 0 <= [e for e in events if isinstance(e, EvalEvent)][-1].metrics["test/H/R@1"] <= 1


def test_inshop_is_evaluated_query_to_gallery(tmp_path, monkeypatch):
    from chestlab import metrics
    from chestlab.data.fake import make_fake_inshop

    make_fake_inshop(tmp_path, train_items=12, test_items=6, per_item=4)
    calls = []
    real = metrics.retrieval_metrics

    def spy(emb, labels, ks, metric, c=None, **kw):
        calls.append((len(emb), len(kw.get("reference", [])), tuple(ks)))
        return real(emb, labels, ks, metric, c, **kw)

    monkeypatch.setattr(metrics, "retrieval_metrics", spy)
    cfg = TrainConfig(dataset="inshop", data_root=str(tmp_path), data_options={"image_size": 32}, backbone="cnn",
                      dim_e=16, dim_h=4, K=2, M=8, batch_size=8, m_per_class=2, steps=2, eval_every=0,
                      eval_train=False, ks=(1, 10, 20))
    tr = Trainer(cfg)
    ev = [e for e in tr.run() if isinstance(e, EvalEvent)][-1]
    assert calls == [(12, 12, (1, 10)), (12, 12, (1, 10))]  # 6 items x 2 queries vs 6 x 2 gallery images, both spaces
    assert set(ev.metrics) == {f"test/{s}/{m}" for s in "HE" for m in ("R@1", "R@10", "MAP@R")}


@pytest.mark.parametrize("preset", ["demo-tree", "demo-shapes", "demo-digits"])
def test_every_demo_preset_builds_and_steps(preset):
    tr = Trainer(TrainConfig.preset(preset, eval_max=200))
    ev = tr.train_step()
    assert ev.step == 1 and torch.isfinite(torch.tensor(ev.loss))
    assert 0 <= tr.evaluate(("test",)).metrics["test/H/R@1"] <= 1


def test_paper_presets_follow_table_1():
    table1 = {  # batch, steps, lr, proxy lr, K, M, (delta_h, delta_e)
        "cub200": (200, 120, 3e-5, 1e-2, 10, 100, (20, 1)),
        "cars196": (198, 1800, 1e-5, 1e-2, 10, 98, (1, 5)),
        "inshop": (100, 30000, 1e-5, 1e-1, 2, 3997, (10, 5)),
        "sop": (75, 50000, 1e-5, 1e-1, 2, 11318, (1, 5)),
    }
    for name, (b, steps, lr, plr, K, M, (dh, de)) in table1.items():
        cfg = TrainConfig.preset(name)
        assert (cfg.batch_size, cfg.steps, cfg.lr, cfg.lr_proxy, cfg.K, cfg.M, cfg.delta_h, cfg.delta_e) == (b, steps, lr, plr, K, M, dh, de)
        assert (cfg.c, cfg.r, cfg.backbone, cfg.dim_h, cfg.tau) == (0.5, 2.3, "vit_small_patch16_224", 384, 0.5)
