"""Theme picker: moving the highlight previews a theme live; Enter keeps it, Esc reverts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from voicetui.tui.screens.base import VoiceModal

if TYPE_CHECKING:
    pass


class ThemePickerScreen(VoiceModal):
    """Pick a theme with live preview; the choice is saved to the config."""

    CSS_PATH = Path(__file__).with_name("theme_picker.tcss")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self) -> None:
        super().__init__()
        self.original = ""
        self._ours: set[str] = set()
        self._quiet = False

    def compose(self) -> ComposeResult:
        # voicetui's bundled themes first, then the user's, then Textual's built-ins
        sources = self.vapp.theme_load.sources
        ours = sorted(
            (t.name for t in self.vapp.theme_load.themes),
            key=lambda n: (sources.get(n) is not None and "config" in str(sources.get(n)), n),
        )
        self._ours = set(ours)
        builtin = sorted(n for n in self.app.available_themes if n not in ours)
        options: list[Option] = []
        for name in ours:
            source = self.vapp.theme_load.sources.get(name)
            where = "user" if source and "config" in str(source) else "voicetui"
            options.append(Option(f"{name}  ({where})", id=name))
        options += [Option(name, id=name) for name in builtin]
        with Vertical(id="theme-dialog"):
            yield Static("Theme", classes="screen-title")
            yield Static(
                f"now: {self.app.theme} · ↑/↓ preview · Enter keep · Esc revert", classes="hint"
            )
            yield OptionList(*options, id="theme-list")

    def on_mount(self) -> None:
        self.original = self.app.theme
        options = self.query_one(OptionList)
        # The list opens at the top, on voicetui's own themes: the current theme is
        # highlighted when it is one of them, else the first (not previewed until moved).
        start = 0
        if self.original in self._ours:
            start = options.get_option_index(self.original)
        self._quiet = self.original not in self._ours
        options.highlighted = start
        options.scroll_home(animate=False)
        options.focus()

    @on(OptionList.OptionHighlighted)
    def _preview(self, event: OptionList.OptionHighlighted) -> None:
        if self._quiet:
            self._quiet = False  # the opening highlight is not a choice
            return
        if event.option.id and event.option.id != self.app.theme:
            self.app.theme = event.option.id

    @on(OptionList.OptionSelected)
    def _choose(self, event: OptionList.OptionSelected) -> None:
        name = event.option.id
        if name:
            self.vapp.set_theme_and_save(name)
            self.app.notify(f"theme: {name}", timeout=3)
        self.dismiss(name)

    def action_cancel(self) -> None:
        """Put the original theme back."""
        self.app.theme = self.original
        self.dismiss(None)
