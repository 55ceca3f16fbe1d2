"""The unsupervised loss ``unsup`` (CVPR 2021): average-linkage pseudo-labels against a naive
agglomerative clustering, similarity degrees and the multi-level triplet loss against loops, its
gradient against finite differences, the refresh schedule, exact resume (the pseudo-labels travel
with the checkpoint), and that no label is ever used — neither by the loss nor for the batches."""

from __future__ import annotations

import copy
import itertools
import json

import pytest
import torch

from chestlab import paper, poincare, train
from chestlab.engine import build
from chestlab.losses import LossContext, get_loss
from chestlab.losses.unsup import (
    UnsupLoss,
    cut_levels,
    hierarchical_triplet_loss,
    poincare_average_linkage,
    pseudo_labels,
    similarity_degree,
)
from chestlab.models import HyperbolicHead
from chestlab.settings import TrainConfig, check

from _helpers import run_records, stopped_and_resumed

TINY = dict(batch_size=16, dim_e=8, dim_h=4, eval_max=120, eval_train=False, threads=1, unsup_levels=(3, 6, 12),
            unsup_max_n=300)  # 300 of the 1920 training samples are clustered: fast


# ------------------------------------------------------------------------------------------------
# clustering
# ------------------------------------------------------------------------------------------------
def _naive_average_linkage(x, c, counts):
    """Merge the two clusters with the smallest mean pairwise d_H until one is left; the partition
    at each number of clusters in ``counts``."""
    n = len(x)
    d = [[float(poincare.dist(x[a], x[b], c)) for b in range(n)] for a in range(n)]
    clusters = [[i] for i in range(n)]
    found = {}
    while True:
        if len(clusters) in counts:
            found[len(clusters)] = {frozenset(cl) for cl in clusters}
        if len(clusters) == 1:
            return found
        best = min(itertools.combinations(range(len(clusters)), 2),
                   key=lambda ab: sum(d[u][v] for u in clusters[ab[0]] for v in clusters[ab[1]])
                   / (len(clusters[ab[0]]) * len(clusters[ab[1]])))
        a, b = best
        clusters = [cl for i, cl in enumerate(clusters) if i not in best] + [clusters[a] + clusters[b]]


def _partition(col):
    out = {}
    for i, v in enumerate(col.tolist()):
        out.setdefault(v, set()).add(i)
    return {frozenset(s) for s in out.values()}


def test_pseudo_labels_equal_a_naive_average_linkage_in_the_ball():
    torch.manual_seed(0)
    x = poincare.expmap0(torch.randn(14, 3) * 1.5, 0.8).double()
    levels = (6, 2, 4)  # any order: coarse to fine in the output
    codes = pseudo_labels(x, 0.8, levels)
    want = _naive_average_linkage(x, 0.8, set(levels))
    assert codes.shape == (14, 3)
    for col, n in zip(codes.T, sorted(levels)):
        assert _partition(col) == want[n]
    # the levels are nested: once two samples part (coarse to fine), they stay apart
    for a, b in itertools.combinations(range(14), 2):
        shared = (codes[a] == codes[b]).tolist()
        assert shared == sorted(shared, reverse=True), (a, b, shared)
    # and the Poincaré distance matters: the Euclidean dendrogram of the same points differs here
    from scipy.cluster.hierarchy import linkage

    eu = cut_levels(linkage(x.numpy(), "average"), levels)
    assert any(_partition(a) != _partition(b) for a, b in zip(eu.T, codes.T))
    assert poincare_average_linkage(x, 0.8).shape == (13, 4)


def test_refresh_clusters_a_subset_and_gives_the_others_their_nearest_codes():
    torch.manual_seed(4)
    head = HyperbolicHead(5, 3, c=0.6)
    loss = get_loss("unsup").build(TrainConfig(loss="unsup", unsup_levels=(2, 5), unsup_max_n=20).section(),
                                   LossContext(4, 5, 3, head, seed=1))
    x = head(torch.randn(50, 5)).detach()
    index = torch.arange(10, 60)  # the embedded samples' rows in a training set of 70
    codes = loss.refresh(x, index, 70, step=3)
    assert codes.shape == (70, 2) and bool((codes[:10] == -1).all()) and bool((codes[60:] == -1).all())
    rows = codes[index]
    assert bool((torch.cdist(x, x) + torch.eye(50) > 0).all())  # distinct points: a unique nearest one
    # the clustered subset: 20 rows whose codes are the clustering of exactly those rows
    clustered = torch.randperm(50, generator=torch.Generator().manual_seed(1 + 29))[:20].sort().values
    ref = pseudo_labels(x[clustered], 0.6, (2, 5))
    for col, want in zip(rows[clustered].T, ref.T):
        assert _partition(col) == _partition(want)
    for i in range(50):
        near = min(clustered.tolist(), key=lambda j: float(poincare.dist(x[i], x[j], 0.6)))
        assert torch.equal(rows[i], rows[near])
    assert loss.refreshed_at == 3


def test_similarity_degree_counts_shared_levels():
    codes = torch.tensor([[0, 0, 1], [0, 0, 2], [0, 1, 3], [1, 2, 4], [-1, -1, -1]])
    h = similarity_degree(codes, codes)
    for a, b in itertools.product(range(5), range(5)):
        want = sum(1 for l in range(3) if codes[a, l] == codes[b, l] and codes[a, l] >= 0)
        assert int(h[a, b]) == want
    assert h[0, 1] == 2 and h[0, 2] == 1 and h[0, 3] == 0 and h[4, 4] == 0


# ------------------------------------------------------------------------------------------------
# the loss
# ------------------------------------------------------------------------------------------------
def _loop_loss(x, codes, c, margin):
    B = len(x)
    h = [[sum(1 for l in range(codes.shape[1]) if codes[a, l] == codes[b, l] and codes[a, l] >= 0) for b in range(B)]
         for a in range(B)]
    known = [bool((codes[a] >= 0).all()) for a in range(B)]
    terms = []
    for i, p, n in itertools.product(range(B), repeat=3):
        if i == p or i == n or not (known[i] and known[p] and known[n]) or h[i][p] <= h[i][n]:
            continue
        v = float(poincare.dist(x[i], x[p], c)) - float(poincare.dist(x[i], x[n], c)) + margin * (h[i][p] - h[i][n])
        terms.append(max(v, 0.0))
    return sum(terms) / len(terms), len(terms)


def test_hierarchical_triplet_loss_matches_a_triple_loop():
    torch.manual_seed(1)
    x = poincare.expmap0(torch.randn(9, 3), 0.5).double()
    codes = torch.tensor([[0, 0, 0], [0, 0, 0], [0, 0, 1], [0, 1, 2], [0, 1, 2], [1, 2, 3], [1, 2, 3], [1, 3, 4],
                          [-1, -1, -1]])
    want, n_terms = _loop_loss(x, codes, 0.5, 0.7)
    got = hierarchical_triplet_loss(x, codes, 0.5, 0.7)
    assert n_terms > 50 and abs(float(got) - want) < 1e-12
    # all codes equal: no triplet, a zero that is still connected to x
    x2 = x.clone().requires_grad_(True)
    zero = hierarchical_triplet_loss(x2, torch.zeros(9, 3, dtype=torch.long), 0.5, 0.7)
    zero.backward()
    assert float(zero.detach()) == 0.0 and torch.equal(x2.grad, torch.zeros_like(x2))


def test_hierarchical_triplet_loss_gradient_matches_finite_differences():
    torch.manual_seed(2)
    x = poincare.expmap0(torch.randn(7, 3) * 0.6, 1.0).double().requires_grad_(True)
    codes = torch.tensor([[0, 0], [0, 0], [0, 1], [0, 1], [1, 2], [1, 2], [1, 3]])
    assert torch.autograd.gradcheck(lambda z: hierarchical_triplet_loss(z, codes, 1.0, 0.3), (x,), eps=1e-6, atol=1e-6)


def test_the_loss_ignores_labels_entirely():
    torch.manual_seed(3)
    head = HyperbolicHead(6, 3, c=0.5)
    loss = get_loss("unsup").build(TrainConfig(loss="unsup", unsup_levels=(2, 4)).section(), LossContext(4, 6, 3, head))
    assert loss.supervised is False and loss.needs_index is True
    x_e = torch.randn(30, 6)
    x_h = head(x_e).detach()
    loss.refresh(x_h, torch.arange(30), 30)
    idx = torch.randperm(30)[:12]
    labels = torch.arange(12) % 3
    a = loss(x_e[idx], x_h[idx], labels, index=idx)
    b = loss(x_e[idx], x_h[idx], labels[torch.randperm(12)], index=idx)
    c = loss(x_e[idx], x_h[idx], torch.full((12,), 7), index=idx)
    assert float(a.total) > 0 and torch.equal(a.total, b.total) and torch.equal(a.total, c.total)
    assert a.parts.keys() == {"l_unsup"}
    with pytest.raises(ValueError, match="index"):
        loss(x_e[idx], x_h[idx], labels)
    fresh = get_loss("unsup").build(TrainConfig(loss="unsup").section(), LossContext(4, 6, 3, head))
    with pytest.raises(RuntimeError, match="pseudo-labels"):
        fresh(x_e[idx], x_h[idx], labels, index=idx)


# ------------------------------------------------------------------------------------------------
# the trainer
# ------------------------------------------------------------------------------------------------
def _cfg(**kw):
    return TrainConfig.preset("demo-tree-unsup", **{**TINY, "steps": 7, "eval_every": 0, "unsup_refresh": 3, **kw})


def test_refresh_schedule_and_random_batches(monkeypatch):
    calls = []
    original = train.Trainer.embed

    def spy(self, split="test", max_n=None, batch_size=256):
        calls.append((self.step_count, split, max_n))
        return original(self, split, max_n, batch_size)

    monkeypatch.setattr(train.Trainer, "embed", spy)
    tr = train.Trainer(_cfg())
    assert isinstance(tr._batches, build.RandomBatches)
    events = list(tr.run(eval_at_end=False))
    assert calls == [(0, "train", None), (3, "train", None), (6, "train", None)]
    assert tr.criterion.refreshed_at == 6 and tr.criterion.codes.shape == (len(tr.train_set), 3)
    assert bool((tr.criterion.codes >= 0).all())  # 300 clustered, every other sample by its nearest one
    assert all(e.components["l_unsup"] >= 0 for e in events) and events[0].components["l_unsup"] > 0


def test_training_never_reads_the_labels(monkeypatch, tmp_path):
    """Permuting the training labels before the trainer is built changes no step and no evaluation."""
    ref = [e for e in train.Trainer(_cfg(eval_every=7)).run() if e.kind in ("step", "eval")]
    original = build.create_datasets

    def permuted(cfg):
        sets = original(cfg)
        tr = copy.copy(sets.train)
        tr.labels = sets.train.labels[torch.randperm(len(sets.train.labels), generator=torch.Generator().manual_seed(9))]
        assert not torch.equal(tr.labels, sets.train.labels)
        return build.Datasets(tr, sets.test, sets.splits)

    monkeypatch.setattr(build, "create_datasets", permuted)
    got = [e for e in train.Trainer(_cfg(eval_every=7)).run() if e.kind in ("step", "eval")]

    def strip(evs):
        return [{k: v for k, v in vars(e).items() if k not in ("step_time", "eval_time")} for e in evs]

    assert strip(got) == strip(ref) and len(ref) == 8


def test_resume_is_exact_because_the_pseudo_labels_travel(tmp_path, monkeypatch):
    cfg = _cfg(eval_every=4)
    list(train.Trainer(cfg, out_dir=tmp_path / "ref").run())
    want = run_records(tmp_path / "ref")
    run = tmp_path / "run"
    list(train.Trainer(cfg.replace(steps=4), out_dir=run).run())  # resumes at step 4: codes from step 3
    state = torch.load(run / "checkpoint.pt", weights_only=True)["system"]["criterion._extra_state"]
    assert state["refreshed_at"] == 3 and state["codes"].shape[1] == 3
    list(train.Trainer(cfg, out_dir=run, resume=True).run())
    assert run_records(run) == want

    # the check can fail: without the stored codes, the resumed run re-clusters at step 4
    monkeypatch.setattr(UnsupLoss, "set_extra_state", lambda self, state: None)
    got = stopped_and_resumed(train.Trainer, cfg, 4, tmp_path / "bad")
    assert got[:4] == want[:4] and got != want


def test_settings_rules_and_presets(tmp_path):
    assert {"unsup_levels", "unsup_refresh", "unsup_margin", "unsup_max_n"} <= set(TrainConfig(loss="unsup").to_dict())
    errors = [p.keys for p in check(TrainConfig(loss="unsup", unsup_levels=(4, 4, 8))) if p.level == "error"]
    assert errors == [("unsup_levels",)]
    errors = [p.keys for p in check(TrainConfig(loss="unsup", unsup_levels=(4, 64), unsup_max_n=50)) if p.level == "error"]
    assert errors == [("unsup_levels", "unsup_max_n")]
    cfg = TrainConfig.preset("demo-tree-unsup")
    assert cfg.loss == "unsup" and cfg.dataset == "tree" and not [p for p in check(cfg) if p.level == "error"]
    assert paper.LOSS_PRESETS["Unsupervised (hierarchical pseudo-labels)"]["loss"] == "unsup"
    run = tmp_path / "cli"
    argv = ["--quiet", "--preset", "demo-tree-unsup", "--steps", "2", "--set", "eval_every=0", "--set", "unsup_levels=2,4",
            "--out", str(run)] + [a for k, v in TINY.items() if k != "unsup_levels" for a in ("--set", f"{k}={str(v).lower()}")]
    assert train.main(argv) == 0
    assert "l_unsup" in (run / "steps.csv").read_text().splitlines()[0]


def test_pretraining_on_other_classes_then_training_from_it(monkeypatch, tmp_path):
    """pretrain_steps: the run's own network first learns CHEST's proxy loss on another tree (same map),
    exactly as a separate run of pretrain_config would, and the unsupervised run starts from those weights."""
    from chestlab.engine import pretrain as pre

    cfg = _cfg(steps=2, pretrain_steps=3)
    pc = pre.pretrain_config(cfg)
    assert (pc.loss, pc.K, pc.tau, pc.steps, pc.pretrain_steps) == ("chest", 1, 0.0, 3, 0)
    assert pc.data_options["tree_seed"] == cfg.seed + pre.PRETRAIN_TREE_OFFSET and pc.batch_size == cfg.batch_size
    plain, pretrained = train.Trainer(cfg.replace(pretrain_steps=0)), train.Trainer(cfg, out_dir=tmp_path / "run")
    by_hand = train.Trainer(pc)
    by_hand.model.load_state_dict(plain.model.state_dict())
    list(by_hand.run(eval_at_end=False))
    for k, v in pretrained.model.state_dict().items():
        assert torch.equal(v, by_hand.model.state_dict()[k]), k
        if k.endswith("weight"):
            assert not torch.equal(v, plain.model.state_dict()[k]), k  # pretraining moved every layer
    # the pseudo-labels come from the pretrained network; a resumed run takes the pretrained weights from
    # its checkpoint instead of pretraining again
    list(pretrained.run(eval_at_end=False))
    assert pretrained.criterion.refreshed_at == 0 and pretrained.step_count == 2
    monkeypatch.setattr(pre, "pretrain", lambda *a, **k: pytest.fail("pretrained again on resume"))
    assert train.Trainer(cfg.replace(steps=3), out_dir=tmp_path / "run", resume=True).step_count == 2
    errors = [p.keys for p in check(cfg.replace(dataset="shapes", backbone="cnn")) if p.level == "error"]
    assert ("pretrain_steps", "dataset") in errors
    with pytest.raises(ValueError, match="pretrain_steps"):
        TrainConfig(pretrain_steps=-1)
