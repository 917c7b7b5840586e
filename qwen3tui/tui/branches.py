"""Branches in the chat: editing an earlier message, /retry keeping the old reply, and moving
between a message's alternatives (`‹ 2/3 ›`).

The message widgets on screen (queued ones aside) are the session's active branch, in order, so
a widget's index is its position in the store's branch. A turn placed `at` a position
(`Recording.at`) is saved beside the message there, which stays on its own branch; the saver
writes in order, so the position is read after everything on screen is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widget import Widget

from qwen3tui.settings import ThinkingDisplay
from qwen3tui.store import SessionSaver, SessionStore, StoreError, conversation_of
from qwen3tui.store.attachments import Attachment, expand_prompt
from qwen3tui.store.models import Session

from . import transcript
from .widgets.chat_message import AssistantMessage, UserMessage, branch_label
from .widgets.composer import Composer

MessageWidget = UserMessage | AssistantMessage
NO_BRANCHES = "This conversation has no other versions yet: /retry and /edit make them."


class BranchScreen(Protocol):
    """What this module uses of the chat screen."""

    store: SessionStore
    saver: SessionSaver
    session_id: str | None
    history: list[dict[str, str]]
    conversation: VerticalScroll
    composer: Composer
    editing: UserMessage | None
    pending_files: list[Attachment]
    thinking_display: ThinkingDisplay
    reply_models: dict[AssistantMessage, str]
    turn: Any

    def notice(self, text: str, *, kind: str = "info") -> Any: ...

    def confirm(self, text: str) -> None: ...

    def busy(self, what: str) -> bool: ...

    def engine_loaded(self) -> bool: ...

    def mount_message(self, widget: Any) -> None: ...

    def start_turn(
        self,
        text: str,
        *,
        mount_user: bool = True,
        save_user: bool = True,
        attachments: Sequence[Attachment] = (),
        at: int | None = None,
    ) -> None: ...

    def take_pending_files(self) -> None: ...

    def clear_conversation(self) -> None: ...

    def refresh_context_count(self) -> None: ...

    def _restore_reply_models(self, session: Session) -> None: ...


def message_widgets(screen: BranchScreen) -> list[MessageWidget]:
    """The active branch as shown: every message widget but those queued to be sent."""
    return [
        w
        for w in screen.conversation.children
        if isinstance(w, UserMessage | AssistantMessage) and not w.has_class("-queued")
    ]


def history_of(widgets: Sequence[MessageWidget]) -> list[dict[str, str]]:
    """What the engine is given for these messages (as `conversation_of` gives a saved branch:
    replies without an answer are left out)."""
    out: list[dict[str, str]] = []
    for w in widgets:
        if isinstance(w, UserMessage):
            out.append({"role": "user", "content": expand_prompt(w.text, w.attachments)})
        elif w.answer_text:
            out.append({"role": "assistant", "content": w.answer_text})
    return out


def _cut(screen: BranchScreen, widgets: list[MessageWidget], position: int) -> None:
    """Take the branch on screen back to its first `position` messages (the rest stays saved,
    on its own branch)."""
    children = list(screen.conversation.children)
    if position < len(widgets):
        for child in children[children.index(widgets[position]) :]:
            child.remove()
    screen.history = history_of(widgets[:position])


def retry(screen: BranchScreen) -> None:
    """/retry: the last prompt again; the new reply goes beside the old one, which is kept."""
    cancel_edit(screen)
    widgets = message_widgets(screen)
    if not any(isinstance(w, UserMessage) for w in widgets):
        # /clear emptied the screen, not the conversation: show the saved branch again first.
        saved = _saved_branch(screen, "retry")
        if saved is None:
            return
        show_branch(screen, saved)
        widgets = message_widgets(screen)
    users = [i for i, w in enumerate(widgets) if isinstance(w, UserMessage)]
    if not users:
        screen.notice("Nothing to retry yet.", kind="error")
        return
    at = users[-1] + 1
    old = widgets[at] if at < len(widgets) else None
    count = old.branch[1] + 1 if old is not None else 1
    _cut(screen, widgets, at)
    screen.start_turn(widgets[users[-1]].text, mount_user=False, save_user=False, at=at)
    if screen.turn is not None:
        screen.turn.widget.set_branch(count, count)


def begin_edit(screen: BranchScreen, number: int | None) -> None:
    """/edit [N]: your Nth message on this branch (default: the last) goes into the composer;
    Enter sends it as a new version beside the original, Esc cancels."""
    if screen.busy("edit a message"):
        return
    if not screen.engine_loaded():
        screen.notice("The model is not loaded yet.", kind="error")
        return
    if screen.editing is None and screen.composer.text.strip():
        screen.notice("Send or clear what is in the composer first, then edit.", kind="error")
        return
    users = [w for w in message_widgets(screen) if isinstance(w, UserMessage)]
    if not users:
        screen.notice("Nothing to edit yet.", kind="error")
        return
    number = len(users) if number is None else number
    if not 1 <= number <= len(users):
        screen.notice(
            f"There is no message {number} to edit: this branch has {len(users)} of yours.",
            kind="error",
        )
        return
    target = users[number - 1]
    screen.editing = target
    screen.pending_files = list(target.attachments)  # its files go with the new version
    screen.composer.load_text(target.text)
    screen.composer.move_cursor(screen.composer.document.end)
    screen.composer.add_class("-editing")
    screen.composer.border_title = Text(
        f"editing message {number} · Enter sends it as a new version · Esc cancels"
    )
    screen.composer.focus()


def cancel_edit(screen: BranchScreen, *, clear: bool = True) -> bool:
    """Leave the editing state (Esc); whether there was one."""
    if screen.editing is None:
        return False
    screen.editing = None
    screen.composer.remove_class("-editing")
    if clear:  # what was typed stays one Up away
        screen.composer.clear_sent(screen.composer.text)
    screen.take_pending_files()  # the original's files, and the editing title
    return True


def send_edit(screen: BranchScreen, text: str, attachments: Sequence[Attachment]) -> None:
    """Send an edited message: it goes beside the original (the original and what followed it
    stay on their branch) and the model answers it."""
    target = screen.editing
    cancel_edit(screen, clear=False)
    widgets = message_widgets(screen)
    if target is None or target not in widgets:  # the session changed meanwhile
        screen.start_turn(text, attachments=attachments)
        return
    at = widgets.index(target)
    count = target.branch[1] + 1
    _cut(screen, widgets, at)
    edited = UserMessage(text, attachments)
    edited.set_branch(count, count)
    screen.mount_message(edited)
    screen.start_turn(text, mount_user=False, attachments=attachments, at=at)


def switch(screen: BranchScreen, step: int, message: Widget | None = None) -> None:
    """Show the previous (-1) or next (+1) version of `message` (default: the last message on
    screen that has several), with the newest branch under it; the next turn follows it."""
    if screen.busy("switch to another version"):
        return
    session = _saved_branch(screen, "switch to another version")
    if session is None:
        return
    session_id = session.id
    messages = session.messages
    widgets = message_widgets(screen)
    if message is not None:
        index = widgets.index(message) if message in widgets else None
    else:
        several = [i for i, m in enumerate(messages) if m.sibling_count > 1]
        index = several[-1] if several else None
    if index is None or index >= len(messages) or messages[index].sibling_count < 2:
        screen.notice(NO_BRANCHES, kind="error")
        return
    m = messages[index]
    target = m.sibling_position - 1 + step
    if not 0 <= target < m.sibling_count:
        which = "first" if step < 0 else "last"
        shown = branch_label(m.sibling_position, m.sibling_count)
        screen.confirm(f"This is the {which} version ({shown}).")
        return
    cancel_edit(screen)
    try:
        sibling = screen.store.siblings(m.id)[target]
        branch = screen.store.get_session(session_id, through=sibling)
    except StoreError as err:
        screen.notice(str(err), kind="error")
        return
    # Saved in order with everything else; shown now (the branch was read from the store).
    screen.saver.call(
        "the switch to another version", lambda s: s.switch_branch(session_id, sibling)
    )
    show_branch(screen, branch, index)


def _saved_branch(screen: BranchScreen, what: str) -> Session | None:
    """The session's active branch as saved; None (said in one line) when it cannot be read or
    the store does not hold everything shown yet."""
    if screen.session_id is None:
        screen.notice(NO_BRANCHES, kind="error")
        return None
    if not screen.saver.idle():
        screen.notice(
            f"This session is not all on disk yet; {what} once it is saved.", kind="error"
        )
        return None
    try:
        return screen.store.get_session(screen.session_id)
    except StoreError as err:
        screen.notice(str(err), kind="error")
        return None


def show_branch(screen: BranchScreen, session: Session, index: int | None = None) -> None:
    """Put `session`'s branch on screen (and in the engine's history), message `index` in view."""
    screen.clear_conversation()
    widgets = [transcript.message_widget(m, screen.thinking_display) for m in session.messages]
    if widgets:
        screen.conversation.mount_all(widgets)
    screen.history = [m for m in conversation_of(session) if m["role"] != "system"]
    screen.reply_models.clear()
    screen._restore_reply_models(session)
    if index is not None and index < len(widgets):
        shown = widgets[index]
        screen.conversation.call_after_refresh(lambda: shown.scroll_visible(animate=False))
    screen.refresh_context_count()
