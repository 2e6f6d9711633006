"""A session restart in the console (settings saved while live) keeps the earlier turns as they
were and appends the new ones: turn ids are scoped to their session, so ``u1`` of the second
session never lands on the first session's rows. Real app, real SDK, the Mistral emulator and
the virtual devices, as in ``test_tui_flows``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_tui_flows import push_to_talk_turn, transcript_text, wait_live
from test_tui_support import MISTRAL, send_keys, speech_wav, wait_until, write_config
from textual.widgets import Input

from voicetui.testing.emulators.common import Script, Turn
from voicetui.tui.app import VoiceTuiApp
from voicetui.tui.screens.settings import SettingsScreen
from voicetui.tui.widgets.transcript import TranscriptView

pytestmark = [pytest.mark.audio, pytest.mark.asyncio, pytest.mark.timeout(120)]


async def test_turns_after_a_session_restart_append(
    mistral_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audio_sandbox: Path
) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", "mistral-test-tui-000000000000")
    mistral_emulator.script = Script(
        turns=[
            Turn(user_text="what is the weather", reply="Sunny in the first session."),
            Turn(user_text="and tomorrow", reply="Rain in the second session."),
        ]
    )
    cfg = write_config(
        tmp_path / "config.toml",
        provider=MISTRAL,
        providers={
            MISTRAL: {"baseUrl": mistral_emulator.base_url, "turnDetection": "push_to_talk"}
        },
    )
    first_clip = speech_wav(tmp_path / "first.wav", "what is the weather")
    second_clip = speech_wav(tmp_path / "second.wav", "and tomorrow")
    app = VoiceTuiApp(cfg, health_on_start=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_live(app)
        view = app.console_screen.query_one(TranscriptView)
        await push_to_talk_turn(pilot, app, first_clip, "Sunny in the first session", limit=40)
        # the diarized second pass relabels the user's line; wait for the turn to settle
        await wait_until(
            lambda: any("speaker_1" in line and "what is the weather" in line
                        for line in view.plain_lines()),
            15,
            "the first turn's relabel",
        )  # fmt: skip
        before = view.plain_lines()
        first_session = app.session_id

        # a saved setting restarts the live session; the transcript stays
        await pilot.press("s")
        await wait_until(lambda: isinstance(app.screen, SettingsScreen), 5, "settings")
        app.screen.query_one("#max-duration", Input).value = "900"
        await send_keys(app, "ctrl+s")
        await wait_until(lambda: not isinstance(app.screen, SettingsScreen), 10, "saved")
        await wait_until(
            lambda: app.session_id not in (None, first_session), 20, "the restarted session"
        )
        await wait_live(app, 20)

        await push_to_talk_turn(pilot, app, second_clip, "Rain in the second session", limit=40)
        await wait_until(
            lambda: any("speaker_1" in line and "and tomorrow" in line
                        for line in view.plain_lines()),
            15,
            "the second turn's relabel",
        )  # fmt: skip
        after = view.plain_lines()
        assert after[: len(before)] == before, transcript_text(app)
        added = after[len(before) :]
        assert any("and tomorrow" in line for line in added), added
        assert any("Rain in the second session" in line for line in added), added
        await pilot.press("q")
