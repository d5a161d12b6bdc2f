"""Reading a request body: size and time limits, JSON that every later step can handle.

`read_body` stops at ``server.max_request_bytes`` (413) and ``server.read_timeout`` (408).
`decode` turns the bytes into JSON values and refuses, with a 400 naming the problem, what
would otherwise fail deep inside the proxy: NaN or Infinity (not JSON, and not sendable
upstream), lone surrogates (not encodable as UTF-8), nesting deeper than `MAX_DEPTH`, and
provider options whose names are not plain identifiers or collide with the proxy's own call
arguments (``self``, ``new``...).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.requests import Request

from ctxlab.live.proxy.errors import ProxyHTTPError

__all__ = ["LARGE_BODY", "MAX_DEPTH", "check_params", "decode", "read_body"]

#: Bodies larger than this are decoded, checked and counted in a worker thread.
LARGE_BODY = 64 * 1024
#: The deepest nesting of arrays and objects a request may have.
MAX_DEPTH = 64

_SURROGATE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_PARAM = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Names of the arguments of Session.aturn and Provider.acomplete the options are spread into.
_RESERVED = frozenset({"self", "new", "messages", "model", "params", "extra"})


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, refused when larger than `limit` or slower than `timeout` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    try:
        return await asyncio.wait_for(_read(request, limit), timeout)
    except asyncio.TimeoutError:
        raise ProxyHTTPError(
            408,
            f"the request body did not arrive within {timeout:g} s (server.read_timeout)",
            code="request_timeout",
        ) from None


async def _read(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ProxyHTTPError:
    return ProxyHTTPError(
        413, f"request body larger than {limit} bytes (server.max_request_bytes)", code="too_large"
    )


def decode(body: bytes) -> Any:
    """The body as JSON values, checked as the module docstring says.

    Raises:
        ProxyHTTPError: 400 with code ``invalid_json``.
    """
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise _invalid(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid(f"request body is not valid JSON: {exc}") from None
    # Cheap byte scans decide whether the full walk is needed at all.
    nests = body.count(b"[") + body.count(b"{") > MAX_DEPTH
    if nests or _SURROGATE.search(body):
        _walk(data)
    return data


def _no_constant(name: str) -> Any:
    raise _invalid(f"{name} is not a JSON number; send finite numbers only")


def _walk(data: Any) -> None:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _text(value)
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise _invalid(f"JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for k in value:
                _text(k)
            items = list(value.values())
        else:
            items = value
        stack.extend((v, depth + 1) for v in items)


def _text(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)") from None


def check_params(data: dict[str, Any], own: set[str]) -> None:
    """Refuse provider option names that are not identifiers or are reserved."""
    for name in data:
        if name in own:
            continue
        if not _PARAM.fullmatch(name) or name in _RESERVED:
            shown = name if len(name) <= 64 else name[:64] + "..."
            raise ProxyHTTPError(
                400,
                f"unsupported parameter {shown!r}: option names are identifiers of at most 64 "
                f"characters, other than {', '.join(sorted(_RESERVED))}",
                code="unsupported_parameter",
                param=shown,
            )


def _invalid(message: str) -> ProxyHTTPError:
    return ProxyHTTPError(400, message, code="invalid_json")
