"""The conversation's messages: the user's prompt, the assistant's reply, inline notices."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from qwen3tui.settings import ThinkingDisplay
from qwen3tui.store.attachments import Attachment
from qwen3tui.store.outcome import Outcome

from .streaming_markdown import StreamingMarkdown
from .thinking_pane import ThinkingPane, thought_title


class UserMessage(Static):
    """What the user sent, shown as typed, with a compact chip per attached file."""

    def __init__(self, text: str, attachments: Sequence[Attachment] = ()) -> None:
        super().__init__(with_chips(text, attachments), markup=False, classes="user-message")
        self.text = text
        self.attachments = tuple(attachments)


def with_chips(text: str, attachments: Sequence[Attachment]) -> str | Text:
    """The typed text, then one dim line per file (name, size, lines): the file's text is for
    the model, not the transcript."""
    if not attachments:
        return text
    shown = Text(text)
    for a in attachments:
        shown.append("\n")
        shown.append(a.chip, style="dim")
    return shown


class Notice(Static):
    """A short inline message from the app: command results, warnings, errors."""

    def __init__(self, text: str, *, kind: str = "info") -> None:
        super().__init__(text, markup=False, classes=f"notice -{kind}")
        self.text = text
        self.kind = kind


def reply_meta(
    outcome: Outcome,
    *,
    answer_tokens: int = 0,
    decode_tok_s: float = 0.0,
    ttft_s: float = 0.0,
    error: str | None = None,
) -> str:
    """The small line under a reply: how it ended and how fast it was."""
    parts: list[str] = []
    if outcome.label:
        parts.append(outcome.label)
    if error:
        parts.append(error)
    if answer_tokens:
        parts.append(f"{answer_tokens} tokens")
    if decode_tok_s:
        parts.append(f"{decode_tok_s:.1f} tok/s")
    if ttft_s:
        parts.append(f"first token {ttft_s:.2f} s")
    return " · ".join(parts)


class AssistantMessage(Vertical):
    """One reply: an optional thinking pane, the streamed Markdown answer, and a meta line.

    Every method runs on the UI thread (the generation worker only posts messages).
    """

    def __init__(
        self,
        *,
        thinking_enabled: bool,
        budget: int | None,
        answer: str = "",
        thinking: str = "",
        live: bool = True,
        thought: str | None = None,
        display: ThinkingDisplay = "collapsed",
    ) -> None:
        super().__init__(classes="assistant-message")
        self.thinking_enabled = thinking_enabled
        self.outcome: Outcome | None = None if live else Outcome.COMPLETE  # None: streaming
        self.pane: ThinkingPane | None = None
        if thinking_enabled and (live or thinking.strip()):
            self.pane = ThinkingPane(
                budget=budget, text=thinking, live=live, title=thought, display=display
            )
        self.answer = StreamingMarkdown(answer, classes="answer")
        self.meta = Static("", markup=False, classes="reply-meta")

    def compose(self) -> ComposeResult:
        if self.pane is not None:
            yield self.pane
        yield self.answer
        yield self.meta

    @property
    def answer_text(self) -> str:
        return self.answer.source

    @property
    def thinking_text(self) -> str:
        return self.pane.text if self.pane is not None else ""

    async def append_thinking(self, text: str, tokens: int) -> None:
        if self.pane is not None:
            await self.pane.append(text, tokens)

    @property
    def thinking_live(self) -> bool:
        """The model is thinking now (so "answer now" means something)."""
        return self.pane is not None and self.pane.live and self.outcome is None

    def answering(self) -> None:
        if self.pane is not None:
            self.pane.answering()

    async def thinking_done(
        self, *, seconds: float, tokens: int, budget_hit: bool, cut_by_user: bool = False
    ) -> None:
        if self.pane is not None:
            await self.pane.finish(
                seconds=seconds, tokens=tokens, budget_hit=budget_hit, cut_by_user=cut_by_user
            )
            # A block the model closed at once (Qwen's /no_think soft switch) holds nothing.
            self.pane.display = bool(self.pane.text.strip())

    async def append_answer(self, text: str) -> None:
        await self.answer.append(text)

    async def finish(self, outcome: Outcome, meta: str) -> None:
        """The reply is over: stop streaming, render the whole answer once, show how it ended."""
        await self.answer.finish()
        if self.pane is not None:
            await self.pane.stop()
        self.show_outcome(outcome, meta)

    def show_outcome(self, outcome: Outcome, meta: str) -> None:
        self.outcome = outcome
        for other in Outcome:
            self.set_class(other is outcome and bool(outcome.label), f"-{other.value}")
        self.meta.update(meta)
        self.meta.display = bool(meta)


def restored_thought_title(
    thinking: str,
    tokens: int | None,
    seconds: float | None,
    budget_hit: bool,
    cut_by_user: bool = False,
) -> str:
    """Title of a saved reply's pane, from what the store kept."""
    if seconds is not None and tokens is not None:
        return thought_title(seconds, tokens, budget_hit, cut_by_user)
    words = len(thinking.split())
    return f"Thought · {tokens} tokens" if tokens else f"Thought · {words} words"
