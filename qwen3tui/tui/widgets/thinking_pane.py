"""The thinking pane: a Collapsible that streams the model's reasoning above its answer.

Open and live while the model thinks, its title counting tokens against the budget;
collapsed to a one-line summary when the answer starts. Any pane can be reopened later.
"""

from __future__ import annotations

from textual.widgets import Collapsible

from .streaming_markdown import StreamingMarkdown


def thinking_title(tokens: int, budget: int | None) -> str:
    """Title while thinking: "Thinking… 312 / 1024", or "Thinking… 312" with no budget."""
    return f"Thinking… {tokens} / {budget}" if budget is not None else f"Thinking… {tokens}"


def thought_title(seconds: float, tokens: int, budget_hit: bool) -> str:
    """Title once thinking is over: "Thought for 4.2 s · 812 tokens[ · budget reached]"."""
    title = f"Thought for {seconds:.1f} s · {tokens} token{'s' if tokens != 1 else ''}"
    return title + " · budget reached" if budget_hit else title


def stopped_title(tokens: int) -> str:
    return f"Thinking stopped · {tokens} token{'s' if tokens != 1 else ''}"


class ThinkingPane(Collapsible):
    """Reasoning text in a collapsible pane; streamed with MarkdownStream while live."""

    def __init__(
        self, *, budget: int | None, text: str = "", live: bool = True, title: str | None = None
    ) -> None:
        self.budget = budget
        self.tokens = 0
        self.live = live
        self.body = StreamingMarkdown(text, classes="thinking-text")
        super().__init__(
            self.body,
            title=title or thinking_title(0, budget),
            collapsed=not live,
            classes="thinking-pane",
        )

    @property
    def text(self) -> str:
        return self.body.source

    async def append(self, text: str, tokens: int) -> None:
        self.tokens = tokens
        self.title = thinking_title(tokens, self.budget)
        await self.body.append(text)

    async def finish(self, *, seconds: float, tokens: int, budget_hit: bool) -> None:
        """Thinking is over: final render, collapse, and summarise in the title."""
        await self.body.finish()
        self.tokens = tokens
        self.live = False
        self.title = thought_title(seconds, tokens, budget_hit)
        self.collapsed = True

    async def stop(self) -> None:
        """Generation ended while still thinking (stopped or failed)."""
        await self.body.finish()
        if self.live:
            self.live = False
            self.title = stopped_title(self.tokens)
