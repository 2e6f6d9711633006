"""``voicetui doctor``: bounded with every provider unreachable, all ok against the emulators
and the virtual devices; the Doctor screen shows the same checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from voicetui.testing.emulators.common import free_port

STATUSES = {"ok", "warn", "fail", "skip"}
PROVIDER_PARTS = ("key", "model", "voice", "handshake", "round trip")
EXPECTED = [
    "python",
    "portaudio",
    "input device",
    "output device",
    "microphone level",
    "keyring",
    *(f"{p}: {part}" for p in ("mistral", "openai") for part in PROVIDER_PARTS),
]


def _doctor(
    config: Path, *extra: str, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], float]:
    env = dict(
        os.environ, OPENAI_API_KEY="sk-doctor-0123456789", MISTRAL_API_KEY="mk-doctor-0123456789"
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "voicetui", "--config", str(config), "doctor", "--json", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    return proc, time.perf_counter() - started


def _config(path: Path, openai_url: str, mistral_url: str) -> Path:
    path.write_text(
        'provider = "ai-voice-conv.openai"\n'
        '[audio]\ninput_device = "pulse"\noutput_device = "pulse"\n'
        f'[providers."ai-voice-conv.openai"]\nbaseUrl = "{openai_url}"\n'
        f'[providers."ai-voice-conv.mistral"]\nbaseUrl = "{mistral_url}"\n'
    )
    return path


def _checks(proc: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    doc = json.loads(proc.stdout)
    checks: list[dict[str, str]] = doc["checks"]
    for c in checks:
        assert set(c) == {"name", "status", "detail"} and c["status"] in STATUSES
        assert c["detail"] and "\n" not in c["detail"]
    return checks


@pytest.mark.audio
def test_doctor_with_every_provider_unreachable_is_bounded(tmp_path: Path) -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    proc, elapsed = _doctor(_config(tmp_path / "c.toml", *dead))
    assert elapsed <= 20.0, f"doctor took {elapsed:.1f} s"
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "sk-doctor" not in proc.stdout + proc.stderr
    checks = _checks(proc)
    assert [c["name"] for c in checks] == EXPECTED
    by_name = {c["name"]: c for c in checks}
    for p in ("mistral", "openai"):
        assert by_name[f"{p}: key"]["status"] == "fail"
        assert "unreachable" in by_name[f"{p}: key"]["detail"]
        assert all(by_name[f"{p}: {part}"]["status"] == "skip" for part in PROVIDER_PARTS[1:])


@pytest.mark.audio
@pytest.mark.keyring
def test_doctor_all_ok_with_the_emulators_and_virtual_devices(
    openai_emulator_thread: Any, mistral_emulator_thread: Any, tmp_path: Path
) -> None:
    config = _config(
        tmp_path / "c.toml", openai_emulator_thread.base_url, mistral_emulator_thread.base_url
    )
    speech = tmp_path / "speech.wav"
    subprocess.run(
        [
            "bash",
            "tools/audio-sandbox.sh",
            "speech",
            "Testing the microphone, one two three.",
            str(speech),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    stop = threading.Event()

    def talk() -> None:  # the user speaks while doctor listens
        while not stop.is_set():
            subprocess.run(["paplay", "--device=vmic_feed", str(speech)], check=False, timeout=30)

    speaker = threading.Thread(target=talk, daemon=True)
    speaker.start()
    try:
        proc, elapsed = _doctor(config)
    finally:
        stop.set()
        speaker.join(timeout=30)
    checks = _checks(proc)
    assert [c["name"] for c in checks] == EXPECTED
    assert all(c["status"] == "ok" for c in checks), [c for c in checks if c["status"] != "ok"]
    # (the 20 s bound is the unreachable case's; here SDK imports dominate on a loaded host)
    assert proc.returncode == 0, f"{elapsed:.1f} s"
    detail = {c["name"]: c["detail"] for c in checks}
    assert "gpt-realtime-2.1 (active)" in detail["openai: model"]
    assert "opened and closed" in detail["openai: handshake"]
    assert "voxtral-mini-transcribe-realtime-3" in detail["mistral: handshake"]
    assert "source" not in detail["openai: key"] and "environment" in detail["openai: key"]


def test_retired_or_missing_model_fails_its_doctor_line(
    openai_emulator_thread: Any, tmp_path: Path
) -> None:
    import asyncio

    from voicetui.config import load_config
    from voicetui.doctor import DoctorContext, _check_provider
    from voicetui.keys import KeyStore

    path = tmp_path / "c.toml"
    path.write_text(
        '[providers."ai-voice-conv.openai"]\n'
        f'baseUrl = "{openai_emulator_thread.base_url}"\nmodel = "gpt-realtime-9000"\n'
    )
    ctx = DoctorContext(
        config=load_config(path),
        keys=KeyStore(environ={"OPENAI_API_KEY": "sk-doctor-0123456789"}),
        timeout_s=5,
    )
    checks = asyncio.run(_check_provider(ctx, "ai-voice-conv.openai"))
    by_name = {c.name: c for c in checks}
    assert by_name["openai: key"].status == "ok"
    assert by_name["openai: model"].status == "fail"
    assert "'gpt-realtime-9000' is not available" in by_name["openai: model"].detail
    assert "use 'gpt-realtime-2.1'" in by_name["openai: model"].detail
    assert by_name["openai: handshake"].status == "fail"  # the service refuses the model too
    assert "model_not_found" in by_name["openai: handshake"].detail


def test_doctor_says_when_the_local_vad_ends_mistral_turns(
    mistral_emulator_thread: Any, tmp_path: Path
) -> None:
    import asyncio

    from voicetui.config import load_config
    from voicetui.doctor import DoctorContext, _check_provider
    from voicetui.keys import KeyStore

    path = tmp_path / "c.toml"
    path.write_text(
        '[providers."ai-voice-conv.mistral"]\n'
        f'baseUrl = "{mistral_emulator_thread.base_url}"\n'
        'transcriptionModel = "voxtral-mini-transcribe-realtime-2602"\n'
    )
    ctx = DoctorContext(
        config=load_config(path),
        keys=KeyStore(environ={"MISTRAL_API_KEY": "mk-doctor-0123456789"}),
        timeout_s=5,
    )
    checks = {c.name: c for c in asyncio.run(_check_provider(ctx, "ai-voice-conv.mistral"))}
    model = checks["mistral: model"]
    assert model.status == "ok"
    assert "voxtral-mini-transcribe-realtime-2602 (active; no server turn detection" in model.detail
    assert checks["mistral: handshake"].status == "ok"
