"""Issue 14's feedback points that need a live session (OpenAI emulator, virtual devices):
muted Space says muted and sends nothing, the mic test never reaches the session, and a
session ends with a true reason ("new conversation", "settings changed")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_tui_flows import openai_options, wait_live
from test_tui_support import OPENAI, send_keys, wait_until, write_config
from textual.widgets import Button

from voicetui.engine.transcript import TranscriptStore
from voicetui.tui.app import VoiceTuiApp
from voicetui.tui.screens.settings import SettingsScreen

pytestmark = [pytest.mark.audio, pytest.mark.asyncio, pytest.mark.timeout(90)]


def _ended_reason(session_id: str) -> str:
    store = TranscriptStore()
    store.wait()
    ended = [e for e in store.load(session_id) if e["type"] == "SessionEnded"]
    return str(ended[-1]["reason"]) if ended else ""


async def test_muted_space_mic_test_and_session_end_reasons(
    openai_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audio_sandbox: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-test-0001")
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={OPENAI: openai_options(openai_emulator, turnDetection="push_to_talk")},
    )
    app = VoiceTuiApp(cfg, health_on_start=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_live(app)
        engine = app.engine
        assert engine is not None
        # muted + Space: said on screen, and no (silent) turn starts
        await send_keys(app, "m")
        await wait_until(lambda: engine.muted, 5, "muted")
        await send_keys(app, "space")
        await wait_until(
            lambda: any("muted — press m" in n.message for n in app._notifications), 5, "notice"
        )
        assert not engine.talking
        await send_keys(app, "m")
        await wait_until(lambda: not engine.muted, 5, "unmuted")

        # Test mic in Settings: its own stream; the session's microphone is muted meanwhile
        await send_keys(app, "s")
        await wait_until(lambda: isinstance(app.screen, SettingsScreen), 5, "settings")
        await pilot.pause()
        app.screen.query_one("#test-mic", Button).press()
        await wait_until(lambda: engine.muted, 5, "session mic paused for the test")
        app.screen.query_one("#test-mic", Button).press()
        await wait_until(lambda: not engine.muted, 5, "session mic back after the test")
        await send_keys(app, "escape")
        await wait_until(lambda: not isinstance(app.screen, SettingsScreen), 5, "back")

        # `n`: the old session's last word is "new conversation", not "app closed"
        first = app.session_id
        assert first is not None
        await send_keys(app, "n")
        await wait_until(lambda: app.session_id not in (None, first), 15, "a new session")
        await wait_live(app)
        assert _ended_reason(first) == "new conversation"

        # a provider setting saved while live: "settings changed"
        second = app.session_id
        assert second is not None
        app.update_provider_settings(OPENAI, {"defaultVoice": "shimmer"})
        await wait_until(lambda: app.session_id not in (None, second), 15, "restarted")
        await wait_live(app)
        assert _ended_reason(second) == "settings changed"
        await pilot.press("q")
    assert app.return_code == 0
