"""Compare two runs: run B = run A with one setting changed, same seed and batches. The controls sit
in the page's top row; each run's column starts with :func:`header`.

Run B's setting is any numeric setting the sidebar shows (:func:`chestlab.dashboard.compare.compare_keys`)
and its value is validated by the schema like every other value of the page (:func:`config_b`); the
value box is bounded by :func:`chestlab.dashboard.compare.compare_range`."""

from __future__ import annotations

from typing import Any, Optional

from chestlab.settings import SettingError, TrainConfig, schema

TITLE = "Compare two runs"
SLOT = "page"


def value_b(session: Any) -> tuple[str, Any]:
    """(setting, value) of run B as the widgets hold them (the value as the setting's type when exact)."""
    key, value = session.get("cmp_key", "eta_e"), session.get("cmp_value", 0.0)
    s = schema().get(key)
    if s is not None and s.type is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    return key, value


def config_b(cfg: TrainConfig, session: Any) -> tuple[Optional[TrainConfig], str, Optional[str]]:
    """Run B's config (A's with one setting changed), its description, and the one-line reason when
    the schema refuses the value (then no config)."""
    from ..compare import check_compare
    from ..text import refusal

    key, value = value_b(session)
    s = schema().get(key)
    if s is None:
        return None, "", "Run B not built: B changes a name that is not a setting; choose one in 'B changes'"
    try:
        value = check_compare(s, value)
    except SettingError as err:
        return None, "", f"Run B not built: {refusal(err)}"
    return cfg.replace(**{key: value}), f"{symbol_value(key, value)}, everything else as A", None


def symbol(key: str) -> str:
    """The paper's symbol of setting ``key`` (``mix_lam`` -> β), else its name."""
    s = schema().get(key)
    return (getattr(s, "symbol", "") or key) if s is not None else key


def symbol_value(key: str, value: Any) -> str:
    """``β = 0``: the paper's symbol and the value, as the headers and the scenario box show them."""
    shown = f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
    return f"{symbol(key)} = {shown}"


def _key_label(key: str) -> str:
    sym = symbol(key)
    return key if sym == key else f"{sym} ({key})"


def fit_value(session: Any, values: Any = None) -> None:
    """Keep run B's value valid for the setting B changes (before its box is drawn; also when the
    setting changes): a value the new setting refuses becomes run A's value (or the default)."""
    from ..compare import check_compare

    s = schema().get(session.get("cmp_key"))
    if s is None:
        return
    key, value = value_b(session)
    try:
        check_compare(s, value)
    except SettingError:
        a = (values or {}).get(key, s.default_value())
        try:
            session["cmp_value"] = float(check_compare(s, a))
        except (SettingError, TypeError, ValueError):
            lo, hi = _bounds(s)
            session["cmp_value"] = lo if lo is not None else (hi if hi is not None else 0.0)


def _bounds(s: Any) -> tuple[Optional[float], Optional[float]]:
    from ..compare import compare_range

    lo, hi = compare_range(s)
    return (None if lo is None else float(lo)), (None if hi is None else float(hi))


def _on_key(state: Any) -> None:
    import streamlit as st

    fit_value(st.session_state, state.values)


def render(ctx: Any, box: Any) -> None:
    """The compare toggle, and when on: which setting B changes and its value."""
    from ..compare import compare_keys

    session = ctx.session
    a, b, c = box.columns([2.0, 1.6, 1.4])
    on = a.toggle(TITLE, key="compare", help="run B = run A with one setting changed, same seed and batches")
    if not on:
        return
    keys = compare_keys(ctx.state.values)
    if session.get("cmp_key") not in keys and keys:
        session["cmp_key"] = keys[0]
    b.selectbox("B changes", keys, key="cmp_key", format_func=_key_label, help="the one setting run B changes (e.g. η_E = 0: without L_E)",
                on_change=_on_key, args=(ctx.state,))
    s = schema().get(session.get("cmp_key"))
    if s is None:
        return
    fit_value(session, ctx.state.values)
    lo, hi = _bounds(s)
    allowed = s.allowed() if (lo, hi) == (s.low, s.high) else f"{s.allowed()}; on this page {lo:g} to {hi:g} for run B"
    c.number_input(f"B: {symbol(s.name)} =", key="cmp_value", min_value=lo, max_value=hi, step=1.0 if s.type is int else 0.1,
                   format="%.4g", help=f"Allowed: {allowed}.")


def header(ctx: Any, box: Any) -> None:
    """A run's heading in compare mode, one line: which run, what it changes (run B), its step and
    Recall@1 (both runs: they step in lock-step, so the two lines show the same step)."""
    run = ctx.run
    desc = "settings as in the sidebar" if run.name == "A" else (run.label or "one setting changed")
    tr = run.trainer
    last = tr.history[-1] if tr.history else {}

    def fmt(v: Any) -> str:
        return "—" if v is None else f"{v:.3f}"

    box.markdown(f"**Run {run.name}: {desc}** · step {tr.step_count} · R@1 H {fmt(last.get('test/H/R@1'))} · "
                 f"R@1 E {fmt(last.get('test/E/R@1'))}")
