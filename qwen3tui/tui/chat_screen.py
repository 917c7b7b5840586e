"""The main chat screen: the conversation, the composer and the controls.

Flow of one message: Composer.Submitted -> `submit()` (a slash command runs its handler from
`slash_commands`; a prompt starts a turn) -> `start_turn()` mounts the reply and hands
`generation_worker.run_generation` to the screen's one engine thread, which runs the one turn runner
(`qwen3tui.turn.run_turn`: it saves the turn through the SessionSaver) and fills a Mailbox ->
`drain()` (UI thread, at most ~30 times a second) shows the coalesced events -> `TurnEnded`.

The screen never imports the app: it asks it for app-wide things by messages.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Static, Switch

from qwen3tui import engine_choice
from qwen3tui.engine.chat_engine import ChatEngine
from qwen3tui.engine.events import AnswerDelta, ContextNotice, Summary, ThinkingDelta, ThinkingDone
from qwen3tui.engine.thinking_mode import (
    ThinkingMode,
    resolve_thinking,
    thinking_mode_label,
    thinking_switch_note,
)
from qwen3tui.file_attach import AttachError, attach_typed, check_fits, unescape_at
from qwen3tui.settings import DEFAULT_THINKING_DISPLAY, ThinkingDisplay, TurnSettings
from qwen3tui.store import (
    Outcome,
    SaveState,
    SessionSaver,
    SessionStore,
    StoreError,
    conversation_of,
)
from qwen3tui.store import export as export_format
from qwen3tui.store.attachments import Attachment, expand_prompt
from qwen3tui.store.models import Session
from qwen3tui.turn import Recording, Stop, TurnEnded, WaitingForSession

from . import branches, slash_commands, transcript
from .generation_worker import (
    Mailbox,
    StreamItem,
    StreamReady,
    UpdatePacer,
    coalesce,
    hand_gil_over_quickly,
    run_generation,
)
from .live_stats import LiveStats
from .slash_commands import ParsedCommand, SlashError
from .widgets.budget_slider import BudgetSlider
from .widgets.chat_footer import ChatFooter
from .widgets.chat_message import (
    AssistantMessage,
    BranchStep,
    Notice,
    UserMessage,
    reply_meta,
)
from .widgets.command_text import command_text
from .widgets.composer import Composer, PromptHistory
from .widgets.controls import Controls
from .widgets.load_progress import LoadProgressPanel
from .widgets.slash_suggestions import SlashSuggestions
from .widgets.status_bar import StatusBar
from .widgets.welcome import Welcome


class ContextCounted(Message):
    """Posted from a background thread: the conversation's prompt size in tokens (for turn
    `turn_id`: the prompt of that reply, counted when it was sent)."""

    def __init__(self, tokens: int, turn_id: int | None = None) -> None:
        super().__init__()
        self.tokens = tokens
        self.turn_id = turn_id


class SaveStateChanged(Message):
    """Posted from the saving thread: saving stopped, resumed, or waits for a lock."""

    def __init__(self, state: SaveState) -> None:
        super().__init__()
        self.state = state


@dataclass
class Turn:
    """One generation in flight."""

    turn_id: int
    widget: AssistantMessage
    stop: Stop = field(default_factory=Stop)
    mailbox: Mailbox = field(default_factory=Mailbox)
    work: Future[None] | None = None  # run_generation on the engine thread: the reply, its warm-up
    done: bool = False
    model: str | None = None  # what writes the reply, as it is saved with it
    live: LiveStats = field(default_factory=LiveStats)  # the status bar's numbers meanwhile


class ChatScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop"),
        # Shown in the footer only while the model thinks (`check_action`).
        Binding("ctrl+g", "answer_now", "Answer now"),
        Binding("ctrl+t", "toggle_thinking", "Thinking"),
        Binding("ctrl+o", "sessions", "Sessions"),
        Binding("ctrl+n", "new", "New"),
        Binding("ctrl+r", "retry", "Retry", show=False),
        Binding("ctrl+up", "edit_last", "Edit", show=False),  # Up alone walks the history
        Binding("alt+left", "branch(-1)", "Previous version", show=False),
        Binding("alt+right", "branch(1)", "Next version", show=False),
        Binding("f1", "help", "Help"),
    ]

    AUTO_FOCUS = "#composer"

    class SettingsChanged(Message):
        """The turn settings changed: the app remembers them as the user's defaults."""

        def __init__(self, settings: TurnSettings) -> None:
            super().__init__()
            self.settings = settings

    class TurnFinished(Message):
        """A turn ended and was handed to the saver (for the app's hook)."""

        def __init__(self, turn: Turn) -> None:
            super().__init__()
            self.turn = turn

    class QuitRequested(Message):
        """The user asked to quit (/quit)."""

    class ModelListRequested(Message):
        """/model alone: the app scans for models and calls `show_model_list`."""

    class ModelSwitchRequested(Message):
        """/model NAME: the app loads NAME in the background and calls `model_switched`."""

        def __init__(self, model: str) -> None:
            super().__init__()
            self.model = model

    class ThinkingDisplayChanged(Message):
        """The user chose how reasoning shows: the app remembers it in settings.toml."""

        def __init__(self, display: ThinkingDisplay) -> None:
            super().__init__()
            self.display = display

    def __init__(
        self,
        settings: TurnSettings,
        *,
        store: SessionStore,
        saver: SessionSaver,
        model_name: str,
        thinking_display: ThinkingDisplay = DEFAULT_THINKING_DISPLAY,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.thinking_display: ThinkingDisplay = thinking_display
        self.store = store
        self.saver = saver
        self.model_name = model_name
        self.engine: ChatEngine | None = None
        self.thinking_mode: ThinkingMode = "hybrid"  # the loaded model's, from its template
        self.load_error: str | None = None
        self.session_id: str | None = None
        self.system_prompt: str | None = None
        self.history: list[dict[str, str]] = []  # answer-only conversation for the engine
        self.turn: Turn | None = None
        self.pending_prompt: str | None = None  # typed before the engine was ready
        self.pending_files: list[Attachment] = []  # from /file, sent with the next message
        self.editing: UserMessage | None = None  # the message /edit put in the composer
        # Which model wrote each reply on screen; shown in their meta lines once the
        # conversation has replies of more than one model.
        self.reply_models: dict[AssistantMessage, str] = {}
        self.show_reply_models = False
        # Sent while a reply streams: each waits, shown in the chat, to be its own turn.
        self.queued: list[UserMessage] = []
        self._turn_counter = 0
        # Every reply and its next-turn warm-up run on this one thread. The CPU kernels keep an
        # OpenMP pool per thread that computes, and while two pools exist (a warm-up left on one
        # thread, the next reply on another: Textual's thread workers reuse a pool of threads)
        # the workers stop spinning between kernels: decode on 2 cores at ~0.86 of its speed.
        self._engine_thread = ThreadPoolExecutor(1, thread_name_prefix="qwen3tui-engine")
        self._last_stop: Stop | None = None  # the latest turn's: ends its warm-up
        self.pacer = UpdatePacer()
        self._drain_timer: Timer | None = None
        self._dropped_shown: str | None = None
        self.status = StatusBar(id="status-bar")
        self.save_banner = Static("", id="save-banner", markup=False)
        self.conversation = VerticalScroll(id="conversation")
        self.welcome = Welcome("", id="welcome")
        self.suggestions = SlashSuggestions(id="slash-suggestions")
        self.composer = Composer(id="composer", suggestions=self.suggestions)
        self.load_panel = LoadProgressPanel(id="load-panel")
        self.controls = Controls(
            thinking=settings.thinking, budget=settings.thinking_budget, id="controls"
        )

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.save_banner
        yield self.welcome
        yield self.conversation
        yield self.load_panel
        yield self.suggestions
        yield self.composer
        yield self.controls
        yield ChatFooter()

    def on_mount(self) -> None:
        self.suggestions.display = False
        self.save_banner.display = False
        self.welcome.display = False
        self.status.set(model=self.model_name, state="loading model…")
        if not self.saver.state.saving:
            self.show_save_state(self.saver.state)

    # ----- engine state (called by the app) -----

    def engine_ready(self, engine: ChatEngine) -> None:
        self.engine = engine
        info = engine.info
        self.pacer.pace_for(info)  # a model on this CPU: the UI keeps off the decode's cores
        hand_gil_over_quickly(info)
        self._close_load_panel()
        self.thinking_mode = info.thinking_mode
        # The one switch position the model cannot take, and why.
        locked = thinking_switch_note(info.thinking_mode, info.thinking_mode == "instruct")
        self.controls.show_mode(info.thinking_mode, locked)
        self._show_controls()
        if info.thinking_mode_note:
            self.notice(info.thinking_mode_note, kind="info")
        self.status.set(
            model=info.model,
            mode=thinking_mode_label(info.thinking_mode),
            device=info.device,
            dtype=info.dtype,
            quantize=info.quantize,
            context_length=info.context_length,
            state="",
        )
        self.refresh_context_count()
        self.welcome.show_model(info.model, info.thinking_mode)
        self._show_welcome()
        if self.pending_prompt is not None:
            prompt, self.pending_prompt = self.pending_prompt, None
            self.start_turn(prompt, mount_user=False, save_user=False)

    def _close_load_panel(self) -> None:
        """The first load is over: the panel goes for good (later loads say so in the status
        line). Removed, not only hidden: its bar's animation timer would otherwise wake the UI
        15 times a second for as long as the app runs, each wake taking a decode core."""
        self.load_panel.display = False
        if self.load_panel.is_attached:
            self.load_panel.remove()

    # ----- switching models (/model: the app loads, the screen shows) -----

    def request_models(self) -> None:
        self.post_message(self.ModelListRequested())

    def request_model_switch(self, model: str) -> None:
        if self.busy("switch models"):
            return
        if self.engine is None and self.load_error is None:
            self.notice("The model is still loading; switch when it is ready.", kind="error")
            return
        self.post_message(self.ModelSwitchRequested(model))

    def show_model_list(self, entries: list[Any], error: str | None = None) -> None:
        """The models `qwen3tui models list` shows, the current one marked."""
        from qwen3tui.model_catalog import format_size

        if error is not None:
            self.notice(f"Cannot list the models: {error}", kind="error")
            return
        if not entries:
            self.notice(
                "No Qwen3 models in the Hugging Face cache or in added folders yet:"
                " /model ID downloads one from the Hub, `qwen3tui models add DIR` adds a folder."
            )
            return
        current = self.engine.info.model if self.engine is not None else self.model_name
        lines = ["Models (/model NAME switches; the conversation continues):"]
        for e in entries:
            kind = {"dense": "dense", "moe": "MoE"}.get(e.kind or "", "?")
            details = [format_size(e.size_bytes), kind, e.mode_label, e.dtype or "?"]
            if e.problem:
                details.append(e.problem)
            mark = "▶" if e.name == current else " "
            lines.append(f"{mark} {e.name}  ({', '.join(details)})")
        self.notice("\n".join(lines))

    def model_switch_started(self, model: str) -> None:
        """Until the new model is ready nothing is sent to the old one: messages typed
        meanwhile wait for the new one, as they do at start-up."""
        if self.engine is not None:
            self.engine.stop_warming()
        self.engine = None
        self.load_error = None
        self._show_welcome()
        self.status.set(model=model, state=f"loading {model}…")
        self.notice(f"Switching to {model}…")

    def engine_released(self) -> None:
        """The previous model was let go to make room for the new one."""
        self.status.set(state="loading (the previous model was released to make room)…")

    def model_switched(self, engine: ChatEngine) -> None:
        info = engine.info
        self.model_name = info.model  # new sessions are recorded with it
        if self.reply_models:
            self.show_reply_models = True
            self._label_reply_models()
        self.notice(
            f"Now chatting with {info.model} ({thinking_mode_label(info.thinking_mode)});"
            " the conversation continues."
        )
        self.engine_ready(engine)  # the thinking mode, the status bar, a message typed meanwhile

    def model_switch_failed(self, model: str, message: str, previous: ChatEngine | None) -> None:
        self.notice(f"Could not switch to {model}: {message}", kind="error")
        if previous is not None:
            self.notice(f"Still chatting with {previous.info.model}.")
            self.engine_ready(previous)
            return
        self.load_error = message
        self._close_load_panel()
        self.status.set(state="model not loaded")
        self.notice("No model is loaded now: /model NAME loads one.")

    def _record_reply_model(self, widget: AssistantMessage, model: str | None) -> None:
        if model:
            self.reply_models[widget] = model
            self._label_reply_models()

    def _restore_reply_models(self, session: Session) -> None:
        replies = [m for m in session.messages if m.role != "user"]
        widgets = [w for w in self.conversation.children if isinstance(w, AssistantMessage)]
        for widget, m in zip(widgets, replies, strict=False):
            if m.model:
                self.reply_models[widget] = m.model
        self.show_reply_models = len(set(self.reply_models.values())) > 1
        self._label_reply_models()

    def _label_reply_models(self) -> None:
        """Add each reply's model to its meta line (once), when there is more than one."""
        if not self.show_reply_models:
            return
        for widget, model in self.reply_models.items():
            if widget.outcome is None or widget.has_class("-model-shown"):
                continue
            meta = str(widget.meta.content)
            widget.show_outcome(widget.outcome, f"{meta} · {model}" if meta else model)
            widget.add_class("-model-shown")

    def engine_failed(self, message: str) -> None:
        self.load_error = message
        self._close_load_panel()
        self.status.set(state="model not loaded")
        self.pending_prompt = None
        self._show_welcome()
        for text, kind in [
            (f"Could not load the model: {message}", "error"),
            (
                "Fix the problem above, then restart qwen3tui (e.g. `qwen3tui --model"
                " DIR_OR_HUB_ID`). Your saved sessions are still here: Ctrl+O opens them, and"
                " `qwen3tui sessions list` lists them in a terminal.",
                "info",
            ),
        ]:
            shown = command_text(text)  # commands in bold, not in literal backticks
            self.notice(shown.plain, kind=kind).update(shown)

    def engine_loaded(self) -> bool:
        return self.engine is not None

    def refresh_context_count(self, turn_id: int | None = None) -> None:
        """Count the prompt off the UI thread; with `turn_id`, as the prompt of that reply."""
        engine = self.engine
        if engine is None or not self.history:
            self.status.set(context_used=0 if self.history == [] else None)
            return
        messages = self.engine_messages()
        thinking = self.settings.thinking

        def count() -> None:
            try:
                used = engine.count_tokens(messages, thinking)
            except Exception:  # noqa: BLE001 -- the status line is informative only
                return
            self.post_message(ContextCounted(used, turn_id))

        # Tokenizing a long conversation takes a moment: off the UI thread, never waited for.
        threading.Thread(target=count, name="qwen3tui-count", daemon=True).start()

    def on_context_counted(self, message: ContextCounted) -> None:
        turn = self.turn
        if message.turn_id is None and turn is None:
            self.status.set(context_used=message.tokens)
        elif turn is not None and message.turn_id == turn.turn_id:
            turn.live.prompt_tokens = message.tokens
            self._show_live(turn)

    def _show_live(self, turn: Turn) -> None:
        """The context used and the speed so far, until the engine's own numbers come."""
        live = turn.live
        if live.ended:
            return
        shown = {"context_used": live.context_used, "tok_s": live.tok_s}
        self.status.set(**{name: value for name, value in shown.items() if value is not None})

    # ----- saving -----

    def on_save_state_changed(self, message: SaveStateChanged) -> None:
        self.show_save_state(message.state)

    def show_save_state(self, state: SaveState) -> None:
        """A banner that stays while nothing reaches the disk; a notice when it does again."""
        was_shown = self.save_banner.display
        if state.dropped is not None and state.dropped != self._dropped_shown:
            self._dropped_shown = state.dropped
            self.notice(f"Not saved: {state.dropped}", kind="error")
        if state.unavailable is not None:
            self.save_banner.update(
                f"not saving: {state.unavailable} — your conversation is kept in memory,"
                " /export to keep it"
            )
            self.save_banner.display = True
        else:
            self.save_banner.display = False
            if was_shown:
                self.notice("Saving again: everything kept in memory is now on disk.")
        self.status.set(state="waiting for the session store…" if state.waiting_for_lock else "")

    # ----- composing -----

    @on(SlashSuggestions.Chosen)
    def _suggestion_chosen(self, event: SlashSuggestions.Chosen) -> None:
        """A click on a suggestion (the composer routes the keys itself)."""
        self.composer.choose(event.completion)
        self.composer.focus()

    @on(Composer.Submitted)
    def _submitted(self, event: Composer.Submitted) -> None:
        try:
            self.submit(event.text)
        finally:
            self.composer.taken(event.text)

    def submit(self, text: str) -> None:
        """Handle what the user sent: a slash command, or a prompt for the model."""
        if not text.strip():
            return
        if slash_commands.is_command(text):
            try:
                command = slash_commands.parse(text)
            except SlashError as err:
                self.notice(str(err), kind="error")  # the composer keeps the text to fix it
                return
            self.composer.clear_sent(text)
            self.run_command(command)
            return
        try:
            attachments = self.attachments_for(text)
        except AttachError as err:
            self.notice(str(err), kind="error")  # the composer keeps the text to fix it
            return
        if self.turn is not None:
            self.composer.clear_sent(text)
            self.queue_message(text, attachments)
            self.take_pending_files()
            return
        if self.load_error is not None:
            self.notice(
                "No model is loaded, so nothing can be sent; see the error above.", kind="error"
            )
            return
        self.composer.clear_sent(text)
        self.take_pending_files()
        text, switch = slash_commands.split_soft_switch(text)
        if switch is not None:
            if self.thinking_mode == "hybrid":
                self.change_settings(replace(self.settings, thinking=switch == "think"))
            else:  # only hybrid models know the soft switch: it is not sent to others
                text = slash_commands.strip_soft_switch(text)
                note = thinking_switch_note(self.thinking_mode, switch == "think")
                if note:
                    self.notice(note, kind="error")
        if text.lstrip().startswith("//"):  # "//x" sends "/x": how to start a message with /
            text = text.replace("//", "/", 1)
        text = unescape_at(text)  # "@@x" sends "@x": how to write an @ that is not a file
        if self.engine is None:
            if self.pending_prompt is not None:
                self.notice(
                    "The model is still loading; your first message will be sent when it is ready.",
                    kind="error",
                )
                return
            self.pending_prompt = text
            # Handed to the saver now: quitting before the load loses nothing.
            self.saver.add_user_message(self.ensure_session(), text, attachments)
            self.history.append({"role": "user", "content": expand_prompt(text, attachments)})
            self.mount_message(UserMessage(text, attachments))
            self.notice(
                "The model is still loading; this message will be sent when it is ready.",
                kind="info",
            )
            return
        if self.editing is not None:
            branches.send_edit(self, text, attachments)  # beside the original, which is kept
            return
        self.start_turn(text, attachments=attachments)

    def run_command(self, command: ParsedCommand) -> None:
        command.run(self)

    # ----- attached files -----

    def attachments_for(self, text: str) -> list[Attachment]:
        """The files going with this message: those of /file, then its @paths. AttachError
        (one line, with the numbers) when one cannot be read or they do not fit the context."""
        files = [*self.pending_files, *attach_typed(text)]
        self._check_fits(text, files)
        return files

    def _check_fits(self, text: str, files: list[Attachment]) -> None:
        # Before the model is loaded only the reading is checked: the engine refuses a prompt
        # that does not fit, in one line, when it is sent.
        engine = self.engine
        if files and engine is not None:
            thinking = resolve_thinking(self.thinking_mode, self.settings.thinking)
            check_fits(
                text,
                files,
                lambda m: engine.count_tokens(m, thinking),
                engine.info.context_length,
                self.settings.max_tokens,
                self.system_prompt,
            )

    def attach(self, attachment: Attachment) -> None:
        """/file: the file goes with the next message sent (shown on the composer's border)."""
        try:
            self._check_fits("", [*self.pending_files, attachment])
        except AttachError as err:
            self.notice(str(err), kind="error")
            return
        self.pending_files.append(attachment)
        self._show_pending_files()
        self.confirm(f"Attached {attachment.chip}; it goes with your next message.")

    def take_pending_files(self) -> None:
        self.pending_files = []
        self._show_pending_files()

    def _show_pending_files(self) -> None:
        chips = " ".join(a.chip for a in self.pending_files)
        # Text, not a string: a file name is never read as markup.
        self.composer.border_title = Text(f"+ {chips}") if chips else ""

    # ----- a turn -----

    def engine_messages(self) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + self.history

    def ensure_session(self) -> str:
        if self.session_id is None:
            where = engine_choice.where(self.engine) if self.engine is not None else {}
            self.session_id = self.saver.create_session(
                self.model_name, self.system_prompt, {**self.settings.to_dict(), **where}
            )
        return self.session_id

    def start_turn(
        self,
        text: str,
        *,
        mount_user: bool = True,
        save_user: bool = True,
        attachments: Sequence[Attachment] = (),
        at: int | None = None,
    ) -> None:
        """`at`: where in the session's branch the turn goes (an edit, a retry: `branches`)."""
        assert self.engine is not None
        session_id = self.ensure_session()
        if save_user:
            self.history.append({"role": "user", "content": expand_prompt(text, attachments)})
        if mount_user:
            self.mount_message(UserMessage(text, attachments))
        # What the model will do: its thinking mode may decide rather than the switch.
        thinking = resolve_thinking(self.thinking_mode, self.settings.thinking)
        options = replace(self.settings, thinking=thinking).options()
        recording = Recording(
            self.saver,
            session_id,
            model=engine_choice.reply_model(self.engine),
            user_text=text if save_user else None,
            attachments=tuple(attachments),
            at=at,
        )
        widget = AssistantMessage(
            thinking_enabled=thinking, budget=options.thinking_budget, display=self.thinking_display
        )
        self._turn_counter += 1
        turn = Turn(self._turn_counter, widget, model=recording.model)
        self.turn = turn
        self.mount_message(widget)
        self.conversation.anchor()
        # The previous reply's speed is not this one's: shown again as this one streams.
        self.status.set(state="thinking…" if thinking else "generating…", tok_s=None, ttft_s=None)
        self.refresh_context_count(turn.turn_id)
        wake = partial(self.post_message, StreamReady(turn.turn_id))
        if self._last_stop is not None:
            self._last_stop.cancel()  # the last reply's warm-up gives way at its next chunk
        self._last_stop = turn.stop
        turn.work = self._engine_thread.submit(
            run_generation,
            self.engine,
            self.engine_messages(),
            options,
            turn.stop,
            recording,
            turn.mailbox,
            wake,
        )
        self.refresh_bindings()  # "Answer now" shows in the footer while the model thinks

    @on(StreamReady)
    async def _stream_ready(self, message: StreamReady) -> None:
        turn = self.turn
        if turn is None or message.turn_id != turn.turn_id:
            return
        if turn.mailbox.ended and self._drain_timer is not None:
            # The model is done (its cores are free): show the end now, not when paced.
            self._drain_timer.stop()
            self._drain_timer = None
        await self._drain_when_due()

    async def _drain_when_due(self) -> None:
        if self._drain_timer is not None:
            return
        self.pacer.typed(self.composer.last_keystroke)
        ended = self.turn is not None and self.turn.mailbox.ended
        wait = 0.0 if ended else self.pacer.delay(time.monotonic())
        if wait <= 0:
            await self.drain()
        else:
            self._drain_timer = self.set_timer(wait, self._timed_drain)

    async def _timed_drain(self) -> None:
        self._drain_timer = None
        await self._drain_when_due()  # the user may have typed meanwhile

    async def drain(self) -> None:
        """Apply everything the worker produced since the last drain (UI thread)."""
        turn = self.turn
        if turn is None:
            return
        started = time.monotonic()
        self.pacer.started(started)
        taken = turn.mailbox.take()
        if turn.live.observe(taken):
            self._show_live(turn)
        items = coalesce(taken)
        with self.app.batch_update():
            for item in items:
                await self._apply(turn, item)
        # The cost of an update includes the re-layout and paint that follow it.
        self.call_after_refresh(lambda: self.pacer.finished(time.monotonic() - started))

    async def _apply(self, turn: Turn, item: StreamItem) -> None:
        widget = turn.widget
        if isinstance(item, ThinkingDelta):
            await widget.append_thinking(item.text, item.thinking_tokens)
        elif isinstance(item, ThinkingDone):
            await widget.thinking_done(
                seconds=item.seconds,
                tokens=item.thinking_tokens,
                budget_hit=item.budget_hit,
                cut_by_user=item.cut_by_user,
            )
            self.status.set(state="generating…")
            self.refresh_bindings()  # "Answer now" leaves the footer
        elif isinstance(item, AnswerDelta):
            await widget.append_answer(item.text)
        elif isinstance(item, (ContextNotice, WaitingForSession)):
            await self.conversation.mount(Notice(item.message, kind="info"), before=widget)
        elif isinstance(item, Summary):
            t, u = item.timings, item.usage
            self.status.set(
                tok_s=t.decode_tok_s,
                ttft_s=t.ttft_s,
                context_used=u.prompt_tokens + u.thinking_tokens + u.answer_tokens,
            )
        elif isinstance(item, TurnEnded):
            await self._end_turn(turn, item)

    async def _end_turn(self, turn: Turn, ended: TurnEnded) -> None:
        if ended.answer or ended.outcome is Outcome.COMPLETE:
            self.history.append({"role": "assistant", "content": ended.answer})
        s = ended.summary
        meta = reply_meta(
            ended.outcome,
            answer_tokens=s.usage.answer_tokens if s else 0,
            decode_tok_s=s.timings.decode_tok_s if s else 0.0,
            ttft_s=s.timings.ttft_s if s else 0.0,
            error=ended.error,
        )
        turn.done = True
        await turn.widget.finish(ended.outcome, meta)
        self._record_reply_model(turn.widget, turn.model)
        if self.turn is turn:
            self.turn = None
        self.status.set(state="")
        self.refresh_bindings()
        self.post_message(self.TurnFinished(turn))
        if ended.outcome is not Outcome.INTERRUPTED:
            self.send_next_queued()

    def action_stop(self) -> None:
        """Esc: the first press clears the queued messages, if any; else it stops the reply."""
        if branches.cancel_edit(self):
            return
        if self.queued:
            self.clear_queue()
            return
        if self.turn is not None and not self.turn.stop.is_set():
            self.turn.stop.cancel()
            self.status.set(state="stopping…")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "answer_now":  # only while the model thinks: hidden from the footer else
            turn = self.turn
            return turn is not None and turn.widget.thinking_live and not turn.stop.is_set()
        return True

    def action_answer_now(self) -> None:
        """End the thinking now: the model is told to answer (as when the budget runs out)."""
        turn = self.turn
        if turn is None or not turn.widget.thinking_live or turn.stop.answer_event.is_set():
            return
        turn.stop.answer_now()
        turn.widget.answering()
        self.status.set(state="answering…")
        self.refresh_bindings()

    @on(Button.Pressed, ".answer-now")
    def _answer_now_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_answer_now()

    # ----- queued messages -----

    def queue_message(self, text: str, attachments: Sequence[Attachment] = ()) -> None:
        """A message sent while a reply streams: shown at once, sent as its own turn after."""
        widget = UserMessage(text, attachments)
        widget.add_class("-queued")
        self.queued.append(widget)
        self.mount_message(widget)
        self._show_queue()

    def send_next_queued(self) -> None:
        if not self.queued or self.turn is not None or self.engine is None:
            return
        widget = self.queued.pop(0)
        widget.remove_class("-queued")
        self._show_queue()
        text, switch = slash_commands.split_soft_switch(widget.text)
        if switch is not None and self.thinking_mode == "hybrid":
            self.change_settings(replace(self.settings, thinking=switch == "think"))
        elif switch is not None:
            text = slash_commands.strip_soft_switch(text)
        if text.lstrip().startswith("//"):
            text = text.replace("//", "/", 1)
        self.start_turn(text, mount_user=False, attachments=widget.attachments)

    def clear_queue(self) -> None:
        for widget in self.queued:
            widget.remove()
        count, self.queued = len(self.queued), []
        self._show_queue()
        self.confirm(f"Cleared {count} queued message{'s' if count != 1 else ''}.")

    def _show_queue(self) -> None:
        count = len(self.queued)
        self.composer.border_subtitle = f"{count} queued · Esc clears" if count else ""

    def on_unmount(self) -> None:
        hand_gil_over_quickly(None)
        # However the app ends, a running generation must not keep the process alive.
        if self.turn is not None:
            self.turn.stop.cancel()
        if self._last_stop is not None:
            self._last_stop.cancel()  # the warm-up after the last reply, if running
        if self.engine is not None:
            self.engine.stop_warming()
        self._engine_thread.shutdown(wait=False)

    async def stop_and_wait(self, timeout: float = 10.0) -> None:
        """Stop a running turn and wait until it is handed to the saver (used when quitting)."""
        turn = self.turn
        if turn is None:
            return
        if not turn.stop.is_set():
            turn.stop.cancel()
        if turn.work is not None:
            deadline = time.monotonic() + timeout
            while not turn.work.done() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        await self.drain()

    # ----- widgets -----

    def mount_message(self, widget: Static | AssistantMessage | UserMessage) -> None:
        self.conversation.mount(widget)
        self.conversation.scroll_end(animate=False)
        if isinstance(widget, UserMessage):
            # A message on screen is a conversation, even an edited first one whose branch
            # (and so the history) is empty until its turn starts.
            self.welcome.display = False

    def _show_welcome(self) -> None:
        """The welcome view, while a loaded model has no conversation yet."""
        empty = not self.history and self.turn is None and self.pending_prompt is None
        self.welcome.display = self.engine is not None and empty

    def notice(self, text: str, *, kind: str = "info") -> Notice:
        notice = Notice(text, kind=kind)
        self.mount_message(notice)
        return notice

    def confirm(self, text: str) -> None:
        """A confirmation that comes and goes (a notification), not a transcript entry."""
        # Not markup: a file name or a typed value ("[/tmp/x]") would be read as a tag.
        self.app.notify(text, timeout=3, markup=False)

    def clear_conversation(self) -> None:
        self.conversation.remove_children()

    def replies(self) -> list[AssistantMessage]:
        return list(self.conversation.query(AssistantMessage))

    def last_answer(self) -> str:
        answers = [r.answer_text for r in self.replies() if r.answer_text]
        return answers[-1] if answers else ""

    def set_title(self, title: str) -> None:
        self.title = title

    def busy(self, what: str) -> bool:
        if self.turn is not None:
            self.notice(f"Stop the reply first (Esc), then {what}.", kind="error")
            return True
        return False

    def show_help(self) -> None:
        from .key_help import composer_rows, widget_sections
        from .screens.help import HelpScreen

        # Every key: the composer's, this screen's and the app's (hidden ones too), and those
        # of the slider and the sessions screen, read from their bindings.
        help_screen = HelpScreen(
            slash_commands.help_rows(), keys=composer_rows(), sections=widget_sections()
        )
        self.app.push_screen(help_screen)

    def switch_theme(self, name: str) -> str | None:
        """Apply theme `name` if it is safe to (validated before it is applied or remembered);
        otherwise one line saying why not."""
        from .themes import theme_problem

        problem = theme_problem(self.app, name)
        if problem is not None:
            return problem[0].upper() + problem[1:]
        self.app.theme = name
        return None

    def quit(self) -> None:
        self.post_message(self.QuitRequested())

    # ----- settings -----

    def change_settings(self, settings: TurnSettings, what: str = "") -> None:
        """Use `settings` from the next turn; saved with the session and as the user's defaults."""
        self.settings = settings
        self._show_controls()
        self._settings_changed()
        if what:
            self.confirm(what)

    def set_thinking(self, on: bool, what: str = "") -> None:
        """Thinking on or off from the next turn. A switch the model cannot follow is refused
        with one line, and the setting is kept (it applies again with a hybrid model)."""
        note = thinking_switch_note(self.thinking_mode, on)
        if note is not None:
            self.notice(note, kind="error")
            return
        self.change_settings(replace(self.settings, thinking=on), what)

    def _show_controls(self) -> None:
        """The switch shows what the next turn will do: the setting, as the model allows it."""
        self.controls.switch.value = resolve_thinking(self.thinking_mode, self.settings.thinking)
        self.controls.slider.value = self.settings.thinking_budget

    def _settings_changed(self) -> None:
        if self.session_id is not None:
            session_id, saved = self.session_id, self.settings.to_dict()
            self.saver.call("the settings", lambda s: s.update_settings(session_id, saved))
        self.post_message(self.SettingsChanged(self.settings))

    @on(Switch.Changed, "#thinking-switch")
    def _switch_changed(self, event: Switch.Changed) -> None:
        if self.thinking_mode != "hybrid":
            return  # shown as the model allows; the user's own setting stays as it was
        if event.value != self.settings.thinking:
            self.settings = replace(self.settings, thinking=event.value)
            self._settings_changed()

    @on(BudgetSlider.Changed)
    def _budget_changed(self, event: BudgetSlider.Changed) -> None:
        if event.value != self.settings.thinking_budget:
            self.settings = replace(self.settings, thinking_budget=event.value)
            self._settings_changed()

    def set_thinking_display(self, display: ThinkingDisplay) -> None:
        """How reasoning shows from now on (the replies on screen too); remembered."""
        self.thinking_display = display
        for reply in self.replies():
            pane = reply.pane
            if pane is None or pane.mode == display:
                continue
            if display == "hidden" or pane.mode == "hidden":
                continue  # a pane's rendering is chosen when it is made: new replies follow
            pane.mode = display
            if not pane.live:
                pane.collapsed = display == "collapsed"
        self.post_message(self.ThinkingDisplayChanged(display))
        self.confirm(f"Thinking display: {display}.")

    def action_toggle_thinking(self) -> None:
        self.set_thinking(not resolve_thinking(self.thinking_mode, self.settings.thinking))

    # ----- sessions -----

    def new_conversation(self) -> None:
        branches.cancel_edit(self, clear=False)
        self.session_id = None
        self.history = []
        self.clear_conversation()
        self.reply_models, self.show_reply_models = {}, False
        self.status.set(context_used=0 if self.engine else None, tok_s=None, ttft_s=None)
        self._show_welcome()

    def open_session(self, session_id: str, at_message: int | None = None) -> None:
        """Show a saved session, restore its settings and rebuild the engine's conversation.
        `at_message`: show the branch that holds this message (a search hit) and make it the
        active one."""
        session = self.store.get_session(session_id, through=at_message)
        self.new_conversation()
        self.session_id = session.id
        if at_message is not None:
            # Saved in order with everything else; shown now (read from the store above).
            self.saver.call(
                "the switch to the version with the match",
                lambda s: s.switch_branch(session_id, at_message),
            )
        warnings: list[str] = []
        self.settings = TurnSettings.from_dict(session.settings, self.settings, warnings)
        self.system_prompt = session.system_prompt or None
        self.history = [m for m in conversation_of(session) if m["role"] != "system"]
        self._show_welcome()
        for m in session.messages:
            self.conversation.mount(transcript.message_widget(m, self.thinking_display))
        self._restore_reply_models(session)
        self.conversation.scroll_end(animate=False)
        # Up in the composer walks this session's earlier prompts too.
        self.composer.prompts = PromptHistory(
            [m.content for m in session.messages if m.role == "user"]
        )
        self.change_settings(self.settings)
        self.title = session.title
        for warning in warnings:
            self.notice(f"This session's saved settings: {warning}.", kind="error")
        self.refresh_context_count()

    def show_sessions(self) -> None:
        from .screens.sessions import SessionsScreen

        def chosen(session_id: str | None) -> None:
            if self.session_id is not None and not self._session_exists(self.session_id):
                self.new_conversation()  # deleted from the sessions screen
            if session_id:
                if self.turn is not None:
                    self.notice(
                        "Stop the reply first (Esc), then open another session.", kind="error"
                    )
                    return
                self.open_session(session_id, at_message=screen.hit_message(session_id))

        screen = SessionsScreen(self.store)
        self.app.push_screen(screen, chosen)

    def _session_exists(self, session_id: str) -> bool:
        if not self.saver.idle():
            return True  # not written yet, so not deleted either
        try:
            self.store.get_session(session_id)
        except StoreError:
            return False
        return True

    def regenerate_last_reply(self) -> None:
        """/retry: the last prompt sent again; the old reply is kept as another version."""
        branches.retry(self)

    def edit_message(self, number: int | None) -> None:
        branches.begin_edit(self, number)

    def switch_branch(self, step: int) -> None:
        branches.switch(self, step)

    @on(BranchStep)
    def _branch_clicked(self, event: BranchStep) -> None:
        branches.switch(self, event.step, event.message)

    def conversation_export(self, fmt: str) -> str:
        """This session as a file: from the store when everything is on disk, else from what is
        on screen (all that exists while the store cannot be written)."""
        assert self.session_id is not None
        session = None
        if self.saver.idle():
            try:
                session = self.store.get_session(self.session_id)
            except StoreError:
                session = None
        if session is None:
            session = self._session_from_screen()
        if fmt == "md":
            return export_format.export_markdown(session)
        from .command_handlers import export_json_text

        return export_json_text(export_format.export_json(session))

    def _session_from_screen(self) -> Session:
        return transcript.session_from_widgets(
            list(self.conversation.children),
            session_id=self.session_id or "",
            title=self.title or "",
            model=self.model_name,
            system_prompt=self.system_prompt,
            settings=self.settings.to_dict(),
        )

    # ----- keys -----

    def action_sessions(self) -> None:
        self.show_sessions()

    def action_new(self) -> None:
        self.run_command(slash_commands.command("new"))

    def action_retry(self) -> None:
        self.run_command(slash_commands.command("retry"))

    def action_edit_last(self) -> None:
        self.edit_message(None)

    def action_branch(self, step: int) -> None:
        self.switch_branch(step)

    def action_help(self) -> None:
        self.show_help()
