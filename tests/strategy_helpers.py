"""Builders shared by the strategy tests: tiny conversations and a hypothesis generator."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from ctxlab.messages import Conversation, Message, ToolCall
from ctxlab.strategies import BaseStrategy, get_strategy

WORDS = ("alpha", "beta", "gamma", "delta", "src/app.py", "KeyError", "1234", "the", "and")


def conv(*messages: Message, cid: str = "t") -> Conversation:
    return Conversation(id=cid, messages=messages)


def agent_conversation(turns: int = 6, output_words: int = 300) -> Conversation:
    """system, task, then `turns` x (assistant call -> tool result), then a final user turn."""
    msgs = [
        Message(role="system", content="You are a careful agent.", id="sys"),
        Message(role="user", content="Fix the failing test in src/app.py", id="task"),
    ]
    for t in range(turns):
        call = ToolCall(id=f"c{t}", name="read_file", arguments=f'{{"path": "f{t}.py"}}')
        msgs.append(Message(role="assistant", content=f"step {t}", tool_calls=(call,), id=f"a{t}"))
        text = " ".join(WORDS[(t + i) % len(WORDS)] for i in range(output_words))
        msgs.append(Message(role="tool", content=text, tool_call_id=f"c{t}", id=f"r{t}"))
    msgs.append(Message(role="assistant", content="Done reading.", id="done"))
    msgs.append(Message(role="user", content="Now run the tests.", id="last"))
    return conv(*msgs, cid="agent")


def ids(messages: Sequence[Message]) -> list[str]:
    return [m.id for m in messages]


_text = st.one_of(
    st.just(""),
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=30).map(" ".join),
    # huge contents come in a few sizes so their token counts are cached across examples
    st.sampled_from((200, 1200, 3000)).map(lambda n: " ".join(WORDS[i % 9] for i in range(n))),
)


@st.composite
def conversations(draw: st.DrawFn) -> Conversation:
    """Conversations with parallel tool calls (some unanswered, some results orphaned), empty
    and huge contents, several system messages and tool-output-tagged user messages."""
    msgs: list[Message] = []
    n_events = draw(st.integers(0, 14))
    for e in range(n_events):
        kind = draw(
            st.sampled_from(("system", "user", "assistant", "calls", "observation", "orphan"))
        )
        text = draw(_text)
        if kind == "system":
            msgs.append(Message(role="system", content=text, id=f"s{e}"))
        elif kind == "user":
            msgs.append(Message(role="user", content=text, id=f"u{e}", name=draw(_names)))
        elif kind == "assistant":
            msgs.append(Message(role="assistant", content=text, id=f"a{e}"))
        elif kind == "observation":
            meta = {"tool_output": True}
            msgs.append(Message(role="user", content=text, id=f"o{e}", meta=meta))
        elif kind == "orphan":
            msgs.append(Message(role="tool", content=text, tool_call_id=f"nope{e}", id=f"x{e}"))
        else:
            msgs += _calls(draw, e, text)
    return Conversation(id="generated", messages=tuple(msgs))


_names = st.one_of(st.none(), st.just("alice"))


def _calls(draw: st.DrawFn, e: int, text: str) -> list[Message]:
    n = draw(st.integers(1, 3))
    calls = tuple(ToolCall(id=f"c{e}_{j}", name=f"tool{j}", arguments="{}") for j in range(n))
    out = [Message(role="assistant", content=text, tool_calls=calls, id=f"a{e}")]
    answered = draw(st.lists(st.sampled_from(range(n)), unique=True, max_size=n))
    if draw(st.booleans()):
        answered = list(range(n))  # mostly complete units
    for j in answered:
        out.append(
            Message(role="tool", content=draw(_text), tool_call_id=f"c{e}_{j}", id=f"r{e}_{j}")
        )
    return out


def with_questions(conversation: Conversation) -> Conversation:
    """The conversation with one LoCoMo-style question whose evidence is every third message.

    `evidence_oracle` reads question annotations and refuses conversations without them; this
    gives generated and non-LoCoMo conversations some, so it is checked like every strategy.
    """
    if conversation.annotations.get("questions"):
        return conversation
    users = [m for m in conversation.messages if m.role == "user"]
    question = {
        "question": users[-1].text if users else "What happened?",
        "answer": "unknown",
        "category": 1,
        "evidence": [m.id for m in conversation.messages[::3]],
    }
    return Conversation(
        id=conversation.id,
        messages=conversation.messages,
        source=conversation.source,
        annotations={**conversation.annotations, "questions": [question]},
    )


def prepared(name: str, conversation: Conversation) -> Conversation:
    """What a registered strategy is tested on: oracles get question annotations."""
    return with_questions(conversation) if name == "evidence_oracle" else conversation


#: Registered strategies that summarize with an LLM and so take a provider (no offline default).
NEEDS_MODEL = frozenset({"llamaindex_summary", "sk_summarize"})


def built(name: str) -> BaseStrategy:
    """`get_strategy(name)`, the strategies in `NEEDS_MODEL` with a scripted summarizer."""
    from peers_support import scripted_summarizer

    if name in NEEDS_MODEL:
        return get_strategy(name, provider=scripted_summarizer())
    return get_strategy(name)
