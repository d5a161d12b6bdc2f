"""`Budget`: how many tokens a request may hold, built only through explicit constructors."""

from __future__ import annotations

from dataclasses import dataclass

from ctxlab.errors import UsageError

__all__ = ["Budget", "as_budget"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Budget:
    """A token budget for the messages of one request.

    Attributes:
        max_tokens: the request's token limit (messages + reply priming).
        reserve_output: tokens kept free for the reply; strategies fit the messages into
            ``max_tokens - reserve_output`` (see `available`).

    Examples:
        ``Budget(max_tokens=4000)``, ``Budget(max_tokens=128_000, reserve_output=4096)``,
        ``Budget.fraction(0.8, context_window=128_000)``.
    """

    max_tokens: int
    reserve_output: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int):
            raise UsageError(f"Budget.max_tokens must be an int, got {self.max_tokens!r}")
        if self.max_tokens <= 0:
            raise UsageError(f"Budget.max_tokens must be positive, got {self.max_tokens}")
        if not 0 <= self.reserve_output < self.max_tokens:
            raise UsageError(
                f"Budget.reserve_output must be in [0, max_tokens), got {self.reserve_output}"
            )

    @property
    def available(self) -> int:
        """Tokens the messages may use: ``max_tokens - reserve_output``."""
        return self.max_tokens - self.reserve_output

    @classmethod
    def fraction(cls, share: float, *, context_window: int, reserve_output: int = 0) -> Budget:
        """A budget that is `share` (0 < share <= 1) of a model's context window."""
        if not 0 < share <= 1:
            raise UsageError(f"Budget.fraction share must be in (0, 1], got {share}")
        return cls(max_tokens=int(context_window * share), reserve_output=reserve_output)

    @classmethod
    def for_model(cls, model: str, *, reserve_output: int = 0) -> Budget:
        """A budget of a model's whole context window, from ctxlab's price table.

        Raises:
            UsageError: the model's context window is unknown.
        """
        from ctxlab.providers.pricing import context_window

        return cls(max_tokens=context_window(model), reserve_output=reserve_output)

    def __str__(self) -> str:
        reserve = f" (reserve {self.reserve_output})" if self.reserve_output else ""
        return f"{self.max_tokens} tokens{reserve}"


def as_budget(value: Budget | int) -> Budget:
    """Accept a `Budget`, or an int meaning ``Budget(max_tokens=value)``."""
    if isinstance(value, Budget):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Budget(max_tokens=value)
    raise UsageError(f"a budget must be a Budget or an int number of tokens, got {value!r}")
