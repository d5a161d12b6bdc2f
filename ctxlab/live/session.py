"""`Session`: a live conversation whose memory is pruned by a strategy and kept in a store.

Three lines in a notebook::

    s = Session("scripted", "token_window", 4000, store="memory")
    s.send("Hello!").text
    s.export()                      # a Conversation that compare() takes

Each turn: lock the session and load its stored history (one store step), add the new
message(s), prune with the strategy, send the pruned messages to the provider, and, only once
the reply is complete, store the new messages and the reply and unlock the session in one store
transaction. A failed call, or a stream abandoned before its end,
stores nothing. Turns on one session are serialised by the store's lock, across threads, event
loops and (for SQLite and Redis) processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from ctxlab.budget import Budget, as_budget
from ctxlab.errors import ProviderResponseError, UsageError
from ctxlab.live._turns import NewMessages, Plan, Turn, plan_turn, split_system
from ctxlab.live.stores import SessionKey, Store, open_store
from ctxlab.live.stores.base import HeldSession, ahold_session, hold_session
from ctxlab.messages import Conversation, Message, Source, new_id
from ctxlab.providers.base import Completion, Provider, TextDelta
from ctxlab.strategies import get_strategy
from ctxlab.strategies.base import Pruned, ResumableStrategy, Strategy
from ctxlab.tokens import TokenCounter, get_counter

__all__ = ["NewMessages", "Session", "Turn"]


class Session:
    """A live conversation: the same strategy objects as the lab, a real provider, a store.

    Args:
        provider: a `Provider`, or a `get_provider` spec such as ``"openai:gpt-4o-mini"``.
        strategy: a strategy object or a registry name (``"token_window"``).
        budget: a `Budget`, or an int meaning ``Budget(max_tokens=...)``.
        store: a `Store`, a store URL (see `ctxlab.live.stores.open_store`), or None for
            ``CTXLAB_STORE``, else the SQLite file ``sessions.db`` under ``CTXLAB_HOME``.
        session_id: the session to open or continue; a fresh id when omitted.
        system: the system prompt; when the stored session has another one, this one
            replaces it from the next turn on.
        model: the model to ask for (the provider's default when omitted).
        counter: the token counter for pruning; by default the model's, else ``o200k_base``.
        owner: whose session it is; the proxy passes the client key's name.

    Each stored reply's ``meta`` records its turn: ``model``, ``finish_reason``, ``latency_s``,
    ``usage`` (the provider's normalised counts), ``tokens`` (the reply, by `counter`),
    ``sent`` (the messages sent, summaries included, as runs of ids: `ctxlab.live.sent_ids`
    lists them one by one), ``sent_tokens``, ``strategy`` (its label), ``budget`` and, when
    the strategy called an LLM, ``extra_usage``.

    A strategy with a running summary (``summarize``, ``summary_window``) keeps its state in
    the store, committed with each turn, and the next turn walks on from it: the summarizer
    is called once per fold over the session's life, not again for every earlier fold at
    every turn. The reply's ``meta`` then also records ``resumed_at`` (messages the stored
    state had already walked; 0 when the turn started over), ``summary_id`` (the summary the
    turn sent), ``summary_text`` (its text, on the first turn that sent it) and, when the
    stored state did not fit (an edited history, a changed system prompt, another strategy or
    budget, a corrupted value), ``state_rejected`` with the reason: the turn then summarized
    the history again, exactly as a fresh prune would, and logged a warning. `export`
    gathers the texts in ``annotations["summaries"]`` (summary id -> text).
    """

    def __init__(
        self,
        provider: Provider | str,
        strategy: Strategy | str,
        budget: Budget | int,
        *,
        store: Store | str | None = None,
        session_id: str | None = None,
        system: str | Message | None = None,
        model: str | None = None,
        counter: TokenCounter | None = None,
        owner: str = "default",
    ) -> None:
        self._owns_provider = isinstance(provider, str)
        self.provider = _provider(provider)
        self.strategy: Strategy = get_strategy(strategy) if isinstance(strategy, str) else strategy
        self.budget = as_budget(budget)
        self._owns_store = not isinstance(store, Store)
        self.store: Store = store if isinstance(store, Store) else open_store(store)
        self.key = SessionKey(owner=owner, id=session_id or _new_session_id())
        self.system = _system(system)
        self.model = model
        self.counter = counter or _counter(model or getattr(self.provider, "model", None))
        self.last_turn: Turn | None = None
        self._thread_lock = threading.Lock()
        self._in_turn: set[object] = set()  # threads and tasks inside a turn right now
        self._loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]
        self._loop_locks = weakref.WeakKeyDictionary()

    @property
    def session_id(self) -> str:
        """The session's id within its owner's sessions."""
        return self.key.id

    @property
    def last_pruned(self) -> Pruned | None:
        """What the strategy decided at the latest turn of this object (None before one)."""
        return self.last_turn.pruned if self.last_turn else None

    @property
    def history(self) -> tuple[Message, ...]:
        """Every stored message, never pruned, the system message first (when there is one)."""
        return self._plan_history(self.store.load(self.key))

    # -- sending -------------------------------------------------------------------------------

    def send(self, new: NewMessages, **params: Any) -> Completion:
        """Send a user message (or several messages) and return the provider's reply.

        Args:
            new: the user's text, a `Message`, or messages (tool results, a new system
                message, which replaces the session's).
            **params: provider call options: ``max_tokens``, ``temperature``, ``tools``...
        """
        return self.turn(new, **params).completion

    async def asend(self, new: NewMessages, **params: Any) -> Completion:
        """Asynchronous `send`; concurrent calls on one session run one after another."""
        return (await self.aturn(new, **params)).completion

    def stream(self, new: NewMessages, **params: Any) -> Iterator[str]:
        """Like `send`, yielding the reply's text as it arrives; stored once it is complete."""
        for item in self.stream_turn(new, **params):
            if isinstance(item, str):
                yield item

    async def astream(self, new: NewMessages, **params: Any) -> AsyncIterator[str]:
        """Asynchronous `stream`."""
        async for item in self.astream_turn(new, **params):
            if isinstance(item, str):
                yield item

    def turn(self, new: NewMessages, **params: Any) -> Turn:
        """`send`, returning the whole `Turn` (reply, pruning decisions, stored messages)."""
        with self._exclusive(), hold_session(self.store, self.key) as held:
            plan = self._plan(new, held)
            completion = self.provider.complete(plan.pruned.messages, **self._call(params))
            return self._commit(held, plan, completion)

    async def aturn(self, new: NewMessages, **params: Any) -> Turn:
        """Asynchronous `turn`."""
        async with self._aexclusive(), ahold_session(self.store, self.key) as held:
            plan = await self._aplan(new, held)
            completion = await self.provider.acomplete(plan.pruned.messages, **self._call(params))
            return await self._acommit(held, plan, completion)

    def stream_turn(self, new: NewMessages, **params: Any) -> Iterator[str | Turn]:
        """`stream` that ends with the `Turn` (after the text deltas)."""
        with self._exclusive(), hold_session(self.store, self.key) as held:
            plan = self._plan(new, held)
            final: Completion | None = None
            for event in self.provider.stream(plan.pruned.messages, **self._call(params)):
                if isinstance(event, TextDelta):
                    yield event.text
                else:
                    final = event
            yield self._commit(held, plan, _complete(final, self.provider))

    async def astream_turn(self, new: NewMessages, **params: Any) -> AsyncIterator[str | Turn]:
        """Asynchronous `stream_turn`."""
        async with self._aexclusive(), ahold_session(self.store, self.key) as held:
            plan = await self._aplan(new, held)
            final: Completion | None = None
            async for event in self.provider.astream(plan.pruned.messages, **self._call(params)):
                if isinstance(event, TextDelta):
                    yield event.text
                else:
                    final = event
            yield await self._acommit(held, plan, _complete(final, self.provider))

    # -- the rest of the lifecycle -------------------------------------------------------------

    def export(self) -> Conversation:
        """The whole stored conversation, for `compare()`, `ctxlab.save` or inspection."""
        return self._export(self.store.load(self.key))

    async def aexport(self) -> Conversation:
        """Asynchronous `export`."""
        return self._export(await self.store.aload(self.key))

    def reset(self) -> None:
        """Forget every stored turn of this session; its system prompt stays."""
        with self._exclusive(), self.store.lock(self.key):
            self._keep_system(self.store.load(self.key))
            self.store.delete(self.key)
            self.last_turn = None

    async def areset(self) -> None:
        """Asynchronous `reset`."""
        async with self._aexclusive(), self.store.alock(self.key):
            self._keep_system(await self.store.aload(self.key))
            await self.store.adelete(self.key)
            self.last_turn = None

    def close(self) -> None:
        """Close the store and provider if this session opened them from a URL or spec."""
        if self._owns_store:
            self.store.close()
        if self._owns_provider:
            self.provider.close()

    async def aclose(self) -> None:
        """Asynchronous `close` (closes the provider's async client in the running loop)."""
        if self._owns_store:
            self.store.close()
        if self._owns_provider:
            await self.provider.aclose()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"Session(id={self.key.id!r}, strategy={self.strategy.label!r}, "
            f"budget={self.budget}, store={self.store.url!r})"
        )

    # -- internals -----------------------------------------------------------------------------

    def _plan(self, new: NewMessages, held: HeldSession) -> Plan:
        return plan_turn(
            new,
            held.history,
            system=self.system,
            strategy=self.strategy,
            budget=self.budget,
            counter=self.counter,
            session_id=self.key.id,
            state=held.state,
        )

    async def _aplan(self, new: NewMessages, held: HeldSession) -> Plan:
        # Counting a huge message takes seconds, and a summary may call an LLM (a blocking
        # call): never on the event loop.
        if _chars(new) > _LARGE_TEXT or isinstance(self.strategy, ResumableStrategy):
            return await asyncio.to_thread(self._plan, new, held)
        return self._plan(new, held)

    def _export(self, stored: Sequence[Message]) -> Conversation:
        annotations: dict[str, Any] = {"owner": self.key.owner, "strategy": self.strategy.label}
        summaries = {
            m.meta["summary_id"]: m.meta["summary_text"]
            for m in stored
            if m.role == "assistant" and "summary_text" in m.meta and "summary_id" in m.meta
        }
        if summaries:
            annotations["summaries"] = summaries
        return Conversation(
            id=self.key.id,
            messages=self._plan_history(stored),
            source=Source(dataset="session", path=self.store.url),
            annotations=annotations,
        )

    def _plan_history(self, stored: Sequence[Message]) -> tuple[Message, ...]:
        effective, _, turns = split_system(stored, self.system)
        return (effective, *turns) if effective is not None else turns

    def _keep_system(self, stored: Sequence[Message]) -> None:
        if self.system is None and stored and stored[0].role == "system":
            self.system = stored[0]

    def _call(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"model": self.model, **params} if self.model is not None else params

    def _commit(self, held: HeldSession, plan: Plan, completion: Completion) -> Turn:
        turn = plan.finish(completion, self.counter)
        held.commit(turn.stored, system=plan.new_system, state=plan.state)
        return self._done(plan, turn)

    async def _acommit(self, held: HeldSession, plan: Plan, completion: Completion) -> Turn:
        if len(completion.text) > _LARGE_TEXT:
            turn = await asyncio.to_thread(plan.finish, completion, self.counter)
        else:
            turn = plan.finish(completion, self.counter)
        await held.acommit(turn.stored, system=plan.new_system, state=plan.state)
        return self._done(plan, turn)

    def _done(self, plan: Plan, turn: Turn) -> Turn:
        if plan.new_system is not None:
            self.system = plan.new_system
        self.last_turn = turn
        return turn

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._not_reentered(threading.get_ident()), self._thread_lock:
            yield

    @contextlib.asynccontextmanager
    async def _aexclusive(self) -> AsyncIterator[None]:
        # One lock per event loop: an asyncio.Lock must not be shared between loops
        # (a notebook may run several `asyncio.run` calls on one session).
        loop = asyncio.get_running_loop()
        lock = self._loop_locks.get(loop)
        if lock is None:
            lock = self._loop_locks[loop] = asyncio.Lock()
        with self._not_reentered(asyncio.current_task()):
            async with lock:
                yield

    @contextlib.contextmanager
    def _not_reentered(self, who: object) -> Iterator[None]:
        # A turn started inside another (a send while iterating a stream) would wait forever
        # for the lock its own caller holds: fail at once instead.
        if who in self._in_turn:
            raise UsageError(
                "this session is already in a turn here (a stream not yet finished?); "
                "finish or close that stream before sending again"
            )
        self._in_turn.add(who)
        try:
            yield
        finally:
            self._in_turn.discard(who)


#: Characters of text beyond which async turns count tokens in a worker thread.
_LARGE_TEXT = 64 * 1024


def _chars(new: NewMessages) -> int:
    if isinstance(new, str):
        return len(new)
    messages = [new] if isinstance(new, Message) else new
    return sum(len(m.text) for m in messages if isinstance(m, Message))


def _provider(value: Provider | str) -> Provider:
    if isinstance(value, Provider):
        return value
    if isinstance(value, str):
        from ctxlab.providers import get_provider

        return get_provider(value)
    raise UsageError(f"provider must be a Provider or a spec string, not {type(value).__name__}")


def _system(value: str | Message | None) -> Message | None:
    if value is None or isinstance(value, Message):
        if value is not None and value.role != "system":
            raise UsageError(f"system must be a system message, got role {value.role!r}")
        return value
    return Message(role="system", content=value)


def _counter(model: str | None) -> TokenCounter:
    if model:
        try:
            return get_counter(model=model)
        except UsageError:
            pass  # no known tokenizer: o200k_base, the default, is as good an estimate as any
    return get_counter()


def _new_session_id() -> str:
    return new_id("sess")


def _complete(final: Completion | None, provider: Provider) -> Completion:
    if final is None:
        raise ProviderResponseError(
            f"{provider!r} ended its stream without a final completion; nothing was stored"
        )
    return final
