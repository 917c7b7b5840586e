"""The remote engine against a real OpenAI-compatible server: `transformers serve` on CPU, started
on a free local port, serving tiny checkpoints whose output is scripted (chain_checkpoint.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chain_checkpoint import CLOSING, ENDLESS, write_chain_checkpoint
from cli_helpers import session_list, session_show

from qwen3tui.engine.events import AnswerDelta, Summary, ThinkingDelta, ThinkingDone
from qwen3tui.engine.options import ChatOptions
from qwen3tui.remote import StreamInterruptedError, connect_remote
from qwen3tui.remote.client_budget import BUDGET_STOP_TEXT
from qwen3tui.remote.http_client import httpx

# One worker runs this module (`--dist loadgroup`): each worker running part of it would
# start its own three servers, and six at once on two cores took 70-95 s to come up.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("transformers-serve")]

HI = [{"role": "user", "content": "hi"}]
SENTENCE = BUDGET_STOP_TEXT[: BUDGET_STOP_TEXT.index("</think>")].strip()
START_TIMEOUT_S = 180  # an upper bound for a cold start on 2 busy cores, not an expectation


def _serving_missing() -> str | None:
    for module in ("transformers", "fastapi", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            return f"`transformers serve` cannot run here: {module} is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, checkpoint: Path, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        cli = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(checkpoint)]
        args = ["--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu"]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                cli + args, stdout=out, stderr=subprocess.STDOUT, env=env
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"transformers serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url.removesuffix("/v1") + "/health", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pytest.fail(f"transformers serve did not start in {START_TIMEOUT_S} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, shared_dir) -> dict[str, Path]:
    missing = _serving_missing()
    if missing:
        pytest.skip(missing)
    root = tmp_path_factory.mktemp("chains")
    return {
        name: write_chain_checkpoint(root / name, shared_dir, chain)
        for name, chain in (("closing", CLOSING), ("endless", ENDLESS))
    }


@pytest.fixture(scope="module")
def servers(checkpoints, tmp_path_factory):
    """One server per checkpoint, and a third (endless) one for the test that kills it: all
    start at once, as each start takes seconds of imports."""
    logs = tmp_path_factory.mktemp("logs")
    started = {name: Served(path, logs / f"{name}.log") for name, path in checkpoints.items()}
    started["killable"] = Served(checkpoints["endless"], logs / "killable.log")
    try:
        for served in started.values():
            served.wait_ready()
        yield started
    finally:
        for served in started.values():
            served.stop()


def engine_for(servers, name, shared_dir):
    return connect_remote(servers[name].url, tokenizer_dir=str(shared_dir))


def reply(engine, **options):
    events = list(engine.chat(HI, ChatOptions(**options)))
    assert isinstance(events[-1], Summary)
    return events, events[-1]


def test_thinking_and_answer_split_as_the_server_streamed_them(servers, shared_dir):
    engine = engine_for(servers, "closing", shared_dir)
    assert engine.info.server == servers["closing"].url
    events, s = reply(engine, thinking=True)
    assert "".join(e.text for e in events if isinstance(e, ThinkingDelta)) == "Hmm ok"
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "Answer"
    assert sum(isinstance(e, ThinkingDone) for e in events) == 1
    assert (s.thinking, s.answer, s.finish_reason) == ("Hmm ok", "Answer", "stop")
    assert s.usage.prompt_tokens > 0 and s.timings.ttft_s > 0


def test_no_think_gives_no_thinking(servers, shared_dir):
    events, s = reply(engine_for(servers, "closing", shared_dir), thinking=False)
    assert not any(isinstance(e, (ThinkingDelta, ThinkingDone)) for e in events)
    assert (s.thinking, s.answer, s.thinking_enabled) == ("", "Answer", False)


def test_the_budget_stops_endless_thinking_with_the_early_stop_text(servers, shared_dir):
    budget = 5
    events, s = reply(
        engine_for(servers, "endless", shared_dir), thinking=True, thinking_budget=budget
    )
    assert s.thinking_budget_hit and s.thinking_budget == budget
    assert 0 < s.usage.thinking_tokens <= budget
    assert s.thinking.startswith("Hmm ok Hmm") and s.thinking.endswith(SENTENCE)
    assert s.answer == "Answer" and s.finish_reason == "stop"
    (done,) = [e for e in events if isinstance(e, ThinkingDone)]
    assert done.budget_hit


def test_a_budget_the_model_stays_within_is_not_hit(servers, shared_dir):
    _, s = reply(engine_for(servers, "closing", shared_dir), thinking=True, thinking_budget=50)
    assert not s.thinking_budget_hit
    assert (s.thinking, s.answer) == ("Hmm ok", "Answer")


def test_a_server_killed_mid_reply_leaves_the_partial_reply_and_a_clear_error(servers, shared_dir):
    served = servers["killable"]  # no other test uses it
    try:
        engine = connect_remote(served.url, tokenizer_dir=str(shared_dir))
        got = []
        with pytest.raises(StreamInterruptedError) as err:
            for event in engine.chat(HI, ChatOptions(thinking=True)):  # thinks forever
                got.append(event)
                if len(got) == 3:
                    served.process.kill()
                    served.process.wait()
    finally:
        served.stop()
    assert [type(e) for e in got[:3]] == [ThinkingDelta] * 3
    assert not any(isinstance(e, Summary) for e in got)
    assert "partial reply was kept" in str(err.value) and "\n" not in str(err.value)


def ask(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "qwen3tui", "ask", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "QWEN3TUI_HOME": str(home), "HF_HUB_OFFLINE": "1"},
    )


def test_ask_against_the_server_splits_saves_budgets_and_continues(servers, shared_dir, tmp_path):
    """The issue's acceptance, through the real command line."""
    closing, endless = servers["closing"].url, servers["endless"].url
    tok = ["--tokenizer", str(shared_dir)]
    done = ask(tmp_path, "--server", closing, *tok, "--think", "--json", "hi")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["thinking"], out["answer"], out["outcome"]) == ("Hmm ok", "Answer", "complete")
    session = session_show(tmp_path, out["session_id"])
    reply = session["messages"][1]
    assert (reply["thinking"], reply["content"]) == ("Hmm ok", "Answer")
    assert session["settings"]["server"] == closing  # --continue goes back there
    assert "127.0.0.1" in reply["model"]

    again = ask(tmp_path, "--continue", *tok, "--no-think", "--json", "again")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["thinking"] == ""

    budget = ask(tmp_path, "--server", endless, *tok, "--budget", "5", "--json", "--no-save", "x")
    out = json.loads(budget.stdout)
    assert out["thinking_budget_hit"] and 0 < out["usage"]["thinking_tokens"] <= 5
    assert out["thinking"].endswith(SENTENCE) and out["answer"] == "Answer"


def test_ask_against_a_server_that_is_down_is_one_line_and_exit_2(tmp_path):
    done = ask(tmp_path, "--server", f"http://127.0.0.1:{_free_port()}/v1", "--no-save", "hi")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("qwen3tui: ")


@pytest.mark.anyio
async def test_the_tui_streams_a_served_reply_into_the_thinking_pane_and_saves_it(
    servers, shared_dir, qwen3tui_home
):
    from tui_helpers import finish_turn, make_app, ready, send

    url = servers["closing"].url
    app = make_app(
        None,
        qwen3tui_home,
        engine_factory=lambda progress: connect_remote(url, tokenizer_dir=str(shared_dir)),
    )
    async with app.run_test(size=(100, 30)) as pilot:
        c = await ready(pilot)
        assert "@ 127.0.0.1" in str(c.status.render())  # where it runs
        await send(pilot, "hi")
        await finish_turn(pilot)
        reply = c.replies()[-1]
        assert (reply.thinking_text, reply.answer_text) == ("Hmm ok", "Answer")
        assert reply.pane is not None and reply.pane.collapsed
        saved = c.store.get_session(c.session_id)
        assert saved.settings["server"] == url
        assert [m.content for m in saved.messages] == ["hi", "Answer"]


def test_the_tui_in_a_real_terminal_against_the_server(servers, shared_dir, tmp_path):
    """Streaming, the thinking pane, the budget, Esc, the switch and the session, live."""
    import shutil
    import uuid

    from qwen3tui.settings import TurnSettings, UserSettings

    if shutil.which("tmux") is None:
        pytest.skip("tmux not installed (Debian: apt-get install -y tmux)")
    socket = f"qwen3tui-remote-{uuid.uuid4().hex[:8]}"

    def tmux(*args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=30
        ).stdout

    def screen_when(condition, what: str, timeout: float = 90.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = tmux("capture-pane", "-p", "-t", "qt")
            if condition(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; the screen shows:\n{text}")

    def send(text: str) -> None:
        tmux("send-keys", "-t", "qt", "-l", text)
        tmux("send-keys", "-t", "qt", "Enter")

    home = tmp_path / "home"
    home.mkdir()
    UserSettings(turn=TurnSettings(thinking_budget=5, max_tokens=40)).save(home / "settings.toml")
    url = servers["endless"].url  # thinks until told otherwise
    command = (
        f"{sys.executable} -m qwen3tui --server {url} --tokenizer {shared_dir}"
        f"; echo QWEN3TUI-EXITED-$?; sleep 60"
    )
    env = f"QWEN3TUI_HOME={home} HF_HUB_OFFLINE=1 TERM=xterm-256color"
    try:
        tmux("new-session", "-d", "-s", "qt", "-x", "110", "-y", "34", f"env {env} {command}")
        screen_when(lambda s: "@ 127.0.0.1" in s and "Ctrl+T" in s, "the server to be connected")
        send("hi")
        budgeted = screen_when(lambda s: "budget reached" in s, "the budget to end the thinking")
        assert "Thought for" in budgeted
        screen_when(lambda s: "Answer" in s.split("budget reached")[-1], "the answer")
        send("/budget off")
        send("think on")
        screen_when(lambda s: s.count("Thinking…") >= 1, "the thinking to stream")
        tmux("send-keys", "-t", "qt", "Escape")
        screen_when(lambda s: "stopped" in s, "Esc to stop the reply")
        tmux("send-keys", "-t", "qt", "C-t")  # thinking off: the switch, as a user flips it
        screen_when(lambda s: "OFF" in s, "the switch to show OFF")
        send("no thinking")
        plain = screen_when(
            lambda s: "no thinking" in s and "Answer" in s.split("no thinking")[-1],
            "the reply without thinking",
        )
        assert "Thinking" not in plain.split("no thinking")[-1].split("╭")[0]  # no pane
        tmux("send-keys", "-t", "qt", "C-q")
        screen_when(lambda s: "Quit qwen3tui?" in s, "the quit question")
        tmux("send-keys", "-t", "qt", "y")
        screen_when(lambda s: "QWEN3TUI-EXITED-0" in s, "qwen3tui to exit", timeout=30)
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=30)
    (session,) = session_list(home)
    assert session["message_count"] == 6
