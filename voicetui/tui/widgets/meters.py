"""Level meters for the microphone and the speaker (polled, never pushed)."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

FLOOR_DB = -60.0
MID_DB = -18.0
HIGH_DB = -6.0


class LevelMeter(Widget):
    """A one-line bar meter: ``mic ▕██████░░░░░░▏ -23 dB``.

    The owner polls the engine's cheap level properties a dozen times a second and sets
    :attr:`level_dbfs`; values are rounded to whole dB so an idle meter never repaints.
    """

    COMPONENT_CLASSES = {
        "meter--label",
        "meter--low",
        "meter--mid",
        "meter--high",
        "meter--empty",
        "meter--value",
    }
    level_dbfs: reactive[float] = reactive(FLOOR_DB)
    muted: reactive[bool] = reactive(False)

    def __init__(self, label: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.label = label

    def set_level(self, dbfs: float) -> None:
        """Set the level, clamped to the floor and rounded (no repaint when unchanged)."""
        self.level_dbfs = float(round(max(FLOOR_DB, min(0.0, dbfs))))

    def render(self) -> Text:
        style = self.get_component_rich_style
        value = "muted" if self.muted else f"{self.level_dbfs:>4.0f} dB"
        bar_width = max(4, self.size.width - len(self.label) - len(value) - 4)
        fraction = 0.0 if self.muted else (self.level_dbfs - FLOOR_DB) / -FLOOR_DB
        filled = round(bar_width * max(0.0, min(1.0, fraction)))
        mid_at = round(bar_width * (MID_DB - FLOOR_DB) / -FLOOR_DB)
        high_at = round(bar_width * (HIGH_DB - FLOOR_DB) / -FLOOR_DB)
        text = Text(no_wrap=True, overflow="crop")
        text.append(f"{self.label} ", style("meter--label"))
        # one run per colour (styles looked up once): this repaints a dozen times a second
        low = min(filled, mid_at)
        mid = max(0, min(filled, high_at) - mid_at)
        high = max(0, filled - high_at)
        text.append("█" * low, style("meter--low"))
        text.append("█" * mid, style("meter--mid"))
        text.append("█" * high, style("meter--high"))
        text.append("░" * (bar_width - filled), style("meter--empty"))
        text.append(f" {value}", style("meter--value"))
        return text
