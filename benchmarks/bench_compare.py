"""Benchmark of the lab itself: the ``compare()`` replay sweep and the default ``ctxlab compare``.

Run: ``python benchmarks/bench_compare.py [--repeat 3] [--jobs 2] [--breakdown]``

Measures, in one run, each against its floor:

1. the replay sweep through ``compare()``: the 1,000-message synthetic agent run of
   ``bench_strategies.py``, every prefix x 6 budgets, metrics ``input_tokens`` and
   ``cumulative_input_tokens``, the count cache emptied first; against the floor, tiktoken over
   the text of every message once (target: <= 1.5x the floor);
2. the default ``ctxlab compare`` (every bundled dataset, every offline strategy, the default
   budgets) as a fresh process with ``--jobs`` workers, wall time median of `--repeat` runs
   (target: <= 20 s with ``--jobs 2``); its floor is tokenizing every bundled message once;
3. with ``--breakdown``, where the time of the default run goes, in-process and warm: per
   strategy, its replays alone versus the whole cells (replays + metrics).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_strategies import SWEEP_BUDGETS, floor, synthetic

DEFAULT_BUDGETS = (1000, 2000, 4000, 8000, 16000)


@dataclass(frozen=True)
class Sweep:
    """Medians over interleaved (floor, sweep) pairs: wall and CPU seconds, and their ratios.

    The floor and the sweep are timed one right after the other, and each pair gives a
    ratio: on a machine shared with other work, load that comes and goes then slows both
    sides of a pair alike instead of skewing one median.
    """

    floor_wall: float
    sweep_wall: float
    ratio_wall: float
    floor_cpu: float
    sweep_cpu: float
    ratio_cpu: float
    spread: tuple[float, float]  # lowest and highest wall ratio of the pairs


def sweep_vs_floor(repeat: int) -> Sweep:
    """The floor and the compare sweep on the synthetic agent run, timed in pairs."""
    from ctxlab import compare, get_counter
    from ctxlab.tokens import TiktokenCounter

    counter = get_counter()
    assert isinstance(counter, TiktokenCounter)
    conv = synthetic()
    probes = list(range(1, len(conv.messages) + 1))

    def sweep() -> None:
        counter.clear_cache()
        compare(
            conv, ["token_window"], list(SWEEP_BUDGETS),
            metrics=["input_tokens", "cumulative_input_tokens"], probes=probes,
            counter=counter, progress=False,
        )  # fmt: skip

    sweep()  # warm: imports and first-call costs are not the sweep's
    pairs = [(timed(lambda: floor(counter, conv.messages)), timed(sweep)) for _ in range(repeat)]
    walls = [s[0] / f[0] for f, s in pairs]
    med = statistics.median
    return Sweep(
        floor_wall=med(f[0] for f, _ in pairs),
        sweep_wall=med(s[0] for _, s in pairs),
        ratio_wall=med(walls),
        floor_cpu=med(f[1] for f, _ in pairs),
        sweep_cpu=med(s[1] for _, s in pairs),
        ratio_cpu=med(s[1] / f[1] for f, s in pairs),
        spread=(min(walls), max(walls)),
    )


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bundled_floor() -> tuple[float, int]:
    """Seconds to tokenize every bundled message once (fresh counter), and how many."""
    from ctxlab import datasets
    from ctxlab.tokens import TiktokenCounter

    messages = [m for name in datasets.names() for c in datasets.load(name) for m in c.messages]
    counter = TiktokenCounter("o200k_base")  # a new cache: nothing counted yet
    start = time.perf_counter()
    counter.count_many(messages)
    return time.perf_counter() - start, len(messages)


def default_run(jobs: int, repeat: int) -> list[tuple[float, float]]:
    """(wall s, CPU s: user + sys of the process and its workers) of each default run.

    The process's own CPU time comes from the kernel when it exits; its workers are forked
    by a server process that is never waited for, so their CPU time is read from ``/proc``
    every 0.1 s while they run (what a worker spends in its last 0.1 s is missed).
    """
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "ctxlab.cli", "compare", "--jobs", str(jobs), "--quiet"]
        argv += ["--out", str(Path(tmp) / "results.csv")]
        for _ in range(repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, cwd=tmp)
            workers: dict[int, float] = {}
            while proc.poll() is None:
                workers.update(_descendants_cpu(proc.pid))
                time.sleep(0.1)
            wall = time.perf_counter() - start
            if proc.returncode:
                raise subprocess.CalledProcessError(proc.returncode, argv)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            runs.append((wall, cpu + sum(workers.values())))
    return runs


def _descendants_cpu(root: int) -> dict[int, float]:
    """CPU seconds (user + sys) so far of every process below `root` (not `root` itself)."""
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (name)": state, ppid, ...
        parent[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    out = {}
    for pid in used:
        up = parent.get(pid)
        while up is not None and up != root and up > 1:
            up = parent.get(up)
        if up == root and pid != root:
            out[pid] = used[pid]
    return out


def breakdown() -> None:
    """Per strategy (warm, in-process): replays alone, and the whole compare cells."""
    from ctxlab import CtxlabError, datasets, get_counter, strategies
    from ctxlab.lab._runner import probe_points, replay_probes
    from ctxlab.lab.harness import compare
    from ctxlab.strategies import get_strategy

    convs, counter = [c for n in datasets.names() for c in datasets.load(n)], get_counter()
    counter.count_many([m for c in convs for m in c.messages])
    print(f"\n{'strategy':<20}{'replays s':>11}{'cells s':>9}{'metrics s':>11}")
    for name in strategies.default_names():
        strategy = get_strategy(name)
        start = time.perf_counter()
        for conv in convs:
            for budget in DEFAULT_BUDGETS:
                with contextlib.suppress(CtxlabError):  # strategies that do not apply
                    replay_probes(strategy, conv, probe_points(conv, "auto"), budget, counter)
        replay = time.perf_counter() - start
        start = time.perf_counter()
        compare(convs, strategy, DEFAULT_BUDGETS, progress=False)
        cell = time.perf_counter() - start
        print(f"{name:<20}{replay:>11.2f}{cell:>9.2f}{cell - replay:>11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, nargs="+", default=[2])
    parser.add_argument("--breakdown", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")

    sw = sweep_vs_floor(max(7, args.repeat))
    verdict = "meets" if sw.ratio_wall <= 1.5 else "misses"
    print(
        f"\ncompare() sweep, 1,000-message agent run, every prefix x {len(SWEEP_BUDGETS)} "
        f"budgets: {sw.sweep_wall:.3f} s wall, {sw.sweep_cpu:.3f} s CPU; floor (tokenize once) "
        f"{sw.floor_wall:.3f} s wall, {sw.floor_cpu:.3f} s CPU; {sw.ratio_wall:.2f}x the floor "
        f"in wall time (pairs {sw.spread[0]:.2f}-{sw.spread[1]:.2f}), {sw.ratio_cpu:.2f}x in "
        f"CPU time ({verdict} the 1.5x target)"
    )

    b_floor, n_messages = bundled_floor()
    print(f"\nfloor of the default run: tokenizing {n_messages:,} bundled messages once: "
          f"{b_floor:.2f} s")  # fmt: skip
    for jobs in args.jobs:
        runs = default_run(jobs, args.repeat)
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        verdict = "meets" if wall <= 20 else "misses"
        print(
            f"default `ctxlab compare --jobs {jobs}`: median {wall:.1f} s wall of "
            f"{', '.join(f'{w:.1f}' for w, _ in runs)} ({verdict} the 20 s target), "
            f"{wall / b_floor:.1f}x the floor; CPU (user + sys, workers included) median "
            f"{cpu:.1f} s of {', '.join(f'{c:.1f}' for _, c in runs)}"
        )
    if args.breakdown:
        breakdown()


if __name__ == "__main__":
    main()
