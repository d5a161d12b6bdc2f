"""Cassettes: record real HTTP exchanges to a JSONL file and replay them offline.

A `Cassette` is an httpx transport (sync and async), so a replayed call goes through exactly the
same code as a live one: retries, SSE parsing, usage normalisation. Give it to a provider::

    provider = get_provider("openai:gpt-4o-mini", cassette="tests/cassettes/chat.jsonl")

Requests match on a hash of the normalised request: method, path, sorted query and the JSON body
with sorted keys; headers and host are ignored, so a cassette replays against any base URL and
without any API key. Identical requests replay their recordings in order (the last one repeats).

Nothing secret is written: request headers are never stored, response headers are kept only
from a short allow-list, and every string in a stored body goes through `redact` (the provider's
key, ``sk-...`` values, bearer tokens, and fields named like ``api_key``/``token``/``secret``).
Streamed replies are stored whole and replayed as one body.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args

import httpx

from ctxlab.errors import CassetteMissError, DataFormatError, UsageError
from ctxlab.providers._http import redact

__all__ = ["Cassette", "CassetteMode"]

CassetteMode = Literal["auto", "record", "replay"]

_KEPT_HEADERS = ("content-type", "retry-after", "retry-after-ms", "x-should-retry")
_SECRET_FIELD = re.compile(r"(api[_-]?key|token|secret|password|authorization)", re.IGNORECASE)
_TOKEN_COUNT = re.compile(r"_tokens?$|^tokens?_|max_tokens", re.IGNORECASE)


class Cassette(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport that records to / replays from a JSONL file.

    Modes: ``replay`` never touches the network and raises `CassetteMissError` for a request
    it has not recorded; ``record`` starts the file afresh and records everything; ``auto``
    (the default) replays what it has and records the rest.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: CassetteMode = "auto",
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        """Open a cassette.

        Args:
            path: the JSONL file.
            mode: ``auto``, ``record`` or ``replay`` (see the class docstring).
            transport: where recorded requests really go (default: the network).
            async_transport: the same for async calls; `transport` is reused when it is both.
            secrets: extra strings to redact (providers add their API key).
        """
        if mode not in get_args(CassetteMode):
            raise UsageError(f"cassette mode must be auto, record or replay, got {mode!r}")
        self.path = Path(path)
        self.mode: CassetteMode = mode
        self._transport = transport
        both: object = transport  # e.g. httpx.MockTransport serves sync and async calls
        if async_transport is None and isinstance(both, httpx.AsyncBaseTransport):
            async_transport = both
        self._async_transport = async_transport
        self._secrets = [s for s in secrets if s]
        self._lock = threading.Lock()
        self._tapes: dict[str, list[dict[str, Any]]] = {}
        self._played: dict[str, int] = {}
        if mode == "record":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("", encoding="utf-8")
        elif self.path.exists():
            self._load()
        elif mode == "replay":
            raise UsageError(f"cassette {self.path} does not exist; record it with mode='record'")

    def add_secret(self, secret: str | None) -> None:
        """Also redact `secret` from everything written from now on."""
        if secret:
            self._secrets.append(secret)

    def __len__(self) -> int:
        return sum(len(v) for v in self._tapes.values())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Replay or record one synchronous exchange."""
        key, stored = self._normalise(request)
        hit = self._replay(key, request, stored)
        if hit is not None:
            return hit
        if self._transport is None:
            self._transport = httpx.HTTPTransport()
        response = self._transport.handle_request(request)
        try:
            content = response.read()
        finally:
            response.close()
        return self._record(key, stored, response, content)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Replay or record one asynchronous exchange."""
        key, stored = self._normalise(request)
        hit = self._replay(key, request, stored)
        if hit is not None:
            return hit
        if self._async_transport is None:
            self._async_transport = httpx.AsyncHTTPTransport()
        response = await self._async_transport.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        return self._record(key, stored, response, content)

    def close(self) -> None:
        """Close the inner sync transport."""
        if self._transport is not None:
            self._transport.close()

    async def aclose(self) -> None:
        """Close the inner async transport."""
        if self._async_transport is not None:
            await self._async_transport.aclose()

    def _normalise(self, request: httpx.Request) -> tuple[str, dict[str, Any]]:
        query = sorted(
            (k, "[REDACTED]" if _SECRET_FIELD.search(k) else v)
            for k, v in request.url.params.multi_items()
        )
        text = request.content.decode("utf-8", errors="replace")
        try:
            body: Any = self._scrub(json.loads(text)) if text else None
        except ValueError:
            body = redact(text, self._secrets)
        stored = {"method": request.method, "path": request.url.path, "query": query, "body": body}
        canonical = json.dumps(stored, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest(), stored

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: "[REDACTED]" if _is_secret_field(k, v) else self._scrub(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._scrub(v) for v in value]
        return redact(value, self._secrets) if isinstance(value, str) else value

    def _replay(
        self, key: str, request: httpx.Request, stored: dict[str, Any]
    ) -> httpx.Response | None:
        with self._lock:
            tape = self._tapes.get(key) if self.mode != "record" else None
            if tape:
                index = self._played.get(key, 0)
                self._played[key] = index + 1
                entry = tape[min(index, len(tape) - 1)]
                return _response(entry["response"], request)
        if self.mode == "replay":
            raise CassetteMissError(
                f"cassette {self.path} has no recording of {_describe(stored)} "
                f"(request hash {key[:12]}); record it with mode='record' or mode='auto'"
            )
        return None

    def _record(
        self, key: str, stored: dict[str, Any], response: httpx.Response, content: bytes
    ) -> httpx.Response:
        headers = {h: response.headers[h] for h in _KEPT_HEADERS if h in response.headers}
        body = redact(content.decode("utf-8", errors="replace"), self._secrets)
        entry = {
            "key": key,
            "request": stored,
            "response": {"status": response.status_code, "headers": headers, "body": body},
        }
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True)
        with self._lock:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
            self._tapes.setdefault(key, []).append(entry)
            self._played[key] = len(self._tapes[key])
        return httpx.Response(response.status_code, headers=headers, content=content)

    def _load(self) -> None:
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                int(entry["response"]["status"])  # validate the shape early
                self._tapes.setdefault(entry["key"], []).append(entry)
            except (ValueError, KeyError, TypeError) as exc:
                raise DataFormatError(
                    f"not a cassette entry ({exc}); re-record the cassette",
                    path=self.path,
                    line=number,
                ) from exc

    def __repr__(self) -> str:
        return f"Cassette({str(self.path)!r}, mode={self.mode!r}, entries={len(self)})"


def _is_secret_field(name: str, value: Any) -> bool:
    # "max_tokens", "prompt_tokens" are counts, not credentials.
    return (
        isinstance(value, str)
        and bool(_SECRET_FIELD.search(name))
        and not _TOKEN_COUNT.search(name)
    )


def _response(stored: dict[str, Any], request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        stored["status"],
        headers=stored.get("headers", {}),
        content=stored["body"].encode("utf-8"),
        request=request,
    )


def _describe(stored: dict[str, Any]) -> str:
    what = f"{stored['method']} {stored['path']}"
    body = stored.get("body")
    if isinstance(body, dict):
        if body.get("model"):
            what += f" model={body['model']!r}"
        messages = body.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            content = json.dumps(messages[-1].get("content"), ensure_ascii=False)
            what += f" last message {content[:80]}"
    return what
