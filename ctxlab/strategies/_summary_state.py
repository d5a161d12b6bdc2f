"""A `summarize` walk as text, so a live session resumes it at the next turn instead of redoing it.

`dump` writes the state a `Walk` reached (the running summary, which messages each fold took,
the units not folded yet, the summarizer's usage) as compact JSON; `restore` rebuilds the walk
from it for a conversation that extends the one it was made on. Nothing in the text is trusted:
`restore` raises `StateRejected`, saying why, when the text is not JSON of this format or fails
its checksum (an accidental change: a truncated write, another program's value), was
made for another strategy, budget, counter or session, does not match the conversation's
leading messages (a replaced system prompt, an edited history), or is inconsistent in itself
(indices out of range, token counts that do not recount, a message in two places at once).
The caller then walks the conversation from the start, which gives the same result.

The checksum detects damage, it does not authenticate: whoever can write the store can rewrite
the messages themselves, so a forged state that passes every check is out of scope.

Walking on from a restored state gives the same folds, summary, messages and decisions as
walking the whole conversation, because a walk's decisions at message k depend only on the
messages before k and on the summaries it wrote (see `ctxlab.strategies.summarize`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ctxlab.budget import Budget
from ctxlab.messages import Conversation, Message
from ctxlab.strategies._summary_walk import SUMMARY_HEADER, Walk
from ctxlab.strategies._tool_units import Unit
from ctxlab.tokens import TokenCounter
from ctxlab.usage import Usage

if TYPE_CHECKING:
    from ctxlab.strategies.summarize import Summarize

__all__ = ["FORMAT", "StateRejected", "dump", "restore", "seal"]

#: The format tag of the text; a text with another tag is rejected, never misread.
FORMAT = "ctxlab.summary_walk/1"
_USAGE = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "requests")


class StateRejected(Exception):
    """A stored state that cannot be resumed; the message says why (the walk starts over)."""


def fingerprint(
    strategy: Summarize, budget: Budget, counter: TokenCounter, conversation_id: str
) -> str:
    """What a state is only valid for: strategy (summarizer included), budget, counter, session."""
    parts = (
        type(strategy).__qualname__,
        strategy.label,
        str(budget.max_tokens),
        str(budget.reserve_output),
        repr(counter),
        conversation_id,
    )
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def prefix_digest(messages: Sequence[Message]) -> str:
    """A digest of everything about these messages that a walk reads (not timestamps or meta)."""
    h = hashlib.sha256()
    for m in messages:
        calls = [(c.id, c.name, c.arguments) for c in m.tool_calls]
        content = m.content if isinstance(m.content, str) else repr(m.content)
        item = [m.id, m.role, m.name, m.tool_call_id, calls, m.is_tool_output, content]
        h.update(json.dumps(item, ensure_ascii=False).encode())
        h.update(b"\x00")
    return h.hexdigest()


def dump(walk: Walk) -> str:
    """The state `walk` reached, as text for `restore` (after a result: no pending usage)."""
    owner = walk.tracker.owner
    open_unit = owner if owner is not None and owner.state == "open" else None
    data = {
        "format": FORMAT,
        "for": fingerprint(walk.s, walk.budget, walk.counter, walk.conv.id),
        "k": walk.k,
        "prefix": prefix_digest(walk.msgs[: walk.k]),
        "system": walk.system,
        "user": walk.user,
        "live": walk.live,
        "folds": walk.folds,
        "lost": walk.lost,
        "versions": walk.versions,
        "text": walk.text,
        "summary_cost": walk.summary_cost,
        "notes": list(dict.fromkeys(walk.notes)),
        "usage": [getattr(walk.total_usage, f) for f in _USAGE] + [walk.total_usage.estimated],
        "fold_no": _runs(walk.fold_no),
        "unfolded": [[u.members, u.cost, u.state] for u in walk.unfolded],
        "open": None if open_unit is None else _open(open_unit),
        "bad": {str(i): why for i, why in walk.tracker.bad_reason.items()},
    }
    return seal(data)


def seal(data: dict[str, Any]) -> str:
    """`data` as JSON text with its checksum (the ``check`` field) added."""
    body = {k: v for k, v in data.items() if k != "check"}
    return json.dumps({**body, "check": _checksum(body)}, ensure_ascii=False, separators=(",", ":"))


def _checksum(body: dict[str, Any]) -> str:
    text = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def restore(
    strategy: Summarize, conv: Conversation, budget: Budget, counter: TokenCounter, text: str
) -> Walk:
    """The walk `dump` wrote, continuing on `conv` (which must extend what it walked).

    Raises:
        StateRejected: the text cannot be trusted for this conversation (see the module
            docstring); the message says why.
    """
    data = _parse(text)
    _need(data.get("format") == FORMAT, f"not a {FORMAT} state")
    made_for = fingerprint(strategy, budget, counter, conv.id)
    _need(data.get("for") == made_for, "made for another strategy, budget, counter or session")
    k = _int(data, "k")
    _need(k <= len(conv.messages), f"walked {k} messages, the conversation has fewer")
    _need(data.get("prefix") == prefix_digest(conv.messages[:k]), "the history changed")
    walk = Walk(strategy, conv, budget, counter)
    _fill(walk, data, k)
    _check(walk)
    return walk


# -- writing ------------------------------------------------------------------------------------


def _runs(values: Sequence[int]) -> list[list[int]]:
    """Run-length encoding: [[value, count], ...] (fold numbers come in long runs)."""
    out: list[list[int]] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return out


def _open(unit: Unit) -> list[Any]:
    return [unit.members, unit.cost, sorted(unit.pending)]


# -- reading ------------------------------------------------------------------------------------


def _parse(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise StateRejected(f"not JSON ({exc})") from None
    _need(isinstance(data, dict), "not a JSON object")
    out: dict[str, Any] = data
    check = out.pop("check", None)
    _need(check == _checksum(out), "its checksum does not match (a damaged value)")
    return out


def _fill(walk: Walk, data: dict[str, Any], k: int) -> None:
    walk.k = k
    walk.system, walk.user = _index(data, "system", k), _index(data, "user", k)
    walk.live, walk.folds, walk.lost = _int(data, "live"), _int(data, "folds"), _int(data, "lost")
    walk.versions, walk.summary_cost = _int(data, "versions"), _int(data, "summary_cost")
    walk.text = data.get("text")
    _need(walk.text is None or isinstance(walk.text, str), "text is not a string")
    walk.notes = _strings(data.get("notes"), "notes")
    walk.total_usage = _usage(data.get("usage"))
    walk.fold_no = _unruns(data.get("fold_no"), k, walk.folds)
    walk.covered = [i for i, f in enumerate(walk.fold_no) if f > walk.lost]
    walk.unfolded = [_unit(u, k) for u in _list(data.get("unfolded"), "unfolded")]
    walk.tracker.owner = walk.tracker.last = _open_unit(data.get("open"), k)
    bad = data.get("bad")
    if not isinstance(bad, dict):
        raise StateRejected("bad is not an object")
    walk.tracker.bad_reason = {_key(i, k): _string(why, "bad") for i, why in bad.items()}


def _check(walk: Walk) -> None:
    """Everything a walk keeps must agree with the messages it walked."""
    _need(walk.lost <= walk.folds, "more folds lost than made")
    _need(walk.text is not None or not walk.covered, "folded messages but no summary text")
    count = walk.counter.count
    owner = walk.tracker.owner
    units = [*walk.unfolded, *([owner] if owner is not None else [])]
    for u in units:
        _need(u.cost == sum(count(walk.msgs[i]) for i in u.members), "a unit's tokens differ")
    _need(walk.live == sum(u.cost for u in walk.unfolded if u.state == "ok"), "live tokens differ")
    places = [i for u in units for i in u.members]
    places += [i for i, f in enumerate(walk.fold_no) if f > 0]
    _need(sorted(places) == list(range(walk.k)), "a message is in no place or in two")
    if walk.text is not None:
        probe = Message(role=walk.s.role, content=SUMMARY_HEADER + walk.text, id="summary")
        _need(count(probe) == walk.summary_cost, "the summary's tokens differ")


def _need(condition: bool, why: str) -> None:
    if not condition:
        raise StateRejected(why)


def _int(data: dict[str, Any], name: str) -> int:
    value: Any = data.get(name)
    _need(type(value) is int and value >= 0, f"{name} is not a whole number >= 0")
    out: int = value
    return out


def _index(data: dict[str, Any], name: str, k: int) -> int | None:
    value: Any = data.get(name)
    if value is None:
        return None
    _need(type(value) is int and 0 <= value < k, f"{name} is not a message index")
    out: int = value
    return out


def _key(text: Any, k: int) -> int:
    _need(isinstance(text, str) and text.isdigit() and int(text) < k, "bad message index")
    return int(text)


def _list(value: Any, name: str) -> list[Any]:
    _need(isinstance(value, list), f"{name} is not a list")
    out: list[Any] = value
    return out


def _string(value: Any, name: str) -> str:
    _need(isinstance(value, str), f"{name} holds a non-string")
    out: str = value
    return out


def _strings(value: Any, name: str) -> list[str]:
    return [_string(v, name) for v in _list(value, name)]


def _ints(value: Any, name: str, k: int) -> list[int]:
    items = _list(value, name)
    _need(all(type(i) is int and 0 <= i < k for i in items), f"{name} holds a bad index")
    _need(items == sorted(set(items)) and bool(items), f"{name} is not ascending")
    return items


def _usage(value: Any) -> Usage:
    items = _list(value, "usage")
    _need(len(items) == len(_USAGE) + 1, "usage has the wrong length")
    counts = items[:-1]
    _need(all(type(c) is int and c >= 0 for c in counts), "usage holds a bad count")
    _need(isinstance(items[-1], bool), "usage.estimated is not a flag")
    return Usage(**dict(zip(_USAGE, counts, strict=True)), estimated=items[-1])


def _unruns(value: Any, k: int, folds: int) -> list[int]:
    out: list[int] = []
    for run in _list(value, "fold_no"):
        _need(isinstance(run, list) and len(run) == 2, "fold_no holds a bad run")
        fold, n = run
        _need(type(fold) is int and 0 <= fold <= folds, "fold_no holds a bad fold")
        _need(type(n) is int and 0 < n <= k - len(out), "fold_no runs past the walk")
        out.extend([fold] * n)
    _need(len(out) == k, "fold_no does not cover the walk")
    return out


def _unit(value: Any, k: int) -> Unit:
    _need(isinstance(value, list) and len(value) == 3, "a unit is malformed")
    members, cost, state = value
    _need(state in ("ok", "bad"), "a unit has a bad state")
    _need(type(cost) is int and cost >= 0, "a unit has a bad cost")
    return Unit(_ints(members, "unit", k), cost, state)


def _open_unit(value: Any, k: int) -> Unit | None:
    if value is None:
        return None
    _need(isinstance(value, list) and len(value) == 3, "the open unit is malformed")
    members, cost, pending = value
    _need(type(cost) is int and cost >= 0, "the open unit has a bad cost")
    calls = frozenset(_strings(pending, "pending"))
    _need(bool(calls), "the open unit waits for nothing")
    return Unit(_ints(members, "open unit", k), cost, "open", calls)
