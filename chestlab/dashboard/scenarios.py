"""Lecture scenarios: guided experiments for the dashboard, each a prepared setting, a question for
the class and what to look at on the page.

A scenario's settings come from :mod:`chestlab.paper` -- a dataset preset of
:data:`~chestlab.paper.PRESETS` (the page's own ``demo-tree`` by default) and a loss preset of
:data:`~chestlab.paper.LOSS_PRESETS` -- plus its own overrides; optionally compare mode (run B = A
with one setting changed) and the view of the panels (e.g. the per-sample margins). Choosing one in
the sidebar ("Lecture scenario") or opening ``?scenario=NAME`` puts every setting back to the page's
defaults first, then applies the scenario, so a scenario opens the same way from any state; other
URL parameters apply on top of it (``?scenario=euclidean-limit&c=0.05``).

Pure logic (no Streamlit): :func:`apply` writes into a :class:`~chestlab.dashboard.state.DashState`
and a session mapping, :func:`draw` and :func:`info` draw into any Streamlit-like container.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Optional

from chestlab.paper import LOSS_PRESETS, PRESETS
from chestlab.settings import TrainConfig, schema

from .defaults import BASE, HIDDEN, VIEW_DEFAULTS
from .fields import format_value
from .state import DashState
from .text import literal
from .values import set_value, shown_keys

__all__ = ["Scenario", "SCENARIOS", "PANELS", "KEY", "NONE", "find", "config", "apply", "load_url", "url_params", "draw", "info",
           "shown_preset", "focus"]

#: the session key of the sidebar's selectbox (and the URL parameter's name)
KEY = "scenario"
#: the selectbox's "no scenario" option
NONE = ""
#: settings a scenario does not take from a dataset preset: the page decides them
_PAGE_DECIDES = ("eval_every", "eval_max", "threads", "steps", "checkpoint_every", "workers")


@dataclass(frozen=True)
class Scenario:
    """One guided experiment."""

    name: str  #: URL name, e.g. ``euclidean-limit``
    title: str  #: shown in the sidebar
    question: str  #: the question to put to the class
    look_at: str  #: where on the page the answer shows
    base: str = "demo-tree"  #: dataset preset of :data:`chestlab.paper.PRESETS`
    loss_preset: Optional[str] = None  #: loss preset of :data:`chestlab.paper.LOSS_PRESETS`
    settings: dict = field(default_factory=dict)  #: overrides, setting -> value
    compare: Optional[tuple[str, float]] = None  #: run B = A with this setting at this value
    view: dict = field(default_factory=dict)  #: page widgets: key -> value (e.g. ``sim_view``)
    #: the panel "look at" names (a key of :data:`PANELS`): the page draws it first, in view at 1280×720
    panel: str = "curves"
    #: the sidebar's selectbox shows this (at most :data:`SHORT_MAX` characters: its box cannot wrap
    #: and cuts longer ones); default ``title``. The scenario box is headed by the full ``title``.
    short: str = ""

    @property
    def label(self) -> str:
        """What the sidebar's selectbox shows: ``short``, else ``title``."""
        return self.short or self.title

    def values(self, base: Optional[TrainConfig] = None) -> dict[str, Any]:
        """The settings it changes, in the order they apply: dataset preset, loss preset (``K=None``:
        at least 2), overrides."""
        out: dict[str, Any] = {k: v for k, v in PRESETS[self.base].items() if k not in _PAGE_DECIDES}
        for k, v in (LOSS_PRESETS[self.loss_preset] if self.loss_preset else {}).items():
            if k == "K" and v is None:
                v = max(2, int(out.get("K", getattr(base, "K", 2) if base is not None else 2)))
            out[k] = v
        out.update(self.settings)
        return out


def _sim_views() -> tuple[str, str]:
    from .panels.similarity import VIEWS

    return VIEWS


_MARGINS = "per-sample margins (Eq. 7)"
#: the longest label the sidebar's scenario selectbox shows uncut (its text box does not wrap; checked in
#: headless Chromium at 1280×720 by tests/test_app_projector.py)
SHORT_MAX = 26

#: The panels a scenario may name: panel module -> (the words "look at" begins with, the prefix of
#: its chart's key; the chart of run X has key ``PREFIX_X``, found in the browser as ``.st-key-PREFIX_X``).
PANELS: dict[str, tuple[str, str]] = {
    "similarity": ("The similarity", "sim"),
    "curves": ("The curves", "cur"),
    "disk": ("The disk", "disk"),
    "hardneg": ("The hard-negative panel", "hardneg"),
    "hierarchy": ("The Hierarchy panel", "hier"),
}

#: The catalogue, in lecture order.
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        "euclidean-limit", "c → 0: the Euclidean limit",
        question="As the curvature c goes to 0 the ball flattens into Euclidean space. Does the hyperbolic "
                 "half of CHEST then learn anything the Euclidean half does not?",
        look_at="The disk (run A, c = 0.01): the boundary (radius 1/√c = 10) lies far outside the points, which "
                "fill only the middle, where the ball is nearly flat (the circles d_H = 1, 2, 3 at Euclidean "
                "radii ≈ 0.5, 1, 1.5); against run B (c = 1), compare the S_H histograms with the S_E ones, "
                "and Recall@1 of H and E in the curves.",
        settings=dict(c=0.01), compare=("c", 1.0), panel="disk"),
    Scenario(
        "margin-never-met", "δ_H = 20: a margin that is never met", short="δ_H = 20: margin never met",
        question="The paper trains CUB with δ_H = 20. With the clipping radius r = 2.3 every point lies within "
                 "d_H = 2r of the origin, so similarities differ by at most about 4r ≈ 9. Can any sample "
                 "meet a margin of 20, and what does Eq. 7 do then?",
        look_at="The similarity panel in its per-sample margins view: every sample stays left of the dashed "
                "δ_H (0% meet it), so the loss never vanishes and each sample keeps its full weight; "
                "L_H in the curves stays high. Run B has δ_H = 1.",
        settings=dict(delta_h=20.0), compare=("delta_h", 1.0), view={"sim_view": _MARGINS}, panel="similarity"),
    Scenario(
        "h-only-fig3", "η_E = 0 and the paper's Fig. 3", short="η_E = 0 and Fig. 3",
        question="The paper's Fig. 3 shows that adding the Euclidean loss changes the hyperbolic similarities. "
                 "Train with the hyperbolic loss alone (η_E = 0): how do S_H of the own class and of the other "
                 "classes differ from a run with η_E = 1?",
        look_at="The similarity histograms (Fig. 3 view) of run A (E panel not computed: its weight is 0) and "
                "run B (η_E = 1): the red (own class) and blue (other classes) S_H, and how many samples meet "
                "δ_H; then Recall@1 (H) of both runs.",
        loss_preset="Hyperbolic only (H only)", compare=("eta_e", 1.0), panel="similarity"),
    Scenario(
        "hyphc-lca", "HypHC, reading 1: LCA depths", short="HypHC 1: LCA depths",
        question="HypHC's regulariser (Eq. 8–9, τ > 0) asks the proxies to form a hierarchy, in HypHC's reading "
                 "(a softmax over the depths of the lowest common ancestors). Where does it put the proxies, "
                 "and how large is L_HypHC?",
        look_at="The curves: at the paper's r = 2.3 the term is inert, and the page shows why. On tree the proxies "
                "sit d_H ≈ 8 apart, so Eq. 8's ω = e^{−d_H} is about 3e-4 (1e-3 within a class) and τ·L_HypHC is "
                "about 0.1 % of the loss: a line at 0. The disk and the Hierarchy panel: run A's proxies (★) and "
                "their tree look like run B's (τ = 0) — over 5 paired seeds τ changes the proxies' cophenetic "
                "correlation by +0.007 ± 0.007. On the wide tree (D = 4) the proxies are nearer (ω ≈ 0.15) and "
                "τ = 8 makes the term 5 % of the loss, at r = 2.3 or r = 1, and still the tree does not move "
                "(docs/reproduce.md, “Does each regulariser act?”). Lesson 04 shows the term acting alone.",
        loss_preset="CHEST (paper)", settings=dict(tau=1.0, hyphc="lca"), compare=("tau", 0.0), panel="curves"),
    Scenario(
        "hyphc-literal", "HypHC, reading 2: Eq. 9 read literally", short="HypHC 2: Eq. 9 literally",
        question="Read Eq. 9 literally: the softmax runs over the pairwise distances instead of LCA depths. "
                 "Does it still build a hierarchy of the proxies, or does it only push them apart?",
        look_at="The curves: L_HypHC is as small as in “HypHC, reading 1” — Eq. 9 never exceeds the sum of its "
                "ω = e^{−d_H}, whichever distance the softmax reads, and at r = 2.3 the proxies sit d_H ≈ 8 apart "
                "(ω ≈ 3e-4) — so run A's proxies (★) and Recall@1 (H) stay where run B's (τ = 0) are: inert at the "
                "paper's r. Lesson 04 trains this reading alone on a toy, where it pushes the proxies apart.",
        loss_preset="CHEST (paper)", settings=dict(tau=1.0, hyphc="pairwise"), compare=("tau", 0.0), panel="curves"),
    Scenario(
        "pair-ce-temperature", "The temperature of pairwise cross-entropy", short="Pairwise CE: temperature",
        question="The hard-negative paper concludes that most of the gain of hyperbolic pairwise cross-entropy "
                 "comes from tuning the temperature t. How does t decide which negatives get the gradient?",
        look_at="The hard-negative panel: weights w over the negatives sorted by distance — at t = 0.05 (run A) "
                "they concentrate on the hardest few, at t = 0.5 (run B) they are nearly uniform; then "
                "Recall@1 of the two runs in the curves.",
        loss_preset="Pairwise CE — hyperbolic", settings=dict(t=0.05), compare=("t", 0.5), panel="hardneg"),
    Scenario(
        "temperature-collapse", "t = 0.05: the embedding collapses inside d_H < 1", short="t = 0.05: the collapse",
        question="Pairwise cross-entropy divides the logit −d_H by the temperature t. With a small t, does the "
                 "model still need to spread the points over the ball to separate the classes?",
        look_at="The disk with the circles d_H = 1, 2, 3: at t = 0.05 (run A) every point and proxy falls inside "
                "the circle d_H = 1 within a few dozen steps (median d_H(0, x) ≈ 0.5 after 150 steps) — dividing "
                "by t = 0.05 multiplies the distances by 20, so tiny distances already give sharp softmaxes; at "
                "t = 0.5 (run B) the points spread to d_H ≈ 3. Recall@1 in the curves stays close for both: the "
                "collapse is a change of scale, not of order.",
        loss_preset="Pairwise CE — hyperbolic", settings=dict(t=0.05), compare=("t", 0.5), view={"disk_circles": True},
        panel="disk"),
    Scenario(
        "mix-product", "Mix: a product of hard-negative weights", short="Mix: product of weights",
        question="Mix sums the cosine logit cos/t_E and the hyperbolic logit β(−d_H)/t_H. Is a negative then hard "
                 "if it is hard in either geometry (a union), or only in both (a product)?",
        look_at="The hard-negative panel (sphere vs ball for the run's temperatures), and run A (β = 1) against "
                "run B (β = 0: the cosine term alone) in the curves: summed logits multiply the weights, "
                "w ∝ w_E · w_H^β.",
        loss_preset="Mix (cos/t_E + β(−d_H)/t_H)", compare=("mix_lam", 0.0), panel="hardneg"),
    Scenario(
        "hier-on-tree", "HIER on a tree: a hierarchy without super-class labels", short="HIER on a tree",
        question="HIER learns hierarchical proxies from class labels alone. On the tree data, do the "
                 "super-classes it never sees show up in the embedding?",
        look_at="The disk with geodesics on: the points' colours (super-classes) and the super-class nodes (◆) — "
                "do classes of one super-class share a direction? Run B has HIER off (weight 0); compare Recall@1 "
                "on unseen classes.",
        loss_preset="CHEST + HIER", compare=("hier_weight", 0.0), view={"disk_grid": True}, panel="disk"),
    Scenario(
        "clip-radius", "What r controls: d_H(0, x) ≤ 2r for every c", short="What r controls",
        question="Feature clipping bounds the tangent vector: ‖v‖ ≤ r, so d_H(0, exp_0(v)) = 2‖v‖ ≤ 2r whatever "
                 "the curvature. What happens to the embedding and the similarities with a small r?",
        look_at="The disk's distance circles d_H = 1, 2, 3: with r = 0.5 (run A) every point and proxy lies within "
                "d_H = 1 of the origin; run B (r = 4) spreads out. The S_H histograms: all similarities are "
                "squeezed into [−2, 0], and hardly any sample meets δ_H = 1 (the titles); the curves: L_HypHC is "
                "no longer tiny, because proxies this close give S = e^{−d_H} near 1.",
        settings=dict(r=0.5), compare=("r", 4.0), view={"disk_circles": True}, panel="disk"),
    Scenario(
        "unsup-pretrained", "Unsupervised: from a random network or a pretrained one", short="Unsupervised pretraining",
        question="The unsupervised method clusters the embeddings and learns its own clusters. From a random "
                 "network R@1 falls; paper 004 starts from a pretrained network. Does that change the outcome?",
        look_at="The curves: Reset first trains run A 300 steps on the classes of another tree (pretrain_steps, a few "
                "seconds), then both runs train without labels. The curves: Recall@1 on unseen classes of run A "
                "starts high and rises, run B's (a random network) falls — its clusters follow the nuisance "
                "coordinates, not the classes. Over 5 paired seeds (docs/reproduce.md): −5.7 ± 1.6 points from "
                "random, +5.6 ± 0.9 from pretrained (H).",
        base="demo-tree-unsup", loss_preset="Unsupervised (hierarchical pseudo-labels)",
        settings=dict(pretrain_steps=300), compare=("pretrain_steps", 0), panel="curves"),
)}


def find(name: str) -> Optional[str]:
    """The scenario a URL names (its name, any case, its title or its short label), or None."""
    if name in SCENARIOS:
        return name
    want = " ".join(str(name).lower().split())
    for key, s in SCENARIOS.items():
        if want in (key.lower(), s.title.lower(), s.label.lower()):
            return key
    return None


def config(name: str, base: Optional[TrainConfig] = None) -> TrainConfig:
    """Run A's config of scenario ``name`` on top of ``base`` (the page's defaults)."""
    base = BASE if base is None else base
    return base.replace(**SCENARIOS[name].values(base))


def apply(state: DashState, session: MutableMapping, name: str) -> None:
    """Put the page in scenario ``name``: every setting back to the page's default, then the
    scenario's settings, compare mode and view, each written into ``state.values`` and its widget (as
    a loss preset is: before the widgets are drawn). The caller asks for a Reset when a run exists."""
    sc = SCENARIOS[name]
    sch = schema()
    for key in sch:
        if key in HIDDEN:
            state.values[key] = getattr(BASE, key)
        else:
            set_value(state, session, key, getattr(BASE, key))
    for key, value in sc.values(BASE).items():
        if key in HIDDEN:
            continue
        set_value(state, session, key, value)
    if sc.loss_preset:
        session["preset"] = sc.loss_preset
    if sc.compare is not None:
        session["compare"], session["cmp_key"], session["cmp_value"] = True, sc.compare[0], float(sc.compare[1])
    else:
        session["compare"] = False
    view_defaults = {k: v for k, v in VIEW_DEFAULTS.items() if k.startswith("disk_")}
    view_defaults["sim_view"] = _sim_views()[0]
    for key, value in {**view_defaults, **sc.view}.items():
        session[key] = value
    session[KEY] = name


def load_url(state: DashState, session: MutableMapping, query: Mapping[str, str]) -> list[str]:
    """Apply ``?scenario=NAME`` (before the URL's other parameters); returns one line per problem."""
    if KEY not in query:
        return []
    found = find(query[KEY])
    if found is None:
        return [f"{literal('scenario=' + query[KEY])}: choose one of {', '.join(SCENARIOS)}"]
    apply(state, session, found)
    return []


def url_params(state: DashState, session: Mapping) -> dict[str, str]:
    """What the link adds for the chosen scenario: ``scenario=NAME`` and the current value of every
    setting the scenario changes (it applies first when the link opens, so a value moved back to the
    page's default must be written too)."""
    name = session.get(KEY)
    if name not in SCENARIOS:
        return {}
    sch = schema()
    shown = set(shown_keys(state.values))
    out = {KEY: name}
    for key in SCENARIOS[name].values(BASE):
        if key in shown and key in state.values:
            out[key] = format_value(sch[key], state.values[key])
    return out


def _label(name: str) -> str:
    return "— none —" if name == NONE else SCENARIOS[name].label


def draw(session: MutableMapping, box: Any, on_change: Any = None) -> Optional[str]:
    """The sidebar's "Lecture scenario" selectbox in ``box``; returns the chosen scenario (or None)."""
    if session.get(KEY) not in (NONE, *SCENARIOS):  # first run, or a name no longer in the catalogue
        session[KEY] = NONE
    choice = box.selectbox("Lecture scenario", [NONE, *SCENARIOS], key=KEY, format_func=_label, on_change=on_change,
                           help="Guided experiments for a lecture: each sets the controls (and compare mode), asks a "
                                "question and says where to look. Also from a link: ?scenario=NAME.")
    return choice or None


def info(session: Mapping, box: Any, expanded: bool = False) -> None:
    """The chosen scenario's question and what to look at (nothing when none is chosen), in an
    expander headed by the full title (collapsed by default: on a projector the panel the scenario
    names stays in view; one click opens the question)."""
    name = session.get(KEY)
    if name not in SCENARIOS:
        return
    from .panels.compare import symbol_value

    sc = SCENARIOS[name]
    run_b = f" Run B: {symbol_value(*sc.compare)}." if sc.compare else ""
    exp = box.expander(f"Lecture scenario — {sc.title} (question and what to look at)", expanded=expanded)
    exp.info(f"**Lecture scenario — {sc.title}**  \n**Question.** {sc.question}  \n**Look at.** {sc.look_at}  \n"
             f"Press Play (or Step) to train.{run_b} Link: `?scenario={sc.name}`")


def shown_preset(values: Mapping[str, Any], session: Mapping) -> Optional[str]:
    """The loss preset the preset box shows while the chosen scenario's settings hold: the scenario's
    own preset even where the scenario overrides some of its values (``t = 0.05`` on top of
    "Pairwise CE — hyperbolic"), not "none (settings changed)". None when no scenario is chosen, it
    has no preset, or a setting it makes has been changed since."""
    name = session.get(KEY)
    if name not in SCENARIOS or not SCENARIOS[name].loss_preset:
        return None
    sc = SCENARIOS[name]
    for key, want in sc.values(BASE).items():
        if key in HIDDEN or key not in values:
            continue
        have = values[key]
        if isinstance(want, float) and isinstance(have, (int, float)) and not isinstance(have, bool):
            if abs(have - want) > 1e-9 * max(1.0, abs(want)):
                return None
        elif have != want:
            return None
    return sc.loss_preset


def focus(session: Mapping) -> Optional[str]:
    """The panel the chosen scenario names (a key of :data:`PANELS`; the page draws it first, so that
    it is in view at 1280×720), or None when no scenario is chosen."""
    name = session.get(KEY)
    return SCENARIOS[name].panel if name in SCENARIOS else None
