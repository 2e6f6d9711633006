"""The voicetui Textual application: entry point ``run`` and the App class."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from voicetui.tui.screens.console import ConsoleScreen


class VoiceTuiApp(App[int]):
    """Full-screen voice console."""

    TITLE = "voicetui"
    CSS_PATH = "app.tcss"
    # The console has Inputs on other screens; never let one steal Space / the talk key.
    AUTO_FOCUS = None
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True)]

    def __init__(self, config_path: Path | None = None) -> None:
        super().__init__()
        self.config_path = config_path

    def get_default_screen(self) -> Screen[None]:
        """The console is the home screen."""
        return ConsoleScreen()


def run(config_path: Path | None) -> int:
    """Launch the full-screen console; returns the process exit code."""
    app = VoiceTuiApp(config_path)
    result = app.run()
    return int(result or app.return_code or 0)
