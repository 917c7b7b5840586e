"""The key footer of the chat screen: a key that does not fit whole is left out, so a narrow
terminal shows fewer keys rather than one cut mid-word (F1 lists them all)."""

from __future__ import annotations

from textual.widgets import Footer


class ChatFooter(Footer):
    async def recompose(self) -> None:
        await super().recompose()
        self.call_after_refresh(self.leave_out_what_does_not_fit)

    def on_resize(self) -> None:
        # The keys left out at the old width may fit now: start from all of them again.
        self.call_after_refresh(self.recompose)

    def leave_out_what_does_not_fit(self, tries: int = 10) -> None:
        keys = [key for key in self.query("FooterKey") if key.display]
        if any(not key.virtual_region.width for key in keys) and tries:
            # Not laid out yet (a busy event loop): measure after the next refresh.
            self.call_after_refresh(self.leave_out_what_does_not_fit, tries - 1)
            return
        width = self.scrollable_content_region.width
        for key in keys:
            if key.virtual_region_with_margin.right > width:
                key.display = False
