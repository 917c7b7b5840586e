"""User settings: defaults, round trip, damaged files, atomic saves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qwen3tui import paths
from qwen3tui.engine.options import SamplingOverrides
from qwen3tui.settings import (
    DEFAULT_THEME,
    DEFAULT_THINKING_BUDGET,
    SETTINGS,
    SettingsSaveError,
    TurnSettings,
    UserSettings,
)


def test_a_missing_file_gives_the_defaults_quietly(tmp_path: Path) -> None:
    settings = UserSettings.load(tmp_path / "nothing-here.toml")
    assert settings == UserSettings()
    assert settings.theme == DEFAULT_THEME == "qwen-dark"
    assert settings.turn.thinking is True
    assert settings.turn.thinking_budget == DEFAULT_THINKING_BUDGET
    assert settings.turn.sampling_dict() == {} and settings.model is None
    assert settings.warnings == []


def test_everything_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    sampling = SamplingOverrides(temperature=0.7, top_p=0.8, top_k=40, min_p=1e-05, seed=7)
    original = UserSettings(
        theme="qwen-light",
        turn=TurnSettings(thinking=False, thinking_budget=1536, max_tokens=300, sampling=sampling),
        model='C:\\models\\my "qwen"\tfolder',
    )
    assert original.save(path) == path
    loaded = UserSettings.load(path)
    assert loaded == original and loaded.warnings == []
    assert isinstance(loaded.turn.sampling.top_k, int)


def test_an_unlimited_budget_round_trips_as_a_word(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    UserSettings(turn=TurnSettings(thinking_budget=None)).save(path)
    assert 'thinking_budget = "unlimited"' in path.read_text().splitlines()
    assert UserSettings.load(path).turn.thinking_budget is None


def test_the_default_path_is_under_qwen3tui_home(qwen3tui_home: Path) -> None:
    saved_to = UserSettings(theme="qwen-ember").save()
    assert saved_to == paths.settings_path() and saved_to.is_relative_to(qwen3tui_home)
    assert UserSettings.load().theme == "qwen-ember"


def test_a_damaged_file_gives_defaults_and_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('theme = "qwen-light\nthinking = tru')
    settings = UserSettings.load(path)
    assert settings == UserSettings()
    (warning,) = settings.warnings
    assert str(path) in warning and "\n" not in warning


def test_a_file_that_is_not_text_gives_defaults_and_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_bytes(b"\xff\xfe\x00garbage\x81")
    settings = UserSettings.load(path)
    assert settings == UserSettings() and len(settings.warnings) == 1


def test_bad_values_fall_back_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(
        'theme = 3\nthinking = "yes"\nthinking_budget = -5\nmodel = "Qwen/Qwen3-0.6B"\n'
        "colour = 1\n[sampling]\ntemperature = 0.3\ntop_k = 2.5\nwarmth = 1\n"
    )
    settings = UserSettings.load(path)
    assert settings.theme == DEFAULT_THEME
    assert settings.turn.thinking is True
    assert settings.turn.thinking_budget == DEFAULT_THINKING_BUDGET
    assert settings.model == "Qwen/Qwen3-0.6B"  # the good values survive
    assert settings.turn.sampling_dict() == {"temperature": 0.3}
    joined = "\n".join(settings.warnings)
    for word in ("theme", "thinking", "thinking_budget", "colour", "top_k", "warmth"):
        assert word in joined
    assert len(settings.warnings) == 6


def test_a_save_replaces_the_file_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "settings.toml"
    UserSettings(theme="qwen-light").save(path)
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def watching_replace(src, dst):  # noqa: ANN001 - os.replace's own signature
        # At the moment of the swap the new text is complete in a sibling temp file.
        assert Path(src).parent == path.parent and Path(src) != path
        assert 'theme = "qwen-ember"' in Path(src).read_text()
        assert 'theme = "qwen-light"' in path.read_text()
        replaced.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", watching_replace)
    UserSettings(theme="qwen-ember").save(path)
    assert replaced and replaced[0][1] == str(path)
    assert UserSettings.load(path).theme == "qwen-ember"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.toml"]


def test_a_failed_save_says_why_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "settings.toml"
    UserSettings(theme="qwen-light").save(path)
    before = path.read_bytes()

    def disk_full(src, dst):  # noqa: ANN001
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(SettingsSaveError) as caught:
        UserSettings(theme="qwen-ember").save(path)
    message = str(caught.value)
    assert str(path) in message and "No space left on device" in message and "\n" not in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.toml"]  # temp file removed


def test_a_save_where_no_folder_can_be_made_raises_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(SettingsSaveError, match="could not save settings to"):
        UserSettings().save(blocker / "settings.toml")


def test_out_of_range_values_in_the_file_are_refused_one_by_one_with_the_range(
    tmp_path: Path,
) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(
        "max_tokens = 0\n[sampling]\ntop_p = 0\nmin_p = 7\ntemperature = nan\nseed = -1\n"
        "presence_penalty = 1e308\ntop_k = 20\n"
    )
    settings = UserSettings.load(path)
    assert settings.turn == TurnSettings(sampling=SamplingOverrides(top_k=20))
    assert [w.split(": ", 1)[1] for w in settings.warnings] == [
        "max_tokens = 0 is not allowed: use a whole number ≥ 1; using the default",
        "temperature = nan is not allowed: use a number ≥ 0 (0 is greedy); using the default",
        "top_p = 0 is not allowed: use a number > 0 and ≤ 1; using the default",
        "min_p = 7 is not allowed: use a number from 0 to 1; using the default",
        "presence_penalty = 1e+308 is not allowed: use a number from 0 to 2; using the default",
        "seed = -1 is not allowed: use a whole number from 0 to 18446744073709551615;"
        " using the default",
    ]


def test_older_files_with_max_tokens_under_sampling_still_load(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text("[sampling]\nmax_tokens = 200\ntemperature = 0.5\n")
    settings = UserSettings.load(path)
    assert (settings.turn.max_tokens, settings.turn.sampling.temperature) == (200, 0.5)
    assert settings.warnings == []


def test_every_setting_is_declared_once_with_a_default_that_passes_its_own_check() -> None:
    keys = [s.key for s in SETTINGS]
    assert len(keys) == len(set(keys))
    for setting in SETTINGS:
        if setting.default is not None:
            assert setting.check(setting.default) == setting.default


def test_a_session_saved_by_ask_or_the_tui_or_imported_reads_the_same() -> None:
    warnings: list[str] = []
    by_ask = {"thinking": True, "thinking_budget": None, "max_new_tokens": 64, "sampling": {}}
    by_tui = {"thinking": True, "thinking_budget": None, "max_tokens": 64, "sampling": {}}
    assert TurnSettings.from_dict(by_ask) == TurnSettings.from_dict(by_tui)
    imported = {"max_tokens": "many", "thinking_budget": 1e30, "sampling": {"top_p": float("nan")}}
    assert TurnSettings.from_dict(imported, warnings=warnings) == TurnSettings()
    assert len(warnings) == 3


def test_warnings_are_not_saved(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    settings = UserSettings()
    settings.warnings.append("something")
    settings.save(path)
    assert "something" not in path.read_text()
    assert UserSettings.load(path).warnings == []


def test_sampling_values_left_at_none_are_not_written(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    UserSettings(turn=TurnSettings(sampling=SamplingOverrides(temperature=0.5))).save(path)
    assert "top_p" not in path.read_text()
    assert UserSettings.load(path).turn.sampling_dict() == {"temperature": 0.5}
