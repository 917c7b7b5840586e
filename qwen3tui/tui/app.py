"""The Textual application: start-up, engine loading, the store, settings, themes and quitting.

The conversation itself lives in `chat_screen.ChatScreen`. This module never imports torch:
the engine is created by `engine_factory` inside a thread worker.
"""

from __future__ import annotations

import asyncio
import gc
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
from qwen3tui.engine.memory_fit import ModelTooLargeError
from qwen3tui.settings import DEFAULT_THEME, UserSettings
from qwen3tui.store import SessionSaver, SessionStore, StoreError

from .chat_screen import ChatScreen, SaveStateChanged, Turn
from .command_palette import SlashCommandProvider
from .themes import register_themes, start_theme

EngineFactory = Callable[[Callable[[LoadProgress], None]], Any]
ModelFactory = Callable[[str, Callable[[LoadProgress], None]], Any]  # (model, progress)
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


class EngineSwitched(Message):
    """`/model NAME` loaded its model (posted from the switching thread)."""

    def __init__(self, engine: ChatEngine) -> None:
        super().__init__()
        self.engine = engine


class EngineSwitchFailed(Message):
    def __init__(self, model: str, message: str, previous: ChatEngine | None) -> None:
        super().__init__()
        self.model = model
        self.message = message
        self.previous = previous  # still loaded (None: released to make room)


class ModelsListed(Message):
    def __init__(self, entries: list[Any], error: str | None = None) -> None:
        super().__init__()
        self.entries = entries
        self.error = error


class Qwen3App(App[int]):
    TITLE = "qwen3tui"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {SlashCommandProvider}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "copy_or_quit", "Copy / Quit", priority=True, show=False),
        Binding("ctrl+q", "request_quit", "Quit", priority=True),
    ]
    # Classes on every screen for the stylesheet: narrow (< 100 columns) and short (< 30 rows)
    # terminals get compact chrome, so the chat keeps the rows.
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (30, "-tall")]

    def __init__(
        self,
        *,
        engine_factory: EngineFactory,
        model_name: str,
        store: SessionStore | None = None,
        settings: UserSettings | None = None,
        resume: str | None = None,
        continue_last: bool = False,
        model_factory: ModelFactory | None = None,
    ) -> None:
        super().__init__()
        self.engine_factory = engine_factory
        self.model_factory = model_factory  # None: /model cannot switch (lists only)
        self._switching: str | None = None  # the model `/model NAME` is loading
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
        # Set once everything is saved and the app asks Textual to exit, with the exit code:
        # run_app's guard ends the process if Textual's shutdown then hangs (a closed terminal).
        self.exit_requested = threading.Event()
        self.exit_code = 0

    # ----- start-up -----

    async def on_mount(self) -> None:
        theme_warnings = self._register_themes()
        self.chat = ChatScreen(
            self.user_settings.turn,
            store=self.store,
            saver=self.saver,
            model_name=self.model_name,
            thinking_display=self.user_settings.thinking_display,
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

    def _progress_reporter(self) -> Callable[[LoadProgress], None]:
        """Load progress as messages, at most every PROGRESS_INTERVAL_S (and the last one)."""
        last = 0.0

        def progress(p: LoadProgress) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= PROGRESS_INTERVAL_S or p.done >= p.total:
                last = now
                self.post_message(EngineProgress(p))

        return progress

    def _load_engine(self) -> None:
        """Load the model (in a background thread), reporting progress as messages."""
        try:
            engine = self.engine_factory(self._progress_reporter())
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

    # ----- switching models (/model) -----

    def on_chat_screen_model_list_requested(self, message: ChatScreen.ModelListRequested) -> None:
        folders = self.user_settings.model_dirs

        def scan() -> None:
            from qwen3tui import model_catalog

            try:
                self.post_message(ModelsListed(model_catalog.list_models(folders)))
            except Exception as err:  # noqa: BLE001 -- a damaged cache is one line in the chat
                self.post_message(ModelsListed([], f"{type(err).__name__}: {err}".splitlines()[0]))

        # Scanning the cache and rendering each template takes a moment: never on the UI thread.
        threading.Thread(target=scan, name="qwen3tui-models", daemon=True).start()

    def on_models_listed(self, message: ModelsListed) -> None:
        if self.chat is not None:
            self.chat.show_model_list(message.entries, message.error)

    def on_chat_screen_model_switch_requested(
        self, message: ChatScreen.ModelSwitchRequested
    ) -> None:
        assert self.chat is not None
        if self.model_factory is None:
            self.chat.notice("Switching models is not available here.", kind="error")
            return
        if self._switching is not None:
            self.chat.notice(f"Already switching to {self._switching}; wait for it.", kind="error")
            return
        self._switching = message.model
        previous = self.engine
        self.chat.model_switch_started(message.model)
        threading.Thread(
            target=self._switch_engine,
            args=(message.model, previous),
            name="qwen3tui-switch",
            daemon=True,  # like the first load: quitting never waits for a download
        ).start()

    def _switch_engine(self, wanted: str, previous: ChatEngine | None) -> None:
        """Load `wanted` beside the current model; when both would not fit (the engine refuses
        before reading weights), release the current one first and load again."""
        model = self._listed_name(wanted)
        progress = self._progress_reporter()
        try:
            try:
                engine = self.model_factory(model, progress)  # type: ignore[misc]
            except ModelTooLargeError:
                if previous is None:
                    raise
                self.call_from_thread(self._release_engine)
                previous = None
                gc.collect()  # the old weights go now, not at some later collection
                engine = self.model_factory(model, progress)  # type: ignore[misc]
        except EngineError as err:
            self.post_message(EngineSwitchFailed(model, str(err), previous))
            return
        except Exception as err:  # noqa: BLE001 -- shown in the window as one line
            first = f"{type(err).__name__}: {err}".splitlines()[0]
            self.post_message(EngineSwitchFailed(model, first, previous))
            return
        self.post_message(EngineSwitched(engine))

    @staticmethod
    def _listed_name(wanted: str) -> str:
        """The listed model a short name means ("Qwen3-4B" for "Qwen/Qwen3-4B"), else as typed."""
        from qwen3tui import model_catalog

        try:
            found = model_catalog.find(wanted, model_catalog.cached_models())
        except Exception:  # noqa: BLE001 -- an unreadable cache: the engine says what is wrong
            found = None
        return found.name if found is not None else wanted

    def _release_engine(self) -> None:
        """UI thread: drop every reference to the current engine so its memory can go."""
        self.engine = None
        if self.chat is not None:
            self.chat.engine_released()

    def on_engine_switched(self, message: EngineSwitched) -> None:
        self._switching = None
        self.engine = message.engine
        if self.chat is not None:
            self.chat.model_switched(message.engine)

    def on_engine_switch_failed(self, message: EngineSwitchFailed) -> None:
        self._switching = None
        self.engine = message.previous
        if self.chat is not None:
            self.chat.model_switch_failed(message.model, message.message, message.previous)

    # ----- settings and themes -----

    def on_chat_screen_settings_changed(self, message: ChatScreen.SettingsChanged) -> None:
        """Remember the chat's turn settings as the user's defaults."""
        self.user_settings.turn = message.settings
        self._save_user_settings()

    def on_chat_screen_thinking_display_changed(
        self, message: ChatScreen.ThinkingDisplayChanged
    ) -> None:
        """Remember how reasoning shows, as the theme is remembered."""
        if self.user_settings.thinking_display != message.display:
            self.user_settings.thinking_display = message.display
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
        self.exit_code = code
        self.exit_requested.set()
        self.exit(code)

    def turn_finished(self, turn: Turn) -> None:
        """Hook for tests and the benchmark: a turn has ended and is saved."""
