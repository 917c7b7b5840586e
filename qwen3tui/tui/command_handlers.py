"""What each slash command does, outside the screen: each handler takes the chat (anything that
provides `ChatActions`) and the command's parsed value.

Writes go through the chat's `SessionSaver` (never waiting on the disk). Confirmations of a
changed setting come and go (`confirm`: a notification); what the user must fix, and what they
asked to see, stays in the chat (`notice`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from qwen3tui.settings import TurnSettings

if TYPE_CHECKING:
    from qwen3tui.store import SessionSaver, SessionStore


class ChatActions(Protocol):
    """What a handler may use of the chat screen."""

    store: SessionStore
    saver: SessionSaver
    session_id: str | None
    system_prompt: str | None
    settings: TurnSettings
    history: list[dict[str, str]]

    @property
    def app(self) -> Any: ...

    def notice(self, text: str, *, kind: str = "info") -> Any: ...

    def confirm(self, text: str) -> None: ...

    def set_thinking_display(self, display: Any) -> None: ...

    def busy(self, what: str) -> bool: ...

    def engine_loaded(self) -> bool: ...

    def change_settings(self, settings: TurnSettings, what: str = "") -> None: ...

    def set_thinking(self, on: bool, what: str = "") -> None: ...

    def new_conversation(self) -> None: ...

    def open_session(self, session_id: str) -> None: ...

    def show_sessions(self) -> None: ...

    def show_help(self) -> None: ...

    def clear_conversation(self) -> None: ...

    def set_title(self, title: str) -> None: ...

    def last_answer(self) -> str: ...

    def regenerate_last_reply(self) -> None: ...

    def edit_message(self, number: int | None) -> None: ...

    def switch_branch(self, step: int) -> None: ...

    def conversation_export(self, fmt: str) -> str: ...

    def switch_theme(self, name: str) -> str | None: ...

    def quit(self) -> None: ...

    def attach(self, attachment: Any) -> None: ...

    def request_models(self) -> None: ...

    def request_model_switch(self, model: str) -> None: ...


def think(chat: ChatActions, value: None) -> None:
    chat.set_thinking(True, "Thinking on from the next turn.")


def no_think(chat: ChatActions, value: None) -> None:
    chat.set_thinking(False, "Thinking off from the next turn.")


def budget(chat: ChatActions, value: int | None) -> None:
    text = "unlimited" if value is None else f"{value:,} tokens"
    chat.change_settings(
        _with(chat.settings, thinking_budget=value), f"Thinking budget: {text}, from the next turn."
    )


def set_value(chat: ChatActions, value: tuple[str, Any]) -> None:
    key, typed = value
    chat.change_settings(
        chat.settings.with_value(key, typed), f"{key} = {typed} from the next turn."
    )


def new(chat: ChatActions, value: None) -> None:
    if not chat.busy("start a new conversation"):
        chat.new_conversation()


def sessions(chat: ChatActions, value: None) -> None:
    chat.show_sessions()


def resume(chat: ChatActions, value: str) -> None:
    if chat.busy("open another session"):
        return
    from qwen3tui.store import StoreError

    try:
        session_id = chat.store.resolve_id(value)
    except StoreError as err:
        chat.notice(str(err), kind="error")
        return
    chat.open_session(session_id)


def rename(chat: ChatActions, value: str) -> None:
    session_id = chat.session_id
    if session_id is None:
        chat.notice("Nothing to rename yet: send a message first.", kind="error")
        return
    title = " ".join(value.split())
    chat.saver.call("the new title", lambda s: s.rename_session(session_id, title))
    chat.set_title(title)
    chat.notice(f"Renamed to {title!r}.")


def delete(chat: ChatActions, value: None) -> None:
    if chat.busy("delete the session"):
        return
    session_id = chat.session_id
    if session_id is None:
        chat.notice("Nothing to delete: this conversation is not saved yet.", kind="error")
        return

    def confirmed(yes: bool | None) -> None:
        if yes:
            chat.saver.call("deleting the session", lambda s: s.delete_session(session_id))
            chat.new_conversation()
            chat.notice("Session deleted.")

    from .screens.confirm import ConfirmScreen

    chat.app.push_screen(ConfirmScreen("Delete this session? This cannot be undone."), confirmed)


def export(chat: ChatActions, value: tuple[str, str]) -> None:
    fmt, given = value
    if chat.session_id is None:
        chat.notice("Nothing to export yet: send a message first.", kind="error")
        return
    default_name = f"qwen3tui-{chat.session_id[:8]}.{fmt}"
    path = Path(given).expanduser() if given else Path.cwd() / default_name
    if path.is_dir():
        path = path / default_name
    content = chat.conversation_export(fmt)
    content = content if content.endswith("\n") else content + "\n"
    from qwen3tui.atomic_file import TargetExistsError, write_atomically

    def write(overwrite: bool) -> None:
        # All or nothing: a full disk never leaves a half-written or clobbered file.
        try:
            write_atomically(path, content, overwrite=overwrite)
        except TargetExistsError:  # only without overwrite: ask, then write over it
            from .screens.confirm import ConfirmScreen

            question = f"{path} exists. Replace it?"
            chat.app.push_screen(ConfirmScreen(question), lambda yes: write(True) if yes else None)
            return
        except OSError as err:
            chat.notice(f"Could not write {path}: {err.strerror or err}", kind="error")
            return
        chat.notice(f"Exported to {path}")

    write(False)


def system(chat: ChatActions, value: str) -> None:
    if not value:
        chat.notice(f"System prompt: {chat.system_prompt or '(none)'}")
        return
    chat.system_prompt = None if value.lower() in ("off", "none") else value
    session_id, prompt = chat.session_id, chat.system_prompt
    if session_id is not None:
        chat.saver.call("the system prompt", lambda s: s.set_system_prompt(session_id, prompt))
    chat.notice("System prompt set for the next turns." if prompt else "System prompt removed.")


def retry(chat: ChatActions, value: None) -> None:
    if chat.busy("retry"):
        return
    if chat.session_id is None or not any(m["role"] == "user" for m in chat.history):
        chat.notice("Nothing to retry yet.", kind="error")
        return
    if not chat.engine_loaded():
        chat.notice("The model is not loaded yet.", kind="error")
        return
    chat.regenerate_last_reply()


def edit(chat: ChatActions, value: int | None) -> None:
    chat.edit_message(value)


def branch(chat: ChatActions, value: int) -> None:
    chat.switch_branch(value)


def copy(chat: ChatActions, value: None) -> None:
    answer = chat.last_answer()
    if not answer:
        chat.notice("No answer to copy yet.", kind="error")
        return
    chat.app.copy_to_clipboard(answer)
    chat.notice(f"Copied the last answer ({len(answer)} characters).")


def theme(chat: ChatActions, value: str) -> None:
    if not value:
        current = chat.app.theme
        names = ", ".join(
            f"{name} (current)" if name == current else name
            for name in sorted(chat.app.available_themes)
        )
        chat.notice(f"Themes: {names}. /theme NAME switches.")
        return
    problem = chat.switch_theme(value)
    if problem is not None:
        chat.notice(problem, kind="error")
    else:
        chat.confirm(f"Theme: {value}")


def thinking_display(chat: ChatActions, value: str) -> None:
    chat.set_thinking_display(value)


def model(chat: ChatActions, value: str) -> None:
    if value:
        chat.request_model_switch(value)
    else:
        chat.request_models()


def attach_file(chat: ChatActions, value: str) -> None:
    """/file PATH: read it now (a file that cannot be attached is refused at once), and send it
    with the next message."""
    from qwen3tui.file_attach import AttachError, read_attachment

    try:
        attachment = read_attachment(Path.cwd() / Path(value).expanduser(), name=value)
    except AttachError as err:
        chat.notice(str(err), kind="error")
        return
    chat.attach(attachment)


def clear(chat: ChatActions, value: None) -> None:
    if not chat.busy("clear the screen"):
        chat.clear_conversation()


def help(chat: ChatActions, value: None) -> None:  # noqa: A001 -- the command's name
    chat.show_help()


def quit(chat: ChatActions, value: None) -> None:  # noqa: A001 -- the command's name
    chat.quit()


def _with(settings: TurnSettings, **changes: Any) -> TurnSettings:
    from dataclasses import replace

    return replace(settings, **changes)


def export_json_text(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)
