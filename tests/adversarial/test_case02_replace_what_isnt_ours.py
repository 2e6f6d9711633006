"""Issue 13 case 2: writing must never replace what is not ours."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from adv_support import assert_one_line_no_traceback, voicetui, write_clip

from voicetui import fileio
from voicetui.config import ConfigError, load_config, update_config


def test_saving_the_config_through_a_symlink_updates_its_target(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "voicetui.toml"
    real.parent.mkdir()
    real.write_text('theme = "textual-dark"\n')
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    update_config(link, theme="nord")
    assert link.is_symlink(), "the link was replaced by a regular file"
    assert load_config(link).theme == "nord"
    assert 'theme = "nord"' in real.read_text()


def test_a_character_device_as_config_is_refused_not_replaced(tmp_path: Path) -> None:
    dev = Path("/dev/null")
    before = os.stat(dev)
    with pytest.raises(ConfigError, match="character device"):
        update_config(dev, theme="nord")
    after = os.stat(dev)
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_a_fifo_or_directory_is_refused_by_the_atomic_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(fileio.UnsafePath, match="FIFO"):
        fileio.atomic_write(fifo, b"x")
    with pytest.raises(fileio.UnsafePath, match="directory"):
        fileio.atomic_write(tmp_path, b"x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.parametrize("flag", ["--transcript", "--output"])
def test_talk_refuses_an_output_that_is_the_input(tmp_path: Path, flag: str) -> None:
    clip = write_clip(tmp_path / "in.wav", "Hello there")
    before = clip.read_bytes()
    alias = tmp_path / "alias.wav"
    alias.hardlink_to(clip)  # same inode, another name
    for target in (clip, alias):
        result = voicetui("talk", "openai", "--input", str(clip), flag, str(target))
        assert result.returncode != 0
        assert "is the input file" in result.stderr
        assert_one_line_no_traceback(result.stderr)
        assert clip.read_bytes() == before, "the input was touched"


def test_an_existing_transcript_is_kept_until_the_new_one_is_complete(tmp_path: Path) -> None:
    from voicetui.engine.events import UserTranscript
    from voicetui.engine.transcript import JsonlWriter

    path = tmp_path / "t.jsonl"
    path.write_text('{"type": "old"}\n')
    inode = path.stat().st_ino
    writer = JsonlWriter(path, replace=True)
    writer.append(UserTranscript(turn_id="t", text="new", final=True))
    writer.wait()
    assert path.read_text() == '{"type": "old"}\n'  # untouched while the new one is written
    assert path.stat().st_ino == inode
    writer.close()
    writer.wait()
    assert '"new"' in path.read_text() and "old" not in path.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_output_wav_replaces_the_old_file_only_when_complete(tmp_path: Path) -> None:
    import asyncio

    import numpy as np

    from voicetui.audio.wav import WavOutput, read_wav_mono

    out = tmp_path / "a.wav"
    out.write_bytes(b"previous")

    async def go() -> None:
        wav = WavOutput(out)
        await wav.start()
        wav.enqueue("r1", np.zeros(2400, dtype=np.int16))
        assert out.read_bytes() == b"previous"
        await wav.stop()

    asyncio.run(go())
    assert len(read_wav_mono(out)) == 2400
