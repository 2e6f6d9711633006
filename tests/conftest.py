"""Test-session set-up shared by every test.

* A private PulseAudio (virtual speaker ``vspeaker`` + virtual mic ``vmic``) is started
  before anything imports sounddevice — PortAudio scans ALSA devices once, at import — and
  stopped at the end. Each pytest run gets its own directory, so parallel runs never collide.
  ``VOICETUI_TEST_AUDIO=0`` skips it (tests marked ``audio`` then fail loudly, not skip).
* Every test gets its own XDG config/state/data/cache dirs and no provider keys in the
  environment, so nothing touches the real home and no key leaks in from outside.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parent.parent
AUDIO_SANDBOX = ROOT / "tools" / "audio-sandbox.sh"
_audio = {"started": False}


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("VOICETUI_TEST_AUDIO", "1") == "0" or os.environ.get("PULSE_SERVER"):
        return
    os.environ["AUDIO_SANDBOX_DIR"] = f"/tmp/voicetui-audio-{os.getpid()}"
    subprocess.run(["bash", str(AUDIO_SANDBOX), "start"], check=True, capture_output=True)
    _audio["started"] = True
    env = subprocess.run(
        ["bash", str(AUDIO_SANDBOX), "env"], check=True, capture_output=True, text=True
    ).stdout
    for line in env.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        os.environ[key] = value


def pytest_unconfigure(config: pytest.Config) -> None:
    if _audio["started"]:
        subprocess.run(["bash", str(AUDIO_SANDBOX), "stop"], check=False, capture_output=True)


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    home = tmp_path / "xdg"
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
    ):
        monkeypatch.setenv(var, str(home / sub))
    for var in (
        "VOICETUI_CONFIG",
        "MISTRAL_API_KEY",
        "OPENAI_API_KEY",
        "MISTRAL_SA_TOKEN_PATH",
        "OPENAI_BASE_URL",
        "NO_COLOR",
    ):
        monkeypatch.delenv(var, raising=False)
    yield


@pytest.fixture(scope="session")
def audio_sandbox() -> Path:
    """The audio sandbox script; fails (does not skip) when the sandbox is not running."""
    if not os.environ.get("PULSE_SERVER"):
        pytest.fail("the audio sandbox is not running (VOICETUI_TEST_AUDIO=0?)")
    return AUDIO_SANDBOX


@pytest_asyncio.fixture
async def openai_emulator() -> AsyncIterator[Any]:
    """The OpenAI Realtime emulator, serving in the test's own event loop."""
    from voicetui.testing.emulators.openai import OpenAIEmulator

    emulator = OpenAIEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()
    _assert_faithful(emulator)


@pytest_asyncio.fixture
async def mistral_emulator() -> AsyncIterator[Any]:
    """The Mistral emulator, serving in the test's own event loop."""
    from voicetui.testing.emulators.mistral import MistralEmulator

    emulator = MistralEmulator(strict=True)
    await emulator.start()
    yield emulator
    await emulator.stop()
    _assert_faithful(emulator)


@pytest.fixture
def openai_emulator_thread() -> Iterator[Any]:
    """The OpenAI emulator in a background thread, for sync tests and subprocesses."""
    from voicetui.testing.emulators.openai import OpenAIEmulator

    emulator = OpenAIEmulator()
    emulator.start_in_thread()
    yield emulator
    emulator.stop_thread()
    _assert_faithful(emulator)


@pytest.fixture
def mistral_emulator_thread() -> Iterator[Any]:
    """The Mistral emulator in a background thread, for sync tests and subprocesses."""
    from voicetui.testing.emulators.mistral import MistralEmulator

    emulator = MistralEmulator(strict=True)
    emulator.start_in_thread()
    yield emulator
    emulator.stop_thread()
    _assert_faithful(emulator)


def _assert_faithful(emulator: Any) -> None:
    """Every test that talked to an emulator also checks the emulator itself: nothing it sent
    failed strict validation against the SDK's models, and none of its handlers crashed."""
    problems = [
        *getattr(emulator, "violations", []),
        *getattr(emulator, "client_violations", []),
        *getattr(emulator, "internal_errors", []),
    ]
    assert not problems, f"emulator fidelity problems: {problems[:5]}"


EchoPath = Callable[..., None]


@pytest.fixture
def echo_path(audio_sandbox: Path) -> Iterator[EchoPath]:
    """``echo_path(db=-12, delay_ms=40)``: a room for this test: the virtual speaker comes
    back into the virtual microphone, attenuated and late, mixed with the test's speech.
    Removed at the end of the test (the sandbox is headphones otherwise)."""

    def switch_on(db: float = -12.0, delay_ms: float = 40.0) -> None:
        subprocess.run(
            ["bash", str(audio_sandbox), "echo-on", str(db), str(delay_ms)],
            check=True, capture_output=True,
        )  # fmt: skip

    yield switch_on
    subprocess.run(["bash", str(audio_sandbox), "echo-off"], check=False, capture_output=True)


LiveExchange = Callable[..., Awaitable[None]]


@pytest.fixture
def live_exchange(audio_sandbox: Path) -> LiveExchange:
    """``await live_exchange(engine, events, output, speech_wav, recording_wav, done=Done)``: once
    the engine listens, record the virtual speaker, speak ``speech_wav`` into the virtual
    microphone, wait for a ``Done`` event and for the reply to play out, then end the engine.
    Run it beside ``engine.run()``."""
    from voicetui.audio.ports import ENGINE_RATE
    from voicetui.engine.events import State

    async def exchange(
        engine: Any, events: list[Any], output: Any, speech: Path, recording: Path, *, done: type
    ) -> None:
        try:
            for _ in range(2000):
                if engine.state == State.LISTENING:
                    break
                await asyncio.sleep(0.01)
            rec = await asyncio.create_subprocess_exec(
                "parecord", "--latency-msec=50", "--device=vspeaker.monitor",
                f"--rate={ENGINE_RATE}", "--channels=1", "--format=s16le",
                "--file-format=wav", str(recording),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            await asyncio.sleep(0.3)
            play = await asyncio.create_subprocess_exec("paplay", "--device=vmic_feed", str(speech))
            await play.wait()
            for _ in range(300):  # until the reply has been generated...
                if any(isinstance(e, done) for e in events):
                    break
                await asyncio.sleep(0.05)
            await asyncio.wait_for(output.wait_idle(), 10)  # ...and has played out
            await asyncio.sleep(0.3)
            rec.send_signal(signal.SIGINT)
            await asyncio.wait_for(rec.wait(), 5)
        finally:
            await engine.end()

    return exchange
