"""After the app has saved everything and asked to exit, the process ends even if Textual's
shutdown hangs (as it does when the terminal is gone); a run that returns is never cut short."""

from __future__ import annotations

import threading

from qwen3tui.tui.exit_guard import ExitGuard


def test_a_shutdown_that_hangs_ends_the_process_with_the_apps_code() -> None:
    requested, ended = threading.Event(), []
    done = threading.Event()

    def end_process(code: int) -> None:
        ended.append(code)
        done.set()

    guard = ExitGuard(requested, lambda: 143, grace_s=0.0, end_process=end_process)
    with guard:
        requested.set()  # the app saved and asked to exit; the run never returns by itself
        assert done.wait(timeout=60)
    assert ended == [143]


def test_a_run_that_returns_is_left_to_end_by_itself() -> None:
    requested, ended = threading.Event(), []
    guard = ExitGuard(requested, lambda: 0, grace_s=0.0, end_process=ended.append)
    with guard:
        pass  # app.run() returned before any exit was requested
    assert ended == [] and requested.is_set()


def test_a_run_that_returns_within_the_grace_is_not_cut_short() -> None:
    requested, ended = threading.Event(), []
    guard = ExitGuard(requested, lambda: 0, grace_s=3600.0, end_process=ended.append)
    with guard:
        requested.set()
    assert ended == []
