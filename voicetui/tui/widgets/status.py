"""Always-visible status pieces of the console: state, turn mode, session line, timer, usage,
health, latency.

Each piece knows a few forms of its text, longest first, and shows the longest one that fits
its width: the console reflows by width without clipping a word in half. When even the
shortest form does not fit, it ends in ``…`` so a cut is never silent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from rich.cells import cell_len
from textual import events
from textual.widgets import Static

from voicetui.engine.events import State

if TYPE_CHECKING:
    from voicetui.engine.events import TurnLatency
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


def fit(width: int, forms: Sequence[str]) -> str:
    """The first (longest) of ``forms`` that fits ``width`` cells; else the last one cut
    with ``…`` (never silently)."""
    if not forms:
        return ""
    for form in forms:
        if cell_len(form) <= width:
            return form
    last = forms[-1]
    if width <= 1:
        return "…" if width == 1 else ""
    out = ""
    for char in last:
        if cell_len(out + char) > width - 1:
            break
        out += char
    return out + "…"


class FittedStatic(Static):
    """A one-line label that picks the longest of its :meth:`forms` fitting its width."""

    def forms(self) -> Sequence[str]:
        """The text in decreasing length (override)."""
        return ()

    def refit(self) -> None:
        """Re-pick the form (after the data or the width changed)."""
        width = self.content_region.width or self.size.width
        forms = self.forms()
        if forms:
            self.update(fit(width, forms) if width > 0 else forms[0])

    def on_resize(self, event: events.Resize) -> None:
        self.refit()


class StateBadge(Static):
    """The conversation state as a coloured badge (colour from the ``-state-*`` class)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("● idle", id=id)
        self.state = State.IDLE

    def set_state(self, state: State, detail: str = "") -> None:
        """Show ``state`` (with an optional short detail, e.g. "muted")."""
        self.remove_class(f"-state-{self.state.value}")
        self.state = state
        self.add_class(f"-state-{state.value}")
        label = STATE_LABELS.get(state, state.value)
        self.update(f"● {label}" + (f" · {detail}" if detail else ""))


class TurnModeBadge(Static):
    """The turn mode, spelled as in the config (``push_to_talk`` / ``server_vad``)."""

    def show(self, turn_mode: str) -> None:
        """Display the session's turn mode."""
        self.update(turn_mode)


class SessionLine(FittedStatic):
    """provider · model · voice name (the voice falls off first when space is short)."""

    def __init__(self, content: str = "", *, id: str | None = None) -> None:
        super().__init__(content, id=id)
        self.provider = ""
        self.model = ""
        self.voice = ""
        self.voice_name = ""
        self.note = content  # "connecting…", "not connected: …" (shown after the provider)

    def show(self, provider: str, model: str, voice: str, voice_name: str = "") -> None:
        """Display the live session's provider, model and voice (by name when known)."""
        self.provider, self.model, self.voice = provider, model, voice
        self.voice_name = voice_name or voice
        self.note = ""
        self.refit()

    def set_voice_name(self, name: str) -> None:
        """The voice's display name arrived (voices load after the session starts)."""
        self.voice_name = name
        self.refit()

    def show_note(self, provider: str, note: str) -> None:
        """No live session: the provider and what is happening (connecting, why not)."""
        self.provider, self.note = provider, note
        self.model = self.voice = self.voice_name = ""
        self.refit()

    def forms(self) -> Sequence[str]:
        if self.note or not self.model:
            return [
                " · ".join(p for p in (self.provider, self.note) if p),
                self.note or self.provider,
            ]
        return [
            f"{self.provider} · {self.model} · {self.voice_name}",
            f"{self.provider} · {self.model}",
            self.provider,
        ]


def format_clock(seconds: float) -> str:
    """``mm:ss`` (``h:mm:ss`` past an hour)."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class SessionTimer(FittedStatic):
    """Elapsed session time against ``maxSessionDurationSeconds``."""

    def __init__(self, content: str = "", *, id: str | None = None) -> None:
        super().__init__(content, id=id)
        self._forms: list[str] = [content]

    def show(self, elapsed_s: float, max_s: float) -> None:
        """Update the timer; turns to a warning past 90 % of the limit."""
        self.set_class(max_s > 0 and elapsed_s >= 0.9 * max_s, "-warning")
        limit = format_clock(max_s) if max_s > 0 else "∞"
        now = format_clock(elapsed_s)
        self._forms = [f"session {now} / {limit}", f"{now} / {limit}", f"{now}/{limit}"]
        self.refit()

    def forms(self) -> Sequence[str]:
        return self._forms


class UsageLine(FittedStatic):
    """Usage today for the active provider."""

    def __init__(self, content: str = "", *, id: str | None = None) -> None:
        super().__init__(content, id=id)
        self._forms: list[str] = [content]

    def show(self, input_tokens: int, output_tokens: int, audio_s: float, requests: int) -> None:
        """Display today's totals."""
        tokens = f"{input_tokens + output_tokens:,} tok"
        self._forms = [
            f"today {tokens} · {audio_s:,.1f} s audio · {requests:,} req",
            f"today {tokens} · {audio_s:,.0f} s audio",
            f"today {tokens}",
            tokens,
        ]
        self.refit()

    def forms(self) -> Sequence[str]:
        return self._forms


class HealthLine(FittedStatic):
    """One word per provider: ``health openai ok · mistral no key``; when space is short,
    the problems first (a problem never falls off before an ``ok``)."""

    def __init__(self, content: str = "", *, id: str | None = None) -> None:
        super().__init__(content, id=id)
        self._forms: list[str] = [content]

    def show(self, results: Iterable[HealthResult], *, checking: bool = False) -> None:
        """Summarise health results; warning colour when any provider is not ok."""
        parts: list[str] = []
        bad_parts: list[str] = []
        for result in results:
            short = result.provider.rsplit(".", 1)[-1]
            status = str(result.status).replace("_", " ")
            parts.append(f"{short} {status}")
            if status != "ok":
                bad_parts.append(f"{short} {status}")
        self.set_class(bool(bad_parts), "-bad")
        if checking or not parts:
            self._forms = ["health checking…", "checking…"]
        else:
            joined = " · ".join(parts)
            self._forms = [f"health {joined}", joined]
            if bad_parts:
                bad = " · ".join(bad_parts)
                self._forms += [f"health: {bad}", bad, f"{len(bad_parts)} problem(s)"]
            else:
                self._forms += ["health ok", "ok"]
        self.refit()

    def forms(self) -> Sequence[str]:
        return self._forms


class LatencySummary(FittedStatic):
    """The last turn's time to first audio, where the waterfall does not fit."""

    def __init__(self, content: str = "", *, id: str | None = None) -> None:
        super().__init__(content, id=id)
        self._forms: list[str] = [content]

    def show(self, latency: TurnLatency | None) -> None:
        """Display (or clear) the last turn's latency."""
        value = None if latency is None else latency.first_audio_ms
        if value is None:
            self._forms = ["latency —", "—"]
        else:
            self._forms = [f"first audio {value:,.0f} ms", f"reply {value / 1000:.2f} s"]
        self.refit()

    def forms(self) -> Sequence[str]:
        return self._forms
