"""How fast is `token_window`, next to LangChain's `trim_messages` and the naive loop?

Run from the repository root (LangChain comes with the ``bench`` extra)::

    python benchmarks/bench_strategies.py            # full run, a few minutes
    python benchmarks/bench_strategies.py --quick    # fewer repeats, smaller samples

Everything is measured in the same process and reported as the median of repeated runs:

- floor: tiktoken over the text of every message once (``encode_ordinary_batch``);
- cold trim of the whole conversation to 4k/32k/128k tokens: ``token_window`` with an empty
  count cache (it tokenizes every message once) and with a warm one (counts cached by content,
  as in a notebook or a proxy that trims the same history again), LangChain
  ``trim_messages(strategy="last", include_system=True)`` with a tiktoken per-message counter,
  and the naive loop "drop the oldest message, recount everything, repeat" (time-capped,
  extrapolated from the iterations done);
- the replay sweep: every prefix of the conversation x 6 budgets, ``token_window.replay`` (count
  cache emptied first) vs LangChain on a sample of prefixes, extrapolated;
- whether each peer's output fits the budget and keeps tool calls paired with their results;
- every registered strategy replayed over the bundled LoCoMo conversations at each session
  end x 5 budgets (what ``ctxlab compare --data locomo`` replays), CPU seconds per strategy.

The synthetic conversation is deterministic (seeded): 1,000 messages of short user turns, long
assistant turns and tool calls whose outputs have 200-3,000 words. The bundled datasets are
timed too (floor vs sweep).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from ctxlab import datasets
from ctxlab.budget import Budget
from ctxlab.errors import BudgetUnreachableError
from ctxlab.messages import Conversation, Message, ToolCall
from ctxlab.strategies import BaseStrategy, get_strategy, names
from ctxlab.tokens import TiktokenCounter, get_counter

BUDGETS = (4_000, 32_000, 128_000)
SWEEP_BUDGETS = (2_000, 4_000, 8_000, 16_000, 32_000, 128_000)
LOCOMO_BUDGETS = (1_000, 2_000, 4_000, 8_000, 16_000)
NAIVE_CAP_S = 20.0


# -- the synthetic conversation -------------------------------------------------------------


def _words(rng: random.Random, n: int) -> str:
    syllables = ("ka", "lo", "ren", "ti", "mus", "ve", "dor", "pa", "qui", "sel", "an", "tor")
    out = []
    for i in range(n):
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(1, 3)))
        out.append(word + ("." if i % 12 == 11 else ""))
    return " ".join(out)


def synthetic(n: int = 1000, seed: int = 7) -> Conversation:
    """A deterministic agent-style conversation of exactly `n` messages."""
    rng = random.Random(seed)
    msgs = [Message(role="system", content=_words(rng, 300), id="m0")]
    while len(msgs) < n:
        msgs.append(Message(role="user", content=_words(rng, rng.randint(5, 40))))
        for _ in range(rng.randint(0, 3)):
            calls = tuple(
                ToolCall(
                    id=f"call_{len(msgs)}_{j}",
                    name=rng.choice(("search", "read", "run")),
                    arguments=json.dumps({"q": _words(rng, 4)}),
                )
                for j in range(rng.randint(1, 2))
            )
            msgs.append(Message(role="assistant", content=_words(rng, 30), tool_calls=calls))
            msgs += [
                Message(
                    role="tool",
                    tool_call_id=c.id,
                    name=c.name,
                    content=_words(rng, rng.randint(200, 3000)),
                )
                for c in calls
            ]
        msgs.append(Message(role="assistant", content=_words(rng, rng.randint(150, 600))))
    msgs = [m if m.id.startswith("m") else m.replace(id=f"m{i}") for i, m in enumerate(msgs)]
    return Conversation(id="synthetic", messages=tuple(msgs[:n]))


# -- measuring --------------------------------------------------------------------------------


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def texts_of(messages: Sequence[Message]) -> list[str]:
    out = []
    for m in messages:
        out += [m.role, m.text, *(t for c in m.tool_calls for t in (c.name, c.arguments))]
    return out


def floor(counter: TiktokenCounter, messages: Sequence[Message]) -> None:
    counter._enc.encode_ordinary_batch(texts_of(messages))


def ours_cold(counter: TiktokenCounter, conv: Conversation, budget: int) -> None:
    counter.clear_cache()
    get_strategy("token_window").prune(conv, budget, counter)


def naive(counter: TiktokenCounter, conv: Conversation, budget: int) -> tuple[float, bool]:
    """The original loop: drop the oldest non-system message, recount everything, repeat.

    Returns the (possibly extrapolated) seconds and whether it finished within the cap.
    """
    enc = counter._enc

    def count(ms: list[Message]) -> int:
        return (
            sum(3 + len(enc.encode_ordinary(m.role)) + len(enc.encode_ordinary(m.text)) for m in ms)
            + 3
        )

    msgs, start, done = list(conv.messages), time.perf_counter(), 0
    total_drops = None
    while count(msgs) > budget and len(msgs) > 1:
        msgs.pop(1)
        done += 1
        if time.perf_counter() - start > NAIVE_CAP_S:
            total_drops = _drops_needed(counter, conv, budget)
            break
    elapsed = time.perf_counter() - start
    if total_drops is None:
        return elapsed, True
    # each iteration recounts a shrinking list: extrapolate with the average list length
    n = len(conv.messages)
    done_work = sum(n - i for i in range(done))
    all_work = sum(n - i for i in range(total_drops + 1))
    return elapsed * all_work / max(done_work, 1), False


def _drops_needed(counter: TiktokenCounter, conv: Conversation, budget: int) -> int:
    counts = counter.count_many(conv.messages)
    total, drops = sum(counts) + 3, 0
    while total > budget and drops + 1 < len(counts):
        drops += 1
        total -= counts[drops]
    return drops


# -- LangChain --------------------------------------------------------------------------------


def to_langchain(messages: Sequence[Message]) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    out: list[Any] = []
    for m in messages:
        if m.role == "system":
            out.append(SystemMessage(content=m.text, id=m.id))
        elif m.role == "user":
            out.append(HumanMessage(content=m.text, id=m.id))
        elif m.role == "tool":
            out.append(ToolMessage(content=m.text, tool_call_id=m.tool_call_id or "", id=m.id))
        else:
            calls = [
                {"id": c.id, "name": c.name, "args": {"raw": c.arguments}} for c in m.tool_calls
            ]
            out.append(AIMessage(content=m.text, tool_calls=calls, id=m.id))
    return out


def langchain_counter(counter: TiktokenCounter) -> Callable[[list[Any]], int]:
    """A tiktoken per-message counter with the same overheads as ctxlab's (no cache)."""
    enc = counter._enc

    def count(messages: list[Any]) -> int:
        total = 3
        for m in messages:
            total += 3 + len(enc.encode_ordinary(m.type)) + len(enc.encode_ordinary(m.text))
            for c in getattr(m, "tool_calls", ()) or ():
                total += len(enc.encode_ordinary(c["name"])) + len(
                    enc.encode_ordinary(str(c["args"].get("raw", "")))
                )
        return total

    return count


def lc_trim(lc_messages: list[Any], budget: int, count: Callable[[list[Any]], int]) -> list[Any]:
    from langchain_core.messages import trim_messages

    return trim_messages(
        lc_messages, max_tokens=budget, token_counter=count, strategy="last", include_system=True
    )


def pairs_ok(messages: Sequence[Any]) -> bool:
    """Every tool call answered by a later message, every tool result preceded by its call."""
    calls: set[str] = set()
    answered: set[str] = set()
    for m in messages:
        for c in getattr(m, "tool_calls", ()) or ():
            calls.add(c["id"] if isinstance(c, dict) else c.id)
        tcid = getattr(m, "tool_call_id", None)
        if tcid:
            if tcid not in calls:
                return False
            answered.add(tcid)
    return calls <= answered


def replay_all(
    strategy: BaseStrategy, conv: Conversation, probes: list[int], budget: Budget, counter: Any
) -> int:
    """Replay every probe, resuming after probes whose budget is unreachable; returns those."""
    unreachable = 0
    while probes:
        done = 0
        try:
            for _ in strategy.replay(conv, probes, budget, counter):
                done += 1
            return unreachable
        except BudgetUnreachableError:
            unreachable += 1
            probes = probes[done + 1 :]
    return unreachable


# -- report -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and samples")
    parser.add_argument(
        "--only-locomo", action="store_true", help="only the per-strategy LoCoMo replays"
    )
    args = parser.parse_args(argv)
    if args.only_locomo:
        locomo_replays()
        return 0
    repeat = 3 if args.quick else 5
    counter = get_counter()
    assert isinstance(counter, TiktokenCounter)
    conv = synthetic()
    whole = counter.count_messages(conv.messages)
    print(f"synthetic conversation: {len(conv.messages)} messages, {whole:,} tokens")

    t_floor = median_time(lambda: floor(counter, conv.messages), repeat)
    print(f"\nfloor (tiktoken over every message once): {t_floor * 1e3:9.1f} ms")

    print(f"\n== one trim of the whole conversation (median of {repeat}) ==")
    lc_msgs = to_langchain(conv.messages)
    lc_count = langchain_counter(counter)
    strategy = get_strategy("token_window")
    for budget in BUDGETS:
        t_cold = median_time(lambda b=budget: ours_cold(counter, conv, b), repeat)
        counter.count_many(conv.messages)
        t_warm = median_time(lambda b=budget: strategy.prune(conv, b, counter), repeat)
        t_lc = median_time(lambda b=budget: lc_trim(lc_msgs, b, lc_count), max(1, repeat // 2))
        out = lc_trim(lc_msgs, budget, lc_count)
        lc_fit = lc_count(out) <= budget
        t_naive, finished = naive(counter, conv, budget)
        ours = strategy.prune(conv, budget, counter)
        print(
            f"{budget:>7,} tokens  token_window cold {t_cold * 1e3:8.1f} ms  warm "
            f"{t_warm * 1e3:6.2f} ms | LangChain {t_lc * 1e3:8.1f} ms "
            f"({t_lc / t_cold:5.1f}x cold, {t_lc / t_warm:7.0f}x warm) | naive loop "
            f"{t_naive:7.1f} s{'' if finished else ' (extrapolated)'} "
            f"({t_naive / t_cold:,.0f}x cold)"
        )
        print(
            f"{'':16}fits budget: ours {ours.budget_ok}, LangChain {lc_fit}; tool pairs kept: "
            f"ours {pairs_ok(ours.messages)}, LangChain {pairs_ok(out)}"
        )

    print(f"\n== replay sweep: every prefix x {len(SWEEP_BUDGETS)} budgets ==")
    probes = list(range(1, len(conv.messages) + 1))

    def sweep() -> None:
        counter.clear_cache()
        for budget in SWEEP_BUDGETS:
            for _ in strategy.replay(conv, probes, Budget(max_tokens=budget), counter):
                pass

    t_sweep = median_time(sweep, repeat)
    sample = probes[:: 50 if args.quick else 20]
    start = time.perf_counter()
    broken = over = 0
    for k in sample:
        for budget in SWEEP_BUDGETS:
            out = lc_trim(lc_msgs[:k], budget, lc_count)
            broken += not pairs_ok(out)
            over += lc_count(out) > budget
    t_lc_sweep = (time.perf_counter() - start) * len(probes) / len(sample)
    cells = len(sample) * len(SWEEP_BUDGETS)
    print(f"token_window.replay: {t_sweep:8.3f} s = {t_sweep / t_floor:5.2f}x the floor")
    print(
        f"LangChain          : {t_lc_sweep:8.1f} s (extrapolated from {len(sample)} prefixes) "
        f"= {t_lc_sweep / t_sweep:,.0f}x slower"
    )
    print(
        f"LangChain outputs with broken tool pairs: {broken}/{cells}, over budget: {over}/{cells}"
    )

    print("\n== bundled datasets: floor vs replay sweep (every prefix x 6 budgets) ==")
    for name in datasets.names():
        convs = datasets.load(name)
        msgs = [m for c in convs for m in c.messages]
        t_f = median_time(lambda ms=msgs: floor(counter, ms), repeat)

        def data_sweep(cs: Sequence[Conversation] = convs) -> None:
            counter.clear_cache()
            for c in cs:
                ks = list(range(len(c.messages) + 1))
                for budget in SWEEP_BUDGETS:
                    replay_all(strategy, c, ks, Budget(max_tokens=budget), counter)

        t_s = median_time(data_sweep, max(1, repeat // 2))
        print(
            f"{name:<11} {len(convs):5} conversations {len(msgs):7,} messages  floor "
            f"{t_f * 1e3:8.1f} ms  sweep {t_s * 1e3:8.1f} ms ({t_s / t_f:4.2f}x)"
        )
    locomo_replays()
    return 0


def locomo_replays() -> None:
    """Every strategy over every LoCoMo conversation, probes at session ends x 5 budgets.

    Token counts are cached first (they are the floor, shared by all strategies); the time is
    the CPU time of the replays, one pass per strategy, with the summarizer's and BM25's
    memo caches emptied before each (so no strategy reuses another's summaries).
    """
    from ctxlab import summarizers
    from ctxlab.lab._runner import probe_points, replay_probes
    from ctxlab.scoring import _bm25

    memos = (summarizers._cached, summarizers._count_text, summarizers._line_facts)

    counter = get_counter()
    convs = datasets.load("locomo")
    for c in convs:
        counter.count_many(c.messages)
    print(
        f"\n== LoCoMo: {len(convs)} conversations x {len(LOCOMO_BUDGETS)} budgets, "
        "probes at session ends (CPU s) =="
    )
    for name in sorted(names()):
        strategy = get_strategy(name)
        for memo in (*memos, _bm25._term_counts):
            memo.cache_clear()
        start = time.process_time()
        for c in convs:
            for budget in LOCOMO_BUDGETS:
                replay_probes(
                    strategy, c, probe_points(c, "sessions"), Budget(max_tokens=budget), counter
                )
        print(f"{name:<20}{time.process_time() - start:8.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
