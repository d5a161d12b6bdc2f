"""tau-bench trajectories (Yao et al., 2024): a tool-using agent talking to a simulated user.

A file is a list of trajectories (``historical_trajectories/*.json``) or one trajectory. Each
becomes one `Conversation`:

- ``id`` is ``"<task_id>-<trial>"``; ``source.dataset`` is ``"taubench"``.
- ``traj`` is read as OpenAI chat messages (system policy, user, assistant with ``tool_calls``,
  ``tool`` results with ``tool_call_id`` and ``name``); message ids are ``m0``, ``m1``...
- Upstream reuses some call ids for later, different calls inside one trajectory; a result
  answers the newest call with its id, and the repeated ids are renamed ``<id>_dup<n>``
  (``annotations["renamed_tool_call_ids"]`` counts them).

Annotations: ``task_id``, ``trial``, ``reward``, ``instruction``, ``user_id``, ``gold_actions``
(``[{name, kwargs}]``), ``outputs`` (strings the agent had to say).
"""

from __future__ import annotations

from typing import Any

from ctxlab.formats._common import field, optional, pair_tool_calls
from ctxlab.formats.openai_chat import from_openai
from ctxlab.messages import Conversation, Source

__all__ = ["NAME", "matches", "parse"]

NAME = "taubench"


def matches(record: Any) -> bool:
    """True when a record looks like a tau-bench trajectory."""
    return isinstance(record, dict) and "traj" in record and "task_id" in record


def parse(record: Any, source: Source) -> Conversation:
    """One tau-bench trajectory as a `Conversation` (see the module docstring)."""
    task_id = field(record, "task_id", (int, str), "trajectory")
    trial = optional(record, "trial", (int, str), "trajectory")
    traj = field(record, "traj", list, "trajectory")
    messages, renamed = pair_tool_calls(from_openai(traj, where="traj"), "traj")
    info = optional(record, "info", dict, "trajectory") or {}
    task = optional(info, "task", dict, "info") or {}
    actions = optional(task, "actions", list, "info.task") or []
    annotations: dict[str, Any] = {
        "task_id": task_id,
        "trial": trial,
        "reward": optional(record, "reward", (int, float), "trajectory"),
        "instruction": optional(task, "instruction", str, "info.task"),
        "user_id": optional(task, "user_id", str, "info.task"),
        "gold_actions": [_action(a, f"info.task.actions[{i}]") for i, a in enumerate(actions)],
        "outputs": optional(task, "outputs", list, "info.task") or [],
        "renamed_tool_call_ids": renamed,
    }
    conv_id = f"{task_id}-{trial}" if trial is not None else str(task_id)
    return Conversation(
        id=conv_id, messages=tuple(messages), source=source, annotations=annotations
    )


def _action(action: Any, where: str) -> dict[str, Any]:
    return {
        "name": field(action, "name", str, where),
        "kwargs": optional(action, "kwargs", dict, where) or {},
    }
