"""Textual messages carrying engine events and background results to the screens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.message import Message

from voicetui.engine.events import Event

if TYPE_CHECKING:
    from voicetui.health import HealthResult


class EngineEvent(Message):
    """One engine event, delivered on the UI's message queue in emission order."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class SessionStopped(Message):
    """The engine's run loop returned (or failed to start)."""

    def __init__(self, reason: str, *, error: bool = False) -> None:
        super().__init__()
        self.reason = reason
        self.error = error


class HealthUpdated(Message):
    """Fresh health results for one or more providers."""

    def __init__(self, results: Sequence[HealthResult]) -> None:
        super().__init__()
        self.results = list(results)


class ConfigChanged(Message):
    """The config was saved; screens showing it refresh."""
