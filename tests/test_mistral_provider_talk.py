"""``voicetui talk mistral`` from the command line against the Mistral emulator started by hand
(real subprocesses, real SDK, WAV audio endpoints)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from voicetui import paths
from voicetui.audio.wav import read_wav_mono, write_wav_pcm16
from voicetui.testing.emulators.cli import emulator_process as start_emulator
from voicetui.testing.emulators.common import speech_like_pcm

pytestmark = pytest.mark.timeout(90)

PY = sys.executable
USER = "Hello there, how are you?"
REPLY = "Fine, thanks. What can I do for you?"
SEED_LINE = re.compile(r"^\[\d+\.\ds -> \d+\.\ds\] speaker_\d+ : .+")


@pytest.fixture
def emulator_process() -> Iterator[str]:
    """``python -m voicetui.testing.emulators.mistral`` with two diarized speakers."""
    with start_emulator(
        "mistral", "--pace", "0", "--user-text", USER, "--reply", REPLY,
        "--speakers", "speaker_1=Hello there,", "speaker_2=how are you?",
    ) as url:  # fmt: skip
        yield url


def write_config(base_url: str) -> Path:
    path = paths.config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        'provider = "ai-voice-conv.mistral"\n\n'
        '[providers."ai-voice-conv.mistral"]\n'
        f'baseUrl = "{base_url}"\n'
        'turnDetection = "push_to_talk"\n'
        'model = "mistral-small-latest"\n',
        encoding="utf-8",
    )
    return path


def test_talk_mistral_from_the_command_line(emulator_process: str, tmp_path: Path) -> None:
    write_config(emulator_process)
    clip = tmp_path / "q.wav"
    silence = np.zeros(4800, np.float32)
    write_wav_pcm16(clip, np.concatenate([silence, speech_like_pcm(USER), silence]))
    out_wav, out_jsonl = tmp_path / "a.wav", tmp_path / "t.jsonl"
    env = dict(os.environ, MISTRAL_API_KEY="test-key", PYTHONUNBUFFERED="1")
    result = subprocess.run(
        [PY, "-m", "voicetui", "talk", "mistral", "--input", str(clip), "--output", str(out_wav),
         "--transcript", str(out_jsonl)],
        check=False, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    # one user line per turn: the diarized relabel replaces the plain line, in the seed's
    # exact form "[0.1s -> 1.5s] speaker_1 : …"
    assert f"user: {USER}" not in lines, lines
    assert lines[-1] == f"assistant: {REPLY}", lines
    labelled = [line for line in lines if SEED_LINE.match(line)]
    assert len(labelled) == 2 and lines[:2] == labelled, lines
    assert labelled[0].startswith("[0.2s -> ") and "speaker_1 : Hello there," in labelled[0]
    assert "speaker_2 : how are you?" in labelled[1]
    # the whole reply's audio, the transcript events on disk
    assert len(read_wav_mono(out_wav)) == len(speech_like_pcm(REPLY))
    events = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    relabels = [e for e in events if e["type"] == "UserTranscript" and e["relabel"]]
    assert [(e["speaker"], e["segment_index"]) for e in relabels] == [
        ("speaker_1", 0),
        ("speaker_2", 1),
    ]
    kinds = [e["type"] for e in events]
    assert "SessionEnded" in kinds and "AssistantAudio" not in kinds
    assert "TurnLatency" in kinds and "Usage" in kinds
