"""The last turn's latency waterfall: end of speech -> transcript -> text -> audio."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from voicetui.engine.events import TurnLatency

STAGES = (
    ("final_transcript_ms", "transcript", "waterfall--transcript"),
    ("first_text_ms", "first text", "waterfall--text"),
    ("first_audio_ms", "first audio", "waterfall--audio"),
)


class LatencyWaterfall(Widget):
    """Three stacked bars, each from the end of the user's speech to one milestone."""

    COMPONENT_CLASSES = {
        "waterfall--label",
        "waterfall--transcript",
        "waterfall--text",
        "waterfall--audio",
        "waterfall--value",
        "waterfall--none",
    }
    latency: reactive[TurnLatency | None] = reactive(None, layout=False)

    def render(self) -> Text:
        style = self.get_component_rich_style
        text = Text(no_wrap=True, overflow="crop")
        lat = self.latency
        # says what it measures: every bar starts where the user stopped speaking
        title = Text("latency from end of your speech", style("waterfall--label"), no_wrap=True)
        if lat is None:
            text.append("no turn yet", style("waterfall--none"))
            return Text("\n").join([title, text])
        values = [getattr(lat, attr) for attr, _, _ in STAGES]
        known = [v for v in values if v is not None]
        scale_ms = max(known) if known else 1.0
        bar_width = max(4, self.size.width - 24)
        lines = [title]
        for (_, label, cls), value in zip(STAGES, values, strict=True):
            line = Text(no_wrap=True, overflow="crop")
            line.append(f"{label:>11} ", style("waterfall--label"))
            if value is None:
                line.append("—", style("waterfall--none"))
            else:
                cells = max(1, round(bar_width * value / scale_ms)) if scale_ms > 0 else 1
                line.append("▇" * cells, style(cls))
                line.append(f" {value:,.0f} ms", style("waterfall--value"))
            lines.append(line)
        return Text("\n").join(lines)
