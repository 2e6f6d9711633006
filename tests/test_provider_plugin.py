"""A third provider added from outside voicetui: one package plus its entry point, no other edit.

``tests/plugins/voicetui_tonebot`` is the package; each test writes its entry point into a
``*.dist-info`` in a tmp dir on ``sys.path`` (``PYTHONPATH`` for the real subprocesses), the way
an installed distribution publishes one. The provider then appears in ``specs list``, the
settings screen, ``health`` and a headless ``voicetui talk`` through the real engine, audio and
transcript code.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_tui_support import wait_until, write_config
from textual.widgets import Select

from voicetui.audio.factory import WAV_TAIL_SILENCE_MS
from voicetui.audio.wav import read_wav_mono, write_wav_pcm16
from voicetui.providers.registry import reset
from voicetui.testing.emulators.common import speech_like_pcm

pytestmark = pytest.mark.timeout(90)

PLUGINS = Path(__file__).with_name("plugins")
KEY = "example.tonebot"
PY = sys.executable
SR = 24_000


@pytest.fixture
def tonebot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Install the tonebot entry point; yields the environment for subprocesses."""
    site = tmp_path / "site"
    dist = site / "voicetui_tonebot-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: voicetui-tonebot\nVersion: 0.1\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(
        f'[voicetui.providers]\n"{KEY}" = voicetui_tonebot:PROVIDER\n'.replace('"', ""),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("VOICETUI_TONEBOT_KEY", "tonebot-test-key")
    reset()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(PLUGINS), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    yield env
    monkeypatch.undo()
    reset()


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "voicetui", *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_listing_providers_imports_no_sdk(tonebot: dict[str, str]) -> None:
    code = (
        "import sys\n"
        "from voicetui.cli import main\n"
        "assert main(['specs', 'list']) == 0\n"
        "from voicetui.config import load_config\n"
        "load_config()\n"
        "loaded = sorted(m for m in ('openai', 'mistralai', 'httpx') if m in sys.modules)\n"
        "print('sdks:', loaded)\n"
    )
    result = subprocess.run(
        [PY, "-c", code], check=False, env=tonebot, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "sdks: []"
    listed = {line.split()[0]: line.split()[1] for line in lines[:-1]}
    assert listed == {
        "ai-voice-conv.mistral": "mistral",
        "ai-voice-conv.openai": "openai",
        KEY: "tonebot",
    }


def test_specs_show_and_config_defaults(tonebot: dict[str, str]) -> None:
    shown = run_cli(tonebot, "specs", "show", "tonebot", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["meta"]["key"] == KEY
    config = run_cli(tonebot, "config", "show", "--json")
    assert config.returncode == 0, config.stderr
    table = json.loads(config.stdout)["providers"][KEY]
    # the spec's example plus the provider's own options, declared in its package
    assert table["defaultVoice"] == "low"
    assert table["line"] == "Beep boop, I heard you."
    assert table["toneMs"] == 600


def test_health_probes_it(tonebot: dict[str, str], tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        cfg = write_config(
            tmp_path / "config.toml",
            provider=KEY,
            providers={KEY: {"baseUrl": f"http://127.0.0.1:{port}"}},
        )
        up = run_cli(tonebot, "--config", str(cfg), "health", "tonebot", "--json")
    assert up.returncode == 0, up.stderr
    [result] = json.loads(up.stdout)
    assert result["provider"] == KEY and result["status"] == "ok", result
    assert result["detail"].startswith("connected in")

    down = run_cli(tonebot, "--config", str(cfg), "health", "tonebot", "--json")  # port closed
    assert down.returncode == 1
    [result] = json.loads(down.stdout)
    assert result["status"] == "unreachable", result

    keyless = dict(tonebot, VOICETUI_TONEBOT_KEY="")
    missing = run_cli(keyless, "--config", str(cfg), "health", "tonebot", "--json")
    [result] = json.loads(missing.stdout)
    assert result["status"] == "no_key"
    assert "VOICETUI_TONEBOT_KEY" in result["detail"], result


def test_talk_with_a_wav(tonebot: dict[str, str], tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "config.toml",
        provider="tonebot",
        providers={KEY: {"defaultVoice": "high", "line": "Tones all the way down."}},
        audio={},
    )
    clip = tmp_path / "q.wav"
    write_wav_pcm16(clip, np.concatenate([speech_like_pcm("hello there"), np.zeros(4800)]))
    # what the session received: the clip and the silence the WAV input appends to it
    seconds = len(read_wav_mono(clip)) / SR + WAV_TAIL_SILENCE_MS / 1000
    out_wav, out_jsonl = tmp_path / "a.wav", tmp_path / "t.jsonl"
    result = run_cli(
        tonebot, "--config", str(cfg), "talk", "--input", str(clip),
        "--output", str(out_wav), "--transcript", str(out_jsonl),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"user: [{seconds:.1f} s of audio]",
        "assistant: Tones all the way down.",
    ]
    # the reply went through the real playback into the output WAV: 600 ms at the voice's pitch
    pcm = read_wav_mono(out_wav).astype(np.float64)
    loud = np.flatnonzero(np.abs(pcm) > 0.05)
    assert abs((loud[-1] - loud[0]) / SR - 0.6) < 0.02
    spectrum = np.abs(np.fft.rfft(pcm[loud[0] : loud[-1]]))
    peak_hz = np.argmax(spectrum) * SR / (loud[-1] - loud[0])
    assert abs(peak_hz - 660) < 5
    events = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    started = next(e for e in events if e["type"] == "SessionStarted")
    assert started["provider"] == KEY
    finals = [e for e in events if e["type"] in ("UserTranscript", "AssistantTextFinal")]
    assert [e["text"] for e in finals] == [f"[{seconds:.1f} s of audio]", "Tones all the way down."]
    # turn ids from ctx.new_turn_id are scoped to the session
    session = started["session_id"]
    assert [e["turn_id"] for e in finals] == [f"{session}/u1", f"{session}/a2"]


@pytest.mark.asyncio
async def test_settings_screen_offers_it(tonebot: dict[str, str], tmp_path: Path) -> None:
    from voicetui.tui.app import VoiceTuiApp
    from voicetui.tui.screens.settings import SettingsScreen

    cfg = write_config(tmp_path / "config.toml", provider="tonebot", providers={})
    app = VoiceTuiApp(cfg, autostart=False, health_on_start=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        await wait_until(lambda: isinstance(app.screen, SettingsScreen), 5, "settings")
        screen = app.screen
        provider = screen.query_one("#provider", Select)
        assert provider.value == KEY
        voice = screen.query_one("#voice", Select)

        def voices() -> list[str]:
            return [v for _, v in voice._options if isinstance(v, str)]

        # the voice list comes from the provider's own list_voices
        await wait_until(lambda: "high" in voices(), 10, "tonebot voices")
        assert voices() == ["low", "high"]
        turn = screen.query_one("#turn-mode", Select)
        assert [v for _, v in turn._options if isinstance(v, str)] == ["push_to_talk"]
