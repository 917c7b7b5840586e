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
    text = "".join(f"## Part {i}\n\n" + "Some *words* here. " * 30 + "\n\n"
                   "```\ncode\n\nmore code\n```\n\n" for i in range(12))
    app = Host()
    async with app.run_test() as pilot:
        for i in range(0, len(text), 7):
            await app.doc.append(text[i:i + 7])
        await app.doc.finish()
        await pilot.pause()
        assert app.doc.source == text
        assert app.doc.chunk_count > 3
        # Each chunk parsed on its own still shows every code block whole.
        assert len(app.doc.query("MarkdownFence")) == 12


@pytest.mark.anyio
async def test_finished_chunks_are_pinned_and_re_measured_after_a_resize() -> None:
    text = "".join(f"Paragraph {i}: " + "lorem ipsum dolor " * 20 + "\n\n" for i in range(20))
    app = Host()
    async with app.run_test(size=(80, 30)) as pilot:
        for i in range(0, len(text), 50):
            await app.doc.append(text[i:i + 50])
        await app.doc.finish()
        await pilot.pause()
        first = app.doc.query("Markdown").first()
        height_at_80 = first.outer_size.height
        assert str(first.styles.height) == f"{height_at_80}"  # pinned
        await pilot.resize_terminal(40, 30)
        await pilot.pause()
        await pilot.pause()
        assert first.outer_size.height > height_at_80  # narrower: re-measured, taller
        assert str(first.styles.height) == f"{first.outer_size.height}"
