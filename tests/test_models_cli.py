"""`qwen3tui models`: list, add, pull and rm, on a Hugging Face cache the test lays out itself.

No network and no weights: the cache holds real configs and chat templates beside "weights" that
are random bytes, which also shows that listing never reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
from qwen3_2507_templates import instruct_2507_template, thinking_2507_template

from qwen3tui.cli import main
from qwen3tui.settings import UserSettings

FAMILY = Path("/work/shared/qwen3-family")
WEIGHTS = os.urandom(4096)  # not a safetensors file: a listing that read it would fail


def cache_repo(hub: Path, repo_id: str, files: dict[str, bytes]) -> int:
    """One repository in huggingface_hub's cache layout (blobs, a snapshot of links to them,
    refs/main); returns the bytes its blobs take."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return sum(len(d) for d in files.values())


def checkpoint_files(config: dict, template: str | None, shared_dir: Path) -> dict[str, bytes]:
    tokenizer_config = json.loads((shared_dir / "tokenizer_config.json").read_text())
    if template is not None:
        tokenizer_config["chat_template"] = template
    return {
        "config.json": json.dumps(config).encode(),
        "tokenizer_config.json": json.dumps(tokenizer_config).encode(),
        "model.safetensors": WEIGHTS,
    }


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qwen3tui_home: Path) -> Path:
    """An empty Hugging Face cache, and no way to the network."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "hf" / "hub"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def family(shared_dir: Path) -> Path:
    if not (FAMILY / "Qwen3-30B-A3B.config.json").exists():
        pytest.skip("shared/qwen3-family configs not found")
    return FAMILY


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["models", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json_describes_each_qwen3_in_the_cache_from_config_and_template_only(
    hub: Path, family: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dense = json.loads((shared_dir / "config.json").read_text())
    moe_fp8 = json.loads((family / "Qwen3-30B-A3B.config.json").read_text())
    moe_fp8["quantization_config"] = {
        "quant_method": "fp8",
        "fmt": "e4m3",
        "activation_scheme": "dynamic",
        "weight_block_size": [128, 128],
    }
    sizes = {
        "Qwen/Qwen3-1.7B": cache_repo(
            hub, "Qwen/Qwen3-1.7B", checkpoint_files(dense, None, shared_dir)
        ),
        "Qwen/Qwen3-30B-A3B-Thinking-2507-FP8": cache_repo(
            hub,
            "Qwen/Qwen3-30B-A3B-Thinking-2507-FP8",
            checkpoint_files(moe_fp8, thinking_2507_template(shared_dir), shared_dir),
        ),
        "Qwen/Qwen3-4B-Instruct-2507": cache_repo(
            hub,
            "Qwen/Qwen3-4B-Instruct-2507",
            checkpoint_files(dense, instruct_2507_template(shared_dir), shared_dir),
        ),
    }
    cache_repo(hub, "meta/Llama-Other", {"config.json": b'{"model_type": "llama"}'})

    code, out, err = run(capsys, "list", "--json")

    assert (code, err) == (0, "")
    listed = {e["name"]: e for e in json.loads(out)}
    assert sorted(listed) == sorted(sizes)  # the Llama repository is not a Qwen3: left out
    assert {n: e["size_bytes"] for n, e in listed.items()} == sizes
    assert {n: (e["kind"], e["thinking_mode"], e["dtype"]) for n, e in listed.items()} == {
        "Qwen/Qwen3-1.7B": ("dense", "hybrid", "bfloat16"),
        "Qwen/Qwen3-30B-A3B-Thinking-2507-FP8": ("moe", "thinking", "fp8"),
        "Qwen/Qwen3-4B-Instruct-2507": ("dense", "instruct", "bfloat16"),
    }
    assert all(e["source"] == "hub" and e["problem"] is None for e in listed.values())


def test_list_as_text_has_a_row_per_model_with_its_mode(
    hub: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dense = json.loads((shared_dir / "config.json").read_text())
    cache_repo(hub, "Qwen/Qwen3-1.7B", checkpoint_files(dense, None, shared_dir))

    code, out, _ = run(capsys)  # no subcommand: list

    header, row = out.splitlines()
    assert code == 0
    assert header.split() == ["NAME", "SIZE", "KIND", "THINKING", "WEIGHTS", "NOTE"]
    assert row.startswith("Qwen/Qwen3-1.7B") and "dense" in row and "thinking on/off" in row


def test_an_empty_cache_says_how_to_get_a_model(
    hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "list") == (
        0,
        "No Qwen3 models yet: `qwen3tui models pull Qwen/Qwen3-1.7B`, or"
        " `qwen3tui models add DIR`.\n",
        "",
    )
    assert run(capsys, "list", "--json") == (0, "[]\n", "")


def test_add_remembers_a_folder_in_settings_and_lists_it(
    hub: Path, tmp_path: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "my-qwen"
    folder.mkdir()
    for name, data in checkpoint_files(
        json.loads((shared_dir / "config.json").read_text()), None, shared_dir
    ).items():
        (folder / name).write_bytes(data)

    code, _, err = run(capsys, "add", str(folder))

    assert (code, err) == (0, f"added {folder.resolve()}\n")
    assert UserSettings.load().model_dirs == (str(folder.resolve()),)
    [entry] = json.loads(run(capsys, "list", "--json")[1])
    assert (entry["name"], entry["source"], entry["kind"], entry["thinking_mode"]) == (
        str(folder.resolve()),
        "folder",
        "dense",
        "hybrid",
    )
    assert entry["size_bytes"] == sum(f.stat().st_size for f in folder.iterdir())
    assert run(capsys, "add", str(folder))[0] == 0  # twice: listed once
    assert UserSettings.load().model_dirs == (str(folder.resolve()),)


@pytest.mark.parametrize("what", ["missing", "not-qwen3"])
def test_add_refuses_what_is_not_a_qwen3_folder_in_one_line(
    hub: Path, tmp_path: Path, what: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / what
    if what == "not-qwen3":
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "llama"}')

    code, out, err = run(capsys, "add", str(folder))

    assert (code, out) == (2, "")
    assert err.startswith("qwen3tui: ") and err.count("\n") == 1
    assert UserSettings.load().model_dirs == ()


def test_pull_while_offline_is_one_line_and_exit_2(
    hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "pull", "Qwen/Qwen3-1.7B") == (
        2,
        "",
        "qwen3tui: cannot reach huggingface.co: HF_HUB_OFFLINE is set\n",
    )


def test_pull_without_a_network_is_one_line_and_exit_2(
    hub: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nothing listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")

    code, out, err = run(capsys, "pull", "Qwen/Qwen3-1.7B")

    assert (code, out) == (2, "")
    assert err.startswith("qwen3tui: cannot reach huggingface.co: ") and err.count("\n") == 1
    assert not any(hub.iterdir())  # nothing half-downloaded


def cached_model(hub: Path, shared_dir: Path) -> Path:
    dense = json.loads((shared_dir / "config.json").read_text())
    cache_repo(hub, "Qwen/Qwen3-1.7B", checkpoint_files(dense, None, shared_dir))
    return hub / "models--Qwen--Qwen3-1.7B"


def test_rm_with_yes_deletes_the_model_from_the_cache(
    hub: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = cached_model(hub, shared_dir)

    code, out, err = run(capsys, "rm", "Qwen/Qwen3-1.7B", "--yes")

    assert (code, out) == (0, "")
    assert err.startswith("deleted Qwen/Qwen3-1.7B (")
    assert not repo.exists()
    assert run(capsys, "list", "--json")[1] == "[]\n"


def test_rm_without_yes_and_without_a_terminal_deletes_nothing(
    hub: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = cached_model(hub, shared_dir)

    code, out, err = run(capsys, "rm", "Qwen/Qwen3-1.7B")

    assert (code, out) == (2, "")
    assert err.endswith("not without confirmation; pass --yes\n") and err.count("\n") == 1
    assert repo.exists()


@pytest.mark.parametrize(("answer", "deleted"), [("y", True), ("n", False), ("", False)])
def test_rm_asks_first_at_a_terminal(
    hub: Path,
    shared_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer: str,
    deleted: bool,
) -> None:
    repo = cached_model(hub, shared_dir)
    questions: list[str] = []
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda q: questions.append(q) or answer)

    code, _, _ = run(capsys, "rm", "Qwen/Qwen3-1.7B")

    assert code == 0
    assert questions[0].startswith("Delete Qwen/Qwen3-1.7B (")
    assert questions[0].endswith(") from the Hugging Face cache? [y/N] ")
    assert repo.exists() is not deleted


def test_rm_of_an_added_folder_forgets_it_and_keeps_its_files(
    hub: Path, tmp_path: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mine"
    shutil.copytree(shared_dir, folder)
    run(capsys, "add", str(folder))

    code, _, err = run(capsys, "rm", str(folder))

    assert (code, err) == (0, f"forgot {folder.resolve()} (its files are kept)\n")
    assert UserSettings.load().model_dirs == ()
    assert (folder / "config.json").exists()


def test_rm_of_an_unknown_model_is_one_line_and_exit_2(
    hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "rm", "Qwen/Nothing", "--yes")
    assert code == 2 and err.startswith("qwen3tui: Qwen/Nothing is neither in the Hugging Face")
    assert err.count("\n") == 1
