"""Issue 13 case 1: a full disk must not silently lose the transcript.

Acceptance: with a 64 KiB tmpfs as the data dir, ``voicetui talk`` exits non-zero with a
line saying the transcript could not be written, and no torn line is left behind.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from adv_support import voicetui, write_clip, write_config

from voicetui.testing.emulators.cli import emulator_process as start_emulator

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def emulator() -> Iterator[str]:
    with start_emulator(
        "openai", "--pace", "0",
        "--user-text", "What is the weather like today in the mountains?",
        "--reply", "Sunny and warm all day, with a light breeze in the afternoon. " * 4,
    ) as url:  # fmt: skip
        yield url


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a 64 KiB tmpfs needs root (mount -t tmpfs)")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` until the file system refuses, then free ``leave`` bytes."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))


def assert_whole_lines(path: Path) -> int:
    if not path.exists():
        return 0
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"torn last line in {path}: {data[-80:]!r}"
    for line in data.splitlines():
        json.loads(line)
    return len(data.splitlines())


@pytest.mark.parametrize("free", [0, 4096], ids=["no-space", "one-page"])
def test_talk_on_a_full_disk_says_so_and_exits_non_zero(
    emulator: str, tiny_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free: int
) -> None:
    write_config(emulator)
    clip = write_clip(tmp_path / "q.wav", "What is the weather like today")
    monkeypatch.setenv("XDG_DATA_HOME", str(tiny_disk))
    transcripts = tiny_disk / "voicetui" / "transcripts"
    transcripts.mkdir(parents=True)
    out_jsonl = tiny_disk / "t.jsonl"
    fill(tiny_disk, free)
    result = voicetui(
        "talk", "openai", "--input", str(clip), "--output", str(tmp_path / "a.wav"),
        "--transcript", str(out_jsonl),
    )  # fmt: skip
    assert result.returncode != 0, result.stderr
    assert "transcript not saved: disk full at" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    # one line per file the disk refused (the session's and --transcript's), nothing else
    refused = result.stderr.strip().splitlines()
    assert all(line.startswith("voicetui talk: transcript not saved:") for line in refused)
    assert len(refused) == len(set(refused)) <= 2, refused
    # the conversation itself still printed
    assert "assistant: Sunny and warm" in result.stdout
    # complete lines or nothing, in both files
    for session in transcripts.glob("*.jsonl"):
        assert_whole_lines(session)
    assert_whole_lines(out_jsonl)


def test_talk_into_a_read_only_data_dir_says_so(
    emulator: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(emulator)
    clip = write_clip(tmp_path / "q.wav", "What is the weather like today")
    data = tmp_path / "ro-data"
    data.mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    if os.geteuid() == 0:  # root ignores modes: make it truly read-only
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(data)],
            check=False, capture_output=True,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.skip("cannot mount a read-only tmpfs")
    else:
        data.chmod(0o500)
    try:
        result = voicetui(
            "talk", "openai", "--input", str(clip), "--output", str(tmp_path / "a.wav")
        )
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(data)], check=False)
        else:
            data.chmod(0o700)
    assert result.returncode != 0, result.stderr
    assert "transcript not saved:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
