"""The provider contract (issue 12 item 9): every test runs unchanged for every provider.

Push-to-talk turn; two server-VAD turns; barge-in (what was heard = the words in the audio
the speaker played, and that is what the service is told); a reply whose stream drops or
carries a malformed frame still arrives whole; 401 ends cleanly; 429 then 200 completes the
turn; a reply that never comes makes ``voicetui talk`` exit 1.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicetui import paths
from voicetui.audio.ports import ENGINE_RATE
from voicetui.audio.wav import write_wav_pcm16
from voicetui.engine.events import (
    AssistantDone,
    AssistantTextFinal,
    ErrorEvent,
    Interrupted,
    SessionEnded,
)
from voicetui.testing.emulators.common import Turn, speech_like_pcm

Side = Any  # tests/contract/conftest.py: one provider as the contract sees it
Converse = Callable[..., Awaitable[Any]]

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

QUESTION = "What is the weather like?"
REPLY = "It is sunny and warm today, with a light breeze from the sea."
LONG = (
    "Well, the story begins on a quiet morning in a small harbour town, where an old "
    "fisherman mends his nets and tells every passing child about the storm that once "
    "carried his boat far out beyond the lighthouse and back again."
)
SILENCE_RUN_S = 0.3  # a gap this long in the speaker's output is not inside a reply


def clip(*parts: str | float) -> np.ndarray:
    """Speech-like audio for strings, silence (seconds) for floats."""
    return np.concatenate(
        [
            speech_like_pcm(p) if isinstance(p, str) else np.zeros(int(ENGINE_RATE * p), np.float32)
            for p in parts
        ]
    )


def word_ends_ms(pieces: list[str]) -> list[float]:
    """Where each word of the emulator's audio for ``pieces`` ends, in ms."""
    ends: list[float] = []
    total = 0
    for piece in pieces:
        for word in piece.split():
            total += len(speech_like_pcm(word))
            ends.append(total * 1000.0 / ENGINE_RATE)
    return ends


def sound_end(pcm: np.ndarray, start: int = 0, threshold: float = 1e-3) -> int:
    """Index just after the last loud sample before the first silence of SILENCE_RUN_S."""
    loud = np.flatnonzero(np.abs(pcm[start:]) > threshold) + start
    if len(loud) == 0:
        return start
    gaps = np.flatnonzero(np.diff(loud) > SILENCE_RUN_S * ENGINE_RATE)
    return int(loud[gaps[0]] + 1) if len(gaps) else int(loud[-1] + 1)


def assert_whole_reply(run: Any, side: Side, reply: str) -> None:
    finals = run.of(AssistantTextFinal)
    assert [f.text for f in finals] == [reply], finals
    assert not finals[0].interrupted
    voiced = sum(len(speech_like_pcm(p)) for p in side.spoken_pieces(reply))
    audio = run.audio()
    assert len(audio) >= voiced - ENGINE_RATE // 100, (len(audio), voiced)  # all of its audio


async def test_push_to_talk_turn(side: Side, tmp_path: Path, converse: Converse) -> None:
    side.script(Turn(user_text=QUESTION, reply=REPLY))
    run = await converse(side, tmp_path, "push_to_talk", clip(QUESTION))
    (ended,) = run.of(SessionEnded)
    assert ended.code == "input_finished", run.of(ErrorEvent)
    assert run.lines() == [("user", QUESTION), ("assistant", REPLY)]
    assert [d.status for d in run.of(AssistantDone)] == ["completed"]
    assert_whole_reply(run, side, REPLY)


async def test_two_server_vad_turns(side: Side, tmp_path: Path, converse: Converse) -> None:
    side.script(
        Turn(user_text="Hello there.", reply="Hi, nice to hear you."),
        Turn(user_text="And then?", reply="Then we carry on."),
    )
    pcm = clip(0.3, "Hello there", 3.0, "And then", 3.0)
    run = await converse(side, tmp_path, "server_vad", pcm, realtime=True)
    (ended,) = run.of(SessionEnded)
    assert ended.code == "input_finished", run.of(ErrorEvent)
    assert run.lines() == [
        ("user", "Hello there."),
        ("assistant", "Hi, nice to hear you."),
        ("user", "And then?"),
        ("assistant", "Then we carry on."),
    ]
    assert not run.of(Interrupted)


async def test_barge_in_keeps_the_words_that_were_played(
    side: Side, tmp_path: Path, converse: Converse
) -> None:
    """An interrupt about 4 s into an ~11 s reply: the line, and what the service is told,
    hold the words in the audio the speaker really played (± one word)."""
    side.realistic_pace()
    side.script(
        Turn(user_text="Tell me a story, please.", reply=LONG),
        Turn(user_text="Stop there.", reply="Okay."),
    )
    pcm = clip(0.3, "Tell me a story please", 4.8, "Stop there", 4.0)
    run = await converse(side, tmp_path, "server_vad", pcm, realtime=True, limit_s=90)
    (ended,) = run.of(SessionEnded)
    assert ended.code == "input_finished", run.of(ErrorEvent)

    pieces = side.spoken_pieces(LONG)
    reply_pcm = np.concatenate([speech_like_pcm(p) for p in pieces])
    reply_ms = len(reply_pcm) * 1000 / ENGINE_RATE
    (cut,) = run.of(Interrupted)
    assert cut.by == "barge_in"
    assert 2500 <= cut.played_ms <= reply_ms - 3000, (cut.played_ms, reply_ms)  # ~4 s of ~11

    # the words in the played audio: those that had ended by the cut
    truth = [
        w for w, end in zip(LONG.split(), word_ends_ms(pieces), strict=True) if end <= cut.played_ms
    ]
    final = run.of(AssistantTextFinal)[0]
    assert final.interrupted and final.turn_id == cut.turn_id
    assert LONG.startswith(final.text)
    heard = final.text.split()
    print(f"{side.name}: cut at {cut.played_ms} ms of {reply_ms:.0f} ms; heard {len(heard)} "
          f"words, played {len(truth)} words of {len(LONG.split())}")  # fmt: skip
    assert abs(len(heard) - len(truth)) <= 1, (final.text, truth)

    # what the speaker played (its own output file) matches played_ms within one block:
    # the reply's sound in the file, against the sound in its first played_ms of audio
    # (counted in sound samples, so an underrun's silence in the file does not count)
    audio = run.audio()
    start = int(np.flatnonzero(np.abs(audio) > 1e-3)[0])
    measured = int(np.count_nonzero(np.abs(audio[start : sound_end(audio, start)]) > 1e-3))
    heard_pcm = reply_pcm[: cut.played_ms * ENGINE_RATE // 1000]
    expected = int(np.count_nonzero(np.abs(heard_pcm) > 1e-3))
    block_and_fade = int(0.015 * ENGINE_RATE)  # 10 ms block + the 5 ms fade-out
    print(
        f"{side.name}: speaker played {measured / 24:.0f} ms of sound, expected {expected / 24:.0f}"
    )
    assert abs(measured - expected) <= block_and_fade, (measured, expected)

    # and that is what the service now holds (OpenAI: truncated item; Mistral: next turn)
    told = side.told_after_cut()
    assert told is not None
    assert abs(len(told.split()) - len(truth)) <= 1, (told, truth)
    finals = run.of(AssistantTextFinal)
    assert finals[-1].text == "Okay." and not finals[-1].interrupted


async def test_drop_mid_reply_still_delivers_the_whole_reply(
    side: Side, tmp_path: Path, converse: Converse
) -> None:
    side.script(
        Turn(user_text=QUESTION, reply=REPLY),
        Turn(user_text="", reply=REPLY),  # a service asked again answers again
    )
    run = await converse(
        side, tmp_path, "push_to_talk", clip(QUESTION), arm=side.arm_drop_mid_reply
    )
    (ended,) = run.of(SessionEnded)
    assert ended.code == "input_finished", run.of(ErrorEvent)
    assert run.lines() == [("user", QUESTION), ("assistant", REPLY)]
    assert_whole_reply(run, side, REPLY)


async def test_malformed_frame_still_delivers_the_whole_reply(
    side: Side, tmp_path: Path, converse: Converse
) -> None:
    side.script(Turn(user_text=QUESTION, reply=REPLY))
    side.arm_malformed_mid_reply()
    run = await converse(side, tmp_path, "push_to_talk", clip(QUESTION))
    (ended,) = run.of(SessionEnded)
    assert ended.code == "input_finished", run.of(ErrorEvent)
    assert run.lines() == [("user", QUESTION), ("assistant", REPLY)]
    assert_whole_reply(run, side, REPLY)


async def test_401_ends_cleanly_with_one_line(
    side: Side, tmp_path: Path, converse: Converse
) -> None:
    side.script(Turn(user_text=QUESTION, reply=REPLY))
    side.reject_key()
    run = await converse(side, tmp_path, "push_to_talk", clip(QUESTION), limit_s=20)
    (ended,) = run.of(SessionEnded)
    assert ended.code == "error"
    fatal = [e for e in run.of(ErrorEvent) if e.fatal]
    assert len(fatal) == 1 and fatal[0].code == "key_rejected"
    assert "\n" not in fatal[0].message and "voicetui keys set" in fatal[0].message
    assert run.of(AssistantTextFinal) == []


async def test_429_then_200_completes_the_turn(
    side: Side, tmp_path: Path, converse: Converse
) -> None:
    side.script(Turn(user_text=QUESTION, reply=REPLY))
    side.rate_limit_once()
    run = await converse(side, tmp_path, "push_to_talk", clip(QUESTION))
    (ended,) = run.of(SessionEnded)
    assert ended.code == "input_finished", run.of(ErrorEvent)
    assert run.lines() == [("user", QUESTION), ("assistant", REPLY)]
    assert not [e for e in run.of(ErrorEvent) if e.fatal]


async def test_no_reply_ever_makes_talk_exit_1(
    side: Side, tmp_path: Path, converse: Converse
) -> None:
    side.script(Turn(user_text=QUESTION, reply=REPLY))
    side.never_reply()
    config = paths.config_file()
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'provider = "{side.spec_key}"\n\n'
        f'[providers."{side.spec_key}"]\n'
        f'baseUrl = "{side.emu.base_url}"\n'
        'turnDetection = "push_to_talk"\n',
        encoding="utf-8",
    )
    wav = tmp_path / "q.wav"
    write_wav_pcm16(wav, clip(QUESTION))
    env = dict(os.environ)
    env.update({"OPENAI_API_KEY": "sk-test", "MISTRAL_API_KEY": "test-key"})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicetui", "talk", "--input", str(wav),
        "--output", str(tmp_path / "a.wav"),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 100)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 1, (out.decode(), err.decode())
    assert lines and lines[-1].startswith("voicetui talk: "), lines
    assert "no complete reply" in lines[-1] or "reply" in lines[-1], lines
