"""What the summary peers' tests share: a scripted summarizer with known usage, a local run."""

from __future__ import annotations

from ctxlab import datasets
from ctxlab.messages import Conversation, Message
from ctxlab.providers import Completion, ScriptedProvider
from ctxlab.usage import Usage

#: Tokens every scripted summary call reports, so the bill can be checked exactly.
CALL_USAGE = Usage(input_tokens=100, output_tokens=7, requests=1)


def scripted_summarizer() -> ScriptedProvider:
    """Replies 'Summary: <the request's start and end>' with `CALL_USAGE`.

    The reply depends on the request only, so the same request gets the same summary.
    """

    def reply(messages: tuple[Message, ...]) -> Completion:
        text = " ".join(m.text for m in messages)
        summary = f"Summary: {text[:120]} ... {text[-120:]}"
        return Completion(text=summary, usage=CALL_USAGE, model="scripted")

    return ScriptedProvider(reply)


def locomo_start(k: int = 40) -> Conversation:
    """The first `k` messages of LoCoMo's ``conv-26`` (what the local model summarizes)."""
    return next(c for c in datasets.load("locomo") if c.id == "conv-26").prefix(k)
