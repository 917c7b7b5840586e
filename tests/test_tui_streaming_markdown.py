"""Long replies stream into Markdown chunks cut at paragraph boundaries, never inside code."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from qwen3tui.tui.widgets.streaming_markdown import StreamingMarkdown, find_cut, split_chunks


def test_a_chunk_ends_after_the_first_blank_line_past_the_limit() -> None:
    text = "a" * 10 + "\n\n" + "b" * 10 + "\n\n" + "c"
    assert find_cut(text, min_chars=5) == 12
    assert find_cut(text, min_chars=13) == 24
    assert find_cut("no blank line here", min_chars=1) == -1


def test_never_inside_a_code_fence() -> None:
    text = "intro\n\n```python\nx = 1\n\ny = 2\n```\n\nafter"
    assert find_cut(text, min_chars=8) == text.index("after")


def test_splitting_keeps_every_character() -> None:
    text = "".join(f"para {i} " + "word " * 40 + "\n\n" for i in range(40))
    chunks = split_chunks(text, min_chars=500)
    assert "".join(chunks) == text
    assert len(chunks) > 5 and all(c.endswith("\n\n") for c in chunks[:-1])


class Host(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.doc = StreamingMarkdown()

    def compose(self) -> ComposeResult:
        yield self.doc


@pytest.mark.anyio
async def test_streamed_text_is_split_into_chunks_and_reads_back_whole() -> None:
    text = "".join(
        f"## Part {i}\n\n" + "Some *words* here. " * 30 + "\n\n```\ncode\n\nmore code\n```\n\n"
        for i in range(12)
    )
    app = Host()
    async with app.run_test() as pilot:
        for i in range(0, len(text), 7):
            await app.doc.append(text[i : i + 7])
        await app.doc.finish()
        await pilot.pause()
        assert app.doc.source == text
        assert app.doc.chunk_count > 3
        # Each chunk parsed on its own still shows every code block whole.
        assert len(app.doc.query("MarkdownFence")) == 12


@pytest.mark.anyio
async def test_finished_chunks_are_pinned_to_their_measured_height_at_each_width() -> None:
    text = "".join(
        f"Paragraph {i}: " + "lorem ipsum dolor " * 20 + "\n\n- a\n- b\n\n" for i in range(20)
    )
    app = Host()

    async def pinned_matches_auto() -> tuple[int, int]:
        first = app.doc.query("Markdown").first()
        pinned = first.styles.height
        assert pinned is not None and pinned.is_cells
        first.styles.height = "auto"  # what would Textual measure by itself?
        await pilot.pause()
        auto = first.outer_size.height
        first.styles.height = pinned
        await pilot.pause()
        return int(pinned.value), auto

    async with app.run_test(size=(80, 30)) as pilot:
        for i in range(0, len(text), 50):
            await app.doc.append(text[i : i + 50])
        await app.doc.finish()
        await pilot.pause()
        assert app.doc.chunk_count > 2
        wide, auto = await pinned_matches_auto()
        assert wide == auto
        await pilot.resize_terminal(40, 30)
        await pilot.pause()
        narrow, auto = await pinned_matches_auto()
        assert narrow == auto > wide  # narrower: re-measured, taller


VARIED = "".join(
    f"# Title {i}\n\nA paragraph with **bold** and a [link](https://x.y).\n"
    "Setext heading\n--------------\n\n"
    "- item one\n- item two\n  continued\n\n"
    "1. first\n2. second\n\n"
    "> a quote\n> over two lines\n\n"
    "| a | b |\n|---|---|\n| 1 | 2 |\n\n"
    "```python\nprint('x')\n\nprint('y')\n```\n\n"
    for i in range(24)
)


def blocks(markdown: object) -> list[tuple[str, str]]:
    return [(type(b).__name__, b.source or "") for b in markdown.children]  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_streamed_chunks_show_what_a_full_parse_shows_at_the_right_height() -> None:
    app = Host()
    async with app.run_test(size=(90, 40)) as pilot:
        # 25 characters an append: each append re-parses the last block where it is made
        # (one per stream update in the app); 5 took 43 s of a 2-core CI run.
        for i in range(0, len(VARIED), 25):
            await app.doc.append(VARIED[i : i + 25])
        await pilot.pause()
        chunks = list(app.doc.query("StreamingMarkdown > Markdown"))
        assert len(chunks) > 2
        for chunk, text in zip(chunks[:-1], app.doc._texts[:-1], strict=True):
            streamed, pinned = blocks(chunk), chunk.styles.height
            chunk.styles.height = "auto"
            await chunk.update(text)  # a full parse of the same text
            await pilot.pause()
            assert blocks(chunk) == streamed
            assert pinned is not None and int(pinned.value) == chunk.outer_size.height
