"""The FastAPI application: endpoints, authentication, request size limit, error bodies.

Endpoints (all but ``/healthz`` and ``/metrics`` need ``Authorization: Bearer <key>``)::

    POST   /v1/chat/completions         OpenAI-compatible; X-Session-Id makes it stateful
    GET    /v1/models                   the configured routes and models
    GET    /v1/sessions                 the caller's sessions
    GET    /v1/sessions/{id}            one session's stored messages
    DELETE /v1/sessions/{id}            forget a session
    GET    /v1/sessions/{id}/export     the session as OpenAI chat JSONL (``ctxlab.load`` reads it)
    GET    /healthz                     liveness, no key needed
    GET    /metrics                     Prometheus text format (needs ``server.metrics_key``
                                        as a bearer key when that is set)

Sessions are keyed by (key name, session id): whatever id a client sends, it only ever
reaches its own key's sessions. Every error, including one nothing expected, is answered as
OpenAI-style JSON (`_JSONErrors`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ctxlab.errors import CtxlabError
from ctxlab.formats.openai_jsonl import json_line, to_record
from ctxlab.live.proxy.auth import ClientKey, bearer_matches
from ctxlab.live.proxy.chat import Exchange, chat_completion, failure_of, finish
from ctxlab.live.proxy.config import ProxyConfig, load_config
from ctxlab.live.proxy.errors import ProxyHTTPError, error_body, from_exception, is_backend_down
from ctxlab.live.proxy.intake import read_body
from ctxlab.live.proxy.state import ProxyState
from ctxlab.live.proxy.wire import messages_body
from ctxlab.live.session import Session
from ctxlab.live.stores import SessionKey
from ctxlab.messages import Source

__all__ = ["create_app"]

logger = logging.getLogger("ctxlab.live.proxy")

# Printable ASCII without spaces or slashes: safe in URLs, logs and store keys.
_SESSION_ID = re.compile(r"[A-Za-z0-9._:@~+=-]{1,200}")


def create_app(config: ProxyConfig | str | os.PathLike[str], **state_options: Any) -> FastAPI:
    """Build the proxy application (configuration errors are raised here, not per request).

    Args:
        config: a `ProxyConfig` or the path of a TOML file.
        **state_options: ``store=`` or ``limits=`` to use instead of the configured ones.
    """
    cfg = config if isinstance(config, ProxyConfig) else load_config(config)
    state = ProxyState(cfg, **state_options)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await state.aclose()

    app = FastAPI(title="ctxlab proxy", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.proxy = state
    app.add_middleware(_JSONErrors)
    _install_errors(app)
    _install_routes(app, state)
    return app


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(data).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _client(state: ProxyState, request: Request) -> ClientKey:
    client = state.keys.authenticate(request.headers.get("authorization"))
    if client is None:
        missing = not request.headers.get("authorization")
        raise ProxyHTTPError(
            401,
            "missing API key: send 'Authorization: Bearer <key>'"
            if missing
            else "incorrect API key provided",
            code="invalid_api_key",
            headers={"www-authenticate": "Bearer"},
        )
    return client


def _session_id(value: str | None) -> str | None:
    if value is None:
        return None
    if not _SESSION_ID.fullmatch(value):
        raise ProxyHTTPError(
            400,
            "X-Session-Id must be 1-200 characters of letters, digits and ._:@~+=-",
            param="X-Session-Id",
        )
    return value


def _install_routes(app: FastAPI, state: ProxyState) -> None:
    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        ex = Exchange()
        try:
            ex.client = _client(state, request)
            ex.session = _session_id(request.headers.get("x-session-id"))
            server = state.config.server
            body = await read_body(request, server.max_request_bytes, server.read_timeout)
            response = await chat_completion(state, ex, body)
        except Exception as exc:  # answered as JSON, logged and counted like any request
            failure = exc if isinstance(exc, ProxyHTTPError) else failure_of(state, ex, exc)
            ex.status, ex.error = failure.status, ex.error or failure.code or failure.type
            state.spawn(finish(state, ex))
            return failure.response()
        if not ex.stream:  # a stream finishes its own accounting when it ends
            state.spawn(finish(state, ex))
        return response

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        _client(state, request)
        data = []
        for route in state.router.routes:
            names = [route.prefix + m for m in route.config.models] or [route.prefix]
            data += [
                {"id": n, "object": "model", "created": 0, "owned_by": route.config.provider}
                for n in names
            ]
        return _json({"object": "list", "data": data})

    @app.get("/v1/sessions")
    async def sessions(request: Request) -> Response:
        client = _client(state, request)
        found = await state.store.alist_sessions(client.name)
        return _json({"object": "list", "data": [_info(i) for i in found]})

    @app.get("/v1/sessions/{session_id}")
    async def session(request: Request, session_id: str) -> Response:
        key = _key(state, request, session_id)
        messages = await state.store.aload(key)
        if not messages:
            raise _unknown_session(session_id)
        return _json({"id": session_id, "object": "session", "messages": messages_body(messages)})

    @app.delete("/v1/sessions/{session_id}")
    async def delete(request: Request, session_id: str) -> Response:
        key = _key(state, request, session_id)
        async with state.store.alock(key):
            existed = await state.store.adelete(key)
        if not existed:
            raise _unknown_session(session_id)
        return _json({"id": session_id, "object": "session.deleted", "deleted": True})

    @app.get("/v1/sessions/{session_id}/export")
    async def export(request: Request, session_id: str) -> Response:
        key = _key(state, request, session_id)
        provider = state.router.routes[0].provider  # export never calls it
        live = Session(
            provider,
            state.strategy,
            state.budget,
            store=state.store,
            session_id=key.id,
            owner=key.owner,
            counter=state.counter,
        )
        conversation = await asyncio.to_thread(live.export)
        if not conversation.messages:
            raise _unknown_session(session_id)
        # The store URL names a path on this server: clients get the dataset name only.
        conversation = dataclasses.replace(conversation, source=Source(dataset="proxy"))
        line = json_line(to_record(conversation))
        return Response(
            line.encode(),
            media_type="application/x-ndjson",
            headers={"content-disposition": f'attachment; filename="{session_id}.jsonl"'},
        )

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        digest = state.metrics_key
        if digest is not None and not bearer_matches(request.headers.get("authorization"), digest):
            raise ProxyHTTPError(
                401,
                "GET /metrics needs the metrics key (server.metrics_key) as a bearer key",
                code="invalid_api_key",
                headers={"www-authenticate": "Bearer"},
            )
        return Response(state.metrics.render(), media_type=state.metrics.content_type)


def _key(state: ProxyState, request: Request, session_id: str) -> SessionKey:
    client = _client(state, request)
    return SessionKey(owner=client.name, id=_session_id(session_id) or session_id)


def _unknown_session(session_id: str) -> ProxyHTTPError:
    return ProxyHTTPError(404, f"no session {session_id!r} for this key", code="session_not_found")


def _info(info: Any) -> dict[str, Any]:
    return {
        "id": info.key.id,
        "object": "session",
        "messages": info.messages,
        "created_at": info.created_at.isoformat(),
        "updated_at": info.updated_at.isoformat(),
    }


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ProxyHTTPError)
    async def proxy_error(_: Request, exc: ProxyHTTPError) -> Response:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = "not_found" if exc.status_code == 404 else None
        body = error_body(str(exc.detail), type="invalid_request_error", code=code)
        return _json(body, exc.status_code, dict(exc.headers or {}))

    @app.exception_handler(CtxlabError)
    async def ctxlab_error(_: Request, exc: CtxlabError) -> Response:
        return from_exception(exc).response()


class _JSONErrors:
    """ASGI middleware: an exception no handler took becomes a JSON error, not a text 500.

    Redis being down becomes a 503 (see `from_exception`); anything else a 500 that names
    only the exception's type, logged once with its traceback.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if scope["type"] != "http" or started:
                raise
            if not is_backend_down(exc):
                logger.error("unexpected error serving %s", scope.get("path"), exc_info=exc)
            await from_exception(exc).response()(scope, receive, send)
