"""The console's footer: Textual's own, with each key tagged by its action so the stylesheet
can drop the less important keys at narrow widths (Talk and Quit always stay)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey


def action_class(action: str) -> str:
    """The CSS class a footer key gets for ``action`` (``app.quit`` -> ``-act-app-quit``)."""
    return "-act-" + action.replace(".", "-").replace("_", "-")


class ConsoleFooter(Footer):
    """A footer whose keys carry ``-act-<action>`` classes."""

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if isinstance(widget, FooterKey):
                widget.add_class(action_class(widget.action))
            yield widget
