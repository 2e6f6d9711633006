"""Issue 13 case 5: hostile config files give one line and exit 2, never a traceback/hang."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from adv_support import assert_one_line_no_traceback, voicetui, write_clip

from voicetui.config import MAX_CONFIG_BYTES, ConfigError, load_config

SPEC = "ai-voice-conv.openai"


def check(path: Path, timeout: float = 20) -> str:
    """``voicetui config check --config PATH``: exit 2 and one line; returns the line."""
    started = time.monotonic()
    result = voicetui("--config", str(path), "config", "check", timeout=timeout)
    assert time.monotonic() - started < timeout
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert_one_line_no_traceback(result.stderr)
    return result.stderr


def test_a_500_deep_array(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 500 + "]" * 500 + "\n")
    assert "nested" in check(path)


def test_a_50000_part_dotted_key_is_quick(tmp_path: Path) -> None:
    path = tmp_path / "dotted.toml"
    path.write_text(".".join(["a"] * 50_000) + " = 1\n")
    started = time.monotonic()
    with pytest.raises(ConfigError, match="nested"):
        load_config(path)
    assert time.monotonic() - started < 2.0
    check(path)


def test_a_copy_of_dev_zero(tmp_path: Path) -> None:
    path = tmp_path / "zero.toml"
    with path.open("wb") as fh:
        fh.truncate(64 * MAX_CONFIG_BYTES)  # sparse: 64 MiB of zeros
    assert "too large" in check(path)


def test_a_fifo_does_not_hang(tmp_path: Path) -> None:
    path = tmp_path / "fifo.toml"
    os.mkfifo(path)
    assert "FIFO" in check(path, timeout=10)


def test_a_directory_and_a_device(tmp_path: Path) -> None:
    assert "directory" in check(tmp_path)
    assert "character device" in check(Path("/dev/zero"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a 0000 directory anyway")
def test_a_config_in_an_unreadable_dir(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "config.toml").write_text('theme = "nord"\n')
    locked.chmod(0)
    try:
        assert "permission denied" in check(locked / "config.toml")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan"])
@pytest.mark.parametrize("field", ["maxSessionDurationSeconds", "vadThreshold"])
def test_nan_and_infinity_are_refused_with_the_field_named(
    tmp_path: Path, field: str, value: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[providers."{SPEC}"]\n{field} = {value}\n')
    line = check(path)
    assert field in line and "finite" in line


def test_a_line_of_dots_in_a_string_is_not_a_key(tmp_path: Path) -> None:
    path = tmp_path / "dots.toml"
    dots = "." * 400
    path.write_text(f'[providers."{SPEC}"]\ninstructions = """\n{dots}\nBe brief.\n"""\n')
    assert dots in load_config(path).provider_options(SPEC)["instructions"]


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'theme = "nord"\n')
    assert load_config(path).theme == "nord"


def test_talk_config_errors_exit_2(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "q.wav", "Hello")
    path = tmp_path / "bad.toml"
    path.write_text("theme = [\n")
    result = voicetui("--config", str(path), "talk", "openai", "--input", str(clip))
    assert result.returncode == 2
    assert_one_line_no_traceback(result.stderr)
