"""Shared test fixtures."""
import pytest
import torch


@pytest.fixture(scope='module')
def single_threaded_torch():
    """Run a module's tiny-tensor training steps on one thread: they gain nothing from more, and on a
    shared 2-core machine two threads per process contended so badly that they ran 4x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
