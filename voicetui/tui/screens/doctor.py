"""Doctor screen: the same checks as ``voicetui doctor``, filled in live as each finishes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Static

from voicetui.tui.screens.base import VoiceScreen

if TYPE_CHECKING:
    from voicetui.doctor import Check

STATUS_COLOUR = {"ok": "success", "warn": "warning", "fail": "error", "skip": "foreground-muted"}


class DoctorScreen(VoiceScreen):
    """Everything a conversation needs, checked in the background; ``r`` runs it again."""

    CSS_PATH = Path(__file__).with_name("doctor.tcss")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("r", "rerun", "Run again"),
    ]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static("Doctor", classes="screen-title")
        yield Static(
            "Devices, microphone, keyring, keys, models, voices and a realtime handshake"
            " per provider (speak during the 2-second microphone check).",
            classes="hint",
        )
        yield DataTable(id="doctor-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="doctor-state", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("status", key="status", width=6)
        table.add_column("check", key="name", width=22)
        # the detail wraps inside the screen's width instead of running off its edge
        table.add_column("detail", key="detail", width=self._detail_width())
        self.action_rerun()

    def _detail_width(self) -> int:
        # table margins (2 + 2), the two fixed columns, one cell padding each side per column
        return max(20, self.app.size.width - 4 - 6 - 22 - 3 * 2)

    def action_rerun(self) -> None:
        """Clear the table and run every check again (in a thread: keyring and audio block)."""
        self.query_one(DataTable).clear()
        self.query_one("#doctor-state", Static).update("checking…")
        self.run_worker(self._run, name="doctor", group="doctor", exclusive=True, thread=True)

    def _run(self) -> None:
        from voicetui.doctor import DoctorContext, passed, run_checks

        ctx = DoctorContext(config=self.vapp.config, keys=self.vapp.keys)

        def arrived(group: list[Check]) -> None:
            self.app.call_from_thread(self._add, group)

        checks = asyncio.run(run_checks(ctx, on_result=arrived))
        failed = sum(c.status == "fail" for c in checks)
        verdict = "all good" if passed(checks) else f"{failed} check(s) failed"
        self.app.call_from_thread(self.query_one("#doctor-state", Static).update, verdict)

    def _add(self, group: list[Check]) -> None:
        table = self.query_one(DataTable)
        variables = self.app.theme_variables
        for check in group:
            colour = variables.get(STATUS_COLOUR[check.status], "")
            status = Text(check.status, style=f"bold {colour}".strip())
            table.add_row(status, check.name, Text(check.detail), height=None)

    def action_back(self) -> None:
        self.dismiss(None)
