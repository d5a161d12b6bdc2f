"""Shared test configuration: isolated CTXLAB_HOME, hypothesis profiles, bundled data paths."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"

pytest_plugins = ["local_llm_fixture", "redis_fixture", "proxy_support"]  # + `stub_upstream`

# deadline=None everywhere: this machine is shared and timings are noisy.
settings.register_profile(
    "default", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True, scope="session")
def _ctxlab_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test run writes its on-disk state (caches, stores) under a temporary CTXLAB_HOME."""
    home = tmp_path_factory.mktemp("ctxlab-home")
    old = os.environ.get("CTXLAB_HOME")
    os.environ["CTXLAB_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("CTXLAB_HOME", None)
    else:
        os.environ["CTXLAB_HOME"] = old


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The repository's bundled data folder."""
    return DATA
