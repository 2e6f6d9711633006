"""Config edits keep the file the user's own: tomlkit edits, only changed keys, comments and
order kept, defaults never frozen in (issue 14)."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from test_tui_support import OPENAI, wait_until
from textual.widgets import Select

from voicetui.audio.ports import DuplexPolicy
from voicetui.config import load_config, save_config, update_config
from voicetui.tui.app import VoiceTuiApp
from voicetui.tui.screens.settings import SettingsScreen

HAND_WRITTEN = """\
# my voicetui setup
provider = "openai"   # the one I talk to most

[audio]
# headphones, so full duplex is fine
duplex = "full"

[providers."ai-voice-conv.openai"]
defaultVoice = "marin"  # warmer than alloy
"""


def _diff(before: str, after: str) -> list[str]:
    """The changed lines only (``+``/``-``), without the diff headers."""
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [ln for ln in lines if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


def test_one_changed_key_is_the_whole_diff(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(HAND_WRITTEN, encoding="utf-8")
    # the settings screen passes every field; only the turn mode really changes
    cfg = load_config(path)
    options = dict(cfg.provider_options(OPENAI))
    flip = {"server_vad": "push_to_talk"}
    options["turnDetection"] = flip.get(options["turnDetection"], "server_vad")
    update_config(
        path,
        provider="openai",
        providers={OPENAI: options},
        audio={"duplex": DuplexPolicy.FULL, "input_device": None, "output_device": None},
    )
    after = path.read_text(encoding="utf-8")
    assert _diff(HAND_WRITTEN, after) == [f'+turnDetection = "{options["turnDetection"]}"']
    assert after.startswith(HAND_WRITTEN)  # comments and order intact, the key appended
    # nothing changes -> the file is not even rewritten
    mtime = path.stat().st_mtime_ns
    update_config(path, providers={OPENAI: dict(load_config(path).provider_options(OPENAI))})
    assert path.stat().st_mtime_ns == mtime


def test_reset_removes_the_key_and_defaults_are_never_written(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(HAND_WRITTEN, encoding="utf-8")
    update_config(path, providers={OPENAI: {"defaultVoice": None}}, theme="nord")
    after = path.read_text(encoding="utf-8")
    assert _diff(HAND_WRITTEN, after) == [
        '+theme = "nord"',
        '-defaultVoice = "marin"  # warmer than alloy',
    ]
    assert "moderationThresholds" not in after and "instructions" not in after
    # a save of the whole loaded config (every default filled in) writes nothing new
    before = path.read_text(encoding="utf-8")
    save_config(load_config(path))
    assert path.read_text(encoding="utf-8") == before


def test_first_save_on_a_missing_file_writes_one_line(tmp_path: Path) -> None:
    path = tmp_path / "new" / "config.toml"
    update_config(path, theme="nord")
    assert path.read_text(encoding="utf-8") == 'theme = "nord"\n'
    update_config(path, providers={OPENAI: {"defaultVoice": "shimmer"}})
    assert path.read_text(encoding="utf-8") == (
        'theme = "nord"\n\n[providers."ai-voice-conv.openai"]\ndefaultVoice = "shimmer"\n'
    )


@pytest.mark.asyncio
async def test_settings_screen_save_changes_only_the_changed_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(HAND_WRITTEN, encoding="utf-8")
    app = VoiceTuiApp(path, autostart=False, health_on_start=False, frozen=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        await wait_until(lambda: isinstance(app.screen, SettingsScreen), 5, "settings")
        await pilot.pause()
        app.screen.query_one("#duplex", Select).value = "half"
        await pilot.press("ctrl+s")
        await wait_until(lambda: not isinstance(app.screen, SettingsScreen), 5, "saved")
    after = path.read_text(encoding="utf-8")
    assert _diff(HAND_WRITTEN, after) == ['-duplex = "full"', '+duplex = "half"']
