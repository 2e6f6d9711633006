"""SVG snapshots of every screen, and of the console in the middle of a reply.

Deterministic by construction: the app runs ``frozen`` (no meter polling, no session clock,
no cursor blink, no device scan or voice fetch), keys come from the environment (so the
keyring is never asked), the config lives at a fixed path, and the transcript is fed with
real engine events in a fixed order. Run with ``env -u TEXTUAL_THEME`` (Textual reads it at
import time); NO_COLOR is removed by the shared conftest. Update with
``pytest --snapshot-update tests/test_tui_snapshots.py`` after a deliberate change.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_tui_support import MISTRAL, OPENAI, wait_until, write_config
from textual.pilot import Pilot
from textual.widgets import Static

from voicetui.audio.calibrate import EchoCalibration, config_changes
from voicetui.audio.ports import DuplexPolicy
from voicetui.engine.events import (
    AssistantTextDelta,
    AssistantTextFinal,
    Event,
    Interrupted,
    SessionStarted,
    State,
    StateChanged,
    ToolActivity,
    TurnLatency,
    UserTranscript,
)
from voicetui.health import HealthResult
from voicetui.tui.app import VoiceTuiApp
from voicetui.tui.messages import EngineEvent, HealthUpdated
from voicetui.tui.screens.keys import KeysScreen
from voicetui.tui.screens.settings import SettingsScreen
from voicetui.tui.widgets.meters import LevelMeter
from voicetui.tui.widgets.status import SessionTimer

SIZE = (120, 40)
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]
FIXED_DIR = Path("/tmp/voicetui-snapshots")  # the settings screen shows the config path


@pytest.fixture(params=SIZES)
def size(request: pytest.FixtureRequest) -> tuple[int, int]:
    """Every screen at 80x24 and at 120x40."""
    value: tuple[int, int] = request.param
    return value


@pytest.fixture
def snap_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[VoiceTuiApp]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-snapshot-openai-key-0000WXYZ")
    monkeypatch.setenv("MISTRAL_API_KEY", "mistral-snapshot-key-0000ABCD")
    FIXED_DIR.mkdir(parents=True, exist_ok=True)
    cfg = write_config(
        FIXED_DIR / "config.toml",
        provider=OPENAI,
        providers={
            OPENAI: {"baseUrl": "http://127.0.0.1:9", "turnDetection": "push_to_talk"},
            MISTRAL: {"baseUrl": "http://127.0.0.1:9"},
        },
        audio={},
        theme="voicetui-dusk",
    )
    yield VoiceTuiApp(cfg, frozen=True, autostart=False, health_on_start=False)
    shutil.rmtree(FIXED_DIR, ignore_errors=True)


HEALTH = [
    HealthResult(OPENAI, "ok", 84.0, "3 models available"),
    HealthResult(MISTRAL, "unauthorized", 41.0, "the API key was rejected (401); set a new one"),
]


def conversation() -> list[Event]:
    """A finished exchange (reply cut short by barge-in), then a reply mid-stream."""
    return [
        SessionStarted(
            provider=OPENAI,
            model="gpt-realtime",
            voice="marin",
            turn_detection="push_to_talk",
            session_id="snapshot",
            max_duration_s=600,
        ),
        StateChanged(state=State.LISTENING, previous=State.CONNECTING),
        UserTranscript(
            turn_id="t1", text="Tell me a long story about the sea.", final=True,
            speaker="speaker_1", start=0.1, end=1.5,
        ),
        AssistantTextDelta(turn_id="r1", text="Once upon a time, a lighthouse keeper"),
        AssistantTextDelta(turn_id="r1", text=" counted the waves every night"),
        Interrupted(turn_id="r1", played_ms=1800),
        AssistantTextFinal(
            turn_id="r1", text="Once upon a time, a lighthouse keeper counted",
            interrupted=True,
        ),
        UserTranscript(
            turn_id="t2", text="What's the weather in Paris this weekend?", final=True,
            speaker="speaker_1", start=0.2, end=2.1, segment_index=0,
        ),
        UserTranscript(
            turn_id="t2", text="And should I pack an umbrella?", final=True,
            speaker="speaker_2", start=2.3, end=3.6, segment_index=1,
        ),
        ToolActivity(turn_id="r2", name="web_search", status="started",
                     detail="searching the web…"),
        ToolActivity(turn_id="r2", name="web_search", status="done",
                     detail="web search: 3 results"),
        StateChanged(state=State.ASSISTANT_SPEAKING, previous=State.THINKING),
        AssistantTextDelta(turn_id="r2", text="Saturday looks rainy in Paris, around 14°C,"),
        AssistantTextDelta(turn_id="r2", text=" so yes — pack the umbrella. Sunday"),
        TurnLatency(turn_id="t2", final_transcript_ms=310, first_text_ms=720,
                    first_audio_ms=980),
    ]  # fmt: skip


async def feed(pilot: Pilot[Any], events: list[Event]) -> None:
    app = pilot.app
    assert isinstance(app, VoiceTuiApp)
    console = app.console_screen
    for event in events:
        console.post_message(EngineEvent(event))
    app.health.update({r.provider: r for r in HEALTH})
    console.post_message(HealthUpdated(HEALTH))
    await pilot.pause()
    console.query_one("#mic-meter", LevelMeter).set_level(-24)
    console.query_one("#spk-meter", LevelMeter).set_level(-9)
    console.query_one(SessionTimer).show(83, 600)
    await pilot.pause()


def test_console_idle(snap_compare: Any, snap_app: VoiceTuiApp, size: tuple[int, int]) -> None:
    assert snap_compare(snap_app, terminal_size=size)


def test_console_mid_reply(snap_compare: Any, snap_app: VoiceTuiApp, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await feed(pilot, conversation())

    assert snap_compare(snap_app, terminal_size=size, run_before=run_before)


def test_keys_screen(snap_compare: Any, snap_app: VoiceTuiApp, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        await app.push_screen(KeysScreen(focus_provider=MISTRAL))  # banner: see test_tui_flows
        await wait_until(
            lambda: all("environment" in str(s.content) for s in app.screen.query(".key-source")),
            5,
            "key sources",
        )
        await pilot.pause()

    assert snap_compare(snap_app, terminal_size=size, run_before=run_before)


def test_keys_screen_managed(
    snap_compare: Any,
    snap_app: VoiceTuiApp,
    size: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Mistral's key from a secret manager (mode managed, its command in the field), OpenAI's
    from the environment (byok)."""
    _managed_mistral(snap_app, monkeypatch, tmp_path)

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        await app.push_screen(KeysScreen(focus_provider=MISTRAL))
        await wait_until(
            lambda: (
                "****MGD1" in str(app.screen.query(".key-source").first(Static).content)
                and "environment" in str(app.screen.query(".key-source").last(Static).content)
            ),
            10,
            "key sources",
        )
        await pilot.pause()

    assert snap_compare(snap_app, terminal_size=size, run_before=run_before)


def test_keys_screen_managed_at_60x20(
    snap_compare: Any, snap_app: VoiceTuiApp, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The narrowest keys screen: the command field on a row of its own, the three command
    buttons under it, labels whole (focus on the command field, scrolled to it)."""
    _managed_mistral(snap_app, monkeypatch, tmp_path)

    async def run_before(pilot: Pilot[Any]) -> None:
        from textual.widgets import Input

        app = pilot.app
        await app.push_screen(KeysScreen(focus_provider=MISTRAL))
        await wait_until(
            lambda: "****MGD1" in str(app.screen.query(".key-source").first(Static).content),
            10,
            "the managed key",
        )
        await wait_until(
            lambda: app.focused is not None and app.focused.id == "key-mistral", 5, "focus"
        )
        # keyboard only: past Set, Rotate, Test and Delete to the command field
        await pilot.press("tab", "tab", "tab", "tab", "tab")
        assert app.focused is app.screen.query_one("#key-mistral-command", Input)
        app.screen.query_one("#key-mistral-command-clear").scroll_visible(animate=False)
        await pilot.pause()

    assert snap_compare(snap_app, terminal_size=(60, 20), run_before=run_before)


def _managed_mistral(app: VoiceTuiApp, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A stand-in ``op`` on PATH prints Mistral's key; its apiKeyCommand goes in the config."""
    from voicetui.config import update_config

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_op = bin_dir / "op"
    fake_op.write_text("#!/bin/sh\nprintf mistral-managed-key-0000MGD1\n", encoding="utf-8")
    fake_op.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("MISTRAL_API_KEY")
    assert app.config_path is not None
    command = ["op", "read", "op://vault/mistral/key"]
    update_config(app.config_path, providers={MISTRAL: {"apiKeyCommand": command}})


def test_settings_screen(snap_compare: Any, snap_app: VoiceTuiApp, size: tuple[int, int]) -> None:
    assert snap_compare(snap_app, terminal_size=size, press=["s", "_"])


def test_settings_echo_calibrated_at_80x24(snap_compare: Any, snap_app: VoiceTuiApp) -> None:
    """The narrowest settings screen: "Calibrate echo" reached with Tab (scrolled into view)
    and a calibration's result under it, shown and saved by the screen's own code path (a
    fixed measurement: no devices here)."""
    result = EchoCalibration(
        delay_ms=42.0, coupling_db=-12.2, erle_db=31.0, aec_available=True,
        policy=DuplexPolicy.AEC,
    )  # fmt: skip

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        await pilot.press("s")
        await wait_until(lambda: isinstance(app.screen, SettingsScreen), 5, "settings")
        for _ in range(12):
            if app.focused is not None and app.focused.id == "calibrate-echo":
                break
            await pilot.press("tab")
        screen = app.screen
        assert isinstance(screen, SettingsScreen) and app.focused is not None
        assert app.focused.id == "calibrate-echo"
        screen._calibration_done(result, config_changes(result))
        await pilot.pause()

    assert snap_compare(snap_app, terminal_size=(80, 24), run_before=run_before)


def test_health_screen(snap_compare: Any, snap_app: VoiceTuiApp, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, VoiceTuiApp)
        app.health.update({r.provider: r for r in HEALTH})
        await pilot.press("h")
        await pilot.pause()

    assert snap_compare(snap_app, terminal_size=size, run_before=run_before)


def test_theme_picker_previewing(
    snap_compare: Any, snap_app: VoiceTuiApp, size: tuple[int, int]
) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await feed(pilot, conversation())
        await pilot.press("t", "down")  # previews voicetui-paper behind the dialog
        await pilot.pause()

    assert snap_compare(snap_app, terminal_size=size, run_before=run_before)


def test_command_palette(snap_compare: Any, snap_app: VoiceTuiApp, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        from textual.command import CommandList

        await pilot.press("ctrl+p", *"provider")
        # the search is asynchronous: wait for both hits, then for the list to settle
        await wait_until(
            lambda: (
                len(pilot.app.screen.query(CommandList))
                and pilot.app.screen.query_one(CommandList).option_count == 2
            ),
            10,
            "the provider hits",
        )
        # the palette's own field blinks its cursor (ours do not when frozen)
        from textual.widgets import Input

        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False
        await pilot.wait_for_animation()
        await pilot.pause(0.3)

    assert snap_compare(snap_app, terminal_size=size, run_before=run_before)


DOCTOR = [
    ("audio devices", "ok", "2 inputs, 2 outputs; default in: pulse, out: pulse"),
    ("microphone", "warn", "heard nothing louder than -58 dBFS in 2 s: is it muted?"),
    ("keyring", "ok", "Secret Service (SecretService Keyring)"),
    ("openai key", "ok", "environment, ****WXYZ"),
    ("openai model", "ok", "gpt-realtime is listed for this key"),
    ("openai voice", "ok", "marin is a built-in voice"),
    ("mistral key", "fail", "the API key was rejected (401): press k to set a new one"),
]


def test_doctor_screen(
    snap_compare: Any,
    snap_app: VoiceTuiApp,
    size: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Doctor screen's real code path, with fixed check results (no devices or network)."""
    from voicetui import doctor

    async def fixed(_ctx: Any) -> list[Any]:
        return [doctor.Check(name, status, detail) for name, status, detail in DOCTOR]  # type: ignore[arg-type]

    monkeypatch.setattr(doctor, "default_checks", lambda _ctx: [fixed])

    async def run_before(pilot: Pilot[Any]) -> None:
        from textual.widgets import Static

        app = pilot.app
        assert isinstance(app, VoiceTuiApp)
        app.open_doctor()
        await wait_until(
            lambda: (
                bool(app.screen.query("#doctor-state"))
                and "failed" in str(app.screen.query_one("#doctor-state", Static).content)
            ),
            10,
            "the doctor's verdict",
        )
        await pilot.pause()

    assert snap_compare(snap_app, terminal_size=size, run_before=run_before)


def test_console_mid_reply_at_60x20(snap_compare: Any, snap_app: VoiceTuiApp) -> None:
    """The narrowest console: meters, timer and health still there, Talk and Quit too."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await feed(pilot, conversation())

    assert snap_compare(snap_app, terminal_size=(60, 20), run_before=run_before)


@pytest.mark.asyncio
async def test_no_color_is_respected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    cfg = write_config(tmp_path / "c.toml", provider=OPENAI, providers={})
    app = VoiceTuiApp(cfg, frozen=True, autostart=False, health_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.no_color
        svg = app.export_screenshot()
    # monochrome: no theme accent colour survives the filter
    assert "#7aa2f7" not in svg.lower()
