"""The Textual application: start-up, engine loading, the store, settings, themes and quitting.

The conversation itself lives in `chat_screen.ChatScreen`. This module never imports torch:
the engine is created by `engine_factory` inside a thread worker.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import TextArea

from qwen3tui.engine.chat_engine import ChatEngine
from qwen3tui.engine.errors import EngineError
from qwen3tui.engine.info import LoadProgress
from qwen3tui.settings import DEFAULT_THEME, UserSettings
from qwen3tui.store import SessionSaver, SessionStore, StoreError

from .chat_screen import ChatScreen, SaveStateChanged, Turn
from .command_palette import SlashCommandProvider
from .themes import register_themes, start_theme

EngineFactory = Callable[[Callable[[LoadProgress], None]], Any]
PROGRESS_INTERVAL_S = 0.1
QUIT_SAVE_WAIT_S = 30.0  # at quit, how long to wait for another process's lock on the store


class EngineProgress(Message):
    def __init__(self, progress: LoadProgress) -> None:
        super().__init__()
        self.progress = progress


class EngineReady(Message):
    def __init__(self, engine: ChatEngine) -> None:
        super().__init__()
        self.engine = engine


class EngineFailed(Message):
    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


class Qwen3App(App[int]):
    TITLE = "qwen3tui"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {SlashCommandProvider}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "copy_or_quit", "Copy / Quit", priority=True, show=False),
        Binding("ctrl+q", "request_quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        *,
        engine_factory: EngineFactory,
        model_name: str,
        store: SessionStore | None = None,
        settings: UserSettings | None = None,
        resume: str | None = None,
        continue_last: bool = False,
    ) -> None:
        super().__init__()
        self.engine_factory = engine_factory
        self.model_name = model_name
        self.engine: ChatEngine | None = None
        self.store = store if store is not None else SessionStore.open()
        self.saver = SessionSaver(self.store, on_change=self._save_state_changed)
        self.user_settings = settings if settings is not None else UserSettings.load()
        self.resume = resume
        self.continue_last = continue_last
        self.chat: ChatScreen | None = None
        self._quitting = False
        self._theme_ready = False
        self._settings_warned = False
        self._quit_question: Any = None  # the open "Quit?" dialog, if any
        self.unsaved: list[str] = []  # what was still only in memory at exit

    # ----- start-up -----

    async def on_mount(self) -> None:
        theme_warnings = self._register_themes()
        self.chat = ChatScreen(
            self.user_settings.turn,
            store=self.store,
            saver=self.saver,
            model_name=self.model_name,
        )
        await self.push_screen(self.chat)
        for warning in [*self.user_settings.warnings, *theme_warnings, *self.store.warnings]:
            self.chat.notice(warning, kind="error")
        self._open_requested_session()
        self._end_on_signals()
        # A daemon thread, not a Textual worker: Textual waits for its workers on exit, and a
        # download can take minutes; quitting must not wait for it.
        threading.Thread(target=self._load_engine, name="qwen3tui-load", daemon=True).start()

    def _end_on_signals(self) -> None:
        """SIGTERM and SIGHUP (a closed terminal) end the app as /quit does, the reply in
        flight saved and marked interrupted."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            try:
                loop.add_signal_handler(signum, self._interrupted, signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or a platform without these signals

    def _interrupted(self, signum: int) -> None:
        if self.chat is not None and self.chat.turn is not None:
            self.chat.turn.stop.interrupt()
        # Ended by a signal: exit as Unix tools do, 128 + its number (143 for SIGTERM).
        self.run_worker(self.quit_cleanly(128 + signum), group="quit", exclusive=True)

    def _save_state_changed(self, state: Any) -> None:
        """From the saving thread: tell the chat (post_message is thread-safe)."""
        if self.chat is not None:
            self.chat.post_message(SaveStateChanged(state))

    def _register_themes(self) -> list[str]:
        """Register shipped and user themes, apply the remembered one; returns warnings."""
        registered = register_themes(self)
        warnings = list(registered.warnings)
        name, problem = start_theme(self, self.user_settings.theme, DEFAULT_THEME)
        if problem is not None:
            warnings.append(problem)
        self.theme = name  # _theme_ready is still False: a fallback is not saved as the choice
        self._theme_ready = True
        return warnings

    def _open_requested_session(self) -> None:
        assert self.chat is not None
        chat = self.chat
        if self.continue_last:
            session_id = self.store.most_recent_id()
            if session_id is None:
                chat.notice("No saved session to continue yet: this is a new one.")
            else:
                chat.open_session(session_id)
        elif self.resume == "":
            chat.show_sessions()
        elif self.resume:
            try:
                chat.open_session(self.store.resolve_id(self.resume))
            except StoreError as err:
                chat.notice(f"{err}", kind="error")

    def _load_engine(self) -> None:
        """Load the model (in a background thread), reporting progress as messages."""
        last = 0.0

        def progress(p: LoadProgress) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= PROGRESS_INTERVAL_S or p.done >= p.total:
                last = now
                self.post_message(EngineProgress(p))

        try:
            engine = self.engine_factory(progress)
        except EngineError as err:
            self.post_message(EngineFailed(str(err)))
            return
        except Exception as err:  # noqa: BLE001 -- shown in the window as one line
            self.post_message(EngineFailed(f"{type(err).__name__}: {err}".splitlines()[0]))
            return
        self.post_message(EngineReady(engine))

    def on_engine_progress(self, message: EngineProgress) -> None:
        if self.chat is not None:
            self.chat.load_panel.show(message.progress)

    def on_engine_ready(self, message: EngineReady) -> None:
        self.engine = message.engine
        if self.chat is not None:
            self.chat.engine_ready(message.engine)

    def on_engine_failed(self, message: EngineFailed) -> None:
        if self.chat is not None:
            self.chat.engine_failed(message.message)

    # ----- settings and themes -----

    def on_chat_screen_settings_changed(self, message: ChatScreen.SettingsChanged) -> None:
        """Remember the chat's turn settings as the user's defaults."""
        self.user_settings.turn = message.settings
        self._save_user_settings()

    def on_chat_screen_turn_finished(self, message: ChatScreen.TurnFinished) -> None:
        self.turn_finished(message.turn)

    def on_chat_screen_quit_requested(self, message: ChatScreen.QuitRequested) -> None:
        self.run_worker(self.quit_cleanly(), group="quit", exclusive=True)

    def _save_user_settings(self) -> None:
        try:
            self.user_settings.save()
        except OSError as err:  # SettingsSaveError: say so once, keep going
            if not self._settings_warned and self.chat is not None:
                self._settings_warned = True
                self.chat.notice(str(err), kind="error")

    def watch_theme(self, theme: str) -> None:
        if self._theme_ready and self.user_settings.theme != theme:
            self.user_settings.theme = theme
            self._save_user_settings()

    def run_slash(self, text: str) -> None:
        """Run a slash command as if typed (the command palette uses this)."""
        if self.chat is not None:
            self.chat.submit(text)

    # ----- copying and quitting -----

    def action_copy_or_quit(self) -> None:
        focused = self.focused
        if isinstance(focused, TextArea) and focused.selected_text:
            self.copy_to_clipboard(focused.selected_text)
            return
        selected = self.screen.get_selected_text()
        if selected:
            self.copy_to_clipboard(selected)
            self.notify("Copied the selection.", timeout=2)
            return
        if self._quit_question is not None and self.screen is self._quit_question:
            self._quit_question.dismiss(True)  # Ctrl+C twice: quit
            return
        self.action_request_quit()

    def action_request_quit(self) -> None:
        from .screens.confirm import ConfirmScreen

        if self._quit_question is not None and self.screen is self._quit_question:
            return
        busy = self.chat is not None and self.chat.turn is not None
        question = (
            "A reply is still streaming. Stop it, save it and quit?" if busy else "Quit qwen3tui?"
        )

        def answered(yes: bool | None) -> None:
            self._quit_question = None
            if yes:
                self.run_worker(self.quit_cleanly(), group="quit", exclusive=True)

        self._quit_question = ConfirmScreen(question)
        self.push_screen(self._quit_question, answered)

    async def action_quit(self) -> None:
        await self.quit_cleanly()

    async def quit_cleanly(self, code: int = 0) -> None:
        """Stop a running reply, hand it to the saver, write everything out, then exit."""
        if self._quitting:
            return
        self._quitting = True
        if self.chat is not None:
            await self.chat.stop_and_wait()
        await asyncio.to_thread(self.saver.wait_idle, QUIT_SAVE_WAIT_S)
        self.unsaved = self.saver.unsaved()
        self.exit(code)

    def turn_finished(self, turn: Turn) -> None:
        """Hook for tests and the benchmark: a turn has ended and is saved."""
