"""Keys, settings and palette flows: rotation with rollback, validation, device tests."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_tui_support import (
    OPENAI,
    SpeakerRecorder,
    play_into_mic,
    speech_wav,
    wait_until,
    write_config,
)
from textual.widgets import Button, Input, Select

from voicetui.config import load_config
from voicetui.tui.app import VoiceTuiApp
from voicetui.tui.screens.keys import KeysScreen
from voicetui.tui.screens.settings import SettingsScreen
from voicetui.tui.widgets.key_panel import KeyPanel
from voicetui.tui.widgets.meters import LevelMeter

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.keyring
async def test_rotate_rolls_back_when_the_new_key_fails(
    openai_emulator: Any, tmp_path: Path
) -> None:
    if os.environ.get("KEYRING_SANDBOX") != "1":
        pytest.fail("needs the real Secret Service: run under tools/keyring-sandbox.sh")
    from voicetui.keys import KeyStore

    store = KeyStore(service=f"voicetui-test-{uuid.uuid4().hex[:8]}", environ={})
    store.set(OPENAI, "sk-old-good-key-0001")
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={OPENAI: {"baseUrl": openai_emulator.base_url}},
    )
    app = VoiceTuiApp(cfg, autostart=False, health_on_start=False, keys=store)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            app.open_keys(OPENAI)
            await wait_until(lambda: isinstance(app.screen, KeysScreen), 5, "keys screen")
            await pilot.pause()
            panel = next(p for p in app.screen.query(KeyPanel) if p.spec_key == OPENAI)
            result = panel.query_one(".key-result")
            await wait_until(lambda: "keyring" in str(panel.query_one(".key-source").content))
            assert "****0001" in str(panel.query_one(".key-source").content)

            # the provider rejects the new key: the old one is put back
            openai_emulator.faults.http_status = 401
            openai_emulator.faults.http_status_count = 100
            panel.query_one(Input).value = "sk-new-bad-key-0002"
            panel.query_one(".key-rotate", Button).press()
            await wait_until(lambda: "not rotated" in str(result.content), 15, "rollback")
            assert store.get_stored(OPENAI) == "sk-old-good-key-0001"
            assert "unauthorized" in str(result.content)
            assert panel.query_one(Input).value == ""  # never left on screen

            # a working key is kept
            openai_emulator.faults.http_status = None
            openai_emulator.faults.http_status_count = 0
            panel.query_one(Input).value = "sk-new-good-key-0003"
            panel.query_one(".key-rotate", Button).press()
            await wait_until(lambda: "rotated: the new key works" in str(result.content), 15)
            assert store.get_stored(OPENAI) == "sk-new-good-key-0003"
            assert "****0003" in str(panel.query_one(".key-source").content)

            # test and delete
            panel.query_one(".key-test", Button).press()
            await wait_until(lambda: str(result.content).startswith("ok"), 15, "test result")
            panel.query_one(".key-delete", Button).press()
            await wait_until(lambda: "deleted" in str(result.content), 10, "delete")
            assert store.get_stored(OPENAI) is None
            assert "none" in str(panel.query_one(".key-source").content)
    finally:
        store.delete(OPENAI)


async def test_settings_validation_message_then_save(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", provider=OPENAI, providers={})
    before = digest(cfg)
    app = VoiceTuiApp(cfg, autostart=False, health_on_start=False, frozen=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        await wait_until(lambda: isinstance(app.screen, SettingsScreen), 5, "settings")
        await pilot.pause()
        screen = app.screen
        screen.query_one("#max-duration", Input).value = "-5"
        await pilot.press("ctrl+s")
        await pilot.pause()
        error = str(screen.query_one("#settings-error").content)
        assert "maxSessionDurationSeconds" in error and str(cfg) in error, error
        assert digest(cfg) == before  # a refused value never reaches the file
        assert isinstance(app.screen, SettingsScreen)

        screen.query_one("#max-duration", Input).value = "900"
        screen.query_one("#turn-mode", Select).value = "server_vad"
        screen.query_one("#duplex", Select).value = "half"
        await pilot.press("ctrl+s")
        await wait_until(lambda: not isinstance(app.screen, SettingsScreen), 5, "saved")
    saved = load_config(cfg)
    options = saved.provider_options(OPENAI)
    assert options["maxSessionDurationSeconds"] == 900
    assert options["turnDetection"] == "server_vad"
    assert str(saved.audio.duplex) == "half"


@pytest.mark.audio
async def test_settings_test_tone_and_live_mic_meter(tmp_path: Path, audio_sandbox: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", provider=OPENAI, providers={})
    clip = speech_wav(tmp_path / "mic.wav", "testing the microphone level meter")
    app = VoiceTuiApp(cfg, autostart=False, health_on_start=False)
    with SpeakerRecorder(tmp_path / "tone.raw") as speaker:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("s")
            await wait_until(lambda: isinstance(app.screen, SettingsScreen), 5, "settings")
            await wait_until(lambda: bool(app.devices), 10, "the device list")
            screen = app.screen
            assert screen.query_one("#output-device", Select).value == "pulse"
            screen.query_one("#test-tone", Button).press()
            await wait_until(
                lambda: any("Hz tone" in str(n.message) for n in app._notifications), 10, "tone"
            )
            meter = screen.query_one("#settings-mic-meter", LevelMeter)
            peak = -120.0

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, meter.level_dbfs)
                    await asyncio.sleep(0.02)

            screen.query_one("#test-mic", Button).press()
            watcher = asyncio.create_task(watch())
            await asyncio.sleep(0.3)
            await play_into_mic(clip)
            watcher.cancel()
            screen.query_one("#test-mic", Button).press()  # stop
            assert peak > -40, peak  # the live meter followed the virtual mic
            await pilot.press("escape")
    assert speaker.voiced_seconds(threshold_dbfs=-30) > 0.3  # the tone reached the speaker


async def test_palette_switches_turn_mode_and_lists_voices(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={OPENAI: {"turnDetection": "push_to_talk"}},
    )
    app = VoiceTuiApp(cfg, autostart=False, health_on_start=False, frozen=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+p", *"Turn mode: server")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause()
    assert load_config(cfg).provider_options(OPENAI)["turnDetection"] == "server_vad"
