"""Shared test settings: one torch thread, so tests on a busy 2-core machine stay fast and
results do not depend on how many cores the runner has."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread() -> None:
    torch.set_num_threads(1)
