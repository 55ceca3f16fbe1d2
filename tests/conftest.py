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
