"""The thinking pane: a Collapsible that streams the model's reasoning above its answer.

How it shows depends on the user's thinking display preference:
- `expanded`: open while the model thinks and after;
- `collapsed` (the default): open and live while the model thinks, collapsed to a one-line
  summary when the answer starts; any pane can be reopened later;
- `hidden`: only the one-line title ("Thinking… 312 / 1024", then "Thought for 4.2 s · 312
  tokens"); the reasoning is still kept (and saved), just never rendered.
While the model thinks, an "Answer now" button ends the thinking (the screen handles its press).
"""

from __future__ import annotations

from textual.widgets import Button, Collapsible

from qwen3tui.settings import ThinkingDisplay

from .streaming_markdown import StreamingMarkdown


def thinking_title(tokens: int, budget: int | None) -> str:
    """Title while thinking: "Thinking… 312 / 1024", or "Thinking… 312" with no budget."""
    return f"Thinking… {tokens} / {budget}" if budget is not None else f"Thinking… {tokens}"


def thought_title(seconds: float, tokens: int, budget_hit: bool, cut_by_user: bool = False) -> str:
    """Title once thinking is over: "Thought for 4.2 s · 812 tokens[ · budget reached]", or
    "… · answered early" when the user asked for the answer."""
    title = f"Thought for {seconds:.1f} s · {tokens} token{'s' if tokens != 1 else ''}"
    if cut_by_user:
        return title + " · answered early"
    return title + " · budget reached" if budget_hit else title


def stopped_title(tokens: int) -> str:
    return f"Thinking stopped · {tokens} token{'s' if tokens != 1 else ''}"


class ThinkingPane(Collapsible):
    """Reasoning text in a collapsible pane; streamed into Markdown while live."""

    def __init__(
        self,
        *,
        budget: int | None,
        text: str = "",
        live: bool = True,
        title: str | None = None,
        display: ThinkingDisplay = "collapsed",
    ) -> None:
        self.budget = budget
        self.tokens = 0
        self.live = live
        self.mode = display
        self._hidden_text: list[str] = [text] if display == "hidden" else []
        self.body = StreamingMarkdown("" if display == "hidden" else text, classes="thinking-text")
        self.answer_button = Button("Answer now", classes="answer-now", compact=True)
        self.answer_button.display = live
        symbols = {"collapsed_symbol": "·", "expanded_symbol": "·"} if display == "hidden" else {}
        super().__init__(
            self.answer_button,
            self.body,
            title=title or thinking_title(0, budget),
            collapsed=display == "hidden" or (not live and display == "collapsed"),
            classes="thinking-pane" + (" -hidden" if display == "hidden" else ""),
            **symbols,
        )

    @property
    def text(self) -> str:
        return "".join(self._hidden_text) if self.mode == "hidden" else self.body.source

    async def append(self, text: str, tokens: int) -> None:
        self.tokens = tokens
        self.title = thinking_title(tokens, self.budget)
        if self.mode == "hidden":
            self._hidden_text.append(text)  # kept, never rendered
        else:
            await self.body.append(text)

    def answering(self) -> None:
        """The user asked for the answer: the button says so until the thinking ends."""
        self.answer_button.label = "Answering…"
        self.answer_button.disabled = True

    async def finish(
        self, *, seconds: float, tokens: int, budget_hit: bool, cut_by_user: bool = False
    ) -> None:
        """Thinking is over: final render, collapse (unless expanded), summarise in the title."""
        await self.body.finish()
        self.tokens = tokens
        self.live = False
        self.answer_button.display = False
        self.title = thought_title(seconds, tokens, budget_hit, cut_by_user)
        self.collapsed = self.mode != "expanded"

    async def stop(self) -> None:
        """Generation ended while still thinking (stopped or failed)."""
        await self.body.finish()
        self.answer_button.display = False
        if self.live:
            self.live = False
            self.title = stopped_title(self.tokens)
