"""A vectorized proof that a probe's context breaks no rule of `ctxlab.invariants`.

`ctxlab.invariants.violations` walks every message of a context in Python; over a replay that
is O(k) per probe. Almost every context a replay produces is clean, so `is_clean` checks the
same rules (those about what is sent: ``decisions=False``) with arrays precomputed once per
conversation (`Shape`) and the probe's `Probe.order`, touching in Python only the messages that
are not verbatim originals. It is sound, not complete: True means `violations` finds nothing;
False means "not proven", and the caller runs `violations` to learn what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ctxlab.lab.metrics.base import Facts, Probe
from ctxlab.messages import Conversation, Message

__all__ = ["Shape", "is_clean"]


@dataclass(frozen=True)
class Shape:
    """What the rules need to know about a conversation's messages, as arrays.

    Attributes:
        is_call: assistant messages with tool calls.
        is_result: tool results.
        call_of: per tool result, the call message it answers (the newest call message before
            it, when that message holds its call id), else -1.
        results: per call message, how many results answer it (`call_of`).
        complete: per call message, every one of its call ids has a result.
        first_system: index of the first system message, or -1.
        newest_user: ``newest_user[k]``: the newest user turn before position k, or -1.
        dia_ids: the messages' ``meta["dia_id"]`` values.
    """

    is_call: npt.NDArray[np.bool_]
    is_result: npt.NDArray[np.bool_]
    call_of: npt.NDArray[np.int64]
    results: npt.NDArray[np.int64]
    complete: npt.NDArray[np.bool_]
    first_system: int
    newest_user: npt.NDArray[np.int64]
    dia_ids: frozenset[object]

    @classmethod
    def of(cls, conv: Conversation) -> Shape:
        """The shape of `conv`."""
        msgs = conv.messages
        n = len(msgs)
        is_call = np.fromiter((_is_call(m) for m in msgs), np.bool_, n)
        is_result = np.fromiter((m.role == "tool" for m in msgs), np.bool_, n)
        call_of = np.full(n, -1, dtype=np.int64)
        answered: dict[int, set[str]] = {}
        last, last_ids = -1, frozenset[str]()
        for i, m in enumerate(msgs):
            if is_call[i]:
                last, last_ids = i, frozenset(c.id for c in m.tool_calls)
                answered[i] = set()
            elif is_result[i] and last >= 0 and m.tool_call_id in last_ids:
                call_of[i] = last
                answered[last].add(str(m.tool_call_id))
        complete = np.zeros(n, dtype=np.bool_)
        for a, got in answered.items():
            complete[a] = all(c.id in got for c in msgs[a].tool_calls)
        users = np.fromiter((m.is_user_turn for m in msgs), np.bool_, n)
        newest = np.where(users, np.arange(n), -1)
        newest_user = np.concatenate(([-1], np.maximum.accumulate(newest) if n else newest))
        system = next((i for i, m in enumerate(msgs) if m.role == "system"), -1)
        return cls(
            is_call=is_call,
            is_result=is_result,
            call_of=call_of,
            results=np.bincount(call_of[call_of >= 0], minlength=n).astype(np.int64),
            complete=complete,
            first_system=system,
            newest_user=newest_user.astype(np.int64),
            dia_ids=frozenset(m.meta["dia_id"] for m in msgs if "dia_id" in m.meta),
        )


def _is_call(m: Message) -> bool:
    return m.role == "assistant" and bool(m.tool_calls)


def is_clean(facts: Facts, probe: Probe, tokens: int) -> bool:
    """True when ``violations(..., None, decisions=False)`` finds nothing in the probe's context.

    `tokens` is the context's exact count. False means "not proven".
    """
    pruned = probe.pruned
    assert pruned is not None
    shape: Shape = facts.memo("clean_shape", lambda f: Shape.of(f.conversation))
    k, originals = probe.k, pruned.conversation.messages
    question = probe.asked is not None
    width = k + 1 if question else k
    if len(originals) != width or (question and originals[-1] is not probe.asked):
        return False
    if originals[:k] != facts.conversation.messages[:k]:
        return False
    if pruned.tokens != tokens:
        return False
    order = probe.order
    place = order.copy()  # each sent message's place in the prefix (-1: synthetic)
    verbatim = np.zeros(width, dtype=np.bool_)
    verbatim[order[order >= 0]] = True
    if question:
        at = np.flatnonzero(order == -2)
        if len(at) != 1 or not _plain_user(probe.asked):
            return False
        place[at] = k
        verbatim[k] = True
    synthetic: set[str] = set()
    for pos, m in probe.others:
        j = facts.index.get(m.id, -1)
        if 0 <= j < k:
            o = originals[j]
            if (m.role, m.tool_calls, m.tool_call_id) != (o.role, o.tool_calls, o.tool_call_id):
                return False
            place[pos] = j
        elif (question and m.id == originals[-1].id) or not _fresh_synthetic(m, shape, synthetic):
            return False
        else:
            place[pos] = -1
            synthetic.add(m.id)
    mapped = place[place >= 0]
    last = int(place[-1]) if len(place) and place[-1] < k else -1  # the question is no call
    if len(mapped) > 1 and not bool(np.all(mapped[1:] > mapped[:-1])):
        return False  # sent twice or out of order
    return _pins_kept(shape, verbatim, k, question) and _pairs_hold(shape, mapped[mapped < k], last)


def _plain_user(m: Message | None) -> bool:
    return m is not None and m.is_user_turn and not m.tool_calls


def _fresh_synthetic(m: Message, shape: Shape, seen: set[str]) -> bool:
    """A new message the rules accept: marked synthetic, no tool fields, no copied dia_id."""
    if m.id in seen or not m.is_synthetic or m.role == "tool" or _is_call(m):
        return False
    return "dia_id" not in m.meta or m.meta["dia_id"] not in shape.dia_ids


def _pins_kept(shape: Shape, verbatim: npt.NDArray[np.bool_], k: int, question: bool) -> bool:
    system = shape.first_system
    if 0 <= system < k and not verbatim[system]:
        return False
    user = k if question else int(shape.newest_user[k])
    return user < 0 or bool(verbatim[user])


def _pairs_hold(shape: Shape, sent: npt.NDArray[np.int64], last: int) -> bool:
    """Every sent result answers a sent call; every sent call has all its results sent."""
    if last >= 0 and shape.is_call[last]:
        return False  # the context ends on a tool call
    results = sent[shape.is_result[sent]]
    owners = shape.call_of[results]
    if bool(np.any(owners < 0)):
        return False
    calls = sent[shape.is_call[sent]]
    if not len(calls):
        return not len(results)
    n = len(shape.is_call)
    sent_calls = np.zeros(n, dtype=np.bool_)
    sent_calls[calls] = True
    if not bool(np.all(sent_calls[owners])) or not bool(np.all(shape.complete[calls])):
        return False
    got = np.bincount(owners, minlength=n)
    return bool(np.all(got[calls] == shape.results[calls]))
