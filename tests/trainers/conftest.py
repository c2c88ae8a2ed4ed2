"""Fixtures the trainer tests share."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def classifier_cache(tmp_path_factory):
    """The digits classifier is trained once per module into a temporary cache."""
    path = tmp_path_factory.getbasetemp() / "gan-sweeper-cache"
    path.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GAN_SWEEPER_CACHE", str(path))
        yield path
