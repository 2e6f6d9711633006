"""``voicetui talk`` from the command line, against the OpenAI emulator (real subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicetui import paths
from voicetui.audio.wav import read_wav_mono, write_wav_pcm16
from voicetui.testing.emulators.cli import emulator_process as start_emulator
from voicetui.testing.emulators.common import Turn, speech_like_pcm

pytestmark = pytest.mark.timeout(90)

SR = 24_000
PY = sys.executable


def write_clip(path: Path, *parts: str | float) -> Path:
    pcm = [
        speech_like_pcm(p) if isinstance(p, str) else np.zeros(int(SR * p), np.float32)
        for p in parts
    ]
    write_wav_pcm16(path, np.concatenate(pcm))
    return path


def write_config(base_url: str, mode: str = "push_to_talk") -> Path:
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


@pytest.fixture
def emulator_process() -> Iterator[str]:
    """The emulator started by hand: ``python -m voicetui.testing.emulators.openai``."""
    with start_emulator(
        "openai", "--pace", "0",
        "--user-text", "What is the weather like?", "--reply", "Sunny and warm all day.",
    ) as url:  # fmt: skip
        yield url


def test_talk_from_the_command_line(emulator_process: str, tmp_path: Path) -> None:
    write_config(emulator_process)
    clip = write_clip(tmp_path / "q.wav", "What is the weather like")
    out_wav, out_jsonl = tmp_path / "a.wav", tmp_path / "t.jsonl"
    result = subprocess.run(
        [PY, "-m", "voicetui", "talk", "openai", "--input", str(clip), "--output", str(out_wav),
         "--transcript", str(out_jsonl)],
        check=False, env=env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "user: What is the weather like?",
        "assistant: Sunny and warm all day.",
    ]
    assert "Traceback" not in result.stderr
    assert len(read_wav_mono(out_wav)) == len(speech_like_pcm("Sunny and warm all day."))
    events = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "StateChanged" and "SessionStarted" in kinds
    assert kinds[-1] == "StateChanged" and "SessionEnded" in kinds
    assert "AssistantTextDelta" in kinds and "AssistantAudio" not in kinds
    # usage and transcripts subcommands read what the run stored
    usage = subprocess.run(
        [PY, "-m", "voicetui", "usage", "openai", "--json"],
        check=False, env=env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert usage.returncode == 0, usage.stderr
    today = json.loads(usage.stdout)["ai-voice-conv.openai"]["today"]
    assert today["requests"] == 1 and today["output_tokens"] > 0
    md = tmp_path / "t.md"
    export = subprocess.run(
        [PY, "-m", "voicetui", "transcripts", "export", "--out", str(md)],
        check=False, env=env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    text = md.read_text()
    assert "**user:** What is the weather like?" in text
    assert "**assistant:** Sunny and warm all day." in text


def test_talk_with_a_rejected_key_says_so_in_one_line(
    openai_emulator_thread: Any, tmp_path: Path
) -> None:
    openai_emulator_thread.faults.ws_reject_status = 401
    openai_emulator_thread.faults.ws_reject_count = 3
    write_config(openai_emulator_thread.base_url)
    clip = write_clip(tmp_path / "q.wav", "Hello")
    result = subprocess.run(
        [PY, "-m", "voicetui", "talk", "openai", "--input", str(clip), "--output",
         str(tmp_path / "a.wav")],
        check=False, env=env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "rejected the API key" in lines[0], result.stderr
    assert len(openai_emulator_thread.log.of("ws_open")) == 1


def test_talk_with_a_missing_file_or_no_server(tmp_path: Path) -> None:
    write_config("http://127.0.0.1:9")
    clip = write_clip(tmp_path / "q.wav", "Hello")
    missing = subprocess.run(
        [PY, "-m", "voicetui", "talk", "--input", str(tmp_path / "nope.wav")],
        check=False, env=env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert missing.returncode != 0 and "nope.wav" in missing.stderr
    assert "Traceback" not in missing.stderr
    refused = subprocess.run(
        [PY, "-m", "voicetui", "talk", "--input", str(clip), "--output", str(tmp_path / "a.wav")],
        check=False, env=env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "voicetui talk: cannot reach OpenAI at http://127.0.0.1:9: connection refused"
    ]


def test_kill_9_during_a_reply_keeps_every_final_line(
    openai_emulator_thread: Any, tmp_path: Path
) -> None:
    emu = openai_emulator_thread
    emu.timing.audio_pace = 1.0  # replies stream in real time: the kill lands mid-reply
    emu.script.turns = [
        Turn(user_text="First question.", reply="First answer, short."),
        Turn(user_text="Second question.", reply="A second answer that goes on and on for long."),
    ]
    write_config(emu.base_url, mode="server_vad")
    clip = write_clip(tmp_path / "q.wav", 0.3, "First question", 2.5, "Second question", 6.0)
    out_jsonl = tmp_path / "t.jsonl"
    proc = subprocess.Popen(
        [PY, "-m", "voicetui", "talk", "openai", "--input", str(clip), "--output",
         str(tmp_path / "a.wav"), "--transcript", str(out_jsonl)],
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    printed: list[str] = []
    try:
        while len(printed) < 3:  # user 1, assistant 1, user 2
            line = proc.stdout.readline()
            assert line, f"talk ended early: {proc.stderr.read() if proc.stderr else ''}"
            printed.append(line.rstrip("\n"))
        # wait until the second reply is streaming, then kill without warning
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            deltas = [
                e for e in emu.log.of("ws_out") if e.event_type == "response.output_audio.delta"
            ]
            if len({e.body["response_id"] for e in deltas if e.body}) >= 2:
                break
            time.sleep(0.02)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert printed == [
        "user: First question.",
        "assistant: First answer, short.",
        "user: Second question.",
    ]

    def finals(path: Path) -> list[str]:
        out = []
        for raw in path.read_text(encoding="utf-8").splitlines():
            event = json.loads(raw)  # every line parses
            if event["type"] == "UserTranscript" and event["final"]:
                out.append(f"user: {event['text']}")
            elif event["type"] == "AssistantTextFinal":
                out.append(f"assistant: {event['text']}")
        return out

    assert finals(out_jsonl) == printed
    # the session store in the data dir holds the same lines
    (session,) = sorted(paths.transcripts_dir().glob("*.jsonl"))
    assert finals(session) == printed


def test_talk_server_vad_barge_in_from_the_command_line(
    openai_emulator_thread: Any, tmp_path: Path
) -> None:
    emu = openai_emulator_thread
    long_reply = "This answer runs on for a good while so that the user can cut into it."
    emu.script.turns = [
        Turn(user_text="Hello there.", reply=long_reply),
        Turn(user_text="Wait, stop.", reply="Okay."),
    ]
    write_config(emu.base_url, mode="server_vad")
    clip = write_clip(tmp_path / "q.wav", 0.3, "Hello there", 1.8, "Wait stop", 0.3)
    out_wav = tmp_path / "a.wav"
    result = subprocess.run(
        [PY, "-m", "voicetui", "talk", "openai", "--input", str(clip), "--output", str(out_wav)],
        check=False, env=env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "user: Hello there."
    assert lines[1].startswith("assistant: ") and lines[1].endswith(" [interrupted]")
    heard = lines[1].removeprefix("assistant: ").removesuffix(" [interrupted]")
    assert heard and long_reply.startswith(heard) and heard != long_reply
    assert lines[2:] == ["user: Wait, stop.", "assistant: Okay."]
    (truncate,) = [
        e.body for e in emu.log.of("ws_in") if e.event_type == "conversation.item.truncate"
    ]
    # OUT.wav is the real-time speaker: the cut reply is in it only up to the cut
    played = np.count_nonzero(np.abs(read_wav_mono(out_wav)) > 1e-4) * 1000 / SR
    full = (len(speech_like_pcm(long_reply)) + len(speech_like_pcm("Okay."))) * 1000 / SR
    assert played < full - 1000
    assert truncate["audio_end_ms"] > 300


def test_ctrl_c_ends_the_talk_cleanly(openai_emulator_thread: Any, tmp_path: Path) -> None:
    emu = openai_emulator_thread
    emu.timing.audio_pace = 1.0
    emu.script.turns = [Turn(user_text="Hello there.", reply="A reply long enough to be cut.")]
    write_config(emu.base_url, mode="server_vad")
    clip = write_clip(tmp_path / "q.wav", 0.3, "Hello there", 5.0)
    out_jsonl = tmp_path / "t.jsonl"
    proc = subprocess.Popen(
        [PY, "-m", "voicetui", "talk", "openai", "--input", str(clip), "--output",
         str(tmp_path / "a.wav"), "--transcript", str(out_jsonl)],
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == "user: Hello there.\n"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert out.startswith("assistant: ") and out.rstrip().endswith("[interrupted]")
    events = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    (ended,) = [e for e in events if e["type"] == "SessionEnded"]
    assert ended["code"] == "user" and "Ctrl+C" in ended["reason"]
