"""Issue 13 case 4: an unwritable state/data/cache dir must not crash every command."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

import pytest
from adv_support import voicetui

from voicetui import logs

BROKEN = {  # mkdir under a character device always fails, even as root
    "XDG_STATE_HOME": "/dev/null/state",
    "XDG_DATA_HOME": "/dev/null/data",
    "XDG_CACHE_HOME": "/dev/null/cache",
}


@pytest.mark.parametrize(
    "command",
    [["specs", "list"], ["config", "check"], ["usage"], ["transcripts", "list"], ["keys", "list"],
     ["health"], ["devices"]],
    ids=" ".join,
)  # fmt: skip
def test_commands_run_without_a_writable_state_dir(command: list[str]) -> None:
    result = voicetui(*command, **BROKEN)
    assert "Traceback" not in result.stderr, result.stderr
    assert "Read-only" not in result.stderr and "Not a directory" not in result.stderr
    if command[0] in ("specs", "config", "usage", "transcripts"):
        assert result.returncode == 0, result.stderr


def test_logging_falls_back_to_stderr_at_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var, value in BROKEN.items():
        monkeypatch.setenv(var, value)
    try:
        assert logs.setup_logging(logging.INFO) is None
        logging.getLogger("voicetui.test").info("quiet")
        logging.getLogger("voicetui.test").warning("loud sk-abcdefghijkl")
        err = capsys.readouterr().err
        assert "quiet" not in err
        assert "loud sk-***" in err
    finally:
        monkeypatch.undo()
        logs.setup_logging(logging.INFO)


def test_the_log_file_rotates(tmp_path: Path) -> None:
    target = tmp_path / "state" / "voicetui.log"
    try:
        assert logs.setup_logging(logging.INFO, target) == target
        handler = logs._installed["file"]
        assert isinstance(handler, logging.handlers.RotatingFileHandler)
        assert handler.maxBytes == logs.MAX_BYTES and handler.backupCount == logs.BACKUPS
        line = "x" * 1000
        for _ in range(3 * logs.MAX_BYTES // 1000):
            logging.getLogger("voicetui.test").warning(line)
        sizes = [p.stat().st_size for p in target.parent.glob("voicetui.log*")]
        assert len(sizes) <= logs.BACKUPS + 1
        assert max(sizes) <= logs.MAX_BYTES + 2000
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in target.parent.glob("voicetui.log*"))
    finally:
        logs.setup_logging(logging.INFO)


@pytest.mark.timeout(120)
def test_talk_runs_without_a_writable_state_dir(tmp_path: Path) -> None:
    from adv_support import write_clip, write_config

    from voicetui.testing.emulators.cli import emulator_process

    with emulator_process(
        "openai", "--pace", "0", "--user-text", "Hi there.", "--reply", "Hello."
    ) as url:
        write_config(url)
        clip = write_clip(tmp_path / "q.wav", "Hi there")
        result = voicetui(
            "talk", "openai", "--input", str(clip), "--output", str(tmp_path / "a.wav"),
            XDG_STATE_HOME=BROKEN["XDG_STATE_HOME"], XDG_CACHE_HOME=BROKEN["XDG_CACHE_HOME"],
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "assistant: Hello." in result.stdout
    assert "Traceback" not in result.stderr
