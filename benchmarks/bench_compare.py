"""Benchmark of the main job: ``ctxlab compare`` on every bundled LoCoMo conversation.

Run: ``python benchmarks/bench_compare.py [--repeat 3] [--jobs 1 2]``

Measures, in one run:

1. the target: ``ctxlab compare --data locomo`` with every registered (offline) strategy,
   6 budgets and probes at every session end, as a fresh process, wall time median of
   `--repeat` runs, for each ``--jobs`` value (target: <= 20 s);
2. the floor: tokenizing every LoCoMo message once with a fresh counter, and the ratio of
   the run to it;
3. where the time goes, in-process and warm: per strategy, its replays alone versus the
   whole cell (replays + metrics).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGETS = (1000, 2000, 4000, 8000, 16000, 32000)


def _command(out: Path, jobs: int, strategies: list[str]) -> list[str]:
    argv = [sys.executable, "-m", "ctxlab.cli", "compare", "--data", "locomo"]
    for s in strategies:
        argv += ["--strategy", s]
    for b in BUDGETS:
        argv += ["--budget", str(b)]
    return [*argv, "--probes", "sessions", "--jobs", str(jobs), "--out", str(out), "--quiet"]


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _floor() -> tuple[float, int, int]:
    """Seconds to tokenize every LoCoMo message once (fresh counter), messages, tokens."""
    from ctxlab import datasets
    from ctxlab.tokens import TiktokenCounter

    messages = [m for c in datasets.load("locomo") for m in c.messages]
    counter = TiktokenCounter("o200k_base")  # a new cache: nothing counted yet
    start = time.perf_counter()
    counts = counter.count_many(messages)
    return time.perf_counter() - start, len(messages), sum(counts)


def _breakdown(strategies: list[str]) -> list[tuple[str, float, float]]:
    """Per strategy (warm, in-process): replays alone, and the whole compare cell."""
    from ctxlab import datasets, get_counter
    from ctxlab.lab._runner import probe_points, replay_probes
    from ctxlab.lab.harness import compare
    from ctxlab.strategies import get_strategy

    convs, counter = datasets.load("locomo"), get_counter()
    compare(convs, "token_window", 1000, progress=False)  # warm caches (counts, facts)
    rows = []
    for name in strategies:
        strategy = get_strategy(name)
        start = time.perf_counter()
        for conv in convs:
            for budget in BUDGETS:
                replay_probes(strategy, conv, probe_points(conv, "sessions"), budget, counter)
        replay = time.perf_counter() - start
        start = time.perf_counter()
        compare(convs, strategy, BUDGETS, probes="sessions", progress=False)
        rows.append((name, replay, time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    from ctxlab import strategies

    names = strategies.names()
    floor, n_messages, n_tokens = _floor()
    print(f"LoCoMo: {n_messages} messages, {n_tokens} tokens; strategies: {', '.join(names)}")
    print(f"budgets: {', '.join(map(str, BUDGETS))}; probes: every session end")
    print(f"floor (tokenize every message once, fresh counter): {floor:.3f} s")
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in args.jobs:
            argv = _command(Path(tmp) / f"r{jobs}.csv", jobs, names)
            walls = [_wall(argv) for _ in range(args.repeat)]
            median = statistics.median(walls)
            verdict = "meets" if median <= 20 else "misses"
            print(
                f"ctxlab compare --jobs {jobs}: median {median:.1f} s of "
                f"{', '.join(f'{w:.1f}' for w in walls)} ({verdict} the 20 s target); "
                f"{median / floor:.0f}x the floor"
            )
    print("\nwhere the time goes (in-process, warm, one process):")
    print(f"{'strategy':<20}{'replays s':>11}{'cell s':>9}{'metrics s':>11}")
    total_replay = total_cell = 0.0
    for name, replay, cell in _breakdown(names):
        total_replay += replay
        total_cell += cell
        print(f"{name:<20}{replay:>11.2f}{cell:>9.2f}{cell - replay:>11.2f}")
    print(f"{'all':<20}{total_replay:>11.2f}{total_cell:>9.2f}{total_cell - total_replay:>11.2f}")
    print(f"in-process total / floor: {total_cell / floor:.0f}x")


if __name__ == "__main__":
    main()
