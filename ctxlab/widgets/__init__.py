"""Notebook widgets: `explorer`, `comparison` and `diff` (two strategies side by side).

`explorer` shows what a strategy keeps, `comparison` reads a `Report`, `diff` lists the
messages two strategies treat differently on one conversation.

Builders return an ipywidgets container and never display it: leave it last in a cell (or
pass it to ``display``). They hold no logic of their own: numbers come from the functions the
CLI uses (`Strategy.prune`, `ctxlab.compare`, `Report.summary`, `ctxlab.lab.plots`) and the views
from the HTML renderers behind ``_repr_html_``. They work in JupyterLab, Notebook, VS Code
and Voilà, and need ``pip install 'ctxlab[notebooks]'``.

Each part carries a CSS class (``ctxlab-budget``, ``ctxlab-view``, ``ctxlab-tokens``,
``ctxlab-plot``...) so that a page driving the widgets (a browser test, a dashboard) finds it.

The top layer: may import the core values, `formats`, `strategies`, `summarizers`,
`providers`, `datasets` and `lab`; never `live`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ctxlab.errors import MissingDependencyError, UsageError

if TYPE_CHECKING:
    from ctxlab.lab.report import Report
    from ctxlab.messages import Conversation
    from ctxlab.strategies.base import Strategy
    from ctxlab.tokens import TokenCounter

__all__ = ["comparison", "diff", "explorer"]


def _ipywidgets() -> Any:
    try:
        import ipywidgets
    except ImportError as exc:
        raise MissingDependencyError("ipywidgets", "notebooks", "ctxlab.widgets") from exc
    return ipywidgets


def explorer(
    conversations: Conversation | str | Iterable[Conversation | str],
    strategies: Iterable[Strategy | str] | None = None,
    budgets: Sequence[int] | None = None,
    *,
    counter: TokenCounter | None = None,
) -> Any:
    """Pick a conversation, a strategy and a budget; see what is sent and what it costs.

    Shows the pruned conversation coloured by decision, a token bar (pinned / kept /
    rewritten / summary / free), the metrics `ctxlab.compare` gives for that one choice
    (averaged over the conversation's replay probes), and for LoCoMo a question picker that
    outlines the question's evidence turns and says whether each one survived. The strategy's
    simple parameters (numbers, flags, choices) are editable. The budget slider acts on
    release; an update prunes once and replays once, with cached token counts.

    Args:
        conversations: conversations, a bundled dataset name or a file path (or a list).
        strategies: strategy objects or specs (``"sliding_window:max_messages=20"``);
            default: every registered strategy with its default parameters.
        budgets: the budgets the slider offers; default: a range up to the conversation size.
        counter: the token counter (default ``o200k_base``).

    Returns:
        An ``ipywidgets.VBox``.

    Raises:
        MissingDependencyError: ipywidgets is not installed.
        UsageError: no conversations or strategies, or an unknown strategy.
    """
    w = _ipywidgets()
    from ctxlab.lab._specs import conversations_from, strategy_from
    from ctxlab.strategies import names
    from ctxlab.tokens import get_counter
    from ctxlab.widgets._explorer import Explorer

    convs = conversations_from(conversations)
    specs = list(strategies) if strategies is not None else names()
    if not specs:
        raise UsageError("explorer() needs at least one strategy")
    chosen = [strategy_from(s) for s in specs]
    return Explorer(w, convs, chosen, budgets, counter or get_counter()).box


def comparison(report: Report, conversations: Iterable[Conversation] | None = None) -> Any:
    """Read a `Report`: Pareto plot with metric pickers and filters, table, per-strategy view.

    The x and y pickers take any metric column of the report; the dataset and budget
    filters restrict the plot and the table; selecting a strategy lists its numbers at each
    budget, with 95% bootstrap intervals (``estimate [low, high] (n=conversations)``). A
    point (strategy at a budget) opens on one of its conversations in an explorer below the
    plot: click it in the plot (matplotlib's widget canvas, ipympl), or choose it and the
    conversation in the pickers. The conversations come from `conversations`, else from the
    run record's data files.
    The current view exports as a PNG, a CSV and the Python that redraws it.

    Returns:
        An ``ipywidgets.VBox``.

    Raises:
        MissingDependencyError: ipywidgets is not installed.
        UsageError: the report has no rows.
    """
    w = _ipywidgets()
    from ctxlab.widgets._comparison import Comparison

    if report.df.empty:
        raise UsageError("the report has no rows to show; run compare() on some data first")
    convs = list(conversations) if conversations is not None else None
    return Comparison(w, report, convs).box


def diff(
    conversation: Conversation | str,
    a: Strategy | str,
    b: Strategy | str,
    budget: int,
    *,
    strategies: Iterable[Strategy | str] = (),
    counter: TokenCounter | None = None,
) -> Any:
    """Two strategies on one conversation at one budget, the messages they treat differently.

    Lists, for every original message on which `a` and `b` decide differently (kept,
    dropped, summarized, masked, truncated), both decisions and the message's start; the
    pickers switch between `a`, `b` and any other `strategies`, and the budget is editable.
    The static view is `ctxlab.widgets._diff.diff_html`.

    Args:
        conversation: a conversation (or a file/dataset spec giving exactly one first).
        a: the first strategy (object or spec such as ``"sliding_window:max_messages=20"``).
        b: the second strategy.
        budget: the token budget both prune to.
        strategies: more strategies the pickers offer.
        counter: the token counter (default ``o200k_base``).

    Returns:
        An ``ipywidgets.VBox``.

    Raises:
        MissingDependencyError: ipywidgets is not installed.
        UsageError: an unknown strategy or no conversation.
    """
    w = _ipywidgets()
    from ctxlab.lab._specs import conversations_from, strategy_from
    from ctxlab.tokens import get_counter
    from ctxlab.widgets._diff import Diff

    conv = conversations_from(conversation)[0]
    chosen = list({s.label: s for s in map(strategy_from, [a, b, *strategies])}.values())
    return Diff(w, conv, chosen, budget, counter or get_counter()).box
