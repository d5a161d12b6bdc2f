"""Latency the ctxlab proxy adds in front of an upstream, next to LiteLLM's proxy, same run.

Starts on 127.0.0.1: the stub upstream (``python -m ctxlab.live.proxy.stub``), ``ctxlab serve``
(SQLite store by default) and, when its executable is given, LiteLLM's proxy on the same stub.
Then, in interleaved rounds, sends requests at a fixed rate (open loop: request i leaves at
``i / rate`` s whatever the earlier ones are doing, at most ``--max-in-flight`` at a time) to:

- ``direct``: the stub itself (the baseline);
- ``ctxlab-stateless``: the proxy without ``X-Session-Id`` (forwarded as is);
- ``ctxlab-stateful``: the proxy with ``X-Session-Id`` over ``--sessions`` sessions (load the
  history, prune, forward, store the turn in one transaction before answering);
- ``litellm``: LiteLLM's proxy (stateless: it has no session memory).

It prints p50/p95/p99 latency per target, the latency each proxy adds over ``direct`` at the
same percentile, and the CPU time the target's server process (tree) spent per request, which
other load on the machine disturbs much less than latency. The load generator, the stub and
the proxies share the machine's cores, so absolute figures are only indicative; compare
targets within one run.

Run::

    python benchmarks/bench_proxy.py --rate 200 --seconds 30 --rounds 3 \\
        --litellm /tmp/litellm-venv/bin/litellm --json bench-proxy.json

LiteLLM is installed apart from ctxlab's environment, pinned, and run offline::

    python -m venv /tmp/litellm-venv
    /tmp/litellm-venv/bin/pip install 'litellm[proxy]==1.100.5'   # never 1.82.7 / 1.82.8

(1.100.5 is the newest release whose ``proxy`` extra resolves from PyPI alone: later ones pin
``litellm-proxy``/``litellm-proxy-extras`` builds that are not published there.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

KEY, LITELLM_KEY = "bench-client-key", "sk-bench-master-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(
    cmd: list[str], health: str, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    proc = subprocess.Popen(
        cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[0]} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(health, timeout=2).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{' '.join(cmd)} did not start: {log.read_text()[-2000:]}")


def ctxlab_config(port: int, stub_port: int, store: str) -> str:
    return f"""
[server]
host = "127.0.0.1"
port = {port}
store = "{store}"

[[keys]]
name = "bench"
key = "env:CTXLAB_BENCH_KEY"

[[routes]]
prefix = "stub/"
provider = "openai-compatible"
base_url = "http://127.0.0.1:{stub_port}/v1"

[memory]
strategy = "token_window"
budget = 4000
params = {{}}
"""


def litellm_config(stub_port: int) -> str:
    return f"""
model_list:
  - model_name: stub/echo
    litellm_params:
      model: openai/echo
      api_base: http://127.0.0.1:{stub_port}/v1
      api_key: sk-stub-upstream
general_settings:
  master_key: {LITELLM_KEY}
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(stat[1]), []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(stat[11]) + int(stat[12])
    return total / os.sysconf("SC_CLK_TCK")


def target_request(name: str, i: int, sessions: int) -> tuple[str, dict[str, str], dict[str, Any]]:
    """Path, headers and body of request `i` for one target."""
    question = {"role": "user", "content": f"Question {i}: what is {i} times {i + 7}?"}
    system = {"role": "system", "content": "You are a helpful assistant."}
    body: dict[str, Any] = {"model": "stub/echo", "messages": [system, question], "max_tokens": 16}
    headers = {"authorization": f"Bearer {KEY}"}
    if name == "direct":
        body["model"], headers = "echo", {}
    elif name == "litellm":
        headers = {"authorization": f"Bearer {LITELLM_KEY}"}
    elif name == "ctxlab-stateful":
        headers["x-session-id"] = f"bench-{i % sessions}"
        body["messages"] = [question] if i >= sessions else [system, question]
    return "/v1/chat/completions", headers, body


async def load(
    url: str, name: str, args: argparse.Namespace, start_index: int, warmup: bool = False
) -> dict[str, Any]:
    """Open-loop load at ``args.rate`` req/s; returns latencies (s) and failures."""
    rate = min(args.rate, 50.0) if warmup else args.rate
    n = int(rate * (2.0 if warmup else args.seconds))
    latencies: list[float] = []
    failures: dict[str, int] = {}
    gate = asyncio.Semaphore(args.max_in_flight)
    limits = httpx.Limits(max_connections=args.max_in_flight)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one(i: int) -> None:
            path, headers, body = target_request(name, i, args.sessions)
            async with gate:
                began = time.perf_counter()
                try:
                    r = await client.post(path, json=body, headers=headers)
                except httpx.HTTPError as exc:
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                    return
                took = time.perf_counter() - began
            if r.status_code == 200:
                latencies.append(took)
            else:
                failures[str(r.status_code)] = failures.get(str(r.status_code), 0) + 1

        tasks, t0 = [], time.perf_counter()
        for k in range(n):
            delay = t0 + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(start_index + k)))
        await asyncio.gather(*tasks)
    return {"latencies": latencies, "failures": failures, "sent": n}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for name, r in results.items():
        lat = r["latencies"]
        table[name] = {
            "ok": len(lat),
            "failed": r["failures"],
            "p50_ms": percentile(lat, 50),
            "p95_ms": percentile(lat, 95),
            "p99_ms": percentile(lat, 99),
            "mean_ms": statistics.fmean(lat) * 1000 if lat else float("nan"),
            "server_cpu_ms_per_request": r["cpu"] / max(1, r["sent"]) * 1000,
        }
    base = table["direct"]
    for row in table.values():
        for q in ("p50", "p95", "p99"):
            row[f"added_{q}_ms"] = row[f"{q}_ms"] - base[f"{q}_ms"]
    return table


def report(table: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\nrate {args.rate}/s, {args.seconds}s x {args.rounds} rounds per target, ", end="")
    print(f"store {args.store}, {args.sessions} stateful sessions; latencies in ms")
    columns = ["ok", "p50", "p95", "p99", "+p50", "+p95", "+p99", "cpu/req"]
    print(f"{'target':18}" + "".join(f"{c:>9}" for c in columns) + "  failed")
    for name, row in table.items():
        keys = ["p50_ms", "p95_ms", "p99_ms", "added_p50_ms", "added_p95_ms", "added_p99_ms"]
        cells = [f"{row['ok']:9d}", *(f"{row[k]:9.2f}" for k in keys)]
        cells.append(f"{row['server_cpu_ms_per_request']:9.2f}")
        print(f"{name:18}" + "".join(cells) + f"  {row['failed'] or ''}")
    if "litellm" in table:
        lite = table["litellm"]
        for name in ("ctxlab-stateless", "ctxlab-stateful"):
            row = table[name]
            ratios = [row[f"added_{q}_ms"] / lite[f"added_{q}_ms"] for q in ("p50", "p99")]
            cpu = row["server_cpu_ms_per_request"] / lite["server_cpu_ms_per_request"]
            print(
                f"{name}: added latency / LiteLLM's: p50 {ratios[0]:.2f}x, p99 {ratios[1]:.2f}x; "
                f"server CPU per request / LiteLLM's: {cpu:.2f}x"
            )


def start_servers(args: argparse.Namespace, work: Path) -> dict[str, tuple[str, Any]]:
    """Start the stub, ctxlab (and LiteLLM); target name -> (url, process)."""
    stub_port, proxy_port = free_port(), free_port()
    stub = f"http://127.0.0.1:{stub_port}"
    cmd = [sys.executable, "-m", "ctxlab.live.proxy.stub", "--port", str(stub_port)]
    stub_proc = start(cmd, stub + "/_stub/health", work / "stub.log")
    store = f"sqlite:///{work / 'bench.db'}" if args.store == "sqlite" else "memory"
    (work / "proxy.toml").write_text(ctxlab_config(proxy_port, stub_port, store))
    proxy = f"http://127.0.0.1:{proxy_port}"
    cmd = [sys.executable, "-m", "ctxlab.cli", "serve", "--config", str(work / "proxy.toml")]
    cmd += ["--log-level", "warning"]
    proxy_proc = start(cmd, proxy + "/healthz", work / "proxy.log", {"CTXLAB_BENCH_KEY": KEY})
    servers = {
        "direct": (stub, stub_proc),
        "ctxlab-stateless": (proxy, proxy_proc),
        "ctxlab-stateful": (proxy, proxy_proc),
    }
    if args.litellm:
        port = free_port()
        (work / "litellm.yaml").write_text(litellm_config(stub_port))
        env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
        cmd = [args.litellm, "--config", str(work / "litellm.yaml"), "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--num_workers", "1"]
        url = f"http://127.0.0.1:{port}"
        servers["litellm"] = (
            url,
            start(cmd, url + "/health/liveliness", work / "litellm.log", env),
        )
    return servers


def run_rounds(args: argparse.Namespace, servers: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    results = {n: {"latencies": [], "failures": {}, "cpu": 0.0, "sent": 0} for n in servers}
    for name, (url, _) in servers.items():  # warm-up: connections, caches, lazy imports
        asyncio.run(load(url, name, args, 10**6, warmup=True))
    index = 0
    names = list(servers)
    for round_ in range(args.rounds):
        # Rotate the order every round so no target always runs right after another one.
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            url, proc = servers[name]
            before = cpu_seconds(proc.pid)
            r = asyncio.run(load(url, name, args, index))
            results[name]["cpu"] += cpu_seconds(proc.pid) - before
            results[name]["sent"] += r["sent"]
            index += r["sent"] if name == "ctxlab-stateful" else 0
            results[name]["latencies"] += r["latencies"]
            for k, v in r["failures"].items():
                results[name]["failures"][k] = results[name]["failures"].get(k, 0) + v
    return summarise(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per target per round")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds")
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--store", default="sqlite", choices=["sqlite", "memory"])
    parser.add_argument("--sessions", type=int, default=200, help="stateful sessions")
    parser.add_argument("--litellm", help="LiteLLM's 'litellm' executable (its own venv)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ctxlab-bench-"))
    servers: dict[str, tuple[str, Any]] = {}
    try:
        servers = start_servers(args, work)
        table = run_rounds(args, servers)
        report(table, args)
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "results": table}, indent=2))
    finally:
        for proc in {id(p): p for _, p in servers.values()}.values():
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
