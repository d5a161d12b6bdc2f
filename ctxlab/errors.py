"""The ctxlab exception tree.

Every error ctxlab raises on purpose derives from `CtxlabError`, and every message says what
to do next::

    CtxlabError
    ├── UsageError (also ValueError)          bad argument: unknown strategy, model, metric...
    ├── ConfigurationError                    bad settings or config file
    │   └── MissingDependencyError            an optional extra is not installed
    ├── DataFormatError (also ValueError)     unreadable input file: names the file and line/record
    ├── BudgetUnreachableError                the pinned messages alone exceed the budget
    ├── InvariantError (also AssertionError)  a strategy produced a conversation a provider rejects
    └── ProviderError                         anything that went wrong talking to an LLM
        ├── ProviderHTTPError                 non-success HTTP status (provider, status, body)
        ├── ProviderConnectionError           connection failed or timed out after retries
        ├── ProviderResponseError             a 2xx response that cannot be parsed
        └── CassetteMissError                 a replayed request was never recorded
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BudgetUnreachableError",
    "CassetteMissError",
    "ConfigurationError",
    "CtxlabError",
    "DataFormatError",
    "InvariantError",
    "MissingDependencyError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderResponseError",
    "UsageError",
]


class CtxlabError(Exception):
    """Base class of every error ctxlab raises on purpose."""


class UsageError(CtxlabError, ValueError):
    """An argument is not valid: an unknown name, a value out of range."""


class ConfigurationError(CtxlabError):
    """Settings, environment variables or a configuration file are wrong."""


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'ctxlab[{extra}]'"
        )


class DataFormatError(CtxlabError, ValueError):
    """An input file cannot be read as a conversation.

    Attributes:
        path: the file, when there is one.
        line: 1-based line number (JSONL files), or None.
        record: 0-based record index (JSON files holding a list), or None.
        reason: what is wrong, without the location.
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        record: int | None = None,
    ) -> None:
        self.reason = reason
        self.path = str(path) if path is not None else None
        self.line = line
        self.record = record
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.path or "<data>"
        if self.line is not None:
            where += f", line {self.line}"
        if self.record is not None:
            where += f", record {self.record}"
        return f"{where}: {self.reason}"


class BudgetUnreachableError(CtxlabError):
    """The messages a strategy must keep (system + newest user message) exceed the budget.

    Attributes:
        required: tokens of the messages that must be kept.
        budget: the budget's available tokens.
    """

    def __init__(self, required: int, budget: int, detail: str = "") -> None:
        self.required = required
        self.budget = budget
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"the messages that must be kept need {required} tokens but the budget allows "
            f"{budget}{extra}; raise the budget or shorten the system prompt"
        )


class InvariantError(CtxlabError, AssertionError):
    """A pruned conversation breaks a rule every provider relies on (see `ctxlab.invariants`)."""


class ProviderError(CtxlabError):
    """A call to an LLM provider failed."""


class ProviderHTTPError(ProviderError):
    """The provider answered with a non-success HTTP status.

    Attributes:
        provider: provider name, e.g. "openai".
        status: HTTP status code.
        body: the response body (never contains the request's API key).
        message: the provider's own error message when the body has one.
    """

    def __init__(self, provider: str, status: int, body: str, message: str | None = None) -> None:
        self.provider = provider
        self.status = status
        self.body = body
        self.message = message
        detail = message or body[:500]
        super().__init__(f"{provider} returned HTTP {status}: {detail}")


class ProviderConnectionError(ProviderError):
    """The provider could not be reached, or did not answer in time, after all retries."""


class ProviderResponseError(ProviderError):
    """The provider answered 2xx but the body or stream could not be understood."""


class CassetteMissError(ProviderError):
    """A request was replayed from a cassette that never recorded it."""
