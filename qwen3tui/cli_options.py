"""What the command lines share: the model options, user errors and exit codes."""

from __future__ import annotations

import argparse
from typing import NoReturn

from qwen3tui.engine.info import DEFAULT_MODEL

EXIT_OK = 0
EXIT_USAGE = 2  # bad input, or a model that cannot load or run: one line on stderr
EXIT_NOT_SAVED = 3  # the reply was given, but the session store could not save it
EXIT_CANCELLED = 130  # Ctrl+C (128 + SIGINT)


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a bad argument said in one line (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def add_model_arguments(p: argparse.ArgumentParser, *, subcommand: bool = False) -> None:
    """The model options, on the main parser and again on `ask`.

    On a subcommand their defaults are SUPPRESS, so `qwen3tui --model X ask` keeps X instead
    of the subparser writing its own default over it.
    """

    def default(value):
        return argparse.SUPPRESS if subcommand else value

    p.add_argument(
        "--model",
        "-m",
        default=default(None),
        help="Hugging Face model id or local directory (default: `model` in settings.toml,"
        f" else {DEFAULT_MODEL}); with --server, the served model's name (default: the first"
        " it lists)",
    )
    p.add_argument(
        "--server",
        default=default(None),
        metavar="URL",
        help="chat with a model served by vLLM, SGLang, TensorRT-LLM, llama.cpp, Ollama or any"
        " OpenAI-compatible server, e.g. http://gpu-box:8000/v1 (default: $QWEN3TUI_SERVER,"
        " else `server` in settings.toml)",
    )
    p.add_argument(
        "--api-key-env",
        default=default(None),
        metavar="VAR",
        help="the variable holding the server's API key (default: QWEN3TUI_API_KEY, then"
        " OPENAI_API_KEY); the key is never saved",
    )
    p.add_argument(
        "--tokenizer",
        default=default(None),
        metavar="DIR",
        help="with --server: the model's tokenizer files, for the thinking budget and exact"
        " token counts (default: found by the model's name)",
    )
    p.add_argument(
        "--device", default=default("auto"), help="auto, cpu, cuda, cuda:N or mps (default: auto)"
    )
    p.add_argument(
        "--dtype",
        default=default("auto"),
        help="auto, bfloat16, float16 or float32 (default: auto)",
    )
    p.add_argument(
        "--context",
        type=int,
        default=default(None),
        metavar="N",
        help="context window in tokens (KV cache size; default: 32768 on CUDA, 16384 on MPS,"
        " 8192 on CPU, at most the model's limit)",
    )
    p.add_argument(
        "--quantize",
        choices=["int8", "int4", "fp8"],
        default=default(None),
        help="weight-only quantization at load time: int8, int4 (a scale per 64 weights), or"
        " fp8 (CUDA only: 128x128 blocks, as Qwen's FP8 releases)",
    )
