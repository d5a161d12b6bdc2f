"""Other libraries' context trimmers as strategies, run on the same data as ctxlab's own.

Each peer is a thin adapter: it converts ctxlab messages to the library's types, calls the
library's own function, and maps what came back to the original messages (``decisions`` say
kept, dropped or truncated). Nothing is repaired: a peer may break the rules of
`ctxlab.invariants`, and the ``violations`` metric counts what it breaks. Peers are registered
but run only when named, and need the ``peers`` extra (``pip install 'ctxlab[peers]'``).

====================  ===============  ===================================================
name                  library          what it calls
====================  ===============  ===================================================
agents_tool_trim      openai-agents    ``agents.extensions.ToolOutputTrimmer``
langchain_summarize   langchain        ``langchain.agents.middleware.SummarizationMiddleware``
langchain_trim        langchain-core   ``langchain_core.messages.utils.trim_messages``
litellm_trim          litellm          ``litellm.utils.trim_messages``
====================  ===============  ===================================================

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
