"""Markdown that streams in, kept fast for long replies by splitting it into chunks.

One Textual `Markdown` widget re-arranges all of its blocks whenever it grows, so a
4,000-token reply gets slower with every token. Here the text goes to the last of a series
of `Markdown` chunks (`Markdown.append`); once a chunk holds `CHUNK_CHARS` characters,
the next paragraph boundary (a blank line outside a code fence) closes it and a new chunk
starts. A closed chunk keeps what streaming built (an append re-parses from the last
top-level block, so that equals a full parse of the chunk); `finish` fully re-renders the
last chunk once. Each append is awaited where it is made, not handed to a `MarkdownStream`
task: the caller's batch (one stream update: this text, the pane's title, the status line)
then costs one re-layout and one paint instead of two. A finished chunk never changes
again, so once it is laid out its height is pinned: re-layouts while the reply streams then
skip measuring its contents (at the width it was measured; a resize unpins and re-measures).
"""

from __future__ import annotations

import asyncio
import re
import time

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Markdown

CHUNK_CHARS = 1500
_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)


def find_cut(text: str, min_chars: int = CHUNK_CHARS) -> int:
    """Where to end a chunk: just after the first blank line at or past `min_chars` that is
    not inside a code fence; -1 when there is none yet."""
    start = min_chars
    while True:
        pos = text.find("\n\n", start)
        if pos < 0:
            return -1
        cut = pos + 2
        if len(_FENCE.findall(text, 0, cut)) % 2 == 0:
            return cut
        start = pos + 1


def split_chunks(text: str, min_chars: int = CHUNK_CHARS) -> list[str]:
    """Cut a whole text the way streaming would (used for saved replies)."""
    chunks: list[str] = []
    while True:
        cut = find_cut(text, min_chars)
        if cut < 0 or cut >= len(text):
            chunks.append(text)
            return chunks
        chunks.append(text[:cut])
        text = text[cut:]


class StreamingMarkdown(Vertical):
    """A Markdown document that grows by `append` and ends with `finish`."""

    DEFAULT_CSS = """
    StreamingMarkdown { height: auto; }
    StreamingMarkdown > Markdown { margin: 0; padding: 0; }
    """

    def __init__(self, text: str = "", *, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self._texts = split_chunks(text)
        self._chunks = [Markdown(t) for t in self._texts]
        self._streamed = False  # the last chunk was appended to since it was last fully parsed
        self._pinned: dict[int, int] = {}  # id(chunk) -> width its height was pinned at

    def compose(self) -> ComposeResult:
        yield from self._chunks

    @property
    def source(self) -> str:
        return "".join(self._texts)

    @property
    def chunk_count(self) -> int:
        return len(self._chunks)

    async def append(self, text: str) -> None:
        if not text:
            return
        combined = self._texts[-1] + text
        cut = find_cut(combined)
        if cut < 0 or cut >= len(combined):
            self._texts[-1] = combined
            await self._append_to_last(text)
            return
        # Close this chunk at the paragraph boundary, then continue in a new one.
        done = combined[:cut]
        await self._append_to_last(done[len(self._texts[-1]) :])
        self._texts[-1] = done
        self._streamed = False  # no full re-render here: it would stall the stream
        self._pin(self._chunks[-1])
        chunk = Markdown("")
        self._chunks.append(chunk)
        self._texts.append("")
        await self.mount(chunk)
        await self.append(combined[cut:])

    async def finish(self) -> None:
        """Render the last chunk in full once (appends re-parse only its tail)."""
        if self._streamed:
            self._streamed = False
            await self._chunks[-1].update(self._texts[-1])

    def _pin(self, chunk: Markdown) -> None:
        """Fix a finished chunk's height to what its contents measure at the current width."""
        width = self.content_size.width
        if not chunk.is_mounted or width <= 0:
            return
        # Measured from the chunk's blocks, not read off the last layout (which may be stale).
        height = chunk.get_content_height(self.content_size, self.app.size, width)
        chunk.styles.height = height + chunk.gutter.height
        self._pinned[id(chunk)] = width

    def on_resize(self) -> None:
        width = self.content_size.width
        for chunk in self._chunks:
            pinned_width = self._pinned.get(id(chunk))
            if pinned_width is not None and pinned_width != width:
                self._pin(chunk)

    async def _append_to_last(self, text: str) -> None:
        if not text:
            return
        chunk = self._chunks[-1]
        if not chunk.is_mounted:
            # A Markdown widget renders its initial text when mounted; text appended before
            # that would be wiped by it, so wait (briefly) for the mount to finish.
            deadline = time.monotonic() + 2.0
            while not chunk.is_mounted and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
        self._streamed = True
        await chunk.append(text)
