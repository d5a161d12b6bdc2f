"""The explorer widget behind `ctxlab.widgets.explorer`: controls, callbacks, views.

An update builds the strategy from the form, prunes the conversation once (the view, the
token bar, the question panel) and runs `ctxlab.compare` on that single choice (the metrics,
over the conversation's replay probes). Token counts come from the shared counter's cache,
so after the first update only the strategy's own work is left.
"""

from __future__ import annotations

import html
import time
import uuid
from collections.abc import Sequence
from typing import Any

from ctxlab.errors import BudgetUnreachableError, CtxlabError
from ctxlab.lab._questions import applicable_questions, question_message
from ctxlab.lab.report import Report
from ctxlab.messages import Conversation
from ctxlab.strategies._params import parameter_help
from ctxlab.strategies.base import Pruned, Strategy
from ctxlab.tokens import TokenCounter
from ctxlab.widgets import _html
from ctxlab.widgets._form import editable_fields, editor, help_html, read, rebuild
from ctxlab.widgets._snapshot import snapshot_box, snapshot_frame

__all__ = ["Explorer"]

# What the metric table shows, in order, with how each number is written.
_METRICS: tuple[tuple[str, str], ...] = (
    ("input_tokens", "{:,.0f}"),
    ("cumulative_input_tokens", "{:,.0f}"),
    ("budget_ok", "{:.0%}"),
    ("compression", "{:.3f}"),
    ("prefix_stability", "{:.3f}"),
    ("evidence_recall", "{:.3f}"),
    ("answer_presence", "{:.3f}"),
    ("key_string_recall", "{:.3f}"),
    ("action_argument_recall", "{:.3f}"),
    ("dropped_content_coverage", "{:.3f}"),
    ("extra_input_tokens_total", "{:,.0f}"),
    ("extra_output_tokens_total", "{:,.0f}"),
)
_NO_VALUE = "n/a"
#: Rows of the conversation a saved notebook's picture lists (the first and last halves).
SNAPSHOT_ROWS = 40


def _metrics_html(report: Report) -> str:
    """The explorer's metric table, from a report of one (conversation, strategy, budget)."""
    # `x_total` columns are summary aggregates of the report's per-probe column `x`.
    wanted = [c for c, _ in _METRICS if c.removesuffix("_total") in report.df]
    row = report.summary(wanted, n_boot=0).iloc[0]
    cells = []
    for column, fmt in _METRICS:
        value = row.get(column)
        shown = _NO_VALUE if value is None or value != value else fmt.format(value)
        cells.append(f"<tr><td>{_label(column)}</td><td style='text-align:right'>{shown}</td></tr>")
    probes = int(row["probes"])
    head = f"<b>metrics over {probes} probe{'s' * (probes != 1)}</b> ({_NO_VALUE}: does not apply)"
    return f"<div style='font-size:12px'>{head}<table>{''.join(cells)}</table></div>"


def _label(column: str) -> str:
    from ctxlab.lab.plots import LABELS

    return LABELS.get(column, column.replace("_", " "))


def _slider(w: Any, budgets: Sequence[int] | None) -> Any:
    # Wide enough for a step per few pixels on a long conversation.
    common = {"description": "budget", "continuous_update": False,
              "layout": w.Layout(width="560px")}  # fmt: skip
    if budgets:
        options = sorted({int(b) for b in budgets})
        return w.SelectionSlider(options=options, value=options[len(options) // 2], **common)
    return w.IntSlider(min=100, max=10_000, step=100, value=4000, **common)


def _range(total: int) -> tuple[int, int, int]:
    """Slider (step, max, start) for a conversation of `total` tokens: steps of 1-2-5 x 10^k."""
    raw = max(total / 60, 10)
    magnitude = 10 ** (len(str(int(raw))) - 1)
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    top = -(-int(total * 1.1) // step) * step
    return step, top, max(step, round(total / 2 / step) * step)


class Explorer:
    """The widgets of `explorer` and the callbacks that refresh them."""

    def __init__(
        self,
        w: Any,
        convs: list[Conversation],
        strategies: list[Strategy],
        budgets: Sequence[int] | None,
        counter: TokenCounter,
    ) -> None:
        self.w, self.convs, self.counter = w, convs, counter
        self.choices = {s.label: s for s in strategies}
        self.fixed_budgets = bool(budgets)
        labels = [(f"{c.dataset or 'custom'} / {c.id} ({len(c.messages)} messages)", i)
                  for i, c in enumerate(convs)]  # fmt: skip
        wide = {"description_width": "initial"}
        self.conversation = w.Dropdown(options=labels, description="conversation", style=wide)
        self.strategy = w.Dropdown(options=list(self.choices), description="strategy")
        self.budget = _slider(w, budgets)
        self.question = w.Dropdown(options=[("(no question)", -1)], description="question")
        # Ask the picked question: append it as the newest user message and prune for it.
        self.ask = w.Checkbox(value=True, description="ask it (prune for the question)",
                              indent=False)  # fmt: skip
        # Slow strategies (no incremental replay) stay interactive with the metrics off.
        self.measure = w.Checkbox(value=True, description="measure the replay", indent=False)
        self.params = w.HBox(layout=w.Layout(flex_flow="row wrap"))  # never off-screen
        self.help = w.HTML()  # each parameter's help, from the strategy's docstring
        self.status, self.bar, self.metrics = w.HTML(), w.HTML(), w.HTML()
        self.panel, self.view = w.HTML(), w.HTML()
        # The conversation scrolls inside its own box so the controls above stay in sight.
        self.view.layout = w.Layout(max_height="70vh", overflow="auto")
        self.editors: dict[str, Any] = {}
        self.pruned: Pruned | None = None
        self._quiet = False
        self._shown = False  # a conversation has been shown (its budget is the reader's)
        self._tag()
        self.box = self._layout()
        self.conversation.observe(self._on_conversation, names="value")
        self.strategy.observe(self._on_strategy, names="value")
        self.budget.observe(self.refresh, names="value")
        self.measure.observe(self.refresh, names="value")
        self.question.observe(self._on_question, names="value")
        self.ask.observe(self._on_question, names="value")
        self._on_strategy(refresh=False)
        self._on_conversation()

    def _tag(self) -> None:
        for name in (
            "conversation",
            "strategy",
            "budget",
            "question",
            "ask",
            "params",
            "status",
            "measure",
            "help",
        ):
            getattr(self, name).add_class(f"ctxlab-{name}")
        for name, widget in (("tokens", self.bar), ("metrics", self.metrics)):
            widget.add_class(f"ctxlab-{name}")
        self.panel.add_class("ctxlab-evidence")
        self.view.add_class("ctxlab-view")
        # Element ids of the view's rows, unique to this explorer (several may share a page).
        self.anchors = f"ctxlab-{uuid.uuid4().hex[:10]}"

    def _layout(self) -> Any:
        w = self.w
        side = w.VBox([self.question, self.ask, self.panel], layout=w.Layout(width="60%"))
        box = snapshot_box(w, [
            w.HBox([self.conversation, self.strategy]),
            w.HBox([self.budget, self.measure, self.status]),
            self.params,
            self.help,
            self.bar,
            w.HBox([w.VBox([self.metrics], layout=w.Layout(width="40%")), side]),
            self.view,
        ], self.snapshot, self.describe)  # fmt: skip
        box.add_class("ctxlab-explorer")
        return box

    def describe(self) -> str:
        """One line naming what is shown: conversation, strategy, budget (and question)."""
        q = self.question.value
        asked = f", question {q}" if q is not None and q >= 0 else ""
        return (
            f"ctxlab explorer: {self.current_label()} on {self.conv.id} at budget "
            f"{self.budget.value:,}{asked}"
        )

    def current_label(self) -> str:
        """The label of the strategy with the form's parameters (the base one if they fail)."""
        try:
            return self.current_strategy().label
        except CtxlabError:
            return str(self.strategy.value)

    def snapshot(self) -> str:
        """The view as static HTML: what the widgets show now, without the controls.

        Static renderers drop the view's scrolling box, so the picture lists only the first
        and the last messages (`SNAPSHOT_ROWS` rows in all), the picked question's evidence
        outlined where it is among them; the question panel says what became of each.
        """
        if self.pruned is None:
            return snapshot_frame(self.describe(), [self.status.value])
        view = _html.pruned_html(self.pruned, counter=self.counter, max_rows=SNAPSHOT_ROWS,
                                 highlight=self._evidence())  # fmt: skip
        parts = [self.bar.value, self.metrics.value, self.panel.value, view]
        return snapshot_frame(self.describe(), parts)

    def _evidence(self) -> list[str]:
        """The evidence ids of the question picked (none when no question is)."""
        questions = self.conv.annotations.get("questions") or ()
        q = questions[self.question.value] if self.question.value >= 0 else {}
        return [str(e) for e in q.get("evidence") or ()]

    @property
    def conv(self) -> Conversation:
        """The conversation picked."""
        conv: Conversation = self.convs[self.conversation.value]
        return conv

    def _on_conversation(self, _change: object = None) -> None:
        self._quiet = True
        try:
            if not self.fixed_budgets:
                total = self.counter.count_messages(self.conv.messages)
                step, top, start = _range(total)
                kept = self.budget.value if self._shown else start  # keep the reader's budget
                self.budget.max = max(top, self.budget.min)
                self.budget.step, self.budget.min = step, step
                self.budget.max = top
                self.budget.value = min(max(round(kept / step) * step, step), top)
                self._shown = True
            questions = self.conv.annotations.get("questions") or ()
            self.question.options = [("(no question)", -1)] + [
                (f"{i}: [{q.get('category')}] {str(q.get('question'))[:80]}", i)
                for i, q in enumerate(questions)
            ]
            self.question.value = -1
            self.question.layout.display = None if questions else "none"
            self.ask.layout.display = None if questions else "none"
        finally:
            self._quiet = False
        self.refresh()

    def _on_strategy(self, _change: object = None, *, refresh: bool = True) -> None:
        strategy = self.choices[self.strategy.value]
        fields = editable_fields(strategy)
        helps = parameter_help(type(strategy))
        self.editors = {name: editor(self.w, name, v, c) for name, (v, c) in fields.items()}
        for name, control in self.editors.items():
            control.tooltip = helps.get(name)
            control.observe(self.refresh, names="value")
        self.params.children = list(self.editors.values())
        self.help.value = help_html(strategy, helps)
        if refresh:
            self.refresh()

    def _on_question(self, _change: object = None) -> None:
        # Asking changes what is sent: prune again. Otherwise only the highlights change.
        if self.ask.value or (_change is not None and getattr(_change, "owner", None) is self.ask):
            self.refresh()
        else:
            self._draw()

    @property
    def asked(self) -> int | None:
        """The question being asked (appended to the conversation), or None."""
        return self.question.value if self.ask.value and self.question.value >= 0 else None

    def request(self) -> Conversation:
        """What is pruned: the conversation, plus the question when one is asked."""
        q = self.asked
        if q is None:
            return self.conv
        return self.conv.with_messages((*self.conv.messages, question_message(self.conv, q)))

    def current_strategy(self) -> Strategy:
        """The chosen strategy with the form's parameters."""
        base = self.choices[self.strategy.value]
        fields = editable_fields(base)
        values = {n: read(c, fields[n][0]) for n, c in self.editors.items()}
        return rebuild(base, {n: v for n, v in values.items() if v != fields[n][0]})

    def refresh(self, _change: object = None) -> None:
        """Prune and measure the current choice, then redraw."""
        if self._quiet:
            return
        start = time.perf_counter()
        try:
            strategy = self.current_strategy()
            self.pruned = strategy.prune(self.request(), self.budget.value, self.counter)
            pruned_at = time.perf_counter()
            self.metrics.value = self._measure(strategy) if self.measure.value else ""
        except CtxlabError as exc:
            self.pruned = None
            why = ""
            if isinstance(exc, BudgetUnreachableError):
                why = (" <i>(no strategy may drop the first system message or the newest user "
                       "message, so a budget below their size cannot be met: move the slider "
                       "up)</i>")  # fmt: skip
            self.status.value = f"<b style='color:#d04a4a'>{html.escape(str(exc))}</b>{why}"
            self.bar.value = self.metrics.value = self.panel.value = self.view.value = ""
            return
        measured_at = time.perf_counter()
        self._draw()
        self.status.value = (
            f"pruned in {_ms(start, pruned_at)} ms, measured in {_ms(pruned_at, measured_at)} ms,"
            f" drawn in {_ms(measured_at, time.perf_counter())} ms"
        )

    def _measure(self, strategy: Strategy) -> str:
        from ctxlab.lab.harness import compare

        q = self.asked
        if q is not None and q in applicable_questions(self.conv):
            # The question probe of this one question: its own evidence recall and answer.
            one = self.conv.annotations["questions"][q]
            conv = Conversation(
                id=self.conv.id,
                messages=self.conv.messages,
                source=self.conv.source,
                annotations={**self.conv.annotations, "questions": [one]},
            )
            report = compare(
                conv, strategy, self.budget.value, counter=self.counter, progress=False,
                probes="questions",
            )  # fmt: skip
        else:
            report = compare(
                self.conv, strategy, self.budget.value, counter=self.counter, progress=False
            )
        return _metrics_html(report)

    def _draw(self, _change: object = None) -> None:
        if self.pruned is None:
            return
        questions = self.conv.annotations.get("questions") or ()
        q = questions[self.question.value] if self.question.value >= 0 else None
        self.bar.value = _html.token_bar_html(self.pruned, self.counter)
        self.panel.value = (
            _html.question_html(self.pruned, q, anchors=self.anchors) if q is not None else ""
        )
        # Every row, however long the conversation: the view scrolls, and the evidence links
        # must find their rows.
        rows = len(self.pruned.conversation.messages) + len(self.pruned.messages)
        self.view.value = _html.pruned_html(
            self.pruned, counter=self.counter, max_rows=rows, highlight=self._evidence(),
            anchors=self.anchors,
        )  # fmt: skip


def _ms(start: float, end: float) -> str:
    return f"{(end - start) * 1000:.0f}"
