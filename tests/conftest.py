"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """One torch thread for the test, as a trial gets on a shared node (and timings assume)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# Fault variants that repeat another one's code path with the other --fuse value: each
# costs about a minute, so CI (`make test`) skips them and `make test-all` runs them.
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--all-variants", action="store_true",
                     help="also run the fault variants CI skips (marked repeat_variant)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--all-variants"):
        return
    skip = pytest.mark.skip(reason="repeats another variant's code path; make test-all runs it")
    for item in items:
        if "repeat_variant" in item.keywords:
            item.add_marker(skip)
