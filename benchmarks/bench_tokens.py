"""Token-counting speed on every bundled message: cold (empty cache) versus cached.

Run: python benchmarks/bench_tokens.py [--repeats N] [--encoding o200k_base|cl100k_base]

Cold = `counter.clear_cache()` then count every message (the encoding is already loaded, so
this measures tokenization). Cached = count the same messages again. Both the per-message path
(`count`) and the batch path (`count_many`) are timed; the median of the repeats is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from ctxlab import datasets
from ctxlab.messages import Message
from ctxlab.tokens import ENCODINGS, get_counter


def _median_seconds(
    run: Callable[[], object], prepare: Callable[[], object], repeats: int
) -> float:
    times = []
    for _ in range(repeats):
        prepare()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--encoding", choices=ENCODINGS, default="o200k_base")
    args = parser.parse_args()

    messages: list[Message] = [m for n in datasets.names() for c in datasets.load(n) for m in c]
    counter = get_counter(args.encoding)
    tokens = sum(counter.count_many(messages))
    chars = sum(len(m.text) for m in messages)
    print(f"{len(messages):,} messages, {chars:,} characters, {tokens:,} tokens ({args.encoding})")

    def one_by_one() -> object:
        return [counter.count(m) for m in messages]

    def batch() -> object:
        return counter.count_many(messages)

    def nothing() -> object:
        return None

    rows = [
        ("cold, count() per message", one_by_one, counter.clear_cache),
        ("cold, count_many() batch", batch, counter.clear_cache),
        ("cached, count() per message", one_by_one, nothing),
        ("cached, count_many() batch", batch, nothing),
    ]
    counter.count_many(messages)
    for label, run, prepare in rows:
        seconds = _median_seconds(run, prepare, args.repeats)
        print(f"{label:30s} {seconds * 1000:9.1f} ms  {tokens / seconds:14,.0f} tokens/s")


if __name__ == "__main__":
    main()
