"""Question probes: every bundled LoCoMo question x strategies x budgets, against a floor.

    python benchmarks/bench_questions.py [--repeat 3] [--cold]

Measures, in one run and on the same machine:

- the floor: one exact token count of every question request (the whole conversation plus the
  question), with a fresh counter, i.e. what any strategy must at least read once;
- ``compare(locomo, [token_window, importance, retrieve], budgets=[1k, 2k, 4k, 8k],
  probes="questions")`` (BM25 relevance);
- the same with ``retrieve(embedder="minilm")`` (the hybrid) in place of ``retrieve``, with a
  warm embedding cache;
- with ``--cold``: the hybrid's first run on an empty embedding cache (every turn and question
  embedded once), reported apart.

Prints medians of `--repeat` runs and their ratios to the floor. Targets (issue): BM25 sweep
at most 15 s on a 2-core machine; the hybrid at most 3x that with a warm cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import ctxlab
from ctxlab import datasets
from ctxlab.lab._questions import applicable_questions, question_message
from ctxlab.tokens import TiktokenCounter

BUDGETS = [1000, 2000, 4000, 8000]
BM25 = ["token_window", "importance", "retrieve"]
HYBRID = ["token_window", "importance", "retrieve:embedder=minilm"]


def floor(convs: list[ctxlab.Conversation]) -> None:
    counter = TiktokenCounter("o200k_base")  # a fresh counter: nothing is cached yet
    for conv in convs:
        for q in applicable_questions(conv):
            counter.count_messages([*conv.messages, question_message(conv, q)])


def sweep(strategies: list[str]) -> Callable[[list[ctxlab.Conversation]], None]:
    def run(convs: list[ctxlab.Conversation]) -> None:
        ctxlab.compare(convs, strategies, BUDGETS, probes="questions", progress=False)

    return run


def timed(fn: Callable[[list[ctxlab.Conversation]], None], convs, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(convs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="also time a cold embedding cache")
    args = parser.parse_args()
    convs = datasets.load("locomo")
    questions = sum(len(applicable_questions(c)) for c in convs)
    print(f"{questions} questions in {len(convs)} conversations x budgets {BUDGETS}")
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as home:
        os.environ["CTXLAB_HOME"] = home
        if args.cold:
            start = time.perf_counter()
            sweep(["retrieve:embedder=minilm"])(convs)
            rows.append(("hybrid retrieve alone, cold embedding cache (once)",
                         time.perf_counter() - start))  # fmt: skip
        else:
            sweep(["retrieve:embedder=minilm"])(convs)  # warm the cache, untimed
        rows.insert(0, ("floor: count every question request once", timed(floor, convs, 3)))
        rows.append((f"BM25 sweep {BM25}", timed(sweep(BM25), convs, args.repeat)))
        rows.append((f"hybrid sweep {HYBRID}, warm", timed(sweep(HYBRID), convs, args.repeat)))
    base = rows[0][1]
    width = max(len(name) for name, _ in rows)
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.2f} s  {seconds / base:6.1f}x floor")
    bm25 = next(s for n, s in rows if n.startswith("BM25"))
    hybrid = next(s for n, s in rows if n.startswith("hybrid sweep"))
    print(f"BM25 sweep: {bm25:.1f} s (target <= 15 s); hybrid/BM25: {hybrid / bm25:.2f}x (<= 3x)")


if __name__ == "__main__":
    main()
