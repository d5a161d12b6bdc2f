"""Any server that speaks OpenAI Chat Completions: llama.cpp, Ollama, vLLM, OpenRouter...

Differences from `OpenAIProvider`: the base URL is required, the API key is optional (sent as a
bearer token when given), the reply limit is sent as ``max_tokens`` (what these servers read),
and a reply without usage is accepted: its tokens are then counted locally with the provider's
counter and the `Usage` is flagged ``estimated=True``. Servers that reject
``stream_options`` can be asked not to get it with ``stream_usage=False``.
"""

from __future__ import annotations

from typing import Any

from ctxlab.errors import UsageError
from ctxlab.providers.openai import OpenAIProvider

__all__ = ["OpenAICompatibleProvider"]


class OpenAICompatibleProvider(OpenAIProvider):
    """An OpenAI-compatible server at `base_url` (e.g. ``http://127.0.0.1:8765/v1``)."""

    name = "openai-compatible"
    default_base_url = ""
    api_key_env = None
    api_key_required = False
    max_tokens_field = "max_tokens"

    def __init__(
        self, model: str, *, base_url: str | None = None, stream_usage: bool = True, **kwargs: Any
    ) -> None:
        """Configure the provider; see `RemoteProvider` for the other keywords.

        Args:
            model: the model name the server expects.
            base_url: the API root, including ``/v1`` where the server needs it.
            stream_usage: ask streams for the final usage chunk (``stream_options``).
            **kwargs: ``api_key``, ``client``, ``timeout``, ``max_retries``, ``cache``...
        """
        if not base_url:
            raise UsageError(
                "openai-compatible needs a base URL: "
                "get_provider('openai-compatible:MODEL@http://HOST:PORT/v1') or base_url="
            )
        super().__init__(model, base_url=base_url, **kwargs)
        self.stream_usage = stream_usage
