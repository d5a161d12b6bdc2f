"""Real processes for the proxy tests: the stub upstream and ``ctxlab serve`` on 127.0.0.1.

`stub_upstream` (session scope) runs ``python -m ctxlab.live.proxy.stub`` on a free port.
`ProxyProcess` writes a TOML config and runs ``python -m ctxlab.cli serve --config FILE`` as a
real uvicorn server process; it can be stopped and started again on the same port and store.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ALICE, BOB, CAROL, DAVE, ERIN = (
    "alice-key-1",
    "bob-key-2",
    "carol-key-3",
    "dave-key-4",
    "erin-key-5",
)
KEYS_ENV = {"PROXY_TEST_ALICE": ALICE, "PROXY_TEST_CAROL": CAROL, "PROXY_TEST_DAVE": DAVE}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}): {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s: {log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Stub:
    url: str  # e.g. http://127.0.0.1:PORT

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def requests(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = httpx.get(self.url + "/_stub/requests").json()
        return data

    def reset(self) -> None:
        httpx.post(self.url + "/_stub/reset")


@pytest.fixture(scope="session")
def stub_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stub]:
    """The stub upstream (see `ctxlab.live.proxy.stub`) for the whole run."""
    log = tmp_path_factory.mktemp("stub") / "stub.log"
    port = free_port()
    cmd = [sys.executable, "-m", "ctxlab.live.proxy.stub", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/_stub/health", proc, log)
        yield Stub(url=f"http://127.0.0.1:{port}")
    finally:
        stop(proc)


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def config_text(
    *,
    port: int,
    store: str,
    upstream: str,
    budget: int = 4000,
    strategy: str = "token_window",
    keys: str | None = None,
    extra_keys: str = "",
    extra_server: str = "",
    extra_routes: str = "",
    stub_timeout: float = 1.0,
) -> str:
    """A config file in the documented format (keys: env and sha256 forms, some limits)."""
    keys = (
        keys
        or f"""
[[keys]]
name = "alice"
key = "env:PROXY_TEST_ALICE"

[[keys]]
name = "bob"
key = "sha256:{sha256(BOB)}"

[[keys]]
name = "carol"
key = "env:PROXY_TEST_CAROL"
requests_per_minute = 5

[[keys]]
name = "dave"
key = "env:PROXY_TEST_DAVE"
usd_per_day = 0.001

[[keys]]
name = "erin"
key = "sha256:{sha256(ERIN)}"
tokens_per_minute = 2000
"""
    )
    return f"""
[server]
host = "127.0.0.1"
port = {port}
store = "{store}"
{extra_server}
{keys}
{extra_keys}
[[routes]]
prefix = "stub/"
provider = "openai-compatible"
base_url = "{upstream}"
timeout = {stub_timeout}
max_retries = 0
models = ["echo", "gpt-4o-mini"]
{extra_routes}
[[routes]]
prefix = "retry/"
provider = "openai-compatible"
base_url = "{upstream}"
timeout = 5.0
max_retries = 2

[memory]
strategy = "{strategy}"
budget = {budget}
params = {{}}
"""


class ProxyProcess:
    """``ctxlab serve`` in a subprocess; `start`/`stop` keep the port, config and store."""

    def __init__(self, workdir: Path, config: str, port: int, env: Mapping[str, str] = KEYS_ENV):
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.config_path = workdir / f"proxy-{port}.toml"
        self.config_path.write_text(config)
        self.log = workdir / f"proxy-{port}.log"
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ProxyProcess:
        cmd = [sys.executable, "-m", "ctxlab.cli", "serve", "--config", str(self.config_path)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        wait_http(self.url + "/healthz", self.proc, self.log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def client(self, key: str | None, session: str | None = None, **kw: Any) -> httpx.Client:
        headers = {}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        if session is not None:
            headers["x-session-id"] = session
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)

    def chat(self, key: str, text: str, session: str | None = None, **body: Any) -> httpx.Response:
        payload = {"model": "stub/echo", "messages": [{"role": "user", "content": text}], **body}
        with self.client(key, session) as c:
            return c.post("/v1/chat/completions", json=payload)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_proxy(tmp_path: Path, stub: Stub, store: str, **config: Any) -> ProxyProcess:
    port = free_port()
    text = config_text(port=port, store=store, upstream=stub.base_url, **config)
    return ProxyProcess(tmp_path, text, port).start()
