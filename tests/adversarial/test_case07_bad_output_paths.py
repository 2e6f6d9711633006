"""Issue 13 case 7: a bad output path is one line on stderr, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from adv_support import assert_one_line_no_traceback, voicetui, write_clip

from voicetui.engine.events import AssistantTextFinal, UserTranscript
from voicetui.engine.session import new_session_id
from voicetui.engine.transcript import TranscriptStore


def test_specs_docs_into_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("keep me")
    result = voicetui("specs", "docs", "--out", str(target))
    assert result.returncode == 1
    assert "not a directory" in result.stderr
    assert_one_line_no_traceback(result.stderr)
    assert target.read_text() == "keep me"


def test_specs_docs_into_proc(tmp_path: Path) -> None:
    result = voicetui("specs", "docs", "--out", "/proc/voicetui-x")
    assert result.returncode == 1
    assert_one_line_no_traceback(result.stderr)


def test_transcripts_export_into_a_directory(tmp_path: Path) -> None:
    store = TranscriptStore()
    sid = new_session_id()
    store.open(sid)
    store.append(UserTranscript(turn_id="t", text="question", final=True))
    store.append(AssistantTextFinal(turn_id="a", text="answer"))
    store.close()
    store.wait()
    result = voicetui("transcripts", "export", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "directory" in result.stderr
    assert_one_line_no_traceback(result.stderr)


@pytest.mark.parametrize("flag", ["--output", "--transcript"])
def test_talk_output_into_a_directory(tmp_path: Path, flag: str) -> None:
    clip = write_clip(tmp_path / "in.wav", "Hello")
    outdir = tmp_path / "out"
    outdir.mkdir()
    result = voicetui("talk", "openai", "--input", str(clip), flag, str(outdir))
    assert result.returncode != 0
    assert "directory" in result.stderr
    assert "Exception ignored" not in result.stderr
    assert_one_line_no_traceback(result.stderr)
