"""Headless polish (issue 14): one user line per turn in the seed's form, a progress line
while a reply plays, help for every option, failed sessions not listed, one mask shape."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from voicetui.cli import build_parser, main
from voicetui.engine.events import (
    AssistantAudio,
    AssistantTextFinal,
    SessionEnded,
    SessionStarted,
    UserTranscript,
)
from voicetui.engine.talk import Printer, seed_line
from voicetui.engine.transcript import TranscriptStore


class Terminal(io.StringIO):
    """A stderr that says it is a terminal (the progress line is for people, not logs)."""

    def isatty(self) -> bool:
        return True


def _actions(parser: argparse.ArgumentParser, where: str) -> list[tuple[str, argparse.Action]]:
    out: list[tuple[str, argparse.Action]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _actions(sub, f"{where} {name}")
        elif not isinstance(action, argparse._HelpAction):
            out.append((where, action))
    return out


def test_every_option_and_argument_has_help_text() -> None:
    missing = [
        f"{where}: {'/'.join(a.option_strings) or a.dest}"
        for where, a in _actions(build_parser(), "voicetui")
        if not a.help
    ]
    assert not missing, missing


def test_seed_form_has_a_space_before_the_colon() -> None:
    line = seed_line("Hello, how are you doing today?", "speaker_1", 0.1, 1.5)
    assert line == "[0.1s -> 1.5s] speaker_1 : Hello, how are you doing today?"
    assert seed_line("hi", None, None, None) == "user: hi"


def test_one_user_line_per_turn_the_diarized_one_when_there_is_one() -> None:
    out, err = io.StringIO(), Terminal()
    printer = Printer(out=out, err=err, relabels=True)
    events = [
        UserTranscript(turn_id="u1", text="Hello there, how are you?", final=True),
        AssistantAudio(turn_id="r1", samples=24_000),
        AssistantAudio(turn_id="r1", samples=36_000),
        UserTranscript(turn_id="u1", text="Hello there,", final=True, speaker="speaker_1",
                       start=0.2, end=1.0, relabel=True),
        UserTranscript(turn_id="u1", text="how are you?", final=True, speaker="speaker_2",
                       start=1.1, end=1.9, segment_index=1, relabel=True),
        AssistantTextFinal(turn_id="r1", text="Fine, thanks."),
        # a turn with no diarization: its plain line, once, before the reply
        UserTranscript(turn_id="u2", text="And you?", final=True),
        AssistantTextFinal(turn_id="r2", text="Me too."),
        SessionEnded(reason="input finished", code="input_finished"),
    ]  # fmt: skip
    for event in events:
        printer(event)
    assert out.getvalue().splitlines() == [
        "[0.2s -> 1.0s] speaker_1 : Hello there,",
        "[1.1s -> 1.9s] speaker_2 : how are you?",
        "assistant: Fine, thanks.",
        "user: And you?",
        "assistant: Me too.",
    ]
    # while the reply played: one progress line rewritten in place, cleared before the text
    progress = err.getvalue()
    assert "\r\x1b[Kassistant speaking… 1.0 s" in progress
    assert "\r\x1b[Kassistant speaking… 2.5 s" in progress
    assert progress.endswith("\r\x1b[K") and "\n" not in progress


@pytest.mark.asyncio
async def test_a_late_relabel_still_wins_and_the_reply_waits_behind_it() -> None:
    """Under load the diarized pass can finish after the reply: the reply's line waits."""
    import asyncio

    out = io.StringIO()
    printer = Printer(out=out, err=io.StringIO(), relabels=True)
    printer(UserTranscript(turn_id="u1", text="Hello there, how are you?", final=True))
    printer(AssistantTextFinal(turn_id="r1", text="Fine, thanks."))
    assert out.getvalue() == ""  # held, not the plain line
    for index, (who, text) in enumerate([("speaker_1", "Hello there,"), ("speaker_2", "how?")]):
        printer(UserTranscript(turn_id="u1", text=text, final=True, speaker=who,
                               start=0.2 + index, end=0.9 + index, segment_index=index,
                               relabel=True))  # fmt: skip
    await asyncio.sleep(0.05)
    assert out.getvalue().splitlines() == [
        "[0.2s -> 0.9s] speaker_1 : Hello there,",
        "[1.2s -> 1.9s] speaker_2 : how?",
        "assistant: Fine, thanks.",
    ]


@pytest.mark.asyncio
async def test_without_a_relabel_the_reply_is_not_held_for_long() -> None:
    import asyncio

    from voicetui.engine import talk

    out = io.StringIO()
    printer = Printer(out=out, err=io.StringIO(), relabels=True)
    original = talk.RELABEL_WAIT_S
    talk.RELABEL_WAIT_S = 0.05
    try:
        printer(UserTranscript(turn_id="u1", text="Hi.", final=True))
        printer(AssistantTextFinal(turn_id="r1", text="Hello."))
        await asyncio.sleep(0.2)
    finally:
        talk.RELABEL_WAIT_S = original
    assert out.getvalue().splitlines() == ["user: Hi.", "assistant: Hello."]


def test_a_provider_without_a_second_pass_prints_the_user_line_at_once() -> None:
    out = io.StringIO()
    printer = Printer(out=out, err=io.StringIO())
    printer(UserTranscript(turn_id="u1", text="Hello there.", final=True))
    assert out.getvalue() == "user: Hello there.\n"


def test_no_progress_line_when_stderr_is_not_a_terminal() -> None:
    out, err = io.StringIO(), io.StringIO()
    printer = Printer(out=out, err=err)
    printer(AssistantAudio(turn_id="r1", samples=48_000))
    printer(AssistantTextFinal(turn_id="r1", text="ok"))
    assert err.getvalue() == "" and out.getvalue() == "assistant: ok\n"


def test_a_failed_session_is_not_listed_as_a_conversation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    store = TranscriptStore()
    store.open("20260101-120000-failed")
    store.append(
        SessionStarted(provider="p", model="m", voice="v", turn_detection="push_to_talk",
                       session_id="20260101-120000-failed", max_duration_s=60)
    )  # fmt: skip
    store.append(SessionEnded(reason="the API key was rejected", code="error"))
    store.open("20260101-120100-talked")
    store.append(UserTranscript(turn_id="u1", text="hello", final=True))
    store.append(AssistantTextFinal(turn_id="r1", text="hi"))
    store.close()
    assert store.wait() and store.failure is None, store.failure
    assert main(["transcripts", "list"]) == 0
    listed = capsys.readouterr().out
    assert "talked" in listed and "failed" not in listed, listed


def test_talk_keeps_native_fd2_noise_out_of_stderr(tmp_path: Path) -> None:
    """ALSA writes straight to fd 2 (underruns without --output): `talk` sends that to the
    log while its own notices still reach the terminal's stderr."""
    import subprocess
    import sys

    script = (
        "import argparse, os, sys\n"
        "from voicetui.engine import talk\n"
        "def noisy(args, err):\n"
        "    os.write(2, b'ALSA lib pcm.c:8570:(snd_pcm_recover) underrun occurred\\n')\n"
        "    print('voicetui talk: our own notice', file=err, flush=True)\n"
        "    return 0\n"
        "talk._talk = noisy\n"
        "sys.exit(talk.cli_main(argparse.Namespace()))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=env,
        capture_output=True,
        timeout=30,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "ALSA lib" not in result.stderr
    assert "voicetui talk: our own notice" in result.stderr
    logs = "".join(p.read_text() for p in (tmp_path / "state").rglob("*.log"))
    assert "underrun occurred" in logs
