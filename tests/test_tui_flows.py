"""End-to-end flows of the console against the emulators, with the real virtual devices.

Every test drives the real app (``App.run_test``) with the real SDKs talking to the loopback
emulators; the microphone is fed with ``paplay`` into the private PulseAudio's ``vmic_feed``
and the speaker is recorded from ``vspeaker.monitor``. Keys come from the environment,
except in the first-run test, which stores the key in the real Secret Service (run it under
``tools/keyring-sandbox.sh``, as ``make test`` does).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_tui_support import (
    MISTRAL,
    OPENAI,
    SpeakerRecorder,
    key_latency,
    play_into_mic,
    send_keys,
    speech_wav,
    wait_until,
    write_config,
)
from textual.pilot import Pilot

from voicetui.config import load_config
from voicetui.engine.events import State
from voicetui.testing.emulators.common import Script, Turn
from voicetui.tui.app import VoiceTuiApp
from voicetui.tui.screens.console import ConsoleScreen
from voicetui.tui.screens.health import HealthScreen
from voicetui.tui.screens.keys import KeysScreen
from voicetui.tui.widgets.status import SessionLine, StateBadge
from voicetui.tui.widgets.transcript import TranscriptView

pytestmark = [pytest.mark.audio, pytest.mark.asyncio, pytest.mark.timeout(90)]

LIVE = (State.LISTENING, State.IDLE)


def transcript_text(app: VoiceTuiApp) -> str:
    return "\n".join(app.console_screen.query_one(TranscriptView).plain_lines())


def openai_options(emulator: Any, **extra: Any) -> dict[str, Any]:
    return {"baseUrl": emulator.base_url, **extra}


async def wait_live(app: VoiceTuiApp, limit: float = 15) -> None:
    await wait_until(
        lambda: app.engine is not None and app.engine.state in LIVE, limit, "a live session"
    )


async def push_to_talk_turn(
    pilot: Pilot[Any], app: VoiceTuiApp, clip: Path, reply: str, limit: float = 20
) -> None:
    """Space, speak, Space; then wait for the reply text and for playback to finish."""
    await send_keys(app, "space")
    await wait_until(lambda: app.engine is not None and app.engine.talking, 5, "talking")
    await play_into_mic(clip)
    await send_keys(app, "space")
    try:
        await wait_until(lambda: reply in transcript_text(app), limit, f"reply {reply!r}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; transcript:\n{transcript_text(app)}") from None
    await wait_live(app, 20)


async def test_push_to_talk_turn_openai_with_speaker_labels(
    openai_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audio_sandbox: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-tui-0000000000000000")
    openai_emulator.script = Script(
        turns=[
            Turn(
                user_text="hello there how are you",
                segments=[("speaker_1", "hello there"), ("speaker_2", "how are you")],
                reply="Hi! Nice to hear you both.",
            )
        ]
    )
    openai_emulator.timing.audio_pace = 1.0
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={
            OPENAI: openai_options(
                openai_emulator,
                turnDetection="push_to_talk",
                transcriptionModel="gpt-4o-transcribe-diarize",
            )
        },
    )
    clip = speech_wav(tmp_path / "hello.wav", "hello there how are you")
    app = VoiceTuiApp(cfg, health_on_start=False)
    with SpeakerRecorder(tmp_path / "speaker.raw") as speaker:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_live(app)
            await push_to_talk_turn(pilot, app, clip, "Nice to hear you both")
            lines = app.console_screen.query_one(TranscriptView).plain_lines()
            users = [line for line in lines if "speaker_" in line]
            assert any("speaker_1" in u and "hello there" in u for u in users), lines
            assert any("speaker_2" in u and "how are you" in u for u in users), lines
            assert all("s -> " in u for u in users), users  # [0.1s -> 1.5s] spans
            # each speaker its own colour
            view = app.console_screen.query_one(TranscriptView)
            assert view._speakers == {"speaker_1": 0, "speaker_2": 1}
            # export from the palette: Markdown written by the engine's transcript store
            await send_keys(app, "ctrl+p", *"export")
            await pilot.pause(0.5)
            await send_keys(app, "enter")
            from voicetui import paths

            exported = paths.data_dir() / "exports" / f"{app.session_id}.md"
            await wait_until(exported.exists, 10, "the exported transcript")
            assert "Nice to hear you both" in exported.read_text(encoding="utf-8")
            await pilot.press("q")
    assert speaker.voiced_seconds() > 0.5, "assistant audio never reached the speaker"


@pytest.mark.keyring
async def test_first_run_lands_on_keys_then_a_full_turn(
    openai_emulator: Any, tmp_path: Path, audio_sandbox: Path
) -> None:
    if os.environ.get("KEYRING_SANDBOX") != "1":
        pytest.fail("needs the real Secret Service: run under tools/keyring-sandbox.sh")
    from voicetui.keys import KeyStore

    store = KeyStore(service=f"voicetui-test-{uuid.uuid4().hex[:8]}", environ={})
    openai_emulator.script = Script(turns=[Turn(user_text="hi", reply="Welcome aboard.")])
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={OPENAI: openai_options(openai_emulator, turnDetection="push_to_talk")},
    )
    clip = speech_wav(tmp_path / "hi.wav", "hi there")
    app = VoiceTuiApp(cfg, health_on_start=False, keys=store)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(
                lambda: (
                    isinstance(app.screen, KeysScreen)
                    and app.screen.focused is not None
                    and app.screen.focused.id == "key-openai"
                ),
                10,
                "the keys screen",
            )
            assert app.screen.query_one("#first-run")
            await pilot.press(*"sk-test-first-run-1234", "enter")
            await wait_until(lambda: isinstance(app.screen, ConsoleScreen), 10, "the console")
            resolved = store.get(OPENAI)
            assert resolved.source == "keyring" and resolved.value == "sk-test-first-run-1234"
            await wait_live(app)
            await push_to_talk_turn(pilot, app, clip, "Welcome aboard")
            assert "you" in transcript_text(app) or "speaker_" in transcript_text(app)
            await pilot.press("q")
    finally:
        store.delete(OPENAI)


async def test_server_vad_two_turns(
    openai_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audio_sandbox: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-tui-0000000000000000")
    openai_emulator.script = Script(
        turns=[
            Turn(user_text="what time is it", reply="Time for a test."),
            Turn(user_text="and the weather", reply="Sunny with a chance of tests."),
        ]
    )
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={
            OPENAI: openai_options(
                openai_emulator, turnDetection="server_vad", silenceDurationMs=300
            )
        },
    )
    first = speech_wav(tmp_path / "one.wav", "what time is it")
    second = speech_wav(tmp_path / "two.wav", "and the weather")
    app = VoiceTuiApp(cfg, health_on_start=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_live(app)
        await play_into_mic(first)
        await wait_until(lambda: "Time for a test" in transcript_text(app), 20, "first reply")
        await wait_live(app, 20)
        await play_into_mic(second)
        await wait_until(lambda: "chance of tests" in transcript_text(app), 20, "second reply")
        text = transcript_text(app)
        assert "what time is it" in text and "and the weather" in text, text
        assert text.index("what time is it") < text.index("Time for a test")
        assert text.index("Time for a test") < text.index("and the weather")
        await pilot.press("q")


async def test_barge_in_and_interrupt_key_mark_the_reply(
    openai_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audio_sandbox: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-tui-0000000000000000")
    long_reply = " ".join(["This is a very long answer that keeps going."] * 8)
    openai_emulator.script = Script(
        turns=[
            Turn(user_text="tell me a story", reply=long_reply),
            Turn(user_text="stop please", reply=long_reply),
            Turn(user_text="ok", reply="Okay."),
        ]
    )
    openai_emulator.timing.audio_pace = 1.0
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={
            OPENAI: openai_options(
                openai_emulator, turnDetection="server_vad", silenceDurationMs=300
            )
        },
        audio={"input_device": "pulse", "output_device": "pulse", "duplex": "full"},
    )
    story = speech_wav(tmp_path / "story.wav", "tell me a story")
    stop = speech_wav(tmp_path / "stop.wav", "stop please")
    app = VoiceTuiApp(cfg, health_on_start=False)
    badge_states: list[State] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_live(app)
        await play_into_mic(story)
        await wait_until(
            lambda: app.engine is not None and app.engine.state == State.ASSISTANT_SPEAKING,
            20,
            "the assistant speaking",
        )
        await wait_until(
            lambda: app.console_screen.query_one(StateBadge).state == State.ASSISTANT_SPEAKING,
            5,
            "the status to say so",
        )
        badge_states.append(app.console_screen.query_one(StateBadge).state)
        await play_into_mic(stop)  # barge in over the reply
        await wait_until(lambda: "interrupted" in transcript_text(app), 15, "barge-in mark")
        # second reply: cut it with the interrupt key
        await wait_until(
            lambda: app.engine is not None and app.engine.state == State.ASSISTANT_SPEAKING,
            20,
            "the second reply",
        )
        await send_keys(app, "i")
        await wait_until(
            lambda: transcript_text(app).count("interrupted") >= 2, 10, "interrupt-key mark"
        )
        await pilot.press("q")
    assert State.ASSISTANT_SPEAKING in badge_states


async def test_provider_switch_from_the_palette(
    openai_emulator: Any,
    mistral_emulator: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    audio_sandbox: Path,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-tui-0000000000000000")
    monkeypatch.setenv("MISTRAL_API_KEY", "mistral-test-tui-000000000000")
    mistral_emulator.script = Script(
        turns=[Turn(user_text="bonjour", reply="Salut from Mistral.", tool="web_search")]
    )
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={
            OPENAI: openai_options(openai_emulator, turnDetection="push_to_talk"),
            MISTRAL: {"baseUrl": mistral_emulator.base_url, "turnDetection": "push_to_talk"},
        },
    )
    clip = speech_wav(tmp_path / "bonjour.wav", "bonjour mistral")
    app = VoiceTuiApp(cfg, health_on_start=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_live(app)
        line = app.console_screen.query_one(SessionLine)
        assert "openai" in str(line.content)
        await send_keys(app, "ctrl+p", *"Provider: Mistral")
        await pilot.pause(0.5)
        await send_keys(app, "enter")
        await wait_until(
            lambda: app.engine is not None and app.engine.settings.spec_key == MISTRAL,
            15,
            "the mistral session",
        )
        await wait_live(app, 20)
        assert "mistral" in str(line.content)
        assert load_config(cfg).provider == MISTRAL  # the switch is saved
        # the cascade (STT -> agent -> TTS) has three legs: more room on a loaded machine
        await push_to_talk_turn(pilot, app, clip, "Salut from Mistral", limit=40)
        # the diarized second pass relabelled the turn: its plain line was replaced
        await wait_until(
            lambda: any("speaker_1  bonjour" in line for line in
                        app.console_screen.query_one(TranscriptView).plain_lines()),
            10,
            "the diarized relabel",
        )  # fmt: skip
        lines = app.console_screen.query_one(TranscriptView).plain_lines()
        assert not any(line.startswith("you  bonjour") for line in lines), lines
        assert any(line.strip().startswith(("⚙", "✓")) for line in lines), lines  # web search
        await pilot.press("q")


async def test_theme_switch_previews_saves_and_reverts(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "config.toml", provider=OPENAI, providers={}, theme="voicetui-dusk"
    )
    app = VoiceTuiApp(cfg, autostart=False, health_on_start=False)
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.theme == "voicetui-dusk"
        assert {"voicetui-dusk", "voicetui-paper", "voicetui-phosphor"} <= set(app.available_themes)
        await pilot.press("t")
        await pilot.press("down")
        await pilot.pause()
        previewed = app.theme
        assert previewed != "voicetui-dusk"  # live preview
        await pilot.press("escape")
        await pilot.pause()
        assert app.theme == "voicetui-dusk"  # reverted
        await pilot.press("t", "down", "down", "enter")
        await pilot.pause()
        chosen = app.theme
        assert chosen not in ("voicetui-dusk", previewed)
        assert load_config(cfg).theme == chosen  # saved


async def test_user_theme_file_is_loaded(tmp_path: Path) -> None:
    from voicetui import paths

    folder = paths.config_dir() / "themes"
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text(
        'name = "my-theme"\nprimary = "#FF00AA"\nbackground = "#000000"\n', encoding="utf-8"
    )
    (folder / "broken.toml").write_text('name = "broken"\nprimary = 12\n', encoding="utf-8")
    cfg = write_config(tmp_path / "config.toml", provider=OPENAI, providers={}, theme="my-theme")
    app = VoiceTuiApp(cfg, autostart=False, health_on_start=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.theme == "my-theme"
        assert any("broken.toml" in str(n.message) for n in app._notifications)


async def test_health_screen_with_one_provider_failing(
    openai_emulator: Any,
    mistral_emulator: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-tui-0000000000000000")
    monkeypatch.setenv("MISTRAL_API_KEY", "mistral-test-tui-000000000000")
    mistral_emulator.faults.http_status = 401
    mistral_emulator.faults.http_status_count = 100
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={
            OPENAI: openai_options(openai_emulator),
            MISTRAL: {"baseUrl": mistral_emulator.base_url},
        },
    )
    app = VoiceTuiApp(cfg, autostart=False, health_on_start=True)
    async with app.run_test(size=(120, 40)) as pilot:
        # start-up checks run in the background and land in the console's status
        await wait_until(lambda: len(app.health) == 2, 15, "start-up health checks")
        await pilot.pause()
        status_line = str(app.console_screen.query_one("#health-line").content)
        assert "openai ok" in status_line and "mistral unauthorized" in status_line
        await pilot.press("h")
        assert isinstance(app.screen, HealthScreen)
        app.health.clear()
        await pilot.press("r")  # re-run on a key
        await wait_until(lambda: len(app.health) == 2, 15, "re-run health checks")
        await pilot.pause()
        details = str(app.screen.query_one("#health-details").content)
        assert "openai: ok" in details and "mistral: unauthorized" in details
        assert "press k" in details  # what to do
        assert app.health[OPENAI].latency_ms is not None


async def test_device_error_is_reported_and_the_app_lives_on(
    openai_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audio_sandbox: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-tui-0000000000000000")
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={OPENAI: openai_options(openai_emulator, turnDetection="push_to_talk")},
        audio={"input_device": "no-such-microphone", "output_device": "pulse"},
    )
    app = VoiceTuiApp(cfg, health_on_start=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(
            lambda: app.console_screen.query_one(StateBadge).state == State.ERROR,
            15,
            "the error state",
        )
        assert "no-such-microphone" in transcript_text(app)
        await send_keys(app, "space")  # no session: a hint, not a crash
        await pilot.pause()
        assert any("press n" in str(n.message) for n in app._notifications)
        await pilot.press("q")
    assert app.return_code == 0


async def test_slow_provider_never_freezes_input(
    openai_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audio_sandbox: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-tui-0000000000000000")
    reply = "Eventually, " + "slowly streaming words, " * 12 + "done."
    openai_emulator.script = Script(turns=[Turn(user_text="slow one", reply=reply)])
    openai_emulator.timing.first_token_delay_s = 3.0
    openai_emulator.timing.first_audio_delay_s = 3.0
    openai_emulator.timing.token_interval_s = 0.1  # then a slow trickle of words
    openai_emulator.timing.audio_pace = 1.0
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={OPENAI: openai_options(openai_emulator, turnDetection="push_to_talk")},
    )
    clip = speech_wav(tmp_path / "slow.wav", "slow one")
    app = VoiceTuiApp(cfg, health_on_start=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_live(app)
        await send_keys(app, "space")
        await wait_until(lambda: app.engine is not None and app.engine.talking, 5, "talking")
        await play_into_mic(clip)
        await send_keys(app, "space")
        await wait_until(
            lambda: app.engine is not None and app.engine.state == State.THINKING, 5, "thinking"
        )
        engine = app.engine
        assert engine is not None

        async def toggles(n: int) -> list[float]:
            out = []
            for _ in range(n):  # mute / unmute: handled on the UI loop, checked on the engine
                before = engine.muted
                out.append(await key_latency(app, "m", lambda b=before: engine.muted != b))
                await asyncio.sleep(0.15)
            return out

        waiting = await toggles(6)  # the provider takes seconds to start answering
        assert engine.state == State.THINKING
        await wait_until(lambda: "Eventually" in transcript_text(app), 20, "the first words")
        streaming = await toggles(6)  # words trickling in, audio playing
        assert "done." not in transcript_text(app)  # still mid-reply
        print(f"key latency ms: waiting {[round(x * 1000, 1) for x in waiting]}, "
              f"streaming {[round(x * 1000, 1) for x in streaming]}")  # fmt: skip
        assert max(waiting) < 0.1, waiting
        assert max(streaming) < 0.1, streaming
        await wait_until(lambda: "done." in transcript_text(app), 30, "the end of the reply")
        await pilot.press("q")


async def test_dropped_connection_shows_reconnecting_and_recovers(
    openai_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audio_sandbox: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-tui-0000000000000000")
    openai_emulator.script = Script(turns=[Turn(user_text="still there", reply="Yes, back.")])
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={OPENAI: openai_options(openai_emulator, turnDetection="push_to_talk")},
    )
    clip = speech_wav(tmp_path / "there.wav", "still there")
    app = VoiceTuiApp(cfg, health_on_start=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_live(app)
        openai_emulator.faults.drop_after_events = 0  # the socket dies on the next event
        await send_keys(app, "space")
        await wait_until(lambda: "reconnecting" in transcript_text(app), 15, "reconnecting")
        assert app.console_screen.query_one(StateBadge).state in (
            State.RECONNECTING,
            State.USER_SPEAKING,
        )
        await wait_until(lambda: "reconnected" in transcript_text(app), 20, "reconnected")
        # the talk key is still down: the turn goes on over the new connection
        assert app.engine is not None and app.engine.talking
        await play_into_mic(clip)
        await send_keys(app, "space")
        await wait_until(lambda: "Yes, back." in transcript_text(app), 20, "the reply")
        await pilot.press("q")
    assert app.return_code == 0
