"""Other libraries' context trimmers as strategies, run on the same data as ctxlab's own.

Each peer is a thin adapter: it converts ctxlab messages to the library's types, calls the
library's own code, and maps what came back to the original messages (``decisions`` say kept,
dropped, truncated, or summarized into the summary the library wrote, a synthetic message).
Nothing is repaired: a peer may break the rules of `ctxlab.invariants`, and the
``violations`` metric counts what it breaks. Peers are registered but run only when named, and
need the ``peers`` extra (``pip install 'ctxlab[peers]'``).

The stateful memories (summary buffers, Semantic Kernel's reducers) are used as an application
uses them: every message is put in, and the memory is reduced before each assistant message
(`ctxlab.strategies.peers._walk`). The summary peers' model is any ctxlab provider, behind the
library's own model interface; their calls are billed in ``extra_usage``.

====================  =================  ======================================================
name                  library            what it calls
====================  =================  ======================================================
agents_tool_trim      openai-agents      ``agents.extensions.ToolOutputTrimmer``
langchain_summarize   langchain          ``langchain.agents.middleware.SummarizationMiddleware``
langchain_trim        langchain-core     ``langchain_core.messages.utils.trim_messages``
litellm_trim          litellm            ``litellm.utils.trim_messages``
llamaindex_buffer     llama-index-core   ``ChatMemoryBuffer.get()``, ``token_limit`` = budget
llamaindex_summary    llama-index-core   ``ChatSummaryMemoryBuffer.get()`` over a provider
sk_truncate           semantic-kernel    ``ChatHistoryTruncationReducer.reduce()``
sk_summarize          semantic-kernel    ``ChatHistorySummarizationReducer.reduce()``
====================  =================  ======================================================

Part of `ctxlab.strategies`: may import the core values, `formats`, `scoring`, `summarizers`,
`providers` and the other strategies, and its libraries only inside the adapter that calls
them (so ctxlab works without the extra); never `lab`, `live` or `widgets`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["library_version"]


def library_version(package: str) -> str:
    """``"package X.Y.Z"``, or ``"package (not installed)"``."""
    try:
        return f"{package} {version(package)}"
    except PackageNotFoundError:
        return f"{package} (not installed)"
