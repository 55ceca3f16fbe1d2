"""Library pieces the lessons 04-06 rely on: the per-sample margin view of Eq. 7 (chestlab.metrics, chestlab.viz),
the HypHC toy's class-grouping measure and the retrieval figure (chestlab.lessons)."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from chestlab import lessons, losses, metrics
from chestlab.viz import disk as vdisk
from chestlab.viz import mpl as vmpl
from chestlab.viz import paper as vpaper
from chestlab.viz import similarity as vsim
from chestlab.train import SimilarityEvent


def _batch(B: int = 24, C: int = 7, seed: int = 0, eta_e_off: bool = False):
    """Random similarities S (B, C) in both spaces, labels, and the SimilarityEvent a Trainer makes of
    them (own class = positive, the other C - 1 classes of each sample in turn = negatives)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (B,), generator=g)
    S = {s: -3 * torch.rand(B, C, generator=g, dtype=torch.float64) for s in "he"}

    def split(M):
        mask = torch.ones_like(M, dtype=torch.bool)
        mask[torch.arange(B), labels] = False
        return M.gather(1, labels[:, None]).squeeze(1).numpy(), M[mask].numpy()

    (hp, hn), (ep, en) = split(S["h"]), split(S["e"])
    ev = SimilarityEvent(step=1, h_pos=hp, h_neg=hn, e_pos=None if eta_e_off else ep, e_neg=None if eta_e_off else en)
    return S, labels, ev


# ------------------------------------------------------------------------------------------------
# per-sample margins (Eq. 7)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam, delta", [(20.0, 1.0), (5.0, 0.3), (1.0, 0.0)])
def test_margin_determines_the_eq7_loss(lam, delta):
    S, labels, ev = _batch()
    for space in "he":
        m = metrics.per_sample_margins(ev, space, lam)
        want = losses.proxy_loss(S[space], labels, lam, delta)
        got = torch.nn.functional.softplus(torch.from_numpy(lam * (delta - m["soft"])))
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
        # m >= delta exactly when the sample's loss is at most log 2
        assert np.array_equal(m["soft"] >= delta, want.numpy() <= math.log(2) + 1e-12)


def test_margin_soft_and_hard_bounds_and_shapes():
    S, labels, ev = _batch(B=30, C=9)
    lam = 20.0
    m = metrics.per_sample_margins(ev, "h", lam)
    own = S["h"].gather(1, labels[:, None]).squeeze(1)
    other = S["h"].masked_fill(torch.nn.functional.one_hot(labels, 9).bool(), -math.inf)
    assert np.allclose(m["pos"], own.numpy())
    assert np.allclose(m["hard"], (own - other.max(1).values).numpy())
    assert np.allclose(m["soft"], (own - torch.logsumexp(lam * other, 1) / lam).numpy())
    assert np.all(m["soft"] <= m["hard"] + 1e-12) and np.all(m["hard"] <= m["soft"] + math.log(8) / lam + 1e-12)
    # negatives given as (B, C - 1) work the same; large lambda stays finite (stable log-sum-exp)
    two_d = {"h_pos": ev.h_pos, "h_neg": ev.h_neg.reshape(30, 8)}
    assert np.allclose(metrics.per_sample_margins(two_d, "h", lam)["soft"], m["soft"])
    assert np.all(np.isfinite(metrics.per_sample_margins(ev, "h", 1e4)["soft"]))


def test_margin_input_errors():
    _, _, ev = _batch(eta_e_off=True)
    assert metrics.per_sample_margins(ev, "e") is None
    with pytest.raises(ValueError, match="space"):
        metrics.per_sample_margins(ev, "x")
    with pytest.raises(ValueError, match="lam"):
        metrics.per_sample_margins(ev, "h", 0.0)
    with pytest.raises(ValueError, match="B \\(C - 1\\)"):
        metrics.per_sample_margins({"h_pos": [0.0, 1.0], "h_neg": [0.0, 1.0, 2.0]}, "h")


def test_margin_histogram_plotly():
    _, _, ev = _batch()
    fig = vsim.margin_histogram(ev, delta_h=1.0, delta_e=0.5, title="t")
    assert isinstance(fig, go.Figure)
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 2 and {t.xaxis for t in bars} == {"x", "x2"}
    assert sum(bars[0].y) == 24  # one count per sample
    deltas = [t for t in fig.data if t.type == "scatter" and "margin δ" in (t.name or "")]
    assert [t.x[0] for t in deltas] == [1.0, 0.5]
    m = metrics.per_sample_margins(ev, "h")
    assert f"{np.mean(m['soft'] >= 1.0):.0%} of 24 samples" in fig.layout.annotations[0].text
    assert fig.layout.uirevision == "margin"
    # a space switched off, and no delta: no margin line
    fig = vsim.margin_histogram(_batch(eta_e_off=True)[2])
    assert any("not computed" in a.text for a in fig.layout.annotations)
    assert not [t for t in fig.data if "margin δ" in (t.name or "")]


def test_margin_histogram_mpl_png():
    _, _, ev = _batch()
    fig = vsim.margin_histogram_mpl(ev, 1.0, 1.0, title="step 1")
    assert len(fig.axes) == 2 and "samples" in fig.axes[0].get_title()
    png = vmpl.to_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    fig = vsim.margin_histogram_mpl(_batch(eta_e_off=True)[2], 1.0)
    assert "not computed" in fig.axes[1].texts[0].get_text()


# ------------------------------------------------------------------------------------------------
# the HypHC toy (lesson 04)
# ------------------------------------------------------------------------------------------------
def test_hyphc_toy_class_grouping_measure():
    out = lessons.hyphc_toy("lca", steps=2, C=3, K=3)
    assert out["nn_same_class"].shape == (3,)
    snap = torch.from_numpy(out["snapshots"][0]).reshape(9, 2)
    from chestlab import poincare

    d = poincare.pairwise_dist(snap, snap, 1.0) + torch.diag(torch.full((9,), math.inf, dtype=torch.float64))
    cls = torch.arange(3).repeat_interleave(3)
    assert out["nn_same_class"][0] == pytest.approx(float((cls[d.argmin(1)] == cls).double().mean()))


def test_literal_hyphc_reading_pushes_proxies_to_the_clipping_radius():
    """Lesson 04's claim: the literal Eq. 9 (distances, S differentiated) sends the proxies to the
    clipping radius 2r and loses the class grouping; HypHC's reading keeps it."""
    lit = lessons.hyphc_toy("pairwise", steps=100, detach_similarity=False, r=2.3)
    hyp = lessons.hyphc_toy("lca", steps=100, r=2.3)
    assert lit["norm"][-1] > 0.9 * 4.6 and lit["nn_same_class"][-1] < 0.5 < lit["nn_same_class"][0]
    assert hyp["nn_same_class"][-1] == 1.0


# ------------------------------------------------------------------------------------------------
# retrieval examples (lesson 06)
# ------------------------------------------------------------------------------------------------
def test_retrieval_figure_marks_the_query():
    g = torch.Generator().manual_seed(0)
    emb, lab = torch.randn(40, 3, generator=g), torch.randint(0, 4, (40,), generator=g)
    tiles = np.random.default_rng(0).random((40, 8, 8))
    ex = lessons.retrieval_examples(emb, lab, tiles, [0, 7], n=5, metric="euclidean")
    assert [e["query_label"] for e in ex] == [int(lab[0]), int(lab[7])]
    fig = vpaper.retrieval_figure(ex, class_names=[f"d{i}" for i in range(4)], title="x")
    axes = np.asarray(fig.axes).reshape(2, 7)  # query, gap, 5 results per row
    for row, e in zip(axes, ex):
        assert row[0].get_title() == "query" and row[0].get_xlabel() == f"d{e['query_label']}"
        assert not row[1].axison  # the gap
        for k, (ax, (_, ok), y) in enumerate(zip(row[2:], e["results"], e["labels"]), start=1):
            assert ax.get_title() == str(k)
            edge = ax.spines["top"].get_edgecolor()
            assert (edge[:3] == pytest.approx((0.839, 0.153, 0.157), abs=1e-2)) != ok  # red frame = another class
            assert ax.get_xlabel() == ("" if ok else f"d{y}")
    assert vmpl.to_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        vpaper.retrieval_figure([])


def test_disk_legend_explains_colours_and_markers():
    g = torch.Generator().manual_seed(0)
    lab = torch.randint(0, 4, (50,), generator=g)
    xy = 0.5 * torch.rand(50, 2, generator=g)
    fig = vdisk.poincare_disk(xy, lab, lab % 2, c=1.0, class_names=list("abcd"), super_names=["s0", "s1"])
    points = [t for t in fig.data if t.type == "scattergl"]
    vdisk.disk_legend(fig, list("abcd"), ["s0", "s1"])
    assert all(t.showlegend is False for t in points) and sum(len(t.x) for t in points) == 50
    entries = [t for t in fig.data if t.type == "scatter" and t.legendgroup == "classes"]
    assert [t.name for t in entries] == ["a", "b", "c", "d"]
    drawn = {name: col for t in points for name, col in zip(t.text, t.marker.color)}
    assert [t.marker.color for t in entries] == [drawn[n] for n in "abcd"]  # the colours the points have
    from chestlab.viz.style import super_color

    supers = [t for t in fig.data if t.type == "scatter" and str(t.legendgroup).startswith("super")]
    assert [(t.name, t.marker.color) for t in supers] == [("s0", super_color(0)), ("s1", super_color(1))]
    assert fig.layout.legend.orientation == "v"


# ------------------------------------------------------------------------------------------------
# paired comparisons of two spaces (lessons 00 and 06)
# ------------------------------------------------------------------------------------------------
def test_paired_table_pairs_by_seed_and_reads_the_standard_error():
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(6):
        shared = rng.normal()  # what a seed does to both spaces alike: pairing removes it
        rows += [{"space": "H", "seed": seed, "D": 2, "m": shared + 0.5 + 0.01 * seed},
                 {"space": "E", "seed": seed, "D": 2, "m": shared}]
    rows = [r for r in rows if not (r["space"] == "E" and r["seed"] == 5)]  # seed 5 has no partner
    t = lessons.paired_table(rows, ["m"], by=["D"])
    d = np.array([0.5 + 0.01 * s for s in range(5)])
    assert t.loc[0, "n"] == 5 and t.loc[0, "H > E"] == 5
    assert t.loc[0, "Δ"] == pytest.approx(d.mean()) and t.loc[0, "s.e."] == pytest.approx(d.std(ddof=1) / math.sqrt(5))
    assert "**H better**" in lessons.paired_verdict(t, by=["D"])
    assert "**E better**" in lessons.paired_verdict(t, lower_is_better=("m",))  # lower wins: the plane
    t.loc[0, "Δ"] = t.loc[0, "s.e."]  # within 2 s.e.: no reading either way
    assert "no difference beyond 2 s.e." in lessons.paired_verdict(t)


def test_draw_tree_in_the_disk_the_unrolled_disk_and_the_plane():
    from matplotlib.collections import LineCollection, PathCollection
    from matplotlib.figure import Figure

    from chestlab import poincare
    from chestlab import tree_embedding as te

    tree = te.Tree.complete((2, 3))
    x = te.sarkar(tree, 2.0)
    fig = Figure()
    axs = fig.subplots(1, 3)
    for ax, (c, polar) in zip(axs, ((1.0, False), (1.0, True), (0.0, False))):
        vmpl.draw_embedded_tree(ax, x if c else 0.3 * x, tree, c, polar=polar, circles=(2.0,), title="t")
        dots = [col for col in ax.collections if isinstance(col, PathCollection)]
        assert [len(d.get_offsets()) for d in dots] == [1, 2, 6]  # one colour per level
        edges = [col for col in ax.collections if isinstance(col, LineCollection)]
        assert len(edges[-1].get_segments()) == tree.n - 1 and ax.get_aspect() == 1.0
    # unrolled: each node at radius d_H(0, x) in its own direction
    leaves = axs[1].collections[-1].get_offsets()
    assert np.linalg.norm(leaves, axis=1) == pytest.approx(poincare.dist0(x[tree.level == 2], 1.0).numpy())
    assert np.asarray(axs[2].collections[-1].get_offsets()) == pytest.approx(0.6 * x[tree.level == 2].numpy())
def test_refuses_raises_when_a_check_accepts_a_wrong_answer(capsys):
    """lessons.refuses: quiet on a check that rejects every wrong answer; RuntimeError naming the
    accepted one otherwise (the check's printed lines hidden either way)."""
    def check(x=None):
        print("✓ noisy line")
        assert x == 1, "wrong"

    lessons.refuses(check, dict(x=0), dict(x=2))
    with pytest.raises(RuntimeError, match=r"check accepted \{'x': 1\}"):
        lessons.refuses(check, dict(x=0), dict(x=1))
    assert "noisy" not in capsys.readouterr().out
