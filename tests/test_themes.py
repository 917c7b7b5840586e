"""Theme files: the shipped ones parse, register and switch; broken ones are skipped, not fatal."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.color import Color
from textual.widgets import Static

from qwen3tui.tui.themes import (
    ThemeFileError,
    load_theme_file,
    load_themes,
    register_themes,
    shipped_themes_dirs,
    start_theme,
    theme_problem,
)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "themes").glob("*.toml"))

GOOD = """
name = "{name}"
dark = false
primary = "#336699"
background = "#fafafa"
"""


def same_colour(css_value: str, expected: str | None) -> bool:
    """Textual passes colours through HSL, so allow a rounding step per channel."""
    got, want = Color.parse(css_value), Color.parse(expected or "")
    return all(abs(a - b) <= 2 for a, b in zip(got.rgb, want.rgb, strict=True))


class ThemedApp(App[None]):
    def __init__(self, user_dir: Path) -> None:
        super().__init__()
        self.user_dir = user_dir
        self.registered: list[str] = []
        self.theme_warnings: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static("hello")

    def on_mount(self) -> None:
        result = register_themes(self, user_dir=self.user_dir)
        self.registered = list(result)
        self.theme_warnings = result.warnings


def test_the_shipped_themes_include_a_dark_and_a_light_one() -> None:
    themes = [load_theme_file(path) for path in SHIPPED]
    names = {theme.name for theme in themes}
    assert {"qwen-dark", "qwen-light"} <= names and len(names) >= 3
    assert any(theme.dark for theme in themes) and any(not theme.dark for theme in themes)
    for path, theme in zip(SHIPPED, themes, strict=True):
        assert path.stem == theme.name  # file names say what they hold
        for color in (theme.primary, theme.background, theme.foreground, theme.surface):
            assert color is not None
            Color.parse(color)


def test_the_package_finds_the_shipped_themes_folder() -> None:
    folders = shipped_themes_dirs()
    assert len(folders) == 1
    found = sorted(p.name for p in folders[0].glob("*.toml"))
    assert found == [p.name for p in SHIPPED]


def test_the_package_ships_the_top_level_themes_folder() -> None:
    # pyproject's package-data takes qwen3tui/themes/*.toml: a link to the top-level folder,
    # so wheels and sdists carry the same files the checkout uses.
    assert (REPO / "qwen3tui" / "themes").resolve() == (REPO / "themes").resolve()


def test_light_themes_keep_text_readable() -> None:
    for path in SHIPPED:
        theme = load_theme_file(path)
        background = Color.parse(theme.background or "#000000")
        foreground = Color.parse(theme.foreground or "#ffffff")
        assert abs(background.brightness - foreground.brightness) > 0.6, theme.name
        assert (background.brightness < 0.5) == theme.dark, theme.name


@pytest.mark.anyio
async def test_every_shipped_theme_registers_and_the_app_can_switch_to_it(tmp_path: Path) -> None:
    app = ThemedApp(user_dir=tmp_path / "none")
    async with app.run_test() as pilot:
        assert set(app.registered) == {load_theme_file(p).name for p in SHIPPED}
        assert app.theme_warnings == []
        for name in app.registered:
            app.theme = name
            await pilot.pause()
            theme = load_theme_file(REPO / "themes" / f"{name}.toml")
            assert app.current_theme.name == name
            variables = app.get_css_variables()
            assert same_colour(variables["primary"], theme.primary)
            assert same_colour(variables["background"], theme.background)


@pytest.mark.anyio
async def test_user_themes_are_added_and_may_replace_a_shipped_one(tmp_path: Path) -> None:
    user = tmp_path / "themes"
    user.mkdir()
    (user / "mine.toml").write_text(GOOD.format(name="mine"))
    (user / "dark-override.toml").write_text(GOOD.format(name="qwen-dark"))
    app = ThemedApp(user_dir=user)
    async with app.run_test() as pilot:
        assert "mine" in app.registered and app.registered.count("qwen-dark") == 1
        app.theme = "qwen-dark"
        await pilot.pause()
        assert same_colour(app.get_css_variables()["primary"], "#336699")
        app.theme = "mine"
        await pilot.pause()
        assert app.current_theme.dark is False


VARS = 'name = "{name}"\nprimary = "#123456"\n[variables]\n{key} = "{value}"\n'

BROKEN = {
    "not-toml.toml": 'name = "x\nprimary = ',
    "bad-colour.toml": 'name = "bad-colour"\nprimary = "#zzzzzz"\n',
    "no-name.toml": 'primary = "#123456"\n',
    "no-primary.toml": 'name = "no-primary"\n',
    "typo.toml": 'name = "typo"\nprimay = "#123456"\n',
    "dark-string.toml": 'name = "dark-string"\nprimary = "#123456"\ndark = "yes"\n',
    "bad-vars.toml": 'name = "bad-vars"\nprimary = "#123456"\n[variables]\nx = 3\n',
    "upper.toml": 'name = "Has Spaces"\nprimary = "#123456"\n',
    "var-colour.toml": VARS.format(name="var-colour", key="footer-key-foreground", value="#zzzzzz"),
    "var-kind.toml": VARS.format(name="var-kind", key="input-selection-background", value="bold"),
    "var-style.toml": VARS.format(name="var-style", key="block-cursor-text-style", value="#123456"),
    "var-css.toml": VARS.format(name="var-css", key="footer-key-foreground", value="red; } X {"),
}
BROKEN_NAMES = {"bad-colour", "no-primary", "typo", "dark-string", "bad-vars", "var-colour"}
BROKEN_NAMES |= {"var-kind", "var-style", "var-css", "caf\u00e9"}


@pytest.mark.anyio
async def test_broken_theme_files_are_skipped_with_one_warning_each(tmp_path: Path) -> None:
    user = tmp_path / "themes"
    user.mkdir()
    for file_name, text in BROKEN.items():
        (user / file_name).write_text(text)
    (user / "latin-1.toml").write_bytes(
        'name = "caf\u00e9"\nprimary = "#123456"\n'.encode("latin-1")
    )
    (user / "fine.toml").write_text(GOOD.format(name="fine"))
    app = ThemedApp(user_dir=user)
    async with app.run_test():
        assert "fine" in app.registered
        assert not BROKEN_NAMES & set(app.registered) and not BROKEN_NAMES & set(
            app.available_themes
        )
        assert len(app.theme_warnings) == len(BROKEN) + 1
        for file_name in [*BROKEN, "latin-1.toml"]:
            (warning,) = [w for w in app.theme_warnings if file_name in w]
            assert "\n" not in warning


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('name = "x"\nprimary = "#zzzzzz"\n', "not a colour"),
        ('name = "x"\nprimay = "#123456"\n', "unknown key 'primay'"),
        ('primary = "#123456"\n', "'name'"),
        ('name = "x"\n', "'primary'"),
        ('name = "x"\nprimary = "#123456"\ntext_alpha = 3\n', "'text_alpha'"),
        ("name = ", "not valid TOML"),
        (VARS.format(name="x", key="footer-key-foreground", value="#zzzzzz"), "not a CSS value"),
        (VARS.format(name="x", key="footer-key-foreground", value="12"), "color property"),
        (VARS.format(name="x", key="link-style", value="#123456"), "text-style property"),
        (VARS.format(name="x", key="text-muted", value="none"), "color property"),
        (VARS.format(name="x", key='"bad name"', value="red"), "may only hold"),
    ],
)
def test_each_problem_is_named_in_the_message(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(ThemeFileError) as caught:
        load_theme_file(path)
    assert says in str(caught.value) and str(path) in str(caught.value)


def test_a_missing_user_folder_is_fine(tmp_path: Path) -> None:
    loaded = load_themes([tmp_path / "does-not-exist"])
    assert loaded.themes == [] and loaded.warnings == []


def test_the_default_user_folder_comes_from_paths(qwen3tui_home: Path) -> None:
    from qwen3tui import paths

    folder = paths.user_themes_dir()
    folder.mkdir(parents=True)
    (folder / "homemade.toml").write_text(GOOD.format(name="homemade"))

    class Host:
        def __init__(self) -> None:
            self.names: list[str] = []

        def register_theme(self, theme) -> None:  # noqa: ANN001 - Textual's Theme
            self.names.append(theme.name)

    host = Host()
    result = register_themes(host)
    assert "homemade" in result and "homemade" in host.names and "qwen-dark" in host.names


def test_a_file_that_is_not_utf8_is_named_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_bytes(b'name = "caf\xe9"\nprimary = "#123456"\n')
    with pytest.raises(ThemeFileError, match="not UTF-8") as caught:
        load_theme_file(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("input-selection-background", "#8b7cf6 35%"),
        ("footer-key-foreground", "rgb(10, 20, 30)"),
        ("text", "auto 80%"),
        ("block-cursor-text-style", "bold underline"),
        ("link-background", "initial"),
        ("my-own-variable", "anything at all"),
    ],
)
def test_valid_css_variables_are_kept(tmp_path: Path, key: str, value: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(VARS.format(name="ok", key=key, value=value))
    assert load_theme_file(path).variables == {key: value}


class StrictApp(ThemedApp):
    """An app whose own CSS uses a variable Textual knows nothing about."""

    CSS = "Static { color: $my-colour; }"

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return {"my-colour": "red"}


@pytest.mark.anyio
async def test_theme_problem_says_whether_a_theme_can_be_applied_to_this_app(
    tmp_path: Path,
) -> None:
    user = tmp_path / "themes"
    user.mkdir()
    (user / "fine.toml").write_text(GOOD.format(name="fine"))
    # Valid CSS on its own, but not for the property this app feeds it into.
    (user / "clash.toml").write_text(VARS.format(name="clash", key="my-colour", value="bold"))
    app = StrictApp(user_dir=user)
    async with app.run_test() as pilot:
        assert theme_problem(app, "fine") is None and theme_problem(app, "qwen-dark") is None
        problem = theme_problem(app, "clash")
        assert problem is not None and "clash.toml" in problem and "\n" not in problem
        missing = theme_problem(app, "gone")
        assert missing is not None and "no theme 'gone'" in missing
        app.theme = "fine"  # the check left the app's stylesheet as it was
        await pilot.pause()
        assert app.current_theme.name == "fine"


@pytest.mark.anyio
@pytest.mark.parametrize("remembered", ["clash", "gone"])
async def test_a_remembered_theme_that_is_now_bad_or_gone_falls_back_to_the_default(
    tmp_path: Path, remembered: str
) -> None:
    user = tmp_path / "themes"
    user.mkdir()
    (user / "clash.toml").write_text(VARS.format(name="clash", key="my-colour", value="bold"))
    app = StrictApp(user_dir=user)
    async with app.run_test() as pilot:
        name, warning = start_theme(app, remembered, "qwen-light")
        assert name == "qwen-light"
        assert warning is not None and remembered in warning and "qwen-light" in warning
        app.theme = name
        await pilot.pause()
        assert app.current_theme.name == "qwen-light"
        assert start_theme(app, "qwen-dark", "qwen-light") == ("qwen-dark", None)
