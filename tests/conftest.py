import os

import pytest
import torch

os.environ.setdefault("VMONF_DATA", os.path.join(os.path.dirname(__file__), ".cache-never-used"))
# Small models run much faster on one thread on 2-core machines (docs/RESULTS.md, "Early measurements").
torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu",
                     help="run the transform and mixture contract tests (test_flows, test_model) on this torch "
                          "device: cpu (the default, and CI's), cuda or mps")


def pytest_configure(config):
    from vmonf.devices import resolve_device

    try:
        config.torch_device = resolve_device(config.getoption("--device"))
    except ValueError as exc:  # e.g. --device cuda on a machine without one: say so before any test runs
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture(scope="session")
def device(request):
    """The torch device of ``--device``."""
    return request.config.torch_device


@pytest.fixture
def on_device(device):
    """Make ``device`` the default for tensors and modules made inside the test (for contract tests written
    with plain ``torch.randn`` and module constructors); the CPU is left as it is."""
    if device.type == "cpu":
        yield device
        return
    torch.set_default_device(device)
    try:
        yield device
    finally:
        torch.set_default_device(None)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test():
    yield
    from vmonf.studio.job import live_jobs

    for job in live_jobs():
        job.stop(timeout=10)
