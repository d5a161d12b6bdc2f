"""Store fixtures: a real ``redis-server`` on 127.0.0.1, and every store kind in turn.

``redis_server`` (session scope) starts one server with a temporary directory and no
persistence, and stops it at the end; ``redis_url`` gives each test an empty database on it.
Without the binary (or the ``redis`` package) they skip, unless ``CTXLAB_REQUIRE_REDIS=1``
(set in CI), where a missing server is a failure. ``stores`` runs a test once per store kind
(memory, SQLite, Redis), so the store behaviour suites are one suite.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _unavailable(reason: str) -> None:
    if os.environ.get("CTXLAB_REQUIRE_REDIS") == "1":
        pytest.fail(f"{reason} (CTXLAB_REQUIRE_REDIS=1)", pytrace=False)
    pytest.skip(reason)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on port {port} within 10 s")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole run (persistence off, loopback only)."""
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not installed (Debian: apt-get install redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        _unavailable("the redis package is not installed: pip install 'ctxlab[redis]'")
    workdir = tmp_path_factory.mktemp("redis")
    port = _free_port()
    log = workdir / "redis.log"
    cmd = [binary or "redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    cmd += ["--save", "", "--appendonly", "no", "--dir", str(workdir), "--logfile", str(log)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, port, log)
        yield RedisServer(host="127.0.0.1", port=port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The URL of an empty Redis database (database 1 is flushed before each test)."""
    import redis

    url = redis_server.url(1)
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    yield url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that use the Redis server ``redis``, so ``-m 'not redis'`` works."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("store_kind") if callspec is not None else None
        if "redis_server" in names or kind == "redis":
            item.add_marker(pytest.mark.redis)


class StoreFactory:
    """Opens stores of one kind on the same data, as a restarted process would.

    ``open()`` returns a new store object on the same file or database each time (for
    ``memory``, the same object: nothing outlives it). Every store is closed at teardown.
    """

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self.opened: list[Any] = []

    def open(self, **options: Any) -> Any:
        from ctxlab.live.stores import open_store

        if self.kind == "memory" and self.opened and not options:
            return self.opened[0]
        store = open_store(self.url, **options)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each store kind in turn: the same behaviour suite runs over all three."""
    kind: str = request.param
    return kind


@pytest.fixture
def stores(
    store_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[StoreFactory]:
    """A `StoreFactory` for the current `store_kind`, on empty storage."""
    if store_kind == "redis":
        url = request.getfixturevalue("redis_url")
    elif store_kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'sessions.db'}"
    else:
        url = "memory"
    factory = StoreFactory(store_kind, url)
    yield factory
    factory.close_all()
