"""Issue 13 case 10: one atomic-write helper, no ``fcntl``, a bounded log (see case 4), and
the engine tells the user (one ErrorEvent) when the disk refuses the transcript."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voicetui.audio.factory import AudioOptions, open_audio
from voicetui.audio.wav import write_wav_pcm16
from voicetui.engine.events import ErrorEvent, SessionEnded
from voicetui.engine.session import ConversationEngine
from voicetui.engine.transcript import TranscriptStore
from voicetui.providers.base import ProviderSettings
from voicetui.providers.openai.realtime import OpenAIRealtimeProvider
from voicetui.testing.emulators.openai import OpenAIEmulator

PACKAGE = Path(__file__).resolve().parents[2] / "voicetui"
SPEC = "ai-voice-conv.openai"


def test_one_atomic_write_helper_and_no_fcntl() -> None:
    offenders: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "fileio.py" or "testing" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        for pattern in (r"\bfcntl\b", r"\bmkstemp\(", r"\bos\.replace\(", r"\.write_text\("):
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(PACKAGE)}: {pattern}")
    assert offenders == []


def test_a_session_builds_without_fcntl(tmp_path: Path) -> None:
    code = (
        "import sys, warnings; sys.modules['fcntl'] = None; warnings.simplefilter('ignore')\n"
        "from pathlib import Path\n"
        "from voicetui.engine.usage import UsageStore\n"
        "from voicetui.engine.events import Usage\n"
        "import voicetui.engine.factory, voicetui.engine.transcript, voicetui.config\n"
        f"s = UsageStore(Path({str(tmp_path)!r})); s.add(Usage(provider='p', requests=1))\n"
        "s.flush(); print(s.today('p').requests)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_the_engine_says_once_when_the_transcript_cannot_be_written(
    openai_emulator: OpenAIEmulator, tmp_path: Path
) -> None:
    write_wav_pcm16(tmp_path / "s.wav", np.zeros(24000, np.float32))
    rig = open_audio(AudioOptions(), input_wav=tmp_path / "s.wav",
                     output_wav=tmp_path / "o.wav", realtime_input=True)  # fmt: skip
    settings = ProviderSettings(spec_key=SPEC, model="gpt-realtime", voice="marin",
                                turn_detection="push_to_talk", max_session_duration_s=600,
                                base_url=openai_emulator.base_url)  # fmt: skip
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the transcripts dir should be")
    store = TranscriptStore(blocker / "transcripts")
    engine = ConversationEngine(
        provider=OpenAIRealtimeProvider(), settings=settings, api_key="sk-test",
        audio_in=rig.input, audio_out=rig.output, gate=rig.gate, preroll_ms=0,
        end_when_input_ends=True, store=store,
    )  # fmt: skip
    errors: list[ErrorEvent] = []
    engine.subscribe(lambda e: errors.append(e) if isinstance(e, ErrorEvent) else None)
    ended = await engine.run()
    await asyncio.to_thread(store.wait)
    assert isinstance(ended, SessionEnded)
    storage = [e for e in errors if e.code == "storage"]
    assert len(storage) == 1, errors
    assert storage[0].message.startswith("transcript not saved: ")
    assert not storage[0].fatal  # the conversation goes on
    assert store.unsaved, "the refused lines are kept in memory"
    # and an export (what the console offers) still has the whole session
    markdown = TranscriptStore(blocker / "transcripts").export_markdown(engine.session_id)
    assert f"# Conversation {engine.session_id}" in markdown
    assert "*Session ended:" in markdown
