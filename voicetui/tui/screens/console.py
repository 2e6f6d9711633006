"""The console: transcript, live status and the talk keys."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class ConsoleScreen(Screen[None]):
    """Main screen of the app."""

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static("voicetui — starting…", id="transcript")
        yield Footer()
