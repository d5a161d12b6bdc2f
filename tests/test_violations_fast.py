"""The violations metric's fast path agrees with `ctxlab.invariants.violations`.

`is_clean` proves a context breaks no rule with arrays; when it cannot, the metric runs the
full check. Here, on real replays of every bundled dataset, it must say "clean" exactly when
the full check finds nothing: never for a broken context (the column would hide a breach), and
always for ctxlab's own strategies (the metric would lose its speed). Each kind of breach is
then made by hand from a clean context and must not pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

from ctxlab import Conversation, Message, datasets
from ctxlab.errors import BudgetUnreachableError
from ctxlab.invariants import violations
from ctxlab.lab._questions import question_message, with_question
from ctxlab.lab.metrics._clean import is_clean
from ctxlab.lab.metrics.base import Facts, Probe
from ctxlab.pruned import Decision, Pruned
from ctxlab.strategies import default_names, get_strategy
from ctxlab.tokens import get_counter

COUNTER = get_counter()
BUDGETS = (600, 1500, 4000)


def sample(name: str) -> Conversation:
    conv = datasets.load(name)[0]
    return conv if len(conv.messages) <= 160 else conv.prefix(160)


def probes(conv: Conversation, strategy: str) -> Iterator[Probe]:
    """Replay probes of `strategy` over `conv`: about 20 prefixes, at each budget."""
    facts = Facts(conv, COUNTER)
    s = get_strategy(strategy)
    ks = list(range(1, len(conv.messages) + 1, max(1, len(conv.messages) // 20)))
    for budget in BUDGETS:
        results = s.replay(conv, ks, budget, COUNTER)
        try:  # a budget the first messages cannot meet ends that budget's replay
            for k, pruned in zip(ks, results, strict=False):
                yield Probe(k=k, pruned=pruned, facts=facts)
        except BudgetUnreachableError:
            continue


def agrees(probe: Probe) -> tuple[bool, bool]:
    """(fast says clean, full check finds nothing)."""
    p = probe.pruned
    assert p is not None
    tokens = COUNTER.count_messages(p.messages)
    found = violations(p.conversation, p, None, COUNTER, decisions=False)
    return is_clean(probe.facts, probe, tokens), not found


@pytest.mark.parametrize("dataset", ["taubench", "sweagent", "locomo", "mtbench101"])
def test_own_strategies_are_proven_clean(dataset: str) -> None:
    conv = sample(dataset)
    seen = 0
    for name in default_names():
        if name == "evidence_oracle":
            continue
        for probe in probes(conv, name):
            assert agrees(probe) == (True, True), (name, probe.k, probe.pruned)
            seen += 1
    assert seen > 150


@pytest.mark.parametrize("peer", ["langchain_trim", "litellm_trim", "llamaindex_buffer"])
@pytest.mark.parametrize("dataset", ["taubench", "sweagent"])
def test_peers_breaches_are_never_called_clean(peer: str, dataset: str) -> None:
    broken = 0
    for probe in probes(sample(dataset), peer):
        fast, clean = agrees(probe)
        assert fast == clean, (peer, probe.k)
        broken += not clean
    assert broken > 0  # these libraries do break pairs or pins on this data


def test_question_probes_agree() -> None:
    conv = datasets.load("locomo")[0]
    facts = Facts(conv, COUNTER)
    n = len(conv.messages)
    for q in range(0, len(conv.annotations["questions"]), 40):
        asked = question_message(conv, q)
        for name in ("token_window", "retrieve", "summary_window"):
            pruned = get_strategy(name).prune(with_question(conv, asked), 2000, COUNTER)
            probe = Probe(k=n, pruned=pruned, facts=facts, question=q, asked=asked)
            assert agrees(probe) == (True, True), (name, q)


# ---- breaches made by hand from a clean context ----


def _clean_agent_probe() -> Probe:
    conv = sample("taubench")
    k = len(conv.messages) - 1
    while conv.messages[k - 1].role != "tool":
        k -= 1
    pruned = get_strategy("token_window").prune(conv.prefix(k), 2500, COUNTER)
    probe = Probe(k=k, pruned=pruned, facts=Facts(conv, COUNTER))
    assert agrees(probe) == (True, True)
    return probe


def _with(
    probe: Probe,
    messages: tuple[Message, ...] | None = None,
    decisions: tuple[Decision, ...] | None = None,
    tokens: int | None = None,
) -> Probe:
    """The probe with its context, decisions or token count replaced."""
    p = probe.pruned
    assert p is not None
    sent = p.messages if messages is None else messages
    new = dataclasses.replace(
        p,
        messages=sent,
        tokens=COUNTER.count_messages(sent) if tokens is None else tokens,
        decide=None,
        given_decisions=p.decisions if decisions is None else decisions,
    )
    return Probe(k=probe.k, pruned=new, facts=probe.facts)


def _index(sent: tuple[Message, ...], test: Callable[[Message], bool], last: bool = False) -> int:
    found = [i for i, m in enumerate(sent) if test(m)]
    return found[-1] if last else found[0]


def _breaches() -> Iterator[tuple[str, Callable[[Probe], Probe]]]:
    def swap(p: Probe) -> Probe:
        s = list(p.pruned.messages)  # type: ignore[union-attr]
        s[1], s[2] = s[2], s[1]
        return _with(p, messages=tuple(s))

    def twice(p: Probe) -> Probe:
        s = p.pruned.messages  # type: ignore[union-attr]
        return _with(p, messages=(*s[:2], s[1], *s[2:]))

    def without(test: Callable[[Message], bool], last: bool = False) -> Callable[[Probe], Probe]:
        def drop(p: Probe) -> Probe:
            s = p.pruned.messages  # type: ignore[union-attr]
            i = _index(s, test, last)
            return _with(p, messages=(*s[:i], *s[i + 1 :]))

        return drop

    def changed(test: Callable[[Message], bool], last: bool = False) -> Callable[[Probe], Probe]:
        def edit(p: Probe) -> Probe:
            s = p.pruned.messages  # type: ignore[union-attr]
            i = _index(s, test, last)
            edited = dataclasses.replace(s[i], content=f"{s[i].text} (edited)")
            return _with(p, messages=(*s[:i], edited, *s[i + 1 :]))

        return edit

    def new_message(synthetic: bool) -> Callable[[Probe], Probe]:
        def add(p: Probe) -> Probe:
            s = p.pruned.messages  # type: ignore[union-attr]
            meta = {"synthetic": True} if synthetic else {}
            note = Message(id="note-1", role="user", content="a note", meta=meta)
            return _with(p, messages=(s[0], note, note, *s[1:]) if synthetic else (note, *s))

        return add

    is_call = lambda m: m.role == "assistant" and bool(m.tool_calls)  # noqa: E731
    yield "order", swap
    yield "sent twice", twice
    yield "system lost", without(lambda m: m.role == "system")
    yield "system changed", changed(lambda m: m.role == "system")
    yield "newest user changed", changed(lambda m: m.role == "user", last=True)
    yield "orphan result", without(is_call, last=True)
    yield "dangling call", without(lambda m: m.role == "tool", last=True)
    yield "ends on a call", lambda p: _with(p, messages=p.pruned.messages[:-1])  # type: ignore[union-attr]
    yield "tokens wrong", lambda p: _with(p, tokens=p.pruned.tokens + 1)  # type: ignore[union-attr]
    yield "unmarked new message", new_message(synthetic=False)
    yield "synthetic sent twice", new_message(synthetic=True)


@pytest.mark.parametrize(("what", "breach"), list(_breaches()), ids=[w for w, _ in _breaches()])
def test_each_breach_is_not_called_clean(what: str, breach: Callable[[Probe], Probe]) -> None:
    broken = breach(_clean_agent_probe())
    assert agrees(broken) == (False, False), what


def test_decisions_are_left_to_check_and_never_built() -> None:
    """The metric measures the request; wrong decisions are `check`'s to find, not its own."""
    probe = _clean_agent_probe()
    p = probe.pruned
    assert p is not None and p.decide is not None
    built = []

    def wrong() -> list[Decision]:
        built.append(1)
        return [
            Decision(index=d.index, message_id=d.message_id, action="kept", reason="")
            for d in p.decisions
        ]

    lazy = Pruned(
        conversation=p.conversation,
        messages=p.messages,
        tokens=p.tokens,
        budget=p.budget,
        strategy=p.strategy,
        decide=wrong,
    )
    assert agrees(Probe(k=probe.k, pruned=lazy, facts=probe.facts)) == (True, True)
    assert built == []
    kinds = {v.kind for v in violations(lazy.conversation, lazy, None, COUNTER)}
    assert kinds == {"malformed"} and built == [1]
