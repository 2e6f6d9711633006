"""What every voicetui screen shares: the typed app, and worker failures made visible."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from voicetui.tui.app import VoiceTuiApp

log = logging.getLogger("voicetui.tui")


def report_worker_failure(node: Screen[Any], event: Worker.StateChanged) -> None:
    """A failed worker becomes a notification (worker state messages do not bubble)."""
    worker = event.worker
    if event.state != WorkerState.ERROR or worker.error is None:
        return
    from voicetui.tui.app import one_line

    log.error("worker %s failed", worker.name, exc_info=worker.error)
    node.app.notify(
        f"{worker.name or 'background task'}: {one_line(worker.error)}",
        title="Something went wrong",
        severity="error",
        timeout=10,
    )


class VoiceScreen(Screen[None]):
    """Base of the full screens."""

    @property
    def vapp(self) -> VoiceTuiApp:
        """The app, typed."""
        from voicetui.tui.app import VoiceTuiApp

        assert isinstance(self.app, VoiceTuiApp)
        return self.app

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker_failure(self, event)


class VoiceModal(ModalScreen[str | None]):
    """Base of the modal dialogs."""

    @property
    def vapp(self) -> VoiceTuiApp:
        """The app, typed."""
        from voicetui.tui.app import VoiceTuiApp

        assert isinstance(self.app, VoiceTuiApp)
        return self.app

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker_failure(self, event)
