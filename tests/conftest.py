import os

import torch
from hypothesis import settings

# Two pytest-xdist workers share two cores: one intra-op thread each avoids oversubscription,
# which makes tiny torch ops wait milliseconds for spinning threads.
torch.set_num_threads(1)
os.environ.setdefault("CHESTLAB_FAST", "1")

settings.register_profile("ci", deadline=None, print_blob=True)
settings.load_profile("ci")
