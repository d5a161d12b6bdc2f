"""The recorded conversations bundled with ctxlab: `names()`, `load(name)`, `info(name)`.

The data lives in the repository's ``data/`` folder (found beside the package in a source
checkout) or wherever ``CTXLAB_DATA`` points. Each dataset keeps its upstream license next to
it; LoCoMo is CC BY-NC 4.0: non-commercial use only.

=============  ======================================================  ==============
name           what                                                    license
=============  ======================================================  ==============
locomo         7 very long two-person conversations with 1,428 QA      CC BY-NC 4.0
mtbench101     1,388 short multi-turn dialogues, 13 task categories    Apache-2.0
sweagent       15 SWE-agent demonstration trajectories                 MIT
taubench       152 tau-bench airline trajectories with tool calls      MIT
=============  ======================================================  ==============

Loaded datasets are cached per process (conversations are immutable), keyed by the files'
paths, sizes and modification times.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path

from ctxlab import formats
from ctxlab._config import data_dir
from ctxlab.errors import ConfigurationError, UsageError
from ctxlab.messages import Conversation

__all__ = ["DatasetInfo", "info", "load", "names", "path", "unique_ids"]


@dataclass(frozen=True, kw_only=True, slots=True)
class DatasetInfo:
    """What a bundled dataset is.

    Attributes:
        name: the name `load` takes.
        folder: its folder under the data directory.
        pattern: glob of its files inside that folder.
        license: the upstream license.
        description: one line.
    """

    name: str
    folder: str
    pattern: str
    license: str
    description: str


_DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo(
            name="locomo",
            folder="locomo",
            pattern="*.json",
            license="CC BY-NC 4.0 (non-commercial)",
            description="LoCoMo: very long two-person conversations with QA and evidence",
        ),
        DatasetInfo(
            name="mtbench101",
            folder="mtbench101",
            pattern="*.jsonl",
            license="Apache-2.0",
            description="MT-Bench-101: multi-turn dialogues in 13 task categories",
        ),
        DatasetInfo(
            name="sweagent",
            folder="sweagent_demos",
            pattern="**/*.traj",
            license="MIT",
            description="SWE-agent demonstration trajectories (shell actions, observations)",
        ),
        DatasetInfo(
            name="taubench",
            folder="taubench",
            pattern="*.json",
            license="MIT",
            description="tau-bench airline trajectories: tool calls, rewards, gold actions",
        ),
    )
}

_LOCK = threading.Lock()
_CACHE: dict[tuple[object, ...], list[Conversation]] = {}


def names() -> list[str]:
    """Names of the bundled datasets, sorted."""
    return sorted(_DATASETS)


def info(name: str) -> DatasetInfo:
    """Description and license of a bundled dataset.

    Raises:
        UsageError: unknown name (the message lists the known ones).
    """
    try:
        return _DATASETS[name]
    except KeyError:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(names())}") from None


def path(name: str) -> Path:
    """The folder holding a dataset's files.

    Raises:
        UsageError: unknown name.
        ConfigurationError: the data directory or the dataset's folder is missing.
    """
    meta = info(name)
    root = data_dir()
    if root is None:
        raise ConfigurationError(
            "cannot find ctxlab's bundled data (no data/ folder beside the package); set "
            "CTXLAB_DATA to the data/ folder of a ctxlab checkout"
        )
    folder = root / meta.folder
    if not folder.is_dir():
        raise ConfigurationError(
            f"dataset {name!r} not found: {folder} does not exist; set CTXLAB_DATA to the data/ "
            "folder of a ctxlab checkout"
        )
    return folder


def load(name: str) -> list[Conversation]:
    """Every conversation of a bundled dataset, files in sorted path order.

    SWE-agent conversations whose file names repeat (the same task solved in two styles) get
    their parent folder name as a prefix so ids stay unique.

    Raises:
        UsageError: unknown name.
        ConfigurationError: the data cannot be found (set ``CTXLAB_DATA``).
        DataFormatError: a bundled file is damaged.
    """
    folder = path(name)
    files = sorted(folder.glob(info(name).pattern))
    if not files:
        raise ConfigurationError(f"dataset {name!r}: no {info(name).pattern} files in {folder}")
    key = (name, *((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    with _LOCK:
        cached = _CACHE.get(key)
    if cached is None:
        cached = unique_ids([c for f in files for c in formats.load(f)])
        with _LOCK:
            _CACHE[key] = cached
    return list(cached)


def unique_ids(conversations: list[Conversation]) -> list[Conversation]:
    """The conversations, ids shared by several files prefixed with their file's folder name."""
    counts: dict[str, int] = {}
    for c in conversations:
        counts[c.id] = counts.get(c.id, 0) + 1
    out = []
    for c in conversations:
        if counts[c.id] > 1 and c.source.path:
            c = dataclasses.replace(c, id=f"{Path(c.source.path).parent.name}/{c.id}")
        out.append(c)
    return out
