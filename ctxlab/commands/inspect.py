"""``ctxlab inspect``: what is in the bundled datasets or in conversation files.

With no argument, one line per bundled dataset: conversations, messages, tokens and QA items.
With dataset names or file paths, one line per conversation. Tokens are exact counts of the
whole conversation as one request (messages + per-message overhead + reply priming).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ctxlab import datasets, formats
from ctxlab.messages import Conversation
from ctxlab.tokens import ENCODINGS, TokenCounter, get_counter

HELP = "Show conversations, messages, tokens and QA counts of datasets or files."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="PATH_OR_DATASET",
        help=f"files or folders to read, or bundled dataset names ({', '.join(datasets.names())}); "
        "none: a summary of every bundled dataset",
    )
    parser.add_argument(
        "--format", choices=formats.FORMATS, help="file format (detected when omitted)"
    )
    parser.add_argument(
        "--encoding", choices=ENCODINGS, default="o200k_base", help="tokenizer (o200k_base)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="show at most this many conversations per target"
    )


def run(args: argparse.Namespace) -> int:
    counter = get_counter(args.encoding)
    if not args.targets:
        _summary(counter)
        return 0
    for target in args.targets:
        convs = _read(target, args.format)
        print(f"{target}: {len(convs)} conversations")
        _per_conversation(convs[: args.limit] if args.limit else convs, counter)
    return 0


def _read(target: str, fmt: str | None) -> list[Conversation]:
    """A bundled dataset, a file, or every conversation file in a folder (as `compare` reads)."""
    from ctxlab.lab._specs import conversations_from

    if target in datasets.names() and not Path(target).exists():
        return datasets.load(target)
    return conversations_from(target, format=fmt)


def _tokens(convs: Sequence[Conversation], counter: TokenCounter) -> list[int]:
    counter.count_many([m for c in convs for m in c.messages])  # one batch fills the cache
    return [counter.count_messages(c.messages) for c in convs]


def _questions(conv: Conversation) -> int:
    return len(conv.annotations.get("questions", ()))


def _summary(counter: TokenCounter) -> None:
    head = ("dataset", "conversations", "messages", f"tokens ({counter.encoding})", "QA")
    rows = []
    notes = []
    for name in datasets.names():
        convs = datasets.load(name)
        qa = sum(_questions(c) for c in convs)
        messages = sum(len(c) for c in convs)
        rows.append((name, len(convs), messages, sum(_tokens(convs, counter)), qa or "-"))
        stats = [
            c.annotations["evidence_stats"] for c in convs if "evidence_stats" in c.annotations
        ]
        if stats:
            resolved = sum(s["resolved"] for s in stats)
            unresolved = sum(s["unresolved"] for s in stats)
            notes.append(f"{name}: evidence ids resolved {resolved:,}, unresolved {unresolved:,}")
    _table(head, rows)
    for note in notes:
        print(note)
    root = datasets.path(datasets.names()[0]).parent
    print(f"data: {root}  (LoCoMo is CC BY-NC 4.0: non-commercial use only)")


def _per_conversation(convs: Sequence[Conversation], counter: TokenCounter) -> None:
    head = ("id", "messages", "tool calls", f"tokens ({counter.encoding})", "QA")
    rows = [
        (c.id, len(c), sum(len(m.tool_calls) for m in c), n, _questions(c) or "-")
        for c, n in zip(convs, _tokens(convs, counter), strict=True)
    ]
    _table(head, rows)


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(head)] + [[f"{v:,}" if isinstance(v, int) else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    for r in cells:
        first = r[0].ljust(widths[0])
        print("  ".join([first, *(v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True))]))
