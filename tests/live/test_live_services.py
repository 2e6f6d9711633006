"""One spoken push-to-talk turn and one server-VAD turn per provider, from a WAV, against the
real service; then health and doctor with the same config. Opt-in: see ``conftest.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from live_support import KEY_ENV, live_key

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]
SPEC = {"openai": "ai-voice-conv.openai", "mistral": "ai-voice-conv.mistral"}
QUESTION = "What is the capital of France? Answer in one short sentence."


def _voicetui(
    *args: str, env: dict[str, str], timeout: float = 150
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voicetui", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def _env(tmp_path: Path, provider: str, key: str, mode: str) -> tuple[dict[str, str], Path]:
    config = tmp_path / "config.toml"
    config.write_text(
        f'provider = "{SPEC[provider]}"\n[providers."{SPEC[provider]}"]\nturnDetection = "{mode}"\n'
    )
    env = {k: v for k, v in os.environ.items() if k not in KEY_ENV.values()}
    env[KEY_ENV[provider]] = key
    return env, config


def _speech(tmp_path: Path) -> Path:
    wav = tmp_path / "question.wav"
    subprocess.run(
        ["bash", str(ROOT / "tools" / "audio-sandbox.sh"), "speech", QUESTION, str(wav), "24000"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with wave.open(str(wav), "rb") as w:  # two seconds of silence after: server VAD ends the turn
        params, frames = w.getparams(), w.readframes(w.getnframes())
    with wave.open(str(wav), "wb") as w:
        w.setparams(params)
        w.writeframes(frames + b"\x00\x00" * params.framerate * 2)
    return wav


@pytest.mark.parametrize("mode", ["push_to_talk", "server_vad"])
@pytest.mark.parametrize("provider", ["openai", "mistral"])
def test_one_spoken_turn(provider: str, mode: str, tmp_path: Path) -> None:
    key = live_key(provider)
    env, config = _env(tmp_path, provider, key, mode)
    out, transcript = tmp_path / "reply.wav", tmp_path / "t.jsonl"
    proc = _voicetui(
        "--config", str(config), "talk", provider,
        "--input", str(_speech(tmp_path)), "--output", str(out), "--transcript", str(transcript),
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert key not in proc.stdout + proc.stderr
    events = [json.loads(line) for line in transcript.read_text().splitlines() if line.strip()]
    users = [e for e in events if e["type"] == "UserTranscript" and e.get("final")]
    replies = [e for e in events if e["type"] == "AssistantTextFinal"]
    assert users and any(e["text"].strip() for e in users), events
    assert "paris" in " ".join(e["text"] for e in users + replies).lower()
    with wave.open(str(out), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert pcm.size and int(np.abs(pcm).max()) > 1000, "the reply has audio"


@pytest.mark.parametrize("provider", ["openai", "mistral"])
def test_health_and_doctor_pass(provider: str, tmp_path: Path) -> None:
    key = live_key(provider)
    env, config = _env(tmp_path, provider, key, "server_vad")
    health = _voicetui("--config", str(config), "health", provider, "--json", env=env)
    assert health.returncode == 0, health.stdout + health.stderr
    assert json.loads(health.stdout)[0]["status"] == "ok"
    doctor = _voicetui("--config", str(config), "doctor", "--json", env=env)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    for part in ("key", "model", "voice", "handshake"):
        assert checks[f"{provider}: {part}"]["status"] in ("ok", "warn"), checks
