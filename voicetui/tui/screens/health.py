"""Health screen: every provider's check with status, latency and detail."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Static

from voicetui.tui.messages import HealthUpdated
from voicetui.tui.screens.base import VoiceScreen

if TYPE_CHECKING:
    pass

WHAT_TO_DO = {
    "ok": "",
    "no_key": "press k to add a key",
    "unauthorized": "the key was rejected: press k to set or rotate it",
    "rate_limited": "wait a moment, or check your plan's limits",
    "unreachable": "check the network or the provider's baseUrl in settings",
    "timeout": "the provider is slow to answer: try again (r)",
    "unavailable": "pick the model or voice the detail names in settings",
    "error": "see the detail; try again (r)",
}


class HealthScreen(VoiceScreen):
    """Provider health: checked at start-up in the background, re-run with ``r``."""

    CSS_PATH = Path(__file__).with_name("health.tcss")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("r", "rerun", "Re-run checks"),
        Binding("k", "keys", "Keys"),
    ]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static("Provider health", classes="screen-title")
        yield Static(
            "One cheap authenticated call per provider (timeout from its spec).",
            classes="hint",
        )
        yield DataTable(id="health-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="health-state", classes="hint")
        yield Static("", id="health-details")
        yield Footer()

    def on_mount(self) -> None:
        from voicetui.specs.registry import registry

        table = self.query_one(DataTable)
        # Short columns only: the detail and what to do wrap in the block below the table, so
        # nothing is clipped at any width.
        table.add_column("provider", key="provider")
        table.add_column("status", key="status")
        table.add_column("latency", key="latency")
        for spec in registry().all():
            table.add_row(spec.meta.title, "not checked yet", "", key=spec.meta.key)
        self._fill()
        if not self.vapp.health:
            self.action_rerun()

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        variables = self.app.theme_variables
        for key, result in self.vapp.health.items():
            status = str(result.status)
            # the word carries the meaning; the theme's success/error colour is a hint only
            colour = variables.get("success" if status == "ok" else "error", "")
            style = f"bold {colour}".strip()
            latency = f"{result.latency_ms:.0f} ms" if result.latency_ms is not None else "—"
            try:
                table.update_cell(
                    key, "status", Text(status.replace("_", " "), style=style), update_width=True
                )
                table.update_cell(key, "latency", latency, update_width=True)
            except Exception:  # a provider not in the registry: ignore
                continue
        details = self.query_one("#health-details", Static)
        details.update(
            "\n\n".join(
                f"{key.rsplit('.', 1)[-1]}: {r.status} — {r.detail}"
                + (f"\n  → {WHAT_TO_DO[str(r.status)]}" if WHAT_TO_DO.get(str(r.status)) else "")
                for key, r in sorted(self.vapp.health.items())
            )
        )
        details.display = bool(self.vapp.health)

    def action_rerun(self) -> None:
        """Check every provider again; the rows say "checking…" until the results land."""
        self.query_one("#health-state", Static).update("checking…")
        table = self.query_one(DataTable)
        for row_key in list(table.rows):
            table.update_cell(row_key, "status", "checking…")
            table.update_cell(row_key, "latency", "")
        self.vapp.run_health_checks()

    @on(HealthUpdated)
    def _on_health(self, message: HealthUpdated) -> None:
        self._fill()
        bad = [r.provider for r in self.vapp.health.values() if str(r.status) != "ok"]
        self.query_one("#health-state", Static).update(
            "all providers ok" if not bad else f"{len(bad)} provider(s) need attention"
        )

    def action_back(self) -> None:
        self.dismiss(None)

    def action_keys(self) -> None:
        self.vapp.open_keys()
