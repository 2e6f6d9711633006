"""The Doctor screen (palette entry) shows the same checks as ``voicetui doctor``, live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_tui_support import MISTRAL, OPENAI, wait_until, write_config
from textual.widgets import DataTable, Static

from voicetui.keys import KeyStore
from voicetui.tui.app import VoiceTuiApp
from voicetui.tui.commands import palette_commands
from voicetui.tui.screens.doctor import DoctorScreen

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60), pytest.mark.audio]


async def test_doctor_screen_from_the_palette(
    openai_emulator_thread: Any, mistral_emulator_thread: Any, tmp_path: Path
) -> None:
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={
            OPENAI: {"baseUrl": openai_emulator_thread.base_url},
            MISTRAL: {"baseUrl": mistral_emulator_thread.base_url},
        },
    )
    keys = KeyStore(environ={"OPENAI_API_KEY": "sk-doctor-tui-0123", "MISTRAL_API_KEY": "mk-0123"})
    app = VoiceTuiApp(cfg, autostart=False, health_on_start=False, keys=keys)
    async with app.run_test(size=(120, 40)) as pilot:
        entry = next(c for c in palette_commands(app) if c.title == "Doctor")
        entry.run()
        await wait_until(
            lambda: (
                isinstance(app.screen, DoctorScreen) and bool(app.screen.query("#doctor-state"))
            ),
            5,
            "doctor screen",
        )
        state = app.screen.query_one("#doctor-state", Static)
        verdicts = ("all good", "failed")
        await wait_until(
            lambda: any(v in str(state.content) for v in verdicts), 25, "doctor finished"
        )
        table = app.screen.query_one(DataTable)
        names = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
        assert "openai: handshake" in names and "microphone level" in names
        assert len(names) == 16
        row = names.index("openai: handshake")
        assert str(table.get_row_at(row)[0]) == "ok"
        await pilot.press("escape")
        await wait_until(lambda: not isinstance(app.screen, DoctorScreen), 5, "back")


async def test_palette_and_settings_offer_only_usable_models(
    openai_emulator_thread: Any, tmp_path: Path
) -> None:
    from voicetui.config import usable_models

    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={OPENAI: {"baseUrl": openai_emulator_thread.base_url}},
    )
    app = VoiceTuiApp(cfg, autostart=False, health_on_start=False, keys=KeyStore(environ={}))
    async with app.run_test(size=(120, 40)):
        titles = [c.title for c in palette_commands(app) if c.title.startswith("Model: ")]
        assert titles[0] == "Model: gpt-realtime-2.1 (active)", titles
        assert "Model: gpt-realtime (deprecated: shuts down 2027-01-20)" in titles
        assert not any("gpt-4o-realtime-preview" in t for t in titles)  # retired: not offered
    models = [model for model, _label in usable_models(OPENAI)]
    assert models[0] == "gpt-realtime-2.1" and "gpt-4o-realtime-preview" not in models
