"""Compare mode keeps runs A and B in lock-step: every chunk of training steps both runs (A then B)
before the page may interrupt it, so the two columns show the same step; and the page's layout
helpers (the scenario's panel first)."""

from __future__ import annotations

import pytest

from chestlab.dashboard import page, panels, runner, scenarios
from chestlab.dashboard.defaults import BASE
from chestlab.dashboard.state import DashState


class Interrupt(BaseException):  # as Streamlit's rerun/stop exceptions: not an Exception
    pass


@pytest.fixture(scope="module")
def two_runs() -> DashState:
    state = DashState()
    state.runs += [runner.build(BASE), runner.build(BASE.replace(eta_e=0.0), "B", "η_E = 0")]
    return state


def test_a_chunk_steps_both_runs_equally(two_runs: DashState) -> None:
    a, b = (r.trainer for r in two_runs.runs)
    done = runner.train_chunk(two_runs, budget_s=0.3)
    assert done >= 1 and a.step_count == b.step_count


def test_an_interrupted_chunk_leaves_both_runs_at_the_same_step(two_runs: DashState) -> None:
    a, b = (r.trainer for r in two_runs.runs)
    calls = []

    def yield_point() -> None:  # the page's yield point: a click interrupts here
        calls.append(1)
        if len(calls) == 3:
            raise Interrupt

    before = a.step_count
    with pytest.raises(Interrupt):
        runner.train_chunk(two_runs, budget_s=30.0, max_steps=10, between_steps=yield_point)
    assert a.step_count == b.step_count == before + 3


def test_the_scenario_panel_comes_first() -> None:
    for name, sc in scenarios.SCENARIOS.items():
        order = [p.__name__.rsplit(".", 1)[-1] for p in page.ordered_panels(sc.panel)]
        assert order[0] == sc.panel and sorted(order) == sorted(scenarios.PANELS), (name, order)
    assert [p.__name__ for p in page.ordered_panels(None)] == [p.__name__ for p in panels.run_panels()]
