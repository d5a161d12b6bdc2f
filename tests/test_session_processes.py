"""`Session` across real processes: SQLite and Redis stores shared by separate interpreters.

Covers what in-process tests cannot: a restart of the process, several processes writing
one session at once, and a process killed between the provider's reply and the store write.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis_fixture import StoreFactory
from test_session import BUDGET, check_consistent

from ctxlab.live.session import Session
from ctxlab.providers.scripted import ScriptedProvider

pytestmark = pytest.mark.parametrize("store_kind", ["sqlite", "redis"], indirect=True)

# argv: store URL, session id, tag, turns, mode ("ok", or "crash": die after the reply), and
# optionally a gate file: report ready, then wait for the gate, so that children run together.
CHILD = """
import os, sys, time
from ctxlab.providers.scripted import ScriptedProvider
from ctxlab.live.session import Session
from ctxlab.live.stores import open_store

url, sid, tag, turns, mode = sys.argv[1:6]

def reply(messages):
    if mode == "crash":
        # The provider has answered; the process dies before the turn is written.
        os._exit(17)
    time.sleep(0.01)
    return messages[-1].text

if len(sys.argv) > 6:
    gate = sys.argv[6]
    open(f"{gate}.{tag}", "w").close()
    while not os.path.exists(gate):
        time.sleep(0.005)

store = open_store(url, lock_ttl=1.0)
session = Session(ScriptedProvider(reply), "token_window", 600, store=store, session_id=sid)
for i in range(int(turns)):
    session.send(f"{tag} {i}")
    time.sleep(0.03)  # a client reading the reply: the others get their turn meanwhile
store.close()
"""


def child(
    url: str, sid: str, tag: str, turns: int, mode: str = "ok", gate: Path | None = None
) -> subprocess.Popen[str]:
    args = [sys.executable, "-c", CHILD, url, sid, tag, str(turns), mode]
    args += [str(gate)] if gate else []
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> int:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 17), err
    return proc.returncode


def test_a_new_process_continues_the_session(stores: StoreFactory) -> None:
    assert finish(child(stores.url, "s", "first process", 3)) == 0
    session = Session(
        ScriptedProvider(), "token_window", BUDGET, store=stores.open(), session_id="s"
    )
    assert [m.text for m in session.history[::2]] == [f"first process {i}" for i in range(3)]
    session.send("parent")
    assert finish(child(stores.url, "s", "third process", 2)) == 0
    texts = [m.text for m in session.history[::2]]
    assert texts == [
        *(f"first process {i}" for i in range(3)),
        "parent",
        "third process 0",
        "third process 1",
    ]
    check_consistent(session.history)


def test_processes_writing_one_session_are_serialised(stores: StoreFactory, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    procs = [child(stores.url, "shared", f"p{n}", 8, gate=gate) for n in range(3)]
    deadline = time.monotonic() + 60
    while not all(Path(f"{gate}.p{n}").exists() for n in range(3)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    gate.touch()
    for proc in procs:
        assert finish(proc) == 0
    history = Session(
        ScriptedProvider(), "token_window", BUDGET, store=stores.open(), session_id="shared"
    ).history
    assert len(history) == 48
    check_consistent(history)
    for n in range(3):
        own = [m.text for m in history[::2] if m.text.startswith(f"p{n} ")]
        assert own == [f"p{n} {i}" for i in range(8)]
    writers = [m.text.split()[0] for m in history[::2]]
    switches = sum(a != b for a, b in itertools.pairwise(writers))
    assert switches > 2, "the processes did not run concurrently; the test proved nothing"


def test_crash_between_reply_and_write_loses_only_that_turn(stores: StoreFactory) -> None:
    assert finish(child(stores.url, "c", "before", 2)) == 0
    assert finish(child(stores.url, "c", "doomed", 1, mode="crash")) == 17
    store = stores.open(lock_ttl=1.0)
    session = Session(ScriptedProvider(), "token_window", BUDGET, store=store, session_id="c")
    # Nothing of the crashed turn: neither the user message nor the reply.
    assert [m.text for m in session.history] == ["before 0", "before 0", "before 1", "before 1"]
    # The dead process still held the lock; its lease runs out after lock_ttl, then it is free.
    started = time.monotonic()
    session.send("after")
    assert time.monotonic() - started < 5
    assert [m.text for m in session.history][-2:] == ["after", "after"]
    check_consistent(session.history)
