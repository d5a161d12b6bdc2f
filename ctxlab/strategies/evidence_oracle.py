"""`evidence_oracle`: an ORACLE upper bound that reads the answer key; not a usable strategy.

It looks up, in the conversation's LoCoMo annotations, which turns hold the evidence for the
question being asked, and keeps those first. No real memory can know that: the oracle only
shows how much evidence recall a budget allows at best, so the other strategies can be read
against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ctxlab.budget import Budget
from ctxlab.errors import BudgetUnreachableError, UsageError
from ctxlab.invariants import must_keep
from ctxlab.messages import Conversation, Message
from ctxlab.pruned import Action, Decision, Pruned
from ctxlab.strategies._tool_units import Unit, units_of
from ctxlab.strategies.base import BaseStrategy
from ctxlab.tokens import TokenCounter

__all__ = ["EvidenceOracle"]

_REPLY_PRIMING = 3
_ADVERSARIAL = 5


@dataclass(frozen=True, kw_only=True)
class EvidenceOracle(BaseStrategy):
    """ORACLE (upper bound, reads the annotations): the asked question's evidence, then a window.

    Guarantees:
        - an upper bound, not a strategy to deploy: it reads ``annotations["questions"]``;
          `UsageError` on a conversation without them;
        - the question being asked is the one whose text equals the newest user message (a
          question probe); otherwise every question of categories 1-4 whose evidence all
          lies in the conversation;
        - its evidence units are kept first, newest first, each one that fits; the rest of
          the room is filled like `token_window` (one contiguous run of the newest messages);
        - at most ``budget.available`` tokens; the first system message and the newest user
          message are sent verbatim; `BudgetUnreachableError` when, and only when, those two
          alone exceed the budget; tool calls travel with all their results; original order.
    """

    name: ClassVar[str] = "evidence_oracle"

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        questions = conversation.annotations.get("questions")
        if not questions:
            raise UsageError(
                f"evidence_oracle is an oracle that reads question annotations (LoCoMo); "
                f"conversation {conversation.id!r} has none"
            )
        msgs = conversation.messages
        counts = counter.count_many(msgs)
        units, tracker = units_of(msgs, counts)
        pins = must_keep(msgs)
        user, forced = pins.user, list(pins.indices)
        required = _REPLY_PRIMING + sum(counts[i] for i in forced)
        if required > budget.available:
            raise BudgetUnreachableError(required, budget.available, "first system + newest user")
        room = budget.available - required
        evidence = _evidence(msgs, questions, user)
        sendable = [u for u in units if u.state == "ok" and u.start not in forced]
        chosen: dict[int, str] = {}
        used = 0
        for unit in sorted(sendable, key=lambda u: -u.end):
            if any(i in evidence for i in unit.members) and used + unit.cost <= room:
                chosen[id(unit)] = "evidence of the question asked (oracle)"
                used += unit.cost
        for unit in reversed(sendable):
            if id(unit) in chosen:
                continue
            if used + unit.cost > room:
                break
            chosen[id(unit)] = "newest messages that fit"
            used += unit.cost
        kept = sorted({*forced, *(i for u in sendable if id(u) in chosen for i in u.members)})
        reasons = dict(tracker.bad_reason)
        reasons.update(dict.fromkeys(tracker.open_members(), "tool call awaiting its results"))
        return Pruned(
            conversation=conversation,
            messages=tuple(msgs[i] for i in kept),
            tokens=required + used,
            budget=budget,
            strategy=self.label,
            decide=lambda: _decisions(msgs, units, chosen, forced, reasons, evidence),
        )


def _evidence(
    msgs: Sequence[Message], questions: Sequence[Mapping[str, Any]], user: int | None
) -> set[int]:
    """Positions of the evidence turns of the question asked (see the class docstring)."""
    index = {m.id: i for i, m in enumerate(msgs)}
    asked = msgs[user].text.strip() if user is not None else None
    chosen = [q for q in questions if asked and str(q.get("question", "")).strip() == asked]
    if not chosen:
        chosen = [q for q in questions if _category(q) != _ADVERSARIAL]
    out: set[int] = set()
    for q in chosen:
        ids = list(q.get("evidence") or ())
        if ids and all(e in index for e in ids):
            out.update(index[e] for e in ids)
    return out


def _category(question: Mapping[str, Any]) -> int:
    try:
        return int(question.get("category") or 0)
    except (TypeError, ValueError):
        return 0


def _decisions(
    msgs: Sequence[Message],
    units: list[Unit],
    chosen: dict[int, str],
    forced: list[int],
    reasons: dict[int, str],
    evidence: set[int],
) -> list[Decision]:
    unit_at = {i: u for u in units for i in u.members}
    out = []
    for i, m in enumerate(msgs):
        action: Action = "dropped"
        if i in forced:
            why, action = (
                ("pinned: system" if m.role == "system" else "pinned: newest user message"),
                "kept",
            )
        elif i in reasons:
            why = reasons[i]
        elif id(unit_at[i]) in chosen:
            why, action = chosen[id(unit_at[i])], "kept"
        elif i in evidence:
            why = "evidence of the question asked, but no room left"
        else:
            why = "older than the window that fits the budget"
        out.append(Decision(index=i, message_id=m.id, action=action, reason=why))
    return out
