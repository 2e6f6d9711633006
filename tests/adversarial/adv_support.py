"""Helpers shared by the adversarial tests (real subprocesses against the emulators)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from voicetui import paths
from voicetui.audio.wav import write_wav_pcm16
from voicetui.testing.emulators.common import speech_like_pcm

SR = 24_000
PY = sys.executable


def write_clip(path: Path, *parts: str | float) -> Path:
    """Speech-like audio for each string, silence for each number of seconds."""
    pcm = [
        speech_like_pcm(p) if isinstance(p, str) else np.zeros(int(SR * p), np.float32)
        for p in parts
    ]
    write_wav_pcm16(path, np.concatenate(pcm))
    return path


def write_config(base_url: str, mode: str = "push_to_talk") -> Path:
    """A config pointing the OpenAI provider at ``base_url``."""
    path = paths.config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        'provider = "ai-voice-conv.openai"\n\n'
        '[providers."ai-voice-conv.openai"]\n'
        f'baseUrl = "{base_url}"\n'
        f'turnDetection = "{mode}"\n'
        "silenceDurationMs = 300\n",
        encoding="utf-8",
    )
    return path


def env(**extra: str) -> dict[str, str]:
    out = dict(os.environ)
    out.update({"OPENAI_API_KEY": "sk-test", "PYTHONUNBUFFERED": "1"}, **extra)
    return out


def voicetui(*args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m voicetui ARGS`` and capture its output."""
    return subprocess.run(
        [PY, "-m", "voicetui", *args],
        check=False, env=env(**extra), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def assert_one_line_no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
