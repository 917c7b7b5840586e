"""The CPU thread policy: the cores the process may use (affinity, cgroup quota), one override,
and giving way to another program that keeps a core busy, then taking it back."""

from __future__ import annotations

import threading

import pytest
import torch

from qwen3tui.engine import threads
from qwen3tui.engine.errors import EngineError
from qwen3tui.engine.threads import CpuSample, ThreadPolicy


def test_usable_cores_are_the_affinity_capped_by_the_quota():
    eight = range(8)
    assert threads.usable_cores(eight, cpu_limit=lambda: None) == 8
    assert threads.usable_cores(eight, cpu_limit=lambda: 2.0) == 2
    assert threads.usable_cores(eight, cpu_limit=lambda: 1.5) == 1  # rounded down: no throttling
    assert threads.usable_cores(eight, cpu_limit=lambda: 0.5) == 1  # at least one
    assert threads.usable_cores({3, 5}, cpu_limit=lambda: 16.0) == 2


def _cgroup_v2(tmp_path, path: str, files: dict[str, str]):
    (tmp_path / "self_cgroup").write_text(f"0::{path}\n")
    for rel, text in files.items():
        (tmp_path / "fs" / rel).mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / rel / "cpu.max").write_text(text)
    return threads.cgroup_cpu_limit(tmp_path / "fs", tmp_path / "self_cgroup")


def test_cgroup_v2_quota_is_read_from_the_process_group_and_its_parents(tmp_path):
    assert _cgroup_v2(tmp_path, "/app/job", {"app/job": "max 100000\n"}) is None
    assert _cgroup_v2(tmp_path, "/app/job", {"app/job": "250000 100000\n"}) == 2.5
    # A parent's tighter quota limits the child too.
    assert _cgroup_v2(tmp_path, "/app/job", {"app": "100000 100000\n"}) == 1.0


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "self_cgroup").write_text("4:memory:/x\n3:cpu,cpuacct:/box\n")
    box = tmp_path / "fs" / "cpu,cpuacct" / "box"
    box.mkdir(parents=True)
    (box / "cpu.cfs_period_us").write_text("100000\n")
    (box / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpu_limit(tmp_path / "fs", tmp_path / "self_cgroup") is None
    (box / "cpu.cfs_quota_us").write_text("300000\n")
    assert threads.cgroup_cpu_limit(tmp_path / "fs", tmp_path / "self_cgroup") == 3.0


def test_no_cgroup_files_means_no_limit(tmp_path):
    assert threads.cgroup_cpu_limit(tmp_path / "none", tmp_path / "none" / "cgroup") is None


def test_the_override_fixes_the_count(monkeypatch):
    monkeypatch.setenv("QWEN3TUI_THREADS", "3")
    policy = threads.policy_from_env()
    assert policy.current() == 3
    monkeypatch.delenv("QWEN3TUI_THREADS")
    assert threads.override() is None


@pytest.mark.parametrize("bad", ["0", "two", "-1", "1.5"])
def test_a_bad_override_is_one_clear_line(monkeypatch, bad):
    monkeypatch.setenv("QWEN3TUI_THREADS", bad)
    with pytest.raises(EngineError, match="QWEN3TUI_THREADS") as err:
        threads.override()
    assert "\n" not in str(err.value)


class FakeMachine:
    """Two cores; each second of the clock, `others` cores go to other programs and `ours`
    to this process; the rest is idle. 100 ticks per core-second."""

    def __init__(self) -> None:
        self.now = 0.0
        self.idle = 0.0
        self.own = 0.0
        self.others = 0.0
        self.ours = 2.0

    def run(self, seconds: float) -> None:
        self.now += seconds
        self.own += self.ours * seconds * 100
        self.idle += max(0.0, 2 - self.others - self.ours) * seconds * 100

    def sample(self) -> CpuSample:
        return CpuSample(idle=int(self.idle), own=int(self.own))


def _policy(machine: FakeMachine) -> ThreadPolicy:
    return ThreadPolicy(cores=2, sample=machine.sample, clock=lambda: machine.now, ticks_per_s=100)


def _decode(machine: FakeMachine, policy: ThreadPolicy, seconds: float) -> int:
    n = policy.current()
    for _ in range(int(seconds * 10)):  # a step every 0.1 s
        n = policy.current()
        # With a busy program beside it, our threads get what the others leave.
        machine.ours = min(n, 2 - machine.others / 2 if n == 2 else 1.0)
        machine.run(0.1)
    return policy.current()


def test_a_quiet_machine_gets_every_core():
    machine = FakeMachine()
    policy = _policy(machine)
    assert policy.current() == 2
    assert _decode(machine, policy, 3) == 2


def test_decode_gives_way_to_a_busy_program_and_takes_the_core_back():
    machine = FakeMachine()
    policy = _policy(machine)
    _decode(machine, policy, 1)
    machine.others = 1.0  # `yes > /dev/null` starts
    assert _decode(machine, policy, 2) == 1
    assert _decode(machine, policy, 3) == 1  # steady while it runs
    machine.others = 0.0  # it stops
    assert _decode(machine, policy, 2) == 2


def test_a_light_background_load_keeps_every_core():
    machine = FakeMachine()
    machine.others = 0.2  # an editor, a clock
    policy = _policy(machine)
    assert _decode(machine, policy, 3) == 2


def test_an_idle_gap_is_not_read_as_the_present():
    machine = FakeMachine()
    policy = _policy(machine)
    _decode(machine, policy, 1)
    machine.ours, machine.others = 0.0, 1.0
    machine.run(60)  # the user reads for a minute while something else runs
    assert policy.current() == 2  # a fresh start: no judgment from a stale window
    assert _decode(machine, policy, 1.5) == 1


def test_the_policy_sets_torch_threads_in_the_thread_that_runs_the_model(monkeypatch):
    monkeypatch.setenv("QWEN3TUI_THREADS", "1")
    before = torch.get_num_threads()
    seen = []
    model = torch.nn.Linear(4, 4)
    threads.install(model)

    def worker():
        torch.set_num_threads(2)
        model(torch.zeros(1, 4))
        seen.append(torch.get_num_threads())

    try:
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert seen == [1]
    finally:
        torch.set_num_threads(before)


def test_real_samples_read_on_linux():
    sample = threads.read_sample()
    if sample is None:
        pytest.skip("no /proc here")
    assert sample.idle >= 0 and sample.own >= 0


def test_the_engine_computes_with_the_policys_threads(tiny_checkpoint, monkeypatch):
    from qwen3tui.engine import load_engine

    before = torch.get_num_threads()
    monkeypatch.setenv("QWEN3TUI_THREADS", "1")
    try:
        torch.set_num_threads(2)
        engine = load_engine(str(tiny_checkpoint), device="cpu", dtype="float32", context_length=64)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        with torch.inference_mode():
            engine.model(torch.zeros((1, 1), dtype=torch.long), 0, engine.cache)
        assert torch.get_num_threads() == 1  # set again before each forward pass
        torch.set_num_threads(2)
        with torch.inference_mode():
            engine.step(torch.tensor(1), 1)
        assert torch.get_num_threads() == 1  # and before each decode step
    finally:
        torch.set_num_threads(before)


def test_a_bad_override_stops_the_load_with_one_line(tiny_checkpoint, monkeypatch):
    from qwen3tui.engine import load_engine

    monkeypatch.setenv("QWEN3TUI_THREADS", "lots")
    with pytest.raises(EngineError, match="QWEN3TUI_THREADS='lots' is not a thread count"):
        load_engine(str(tiny_checkpoint), device="cpu", dtype="float32", context_length=64)
