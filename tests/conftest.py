import os

import pytest
import torch

os.environ.setdefault("VMONF_DATA", os.path.join(os.path.dirname(__file__), ".cache-never-used"))
# Small models run much faster on one thread on 2-core machines (docs/RESULTS.md, "Early measurements").
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test():
    yield
    from vmonf.studio.job import live_jobs

    for job in live_jobs():
        job.stop(timeout=10)
