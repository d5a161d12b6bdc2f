"""Real conversations for the `Session` tests: LoCoMo's first sample as (user, reply) pairs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path


def locomo_pairs(data_dir: Path) -> list[tuple[str, str]]:
    """(user text, reply text) pairs from LoCoMo sample 0, in dialogue order.

    The first speaker talks to the session; the other speaker's next line is the reply.
    """
    sample = json.loads((data_dir / "locomo" / "locomo7.json").read_text())[0]
    conv = sample["conversation"]
    turns = []
    for n in range(1, 40):
        turns += conv.get(f"session_{n}", [])
    first = turns[0]["speaker"]
    pairs = []
    for a, b in itertools.pairwise(turns):
        if a["speaker"] == first and b["speaker"] != first:
            pairs.append((a["text"], b["text"]))
    return pairs
