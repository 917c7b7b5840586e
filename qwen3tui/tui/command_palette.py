"""The command palette's qwen3tui commands: the slash commands that need no typed argument."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .slash_commands import palette_entries

__all__ = ["SlashCommandProvider", "palette_entries"]


class SlashCommandProvider(Provider):
    async def discover(self) -> Hits:
        for title, text, help_text in palette_entries():
            yield DiscoveryHit(title, partial(self._run, text), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, text, help_text in palette_entries():
            score = max(matcher.match(title), matcher.match(help_text) * 0.5)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, text), help=help_text)

    def _run(self, text: str) -> None:
        run = getattr(self.app, "run_slash", None)
        if run is not None:
            run(text)
