"""Ending quietly when the reader of our output goes away (`qwen3tui sessions list | head -1`).

Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError instead of ending the
process the way it ends other Unix tools. Catch it where output is written, then call
`exit_code_for_closed_pipe()`: it points stdout at the null device, so the interpreter's last
flush at exit cannot raise again, and returns 141 (128 + SIGPIPE), the status a shell reports
for a tool that a closed pipe ended.
"""

from __future__ import annotations

import os
import sys

EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE (13); a constant, as Windows has no SIGPIPE


def exit_code_for_closed_pipe() -> int:
    """Silence stdout for the rest of the process; returns the exit status to end with."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass  # stdout has no file descriptor (a test's capture): nothing to flush at exit
    return EXIT_CLOSED_PIPE
