"""One streamed JSON object, whatever server sent it, as the same `Piece`.

Reasoning arrives in `delta.reasoning_content` (SGLang, TensorRT-LLM, llama.cpp, transformers
serve, older vLLM), `delta.reasoning` (current vLLM, Ollama's OpenAI API), `message.thinking`
(Ollama's native API), or inside the text as `<think>…</think>` (servers without a reasoning
parser, raw completions); the last case is left to `ReplySplitter`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
_MISSING = object()


@dataclass(frozen=True)
class Piece:
    reasoning: str = ""
    content: str = ""
    finish_reason: str | None = None  # "stop" or "length" once the server says it ended
    stop_reason: Any = _MISSING  # what stopped it, where a server says (a stop string, an id)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    prompt_tok_s: float | None = None  # the server's own speeds, where it reports them
    decode_tok_s: float | None = None
    error: str | None = None

    @property
    def says_stop_reason(self) -> bool:
        return self.stop_reason is not _MISSING


def finish_reason(value: Any) -> str | None:
    """ "length" for a token limit, "stop" for any other end, None while still running."""
    if not value:
        return None
    return "length" if str(value) in ("length", "max_tokens", "limit") else "stop"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error(payload: dict[str, Any]) -> str | None:
    error = payload.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    if error:
        return str(error)
    if payload.get("object") == "error":  # older vLLM error objects
        return str(payload.get("message") or payload)
    return None


def _usage_fields(usage: Any) -> dict[str, Any]:
    if not isinstance(usage, dict):
        return {}
    details = usage.get("completion_tokens_details")
    reasoning = _int(details.get("reasoning_tokens")) if isinstance(details, dict) else None
    return {
        "prompt_tokens": _int(usage.get("prompt_tokens")),
        "completion_tokens": _int(usage.get("completion_tokens")),
        "reasoning_tokens": reasoning or None,
    }


def _llama_cpp_speeds(timings: Any) -> dict[str, Any]:
    if not isinstance(timings, dict):
        return {}
    prompt, decode = timings.get("prompt_per_second"), timings.get("predicted_per_second")
    return {
        "prompt_tok_s": float(prompt) if isinstance(prompt, (int, float)) else None,
        "decode_tok_s": float(decode) if isinstance(decode, (int, float)) else None,
    }


def openai_piece(payload: dict[str, Any]) -> Piece:
    """A chat-completion chunk (`choices[0].delta`) or text-completion chunk
    (`choices[0].text`); a whole non-streamed response (`choices[0].message`) reads the same."""
    error = _error(payload)
    if error:
        return Piece(error=error)
    choices = payload.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    choice = choice if isinstance(choice, dict) else {}
    delta = choice.get("delta") or choice.get("message") or {}
    delta = delta if isinstance(delta, dict) else {}
    reasoning = next((_text(delta.get(k)) for k in _REASONING_KEYS if _text(delta.get(k))), "")
    content = _text(delta.get("content")) or _text(choice.get("text"))
    extra: dict[str, Any] = {}
    for key in ("stop_reason", "matched_stop"):  # vLLM / SGLang: the stop string or token id
        if key in choice:
            extra["stop_reason"] = choice[key]
            break
    return Piece(
        reasoning=reasoning,
        content=content,
        finish_reason=finish_reason(choice.get("finish_reason")),
        **extra,
        **_usage_fields(payload.get("usage")),
        **_llama_cpp_speeds(payload.get("timings")),
    )


def ollama_piece(payload: dict[str, Any]) -> Piece:
    """A line of Ollama's native /api/chat (`message`) or /api/generate (`response`) stream."""
    error = _error(payload)
    if error:
        return Piece(error=error)
    message = payload.get("message")
    message = message if isinstance(message, dict) else {}
    done = payload.get("done") is True
    extra: dict[str, Any] = {}
    if done:
        prompt_n, eval_n = _int(payload.get("prompt_eval_count")), _int(payload.get("eval_count"))
        prompt_ns, eval_ns = payload.get("prompt_eval_duration"), payload.get("eval_duration")
        extra = {"prompt_tokens": prompt_n, "completion_tokens": eval_n}
        if prompt_n and isinstance(prompt_ns, (int, float)) and prompt_ns > 0:
            extra["prompt_tok_s"] = prompt_n / (prompt_ns / 1e9)
        if eval_n and isinstance(eval_ns, (int, float)) and eval_ns > 0:
            extra["decode_tok_s"] = eval_n / (eval_ns / 1e9)
    return Piece(
        reasoning=_text(message.get("thinking")) or _text(payload.get("thinking")),
        content=_text(message.get("content")) or _text(payload.get("response")),
        finish_reason=(finish_reason(payload.get("done_reason")) or "stop") if done else None,
        **extra,
    )
