"""One structured (JSON) log line per request on the ``ctxlab.live.proxy.access`` logger.

Fields: key (the key's name, never the key), session, route, model, status, tokens, cost,
latency, pruning. Message content is added only when the server runs with ``debug = true``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from typing import Any

from ctxlab.formats.openai_chat import to_openai
from ctxlab.messages import Message
from ctxlab.usage import Usage

__all__ = ["access_log", "configure", "request_record"]

access_log = logging.getLogger("ctxlab.live.proxy.access")


def configure(level: int = logging.INFO) -> None:
    """Send the proxy's logs to stderr, one message per line, unless logging is set up already."""
    root = logging.getLogger("ctxlab")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(level)


def request_record(
    *,
    key: str | None,
    session: str | None,
    route: str | None,
    model: str | None,
    status: int,
    latency_s: float,
    usage: Usage | None = None,
    cost_usd: float = math.nan,
    pruned: str | None = None,
    stream: bool = False,
    error: str | None = None,
) -> dict[str, Any]:
    """The fields of one access log line."""
    record: dict[str, Any] = {
        "event": "chat",
        "key": key,
        "session": session,
        "route": route,
        "model": model,
        "status": status,
        "stream": stream,
        "latency_ms": round(latency_s * 1000, 3),
    }
    if usage is not None:
        record["input_tokens"] = usage.total_input_tokens
        record["cached_input_tokens"] = usage.cached_input_tokens
        record["output_tokens"] = usage.output_tokens
    record["cost_usd"] = round(cost_usd, 8) if math.isfinite(cost_usd) else None
    if pruned is not None:
        record["pruned"] = pruned
    if error is not None:
        record["error"] = error
    return record


def emit(record: dict[str, Any], *, debug_messages: Sequence[Message] | None = None) -> None:
    """Write one access line (with the messages only when `debug_messages` is given)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    if debug_messages is not None:
        record = {**record, "messages": to_openai(debug_messages)}
    access_log.info(json.dumps(record, ensure_ascii=False, default=str))
