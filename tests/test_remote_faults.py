"""What a user can hit with a server, against a real HTTP server on a local port: each ends in
one clear line, a partial reply is never passed off as a finished one, and the API key never
shows."""

from __future__ import annotations

import logging
import socket
import threading

import pytest
from remote_helpers import (
    FAST_RETRY,
    SHORT_TIMEOUTS,
    Answer,
    ScriptedServer,
    chat_chunk,
    dies_after,
    json_action,
    models_list,
    recorded_engine,
    sse,
    stream_action,
    usage_chunk,
)

from qwen3tui.engine.events import AnswerDelta, Summary
from qwen3tui.engine.options import ChatOptions
from qwen3tui.remote import (
    AuthError,
    RemoteModelNotFoundError,
    RequestRejectedError,
    ServerBusyError,
    ServerTimeoutError,
    ServerUnreachableError,
    StreamInterruptedError,
    connect_remote,
)
from qwen3tui.remote.http_client import httpx

HI = [{"role": "user", "content": "hi"}]
NO_THINK = ChatOptions(thinking=False)
MODELS = "/v1/models"
CHAT = "/v1/chat/completions"
SECRET = "sk-test-0123456789-secret"
LISTING = json_action(200, models_list("Qwen3-8B", "Qwen3-32B"))
REPLY = stream_action(sse(chat_chunk({"content": "Hel"}), chat_chunk({"content": "lo"}, "stop")))


def connect(server: ScriptedServer, **kwargs):
    kwargs.setdefault("fetch_tokenizer", False)
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("timeouts", SHORT_TIMEOUTS)
    return connect_remote(server.url, **kwargs)


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and text
    return text


def test_a_full_reply_over_a_real_socket():
    with ScriptedServer({MODELS: LISTING, CHAT: REPLY}) as server:
        events = list(connect(server).chat(HI, NO_THINK))
    assert events[-1].answer == "Hello" and events[-1].finish_reason == "stop"


def test_server_killed_mid_stream_keeps_the_partial_reply_and_fakes_no_summary():
    body = sse(chat_chunk({"content": "Half"}), chat_chunk({"content": " a reply"}), done=False)
    with ScriptedServer({MODELS: LISTING, CHAT: dies_after(body)}) as server:
        engine = connect(server)
        got = []
        with pytest.raises(StreamInterruptedError) as err:
            for event in engine.chat(HI, NO_THINK):
                got.append(event)
    assert "".join(e.text for e in got if isinstance(e, AnswerDelta)) == "Half a reply"
    assert not any(isinstance(e, Summary) for e in got)
    assert "partial reply was kept" in one_line(err)


def test_a_server_that_never_answers_times_out_with_one_line():
    with ScriptedServer({MODELS: LISTING}) as server:
        server.on(CHAT, server.never_answers())
        engine = connect(server)
        with pytest.raises(ServerTimeoutError) as err:
            list(engine.chat(HI, NO_THINK))
    assert "sent nothing for 0.5 s" in one_line(err)


def test_a_stream_that_stalls_mid_reply_times_out_after_the_partial_reply():
    with ScriptedServer({MODELS: LISTING}) as server:
        server.on(CHAT, server.stalls_after(sse(chat_chunk({"content": "Part"}), done=False)))
        got = []
        with pytest.raises(ServerTimeoutError) as err:
            for event in connect(server).chat(HI, NO_THINK):
                got.append(event)
    assert [e.text for e in got] == ["Part"]
    assert "mid-reply" in one_line(err)


def test_cancel_closes_the_stream_at_once_and_the_server_sees_the_client_go():
    with ScriptedServer({MODELS: LISTING}) as server:
        server.on(CHAT, server.hangs_after(sse(chat_chunk({"content": "Start"}), done=False)))
        engine = connect(server, timeouts=SHORT_TIMEOUTS.__class__(connect_s=2.0, read_s=30.0))
        cancel = threading.Event()
        events = []
        for event in engine.chat(HI, NO_THINK, cancel):
            events.append(event)
            if isinstance(event, AnswerDelta):
                cancel.set()  # as Esc does, from the UI thread
        assert server.client_gone.wait(10), "the server kept streaming to a cancelled client"
    s = events[-1]
    assert isinstance(s, Summary)
    assert (s.finish_reason, s.answer) == ("cancelled", "Start")


def test_401_without_a_key_says_which_variable_to_set(monkeypatch):
    monkeypatch.delenv("QWEN3TUI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    unauthorized = json_action(401, {"error": {"message": "Unauthorized"}})
    with ScriptedServer({MODELS: unauthorized}) as server, pytest.raises(AuthError) as err:
        connect(server)
    assert "needs an API key" in one_line(err) and "$QWEN3TUI_API_KEY" in one_line(err)


def test_a_refused_key_names_its_variable_and_never_shows_the_key(monkeypatch, caplog):
    monkeypatch.setenv("MY_VLLM_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    forbidden = json_action(403, {"error": {"message": "Invalid API key"}})
    with ScriptedServer({MODELS: forbidden}) as server, pytest.raises(AuthError) as err:
        connect(server, api_key_env="MY_VLLM_KEY")
    assert server.seen[0].headers.get("Authorization") == f"Bearer {SECRET}"
    assert "$MY_VLLM_KEY" in one_line(err)
    assert SECRET not in str(err.value) and SECRET not in repr(err.value)
    assert SECRET not in caplog.text


def test_the_key_is_in_no_repr_info_or_message(monkeypatch, caplog):
    monkeypatch.setenv("QWEN3TUI_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    with ScriptedServer({MODELS: LISTING, CHAT: json_action(500, {"detail": "boom"})}) as server:
        engine = connect(server)
        with pytest.raises(ServerBusyError) as err:
            list(engine.chat(HI, NO_THINK))
    assert server.seen[-1].headers.get("Authorization") == f"Bearer {SECRET}"
    shown = [
        repr(engine),
        str(engine.info),
        repr(engine.client),
        repr(engine.client.key),
        str(err.value),
    ]
    assert not any(SECRET in text for text in shown)
    assert SECRET not in caplog.text


def test_openai_api_key_is_the_fallback(monkeypatch):
    monkeypatch.delenv("QWEN3TUI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with ScriptedServer({MODELS: LISTING}) as server:
        connect(server)
    assert server.seen[0].headers.get("Authorization") == f"Bearer {SECRET}"


def test_an_unknown_model_lists_what_the_server_serves():
    with (
        ScriptedServer({MODELS: LISTING}) as server,
        pytest.raises(RemoteModelNotFoundError) as err,
    ):
        connect(server, model="Qwen3-4B")
    assert "'Qwen3-4B'" in one_line(err) and "Qwen3-8B, Qwen3-32B" in one_line(err)


def test_a_404_for_the_model_mid_session_lists_the_models_too():
    gone = json_action(404, {"object": "error", "message": "The model `Qwen3-8B` does not exist."})
    later_listing = json_action(200, models_list("Qwen3-32B"))
    with ScriptedServer({MODELS: [LISTING, later_listing], CHAT: gone}) as server:
        engine = connect(server)
        with pytest.raises(RemoteModelNotFoundError) as err:
            list(engine.chat(HI, NO_THINK))
    assert "it serves: Qwen3-32B" in one_line(err)


def test_a_url_without_the_api_says_where_it_usually_is():
    with ScriptedServer({}) as server, pytest.raises(RequestRejectedError) as err:
        connect(server)
    assert "no OpenAI-compatible API" in one_line(err) and "/v1" in one_line(err)


def test_500_then_200_is_retried_and_answers():
    with ScriptedServer(
        {MODELS: LISTING, CHAT: [json_action(500, {"detail": "warming up"}), REPLY]}
    ) as server:
        events = list(connect(server).chat(HI, NO_THINK))
    assert events[-1].answer == "Hello"
    assert sum(s.path == CHAT for s in server.seen) == 2


def test_429_honours_retry_after():
    busy = json_action(429, {"error": {"message": "Too many requests"}}, **{"Retry-After": "0"})
    with ScriptedServer({MODELS: LISTING, CHAT: [busy, REPLY]}) as server:
        assert list(connect(server).chat(HI, NO_THINK))[-1].answer == "Hello"


def test_5xx_that_persists_ends_in_a_clear_error_after_the_retries():
    with ScriptedServer(
        {MODELS: LISTING, CHAT: json_action(503, {"detail": "overloaded"})}
    ) as server:
        with pytest.raises(ServerBusyError) as err:
            list(connect(server).chat(HI, NO_THINK))
    assert "503: overloaded" in one_line(err) and "after 3 tries" in one_line(err)
    assert sum(s.path == CHAT for s in server.seen) == FAST_RETRY.attempts


def test_a_bad_request_shows_the_servers_reason():
    too_long = json_action(
        400, {"error": {"message": "This model's maximum context length is 4096 tokens."}}
    )
    with ScriptedServer({MODELS: LISTING, CHAT: too_long}) as server:
        with pytest.raises(RequestRejectedError) as err:
            list(connect(server).chat(HI, NO_THINK))
    assert "maximum context length is 4096" in one_line(err)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused():
    with pytest.raises(ServerUnreachableError) as err:
        connect_remote(f"http://127.0.0.1:{free_port()}/v1", fetch_tokenizer=False)
    assert "connection refused" in one_line(err)


def test_tls_to_a_plain_http_server():
    with ScriptedServer({MODELS: LISTING}) as server, pytest.raises(ServerUnreachableError) as err:
        connect_remote(server.url.replace("http://", "https://"), fetch_tokenizer=False)
    assert "TLS handshake" in one_line(err)


def test_dns_failure_names_the_host():
    def unresolvable(request):
        raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)

    with pytest.raises(ServerUnreachableError) as err:
        connect_remote("http://gpu-box:8000/v1", transport=httpx.MockTransport(unresolvable))
    assert "cannot resolve the host name 'gpu-box'" in one_line(err)


def test_a_url_without_scheme_or_path_gets_http_and_v1():
    engine, seen = recorded_engine({MODELS: Answer.json(models_list("m"))}, base_url="gpu-box:8000")
    assert engine.info.server == "http://gpu-box:8000/v1"


def test_credentials_in_the_url_are_not_shown():
    engine, _ = recorded_engine(
        {MODELS: Answer.json(models_list("m"))}, base_url="https://user:pw@gpu-box/v1"
    )
    assert "pw" not in engine.info.server and "pw" not in repr(engine)


def test_cancel_while_the_server_has_not_answered_yet_ends_at_once():
    with ScriptedServer({MODELS: LISTING}) as server:
        server.on(CHAT, server.never_answers())
        # A read timeout far beyond the test: only the cancel can end this reply.
        engine = connect(server, timeouts=SHORT_TIMEOUTS.__class__(connect_s=2.0, read_s=60.0))
        cancel = threading.Event()

        def cancel_once_the_server_has_it():
            while not any(s.path == CHAT for s in server.seen):
                if server.release.wait(0.01):
                    return
            cancel.set()

        threading.Thread(target=cancel_once_the_server_has_it, daemon=True).start()
        events = list(engine.chat(HI, NO_THINK, cancel))
    assert [type(e) for e in events] == [Summary]
    assert events[0].finish_reason == "cancelled"


def test_a_named_model_is_trusted_when_the_server_lists_none_yet():
    # transformers serve loads models on first use and lists only loaded ones.
    empty = json_action(200, {"object": "list", "data": []})
    with ScriptedServer({MODELS: empty}) as server:
        assert connect(server, model="/models/qwen3").info.model == "/models/qwen3"
        with pytest.raises(RemoteModelNotFoundError) as err:
            connect(server)
    assert "lists no models" in one_line(err)


def test_a_finished_reply_does_not_wait_for_a_server_slow_to_close_the_stream():
    finished = sse(
        chat_chunk({"content": "Done"}),
        chat_chunk({}, "stop"),
        usage_chunk(prompt=3, completion=1),
        done=False,
    )
    with ScriptedServer({MODELS: LISTING}) as server:
        server.on(CHAT, server.stalls_after(finished))
        events = list(connect(server).chat(HI, NO_THINK))  # read timeout 0.5 s: none is hit
    assert events[-1].answer == "Done" and events[-1].usage.prompt_tokens == 3


def test_a_server_silent_at_connect_is_given_up_on_sooner_than_a_reply():
    timeouts = SHORT_TIMEOUTS.__class__(connect_s=2.0, read_s=60.0, metadata_read_s=0.3)
    with ScriptedServer({}) as server:
        server.on(MODELS, server.never_answers())
        with pytest.raises(ServerTimeoutError) as err:
            connect(server, timeouts=timeouts)
    assert "sent nothing for 0.3 s" in one_line(err)
