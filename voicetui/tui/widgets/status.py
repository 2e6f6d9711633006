"""Always-visible status pieces of the console: state, session line, timer, usage, health."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual.widgets import Static

from voicetui.engine.events import State

if TYPE_CHECKING:
    from voicetui.health import HealthResult

STATE_LABELS: dict[State, str] = {
    State.IDLE: "idle",
    State.CONNECTING: "connecting…",
    State.LISTENING: "listening",
    State.USER_SPEAKING: "you're speaking",
    State.THINKING: "thinking…",
    State.ASSISTANT_SPEAKING: "speaking",
    State.INTERRUPTED: "interrupted",
    State.RECONNECTING: "reconnecting…",
    State.ENDED: "ended",
    State.ERROR: "error",
}


class StateBadge(Static):
    """The conversation state as a coloured badge (colour from the ``-state-*`` class)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("● idle", id=id)
        self.state = State.IDLE

    def set_state(self, state: State, detail: str = "") -> None:
        """Show ``state`` (with an optional short detail, e.g. "talk key on")."""
        self.remove_class(f"-state-{self.state.value}")
        self.state = state
        self.add_class(f"-state-{state.value}")
        label = STATE_LABELS.get(state, state.value)
        self.update(f"● {label}" + (f" · {detail}" if detail else ""))


class SessionLine(Static):
    """provider · model · voice · turn mode."""

    def show(self, provider: str, model: str, voice: str, turn_mode: str) -> None:
        """Display the live session's settings."""
        self.update(f"{provider} · {model} · {voice} · {turn_mode.replace('_', '-')}")


def format_clock(seconds: float) -> str:
    """``mm:ss`` (``h:mm:ss`` past an hour)."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class SessionTimer(Static):
    """Elapsed session time against ``maxSessionDurationSeconds``."""

    def show(self, elapsed_s: float, max_s: float) -> None:
        """Update the timer; turns to a warning past 90 % of the limit."""
        self.set_class(max_s > 0 and elapsed_s >= 0.9 * max_s, "-warning")
        limit = format_clock(max_s) if max_s > 0 else "∞"
        self.update(f"session {format_clock(elapsed_s)} / {limit}")


class UsageLine(Static):
    """Usage today for the active provider."""

    def show(self, input_tokens: int, output_tokens: int, audio_s: float, requests: int) -> None:
        """Display today's totals."""
        self.update(
            f"today {input_tokens + output_tokens:,} tok"
            f" · {audio_s:,.1f} s audio · {requests:,} req"
        )


class HealthLine(Static):
    """One word per provider: ``health openai ok · mistral no key``."""

    def show(self, results: Iterable[HealthResult]) -> None:
        """Summarise health results; red when any provider is not ok."""
        parts = []
        bad = False
        for result in results:
            short = result.provider.rsplit(".", 1)[-1]
            status = str(result.status).replace("_", " ")
            bad = bad or status != "ok"
            parts.append(f"{short} {status}")
        self.set_class(bad, "-bad")
        self.update("health " + (" · ".join(parts) if parts else "checking…"))
