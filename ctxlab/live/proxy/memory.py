"""What a request sends upstream: a session's turn, or its own messages pruned to the budget."""

from __future__ import annotations

from ctxlab.live.proxy.exchange import Exchange
from ctxlab.live.proxy.state import ProxyState
from ctxlab.live.session import Session
from ctxlab.messages import Conversation, Message
from ctxlab.strategies.base import Pruned

__all__ = ["prune_request", "session_of"]


def session_of(state: ProxyState, ex: Exchange) -> Session:
    """The caller's session (``X-Session-Id``), on the proxy's store, strategy and budget."""
    assert ex.client is not None and ex.route is not None and ex.session is not None
    return Session(
        ex.route.provider,
        state.strategy,
        state.budget,
        store=state.store,
        session_id=ex.session,
        owner=ex.client.name,
        model=ex.upstream_model,
        counter=state.counter,
    )


def prune_request(state: ProxyState, messages: tuple[Message, ...]) -> Pruned | None:
    """The strategy's result when the messages exceed the budget, else None (sent as is)."""
    if state.counter.count_messages(messages) <= state.budget.available:
        return None
    conversation = Conversation(id="request", messages=messages)
    return state.strategy.prune(conversation, state.budget, state.counter)
