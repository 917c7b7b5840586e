"""The conversation's messages: the user's prompt, the assistant's reply, inline notices."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from qwen3tui.settings import ThinkingDisplay
from qwen3tui.store.attachments import Attachment
from qwen3tui.store.outcome import Outcome

from .streaming_markdown import StreamingMarkdown
from .thinking_pane import ThinkingPane, thought_title

# Where the keys that switch branches are listed (help and the label's tooltip say the same).
BRANCH_KEYS = "alt+left / alt+right"


def branch_label(position: int, count: int) -> str:
    """`‹ 2/3 ›`: this message is the 2nd of 3 alternatives (/retry, edits)."""
    return f"‹ {position}/{count} ›"


def branch_step_at(label: str, column: int) -> int | None:
    """Which arrow of `label` a click at `column` hit: -1 (‹), +1 (›) or None."""
    if 0 <= column < 2:
        return -1
    if len(label) - 2 <= column < len(label):
        return 1
    return None


class BranchStep(Message):
    """An arrow of a message's `‹ 2/3 ›` was clicked: show its previous (-1) or next (+1)
    alternative."""

    def __init__(self, message: Widget, step: int) -> None:
        super().__init__()
        self.message = message
        self.step = step


class UserMessage(Static):
    """What the user sent, shown as typed, with a compact chip per attached file; with
    alternatives (edits), a last line `‹ 2/3 ›` whose arrows switch between them."""

    def __init__(self, text: str, attachments: Sequence[Attachment] = ()) -> None:
        super().__init__(with_chips(text, attachments), markup=False, classes="user-message")
        self.text = text
        self.attachments = tuple(attachments)
        self.branch = (1, 1)

    def set_branch(self, position: int, count: int) -> None:
        self.branch = (position, count)
        shown = with_chips(self.text, self.attachments)
        if count > 1:
            shown = Text(shown) if isinstance(shown, str) else shown
            shown.append("\n")
            shown.append(branch_label(position, count), style="dim bold")
            self.tooltip = f"{BRANCH_KEYS} or a click on an arrow: the other versions"
        self.update(shown)

    def on_click(self, event: events.Click) -> None:
        if self.branch[1] < 2:
            return
        offset = event.get_content_offset(self)
        if offset is None or offset.y != self.content_region.height - 1:
            return  # not the label's line
        step = branch_step_at(branch_label(*self.branch), offset.x)
        if step is not None:
            event.stop()
            self.post_message(BranchStep(self, step))


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


class BranchLabel(Static):
    """A reply's `‹ 2/3 ›` (shown only when it has alternatives); its arrows switch."""

    def __init__(self) -> None:
        super().__init__("", markup=False, classes="branch-label")
        self.display = False
        self.tooltip = f"{BRANCH_KEYS} or a click on an arrow: the other replies"
        self.label = ""

    def show(self, position: int, count: int) -> None:
        self.label = branch_label(position, count)
        self.update(self.label)
        self.display = count > 1

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        step = None if offset is None else branch_step_at(self.label, offset.x)
        if step is not None and self.parent is not None:
            event.stop()
            self.post_message(BranchStep(self.parent, step))


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
        self.branch_label = BranchLabel()
        self.branch = (1, 1)

    def compose(self) -> ComposeResult:
        if self.pane is not None:
            yield self.pane
        yield self.answer
        yield self.meta
        yield self.branch_label

    def set_branch(self, position: int, count: int) -> None:
        self.branch = (position, count)
        self.branch_label.show(position, count)

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
