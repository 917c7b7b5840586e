"""The main chat screen: the conversation, the composer, the controls and the turn logic.

Flow of one message: Composer.Submitted -> `submit()` (slash command or prompt) ->
`start_turn()` saves the user message, mounts an AssistantMessage and starts a thread worker
running `generation_worker.run_generation` -> the worker fills a Mailbox and posts
StreamReady -> `drain()` (UI thread, at most ~30 times a second) feeds the coalesced events to
the widgets and to the ReplyRecorder -> the Summary (or a failure) ends the turn.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static, Switch, TextArea
from textual.worker import Worker

from qwen3tui.engine.events import (
    AnswerDelta,
    ContextNotice,
    Summary,
    ThinkingDelta,
    ThinkingDone,
)
from qwen3tui.engine.options import ChatOptions, SamplingOverrides

from . import slash_commands
from .generation_worker import (
    GenerationFailed,
    Mailbox,
    StreamItem,
    StreamReady,
    UpdatePacer,
    coalesce,
    run_generation,
)
from .slash_commands import ParsedCommand, SlashError
from .widgets.budget_slider import BudgetSlider
from .widgets.chat_message import (
    AssistantMessage,
    Notice,
    UserMessage,
    reply_meta,
    restored_thought_title,
)
from .widgets.composer import Composer, PromptHistory
from .widgets.controls import Controls
from .widgets.load_progress import LoadProgressPanel
from .widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from .app import Qwen3App

FINISH_STATUS = {"stop": "complete", "length": "partial", "cancelled": "cancelled"}
DEFAULT_MAX_TOKENS = ChatOptions().max_new_tokens


class ContextCounted(Message):
    """Posted from a background thread: the conversation's prompt size in tokens."""

    def __init__(self, tokens: int) -> None:
        super().__init__()
        self.tokens = tokens


@dataclass
class TurnSettings:
    """What the next turn will use; saved with the session and as the user's defaults."""

    thinking: bool = True
    budget: int | None = 1024
    sampling: SamplingOverrides = field(default_factory=SamplingOverrides)
    max_tokens: int = DEFAULT_MAX_TOKENS

    def options(self) -> ChatOptions:
        return ChatOptions(
            thinking=self.thinking,
            thinking_budget=self.budget if self.thinking else None,
            max_new_tokens=self.max_tokens,
            sampling=self.sampling,
        )

    def sampling_dict(self) -> dict[str, Any]:
        chosen = {f.name: getattr(self.sampling, f.name) for f in fields(self.sampling)}
        return {k: v for k, v in chosen.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "thinking": self.thinking,
            "thinking_budget": self.budget,
            "sampling": self.sampling_dict(),
            "max_tokens": self.max_tokens,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: TurnSettings) -> TurnSettings:
        known = {f.name for f in fields(SamplingOverrides)}
        sampling = data.get("sampling")
        overrides = (
            SamplingOverrides(**{k: v for k, v in sampling.items() if k in known})
            if isinstance(sampling, dict)
            else base.sampling
        )
        return cls(
            thinking=bool(data.get("thinking", base.thinking)),
            budget=data.get("thinking_budget", base.budget),
            sampling=overrides,
            max_tokens=int(data.get("max_tokens", base.max_tokens)),
        )


@dataclass
class Turn:
    """One generation in flight."""

    turn_id: int
    widget: AssistantMessage
    recorder: Any  # qwen3tui.recording.ReplyRecorder
    cancel: threading.Event = field(default_factory=threading.Event)
    mailbox: Mailbox = field(default_factory=Mailbox)
    worker: Worker[None] | None = None
    done: bool = False
    warned: bool = False  # the user was told the store could not save this reply


class ChatScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+t", "toggle_thinking", "Thinking"),
        Binding("ctrl+o", "sessions", "Sessions"),
        Binding("ctrl+n", "new", "New"),
        Binding("ctrl+r", "retry", "Retry", show=False),
        Binding("f1", "help", "Help"),
    ]

    AUTO_FOCUS = "#composer"

    def __init__(self, settings: TurnSettings) -> None:
        super().__init__()
        self.settings = settings
        self.session_id: str | None = None
        self.system_prompt: str | None = None
        self.history: list[dict[str, str]] = []  # answer-only conversation for the engine
        self.turn: Turn | None = None
        self.pending_prompt: str | None = None  # typed before the engine was ready
        self._turn_counter = 0
        self.pacer = UpdatePacer()
        self._drain_timer: Timer | None = None
        self._syncing_controls = False
        self.status = StatusBar(id="status-bar")
        self.conversation = VerticalScroll(id="conversation")
        self.composer = Composer(id="composer")
        self.suggestions = Static("", id="slash-suggestions", markup=False)
        self.load_panel = LoadProgressPanel(id="load-panel")
        self.controls = Controls(thinking=settings.thinking, budget=settings.budget, id="controls")

    @property
    def qapp(self) -> Qwen3App:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.conversation
        yield self.load_panel
        yield self.suggestions
        yield self.composer
        yield self.controls
        yield Footer()

    def on_mount(self) -> None:
        self.suggestions.display = False
        self.status.set(model=self.qapp.model_name, state="loading model…")

    # ----- engine state (called by the app) -----

    def engine_ready(self) -> None:
        info = self.qapp.engine.info
        self.load_panel.display = False
        self.status.set(
            model=info.model,
            device=info.device,
            dtype=info.dtype,
            quantize=info.quantize,
            context_length=info.context_length,
            state="",
        )
        self.refresh_context_count()
        if self.pending_prompt is not None:
            prompt, self.pending_prompt = self.pending_prompt, None
            self.start_turn(prompt, mount_user=False, save_user=False)

    def engine_failed(self, message: str) -> None:
        self.load_panel.display = False
        self.status.set(state="model not loaded")
        self.pending_prompt = None
        self.notice(f"Could not load the model: {message}", kind="error")
        self.notice(
            "Fix the problem above, then restart qwen3tui (e.g. `qwen3tui --model "
            "DIR_OR_HUB_ID`). Your saved sessions are still here: /sessions.",
            kind="info",
        )

    def refresh_context_count(self) -> None:
        engine = self.qapp.engine
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
            self.post_message(ContextCounted(used))

        # Tokenizing a long conversation takes a moment: off the UI thread, never waited for.
        threading.Thread(target=count, name="qwen3tui-count", daemon=True).start()

    def on_context_counted(self, message: ContextCounted) -> None:
        if self.turn is None:
            self.status.set(context_used=message.tokens)

    # ----- composing -----

    @on(TextArea.Changed, "#composer")
    def _suggest(self, event: TextArea.Changed) -> None:
        text = self.composer.text
        matches = slash_commands.suggest(text) if text.startswith("/") else []
        self.suggestions.display = bool(matches)
        if matches:
            width = max(len(c.usage) for c in matches)
            self.suggestions.update(
                "\n".join(f"{c.usage:<{width}}  {c.description}" for c in matches)
            )

    @on(Composer.Submitted)
    def _submitted(self, event: Composer.Submitted) -> None:
        self.submit(event.text)

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
        if self.turn is not None:
            self.notice(
                "A reply is still streaming: wait for it, or press Esc to stop it.", kind="error"
            )
            return
        if self.qapp.load_error is not None:
            self.notice(
                "No model is loaded, so nothing can be sent; see the error above.", kind="error"
            )
            return
        _, switch = slash_commands.split_soft_switch(text)
        if switch is not None:
            self.set_thinking(switch == "think")
        self.composer.clear_sent(text)
        if text.lstrip().startswith("//"):  # "//x" sends "/x": how to start a message with /
            text = text.replace("//", "/", 1)
        if self.qapp.engine is None:
            if self.pending_prompt is not None:
                self.notice(
                    "The model is still loading; your first message will be sent when it is ready.",
                    kind="error",
                )
                return
            self.pending_prompt = text
            self.save_user_message(text)  # on disk now: quitting before the load loses nothing
            self.mount_message(UserMessage(text))
            self.notice(
                "The model is still loading; this message will be sent when it is ready.",
                kind="info",
            )
            return
        self.start_turn(text)

    # ----- a turn -----

    def engine_messages(self) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + self.history

    def ensure_session(self) -> str:
        if self.session_id is None:
            session = self.qapp.store.create_session(
                self.qapp.model_name,
                system_prompt=self.system_prompt,
                settings=self.session_settings(),
            )
            self.session_id = session.id
        return self.session_id

    def session_settings(self) -> dict[str, Any]:
        return self.settings.to_dict()

    def save_user_message(self, text: str) -> None:
        self.qapp.store.add_user_message(self.ensure_session(), text)
        self.history.append({"role": "user", "content": text})

    def start_turn(self, text: str, *, mount_user: bool = True, save_user: bool = True) -> None:
        from qwen3tui.recording import ReplyRecorder

        store = self.qapp.store
        session_id = self.ensure_session()
        if save_user:
            self.save_user_message(text)
        if mount_user:
            self.mount_message(UserMessage(text))
        options = self.settings.options()
        recorder = ReplyRecorder(
            store,
            session_id,
            thinking_enabled=options.thinking,
            budget=options.thinking_budget,
            sampling=asdict(self.qapp.engine.sampling_for(options)),
        )
        widget = AssistantMessage(thinking_enabled=options.thinking, budget=options.thinking_budget)
        self._turn_counter += 1
        turn = Turn(self._turn_counter, widget, recorder)
        self.turn = turn
        self.mount_message(widget)
        self.conversation.anchor()
        self.status.set(state="thinking…" if options.thinking else "generating…")
        wake = partial(self.post_message, StreamReady(turn.turn_id))
        turn.worker = self.run_worker(
            partial(
                run_generation,
                self.qapp.engine,
                self.engine_messages(),
                options,
                turn.cancel,
                turn.mailbox,
                wake,
            ),
            thread=True,
            group="generation",
            exit_on_error=False,
            name="generation",
        )

    @on(StreamReady)
    async def _stream_ready(self, message: StreamReady) -> None:
        turn = self.turn
        if turn is None or message.turn_id != turn.turn_id:
            return
        await self._drain_when_due()

    async def _drain_when_due(self) -> None:
        if self._drain_timer is not None:
            return
        self.pacer.typed(self.composer.last_keystroke)
        wait = self.pacer.delay(time.monotonic())
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
        items = coalesce(turn.mailbox.take())
        with self.app.batch_update():
            for item in items:
                await self._apply(turn, item)
        # The cost of an update includes the re-layout and paint that follow it.
        self.call_after_refresh(lambda: self.pacer.finished(time.monotonic() - started))

    async def _apply(self, turn: Turn, item: StreamItem) -> None:
        widget = turn.widget
        if isinstance(item, GenerationFailed):
            turn.recorder.fail(item.message)
            await self._end_turn(turn, "error", reply_meta("error", error=item.message))
            return
        turn.recorder.on_event(item)
        if isinstance(item, ThinkingDelta):
            await widget.append_thinking(item.text, item.thinking_tokens)
        elif isinstance(item, ThinkingDone):
            await widget.thinking_done(
                seconds=item.seconds, tokens=item.thinking_tokens, budget_hit=item.budget_hit
            )
            self.status.set(state="generating…")
        elif isinstance(item, AnswerDelta):
            await widget.append_answer(item.text)
        elif isinstance(item, ContextNotice):
            await self.conversation.mount(Notice(item.message, kind="info"), before=widget)
        elif isinstance(item, Summary):
            status = FINISH_STATUS.get(item.finish_reason, "complete")
            if item.answer or status == "complete":
                self.history.append({"role": "assistant", "content": item.answer})
            t, u = item.timings, item.usage
            self.status.set(
                tok_s=t.decode_tok_s,
                ttft_s=t.ttft_s,
                context_used=u.prompt_tokens + u.thinking_tokens + u.answer_tokens,
            )
            meta = reply_meta(
                status, answer_tokens=u.answer_tokens, decode_tok_s=t.decode_tok_s, ttft_s=t.ttft_s
            )
            await self._end_turn(turn, status, meta)
        if turn.recorder.warning and not turn.warned:
            turn.warned = True
            self.notice(f"Not saved: {turn.recorder.warning}", kind="error")

    async def _end_turn(self, turn: Turn, status: str, meta: str) -> None:
        turn.done = True
        await turn.widget.finish(status, meta)
        if self.turn is turn:
            self.turn = None
        self.status.set(state="")
        self.qapp.turn_finished(turn)

    def action_stop(self) -> None:
        if self.turn is not None and not self.turn.cancel.is_set():
            self.turn.cancel.set()
            self.status.set(state="stopping…")

    def on_unmount(self) -> None:
        # However the app ends, a running generation must not keep the process alive.
        if self.turn is not None:
            self.turn.cancel.set()
        if self.qapp.engine is not None:
            self.qapp.engine.stop_warming()  # the warm-up after the last reply, if running

    async def stop_and_wait(self, timeout: float = 10.0) -> None:
        """Cancel a running turn and wait until it is saved (used when quitting)."""
        turn = self.turn
        if turn is None:
            return
        turn.cancel.set()
        if turn.worker is not None:
            deadline = time.monotonic() + timeout
            while not turn.worker.is_finished and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        await self.drain()
        if not turn.done:  # the worker did not answer in time: save what we have
            turn.recorder.fail("interrupted: qwen3tui was closed")
            await self._end_turn(turn, "error", reply_meta("error", error="interrupted"))

    # ----- widgets -----

    def mount_message(self, widget: Static | AssistantMessage | UserMessage) -> None:
        self.conversation.mount(widget)
        self.conversation.scroll_end(animate=False)

    def notice(self, text: str, *, kind: str = "info") -> Notice:
        notice = Notice(text, kind=kind)
        self.mount_message(notice)
        return notice

    def clear_conversation(self) -> None:
        self.conversation.remove_children()

    def replies(self) -> list[AssistantMessage]:
        return list(self.conversation.query(AssistantMessage))

    # ----- settings -----

    def set_thinking(self, on: bool) -> None:
        self.settings = replace(self.settings, thinking=on)
        self._sync_controls()
        self.qapp.settings_changed()

    def set_budget(self, budget: int | None) -> None:
        self.settings = replace(self.settings, budget=budget)
        self._sync_controls()
        self.qapp.settings_changed()

    def _sync_controls(self) -> None:
        self._syncing_controls = True
        try:
            self.controls.switch.value = self.settings.thinking
            self.controls.slider.value = self.settings.budget
        finally:
            self._syncing_controls = False
        # The slider snaps to its steps: the budget used is the one it shows.
        self.settings = replace(self.settings, budget=self.controls.slider.value)

    @on(Switch.Changed, "#thinking-switch")
    def _switch_changed(self, event: Switch.Changed) -> None:
        if event.value != self.settings.thinking:
            self.settings = replace(self.settings, thinking=event.value)
            self.qapp.settings_changed()

    @on(BudgetSlider.Changed)
    def _budget_changed(self, event: BudgetSlider.Changed) -> None:
        if event.value != self.settings.budget:
            self.settings = replace(self.settings, budget=event.value)
            self.qapp.settings_changed()

    def action_toggle_thinking(self) -> None:
        self.set_thinking(not self.settings.thinking)

    # ----- sessions -----

    def new_conversation(self) -> None:
        self.session_id = None
        self.history = []
        self.clear_conversation()
        self.status.set(context_used=0 if self.qapp.engine else None, tok_s=None, ttft_s=None)

    def open_session(self, session_id: str) -> None:
        """Show a saved session, restore its settings and rebuild the engine's conversation."""
        store = self.qapp.store
        session = store.get_session(session_id)
        self.new_conversation()
        self.session_id = session.id
        saved = session.settings or {}
        self.settings = TurnSettings.from_dict(saved, self.settings)
        self.system_prompt = session.system_prompt or None
        self.history = [m for m in store.conversation(session.id) if m["role"] != "system"]
        for m in session.messages:
            if m.role == "user":
                self.conversation.mount(UserMessage(m.content))
            else:
                self.conversation.mount(self._restored_reply(m))
        self.conversation.scroll_end(animate=False)
        # Up in the composer walks this session's earlier prompts too.
        self.composer.prompts = PromptHistory(
            [m.content for m in session.messages if m.role == "user"]
        )
        self._sync_controls()
        self.title = session.title
        self.refresh_context_count()

    @staticmethod
    def _restored_reply(m: Any) -> AssistantMessage:
        usage, timings = m.usage or {}, m.timings or {}
        thinking_shown = bool(m.thinking_enabled) or bool(m.thinking)
        title = restored_thought_title(
            m.thinking,
            usage.get("thinking_tokens"),
            timings.get("thinking_s"),
            bool(usage.get("thinking_budget_hit")),
        )
        widget = AssistantMessage(
            thinking_enabled=thinking_shown,
            budget=m.budget,
            answer=m.content,
            thinking=m.thinking,
            live=False,
            thought=title,
        )
        status = "partial" if usage.get("finish_reason") == "length" else m.status
        widget.status = status
        meta = reply_meta(
            status,
            answer_tokens=usage.get("answer_tokens", 0),
            decode_tok_s=timings.get("decode_tok_s", 0.0),
            ttft_s=timings.get("ttft_s", 0.0),
            error=m.error,
        )
        widget.meta.update(meta)
        widget.set_class(status in ("cancelled", "partial", "error"), f"-{status}")
        return widget

    def action_sessions(self) -> None:
        self.qapp.show_sessions()

    def action_new(self) -> None:
        self.run_command(ParsedCommand("new"))

    def action_retry(self) -> None:
        self.run_command(ParsedCommand("retry"))

    def action_help(self) -> None:
        self.qapp.show_help()

    # ----- slash commands -----

    def run_command(self, command: ParsedCommand) -> None:
        handler = getattr(self, f"_cmd_{command.name}")
        handler(command)

    def _busy(self, what: str) -> bool:
        if self.turn is not None:
            self.notice(f"Stop the reply first (Esc), then {what}.", kind="error")
            return True
        return False

    def _cmd_think(self, command: ParsedCommand) -> None:
        self.set_thinking(True)
        self.notice("Thinking on from the next turn.")

    def _cmd_no_think(self, command: ParsedCommand) -> None:
        self.set_thinking(False)
        self.notice("Thinking off from the next turn.")

    def _cmd_budget(self, command: ParsedCommand) -> None:
        self.set_budget(command.budget)
        chosen = self.settings.budget
        text = "unlimited" if chosen is None else f"{chosen:,} tokens"
        snapped = "" if chosen == command.budget else " (the nearest step)"
        self.notice(f"Thinking budget: {text}{snapped}, from the next turn.")

    def _cmd_new(self, command: ParsedCommand) -> None:
        if not self._busy("start a new conversation"):
            self.new_conversation()

    def _cmd_sessions(self, command: ParsedCommand) -> None:
        self.qapp.show_sessions()

    def _cmd_resume(self, command: ParsedCommand) -> None:
        if self._busy("open another session"):
            return
        try:
            session_id = self.qapp.store.resolve_id(command.arg)
        except Exception as err:  # noqa: BLE001 -- SessionLookupError: one line for the user
            self.notice(str(err), kind="error")
            return
        self.open_session(session_id)

    def _cmd_rename(self, command: ParsedCommand) -> None:
        if self.session_id is None:
            self.notice("Nothing to rename yet: send a message first.", kind="error")
            return
        self.qapp.store.rename_session(self.session_id, command.arg)
        self.title = command.arg
        self.notice(f"Renamed to {command.arg!r}.")

    def _cmd_delete(self, command: ParsedCommand) -> None:
        if self._busy("delete the session"):
            return
        if self.session_id is None:
            self.notice("Nothing to delete: this conversation is not saved yet.", kind="error")
            return
        session_id = self.session_id

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.qapp.store.delete_session(session_id)
                self.new_conversation()
                self.notice("Session deleted.")

        self.qapp.confirm("Delete this session? This cannot be undone.", confirmed)

    def _cmd_export(self, command: ParsedCommand) -> None:
        if self.session_id is None:
            self.notice("Nothing to export yet: send a message first.", kind="error")
            return
        store = self.qapp.store
        ext = command.export_format
        if ext == "md":
            content = store.export_markdown(self.session_id)
        else:
            content = json.dumps(store.export_json(self.session_id), indent=2, ensure_ascii=False)
        path = (
            Path(command.path).expanduser()
            if command.path
            else Path.cwd() / f"qwen3tui-{self.session_id[:8]}.{ext}"
        )
        if path.is_dir():
            path = path / f"qwen3tui-{self.session_id[:8]}.{ext}"
        try:
            path.write_text(content if content.endswith("\n") else content + "\n", encoding="utf-8")
        except OSError as err:
            self.notice(f"Could not write {path}: {err.strerror or err}", kind="error")
            return
        self.notice(f"Exported to {path}")

    def _cmd_system(self, command: ParsedCommand) -> None:
        if not command.arg:
            shown = self.system_prompt or "(none)"
            self.notice(f"System prompt: {shown}")
            return
        self.system_prompt = None if command.arg.lower() in ("off", "none") else command.arg
        if self.session_id is not None:
            self.qapp.store.set_system_prompt(self.session_id, self.system_prompt)
        self.notice(
            "System prompt set for the next turns."
            if self.system_prompt
            else "System prompt removed."
        )

    def _cmd_set(self, command: ParsedCommand) -> None:
        if command.setting == "max_tokens":
            self.settings = replace(self.settings, max_tokens=int(command.value or 1))
        else:
            overrides = replace(self.settings.sampling, **{command.setting: command.value})
            self.settings = replace(self.settings, sampling=overrides)
        self.qapp.settings_changed()
        self.notice(f"{command.setting} = {command.value} from the next turn.")

    def _cmd_retry(self, command: ParsedCommand) -> None:
        if self._busy("retry"):
            return
        if self.session_id is None or not self.history:
            self.notice("Nothing to retry yet.", kind="error")
            return
        if self.qapp.engine is None:
            self.notice("The model is not loaded yet.", kind="error")
            return
        store = self.qapp.store
        messages = store.get_session(self.session_id).messages
        last_user = max(
            (m for m in messages if m.role == "user"), key=lambda m: m.order, default=None
        )
        if last_user is None:
            self.notice("Nothing to retry yet.", kind="error")
            return
        store.delete_messages_from(self.session_id, last_user.order + 1)
        while self.history and self.history[-1]["role"] == "assistant":
            self.history.pop()
        replies = self.replies()
        if replies and replies[-1] is self.conversation.children[-1]:
            replies[-1].remove()
        self.start_turn(last_user.content, mount_user=False, save_user=False)

    def _cmd_copy(self, command: ParsedCommand) -> None:
        answers = [r.answer_text for r in self.replies() if r.answer_text]
        if not answers:
            self.notice("No answer to copy yet.", kind="error")
            return
        self.app.copy_to_clipboard(answers[-1])
        self.notice(f"Copied the last answer ({len(answers[-1])} characters).")

    def _cmd_theme(self, command: ParsedCommand) -> None:
        message = self.qapp.switch_theme(command.arg)
        self.notice(message, kind="info" if message.startswith("Theme") else "error")

    def _cmd_clear(self, command: ParsedCommand) -> None:
        if not self._busy("clear the screen"):
            self.clear_conversation()

    def _cmd_help(self, command: ParsedCommand) -> None:
        self.qapp.show_help()

    def _cmd_quit(self, command: ParsedCommand) -> None:
        self.qapp.run_worker(self.qapp.quit_cleanly(), group="quit", exclusive=True)
