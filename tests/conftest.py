import os

import torch
from hypothesis import settings

# Two pytest-xdist workers share two cores: one intra-op thread each avoids oversubscription,
# which makes tiny torch ops wait milliseconds for spinning threads.
torch.set_num_threads(1)
os.environ.setdefault("CHESTLAB_FAST", "1")

# derandomize: the same examples every run, so CI is reproducible; hunt for new counterexamples
# with `pytest --hypothesis-profile=explore` (random examples, as hypothesis does by default)
settings.register_profile("ci", deadline=None, print_blob=True, derandomize=True)
settings.register_profile("explore", deadline=None, print_blob=True)
settings.load_profile("ci")


# -- opt-in long runs -----------------------------------------------------------------------------
# `pytest -m fuzz` or `pytest --fuzz` runs the tests marked `fuzz` (the 300-round dashboard fuzz of
# tests/test_dashboard_fuzz.py); a plain run (`make test`) deselects them.
def pytest_addoption(parser):
    parser.addoption("--fuzz", action="store_true", default=False, help="also run the long fuzz tests (marked fuzz)")


def pytest_configure(config):
    config.addinivalue_line("markers", "fuzz: long adversarial runs (minutes); deselected unless --fuzz or -m fuzz")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--fuzz") or "fuzz" in (config.getoption("markexpr") or ""):
        return
    drop = [item for item in items if item.get_closest_marker("fuzz") is not None]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if item.get_closest_marker("fuzz") is None]
