"""The process ends after quitting, even when Textual's shutdown cannot finish.

Once the app has saved everything and asked to exit, Textual restores the terminal. When the
terminal is gone (its window closed: SIGHUP), Textual's output thread has died on its first
failed write and the shutdown waits on it forever: the process would linger, deaf to further
signals because its event loop is blocked. The guard gives the shutdown EXIT_GRACE_S, then ends
the process with the code the app chose. Nothing is lost by it: the store was written first.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from types import TracebackType

EXIT_GRACE_S = 5.0


class ExitGuard:
    """`with ExitGuard(app.exit_requested, code):` around `app.run()`."""

    def __init__(
        self,
        requested: threading.Event,
        code: Callable[[], int],
        grace_s: float = EXIT_GRACE_S,
        end_process: Callable[[int], object] = os._exit,
    ) -> None:
        self._requested = requested
        self._code = code
        self._grace_s = grace_s
        self._end_process = end_process
        self._returned = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="qwen3tui-exit", daemon=True)

    def __enter__(self) -> ExitGuard:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._returned.set()
        self._requested.set()  # wakes the watcher, which sees the run returned and stops
        self._thread.join()

    def _watch(self) -> None:
        self._requested.wait()
        if not self._returned.wait(self._grace_s):
            self._end_process(self._code())
