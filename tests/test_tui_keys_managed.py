"""Managed keys on the Keys screen: a key command typed shell-style is saved as
``apiKeyCommand`` (the user's comments kept), shown with source ``command`` and the spec's mode
(OpenAI's spec lists only ``byok``, so its command key stays ``byok``), tested in a worker
with a one-line outcome, and cleared again; the key it prints reaches no file."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_tui_support import MISTRAL, OPENAI, wait_until
from textual.widgets import Input, Static

from voicetui import logs, paths
from voicetui.keys import KeyStore
from voicetui.tui.app import VoiceTuiApp
from voicetui.tui.screens.keys import KeysScreen
from voicetui.tui.widgets.key_panel import KeyPanel

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

KEY = "sk-abc7731"
COMMAND = "sh -c 'printf sk-abc7731'"
FAILING = "sh -c 'echo boom >&2; exit 3'"
COMMENTS = ("# my voicetui setup", "# the emulator, not the real service")


def write_commented_config(base_url: str) -> Path:
    """The user's own config.toml at the platform location, with comments to keep."""
    path = paths.config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""{COMMENTS[0]}
provider = "{OPENAI}"
theme = "voicetui-dusk"

[audio]
input_device = "pulse"
output_device = "pulse"

[providers."{OPENAI}"]
{COMMENTS[1]}
baseUrl = "{base_url}"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def log_file() -> Iterator[Path]:
    """The app's real log file, at DEBUG, for the duration of the test."""
    path = logs.setup_logging(logging.DEBUG, paths.log_file())
    assert path is not None
    try:
        yield path
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if getattr(handler, "baseFilename", None) == str(path):
                root.removeHandler(handler)
                handler.close()
        logs._installed.clear()


def keyring_free_store(environ: dict[str, str] | None = None) -> KeyStore:
    """A store on a throw-away keyring service (none at all outside the keyring sandbox,
    which the screen handles: the command row stays usable)."""
    return KeyStore(service=f"voicetui-test-{uuid.uuid4().hex[:8]}", environ=environ or {})


def text(widget: Static) -> str:
    return str(widget.content)


async def open_panel(app: VoiceTuiApp, spec_key: str) -> KeyPanel:
    app.open_keys(spec_key)
    await wait_until(
        lambda: isinstance(app.screen, KeysScreen) and bool(app.screen.query(KeyPanel)),
        5,
        "keys screen",
    )
    panel = next(p for p in app.screen.query(KeyPanel) if p.spec_key == spec_key)
    source = panel.query_one(".key-source", Static)
    await wait_until(lambda: "checking" not in text(source), 10, "the key source")
    await app.workers.wait_for_complete()
    await asyncio.sleep(0.05)  # a focus move made by the refresh lands on the next round
    return panel


async def test_set_test_and_clear_a_key_command(openai_emulator: Any, log_file: Path) -> None:
    cfg = write_commented_config(openai_emulator.base_url)
    app = VoiceTuiApp(
        cfg, autostart=False, health_on_start=False, frozen=True, keys=keyring_free_store()
    )
    async with app.run_test(size=(80, 24)) as pilot:
        panel = await open_panel(app, OPENAI)
        source = panel.query_one(".key-source", Static)
        result = panel.query_one(".key-command-result", Static)
        field = panel.query_one(".key-command-input", Input)
        assert "mode: byok" in text(source)

        # keyboard only: from the key field past Set, Rotate, Test, Delete to the command
        # field (with no keyring here, the key row is hidden and focus starts on it)
        await wait_until(lambda: app.focused in (panel.query_one(".key-input"), field), 5, "focus")
        for _ in range(5):
            if app.focused is field:
                break
            await pilot.press("tab")
            assert app.focused is not None and panel in app.focused.ancestors
        assert app.focused is field
        await pilot.press(*COMMAND)
        assert field.value == COMMAND
        await pilot.press("enter")  # Enter in the command field = Set command
        await wait_until(lambda: "saved to config.toml" in text(result), 10, "set command")
        saved = cfg.read_text(encoding="utf-8")
        assert 'apiKeyCommand = ["sh", "-c", "printf sk-abc7731"]' in saved
        assert all(comment in saved for comment in COMMENTS)
        assert app.config.key_command(OPENAI) == ("sh", "-c", "printf sk-abc7731")
        shown = text(source)
        # OpenAI's spec (seed 003) has only `byok`: the command is where the key is read from
        assert "mode: byok" in shown and "source: command" in shown and "****7731" in shown
        assert KEY not in shown
        assert field.value == COMMAND  # the stored argv, shell-quoted again

        # Test command (Tab, Tab, Enter): the stored command, run afresh, then a health check
        await pilot.press("tab", "tab", "enter")
        await wait_until(lambda: " · " in text(result), 15, "test result")
        assert text(result).startswith("command ok: ****7731 · ok"), text(result)
        assert app.health[OPENAI].ok

        # a failing command, typed and tested before it is set: one line, no traceback
        field.value = FAILING
        field.focus()
        await pilot.pause()  # focus() lands on the next message round
        await pilot.press("tab", "tab", "enter")
        await wait_until(lambda: "exit status" in text(result), 15, "the failure")
        line = text(result)
        assert "exit status 3" in line and "boom" in line, line
        assert "\n" not in line and "Traceback" not in line
        assert "-bad" in result.classes

        # set, it is the key's source and marked as a problem, with the same one line
        field.focus()
        await pilot.pause()  # focus() lands on the next message round
        await pilot.press("enter")
        await wait_until(lambda: panel.has_class("-problem"), 10, "the problem")
        shown = text(source)
        assert "mode: byok" in shown and "source: command" in shown, shown
        assert "exit status 3" in text(result) and "boom" in text(result)

        # Clear command: only that key leaves the provider's table
        clear = panel.query_one(".key-command-clear")
        clear.focus()
        await pilot.pause()  # focus() lands on the next message round
        await pilot.press("enter")
        await wait_until(lambda: "removed from config.toml" in text(result), 10, "clear")
        cleared = cfg.read_text(encoding="utf-8")
        assert "apiKeyCommand" not in cleared
        assert all(comment in cleared for comment in COMMENTS)
        assert f'baseUrl = "{openai_emulator.base_url}"' in cleared
        assert field.value == "" and not panel.has_class("-problem")
        assert "mode: byok" in text(source)
        await pilot.pause()

    for handler in logging.getLogger().handlers:
        handler.flush()
    files = [p for root in paths.all_app_dirs() if root.exists() for p in root.rglob("*")]
    assert log_file in files
    leaks = [p for p in files if p.is_file() and KEY.encode() in p.read_bytes()]
    assert not leaks, leaks


async def test_a_refused_command_is_never_written(tmp_path: Path) -> None:
    cfg = write_commented_config("http://127.0.0.1:9")
    before = cfg.read_bytes()
    app = VoiceTuiApp(
        cfg, autostart=False, health_on_start=False, frozen=True, keys=keyring_free_store()
    )
    async with app.run_test(size=(120, 40)) as pilot:
        panel = await open_panel(app, MISTRAL)
        field = panel.query_one(".key-command-input", Input)
        result = panel.query_one(".key-command-result", Static)
        for typed, reason in (
            ("op read 'op://vault/mistral", "does not parse (no closing quotation)"),
            ("   ", "the command is empty"),
            ("op read ''", "empty argument"),
            # one word that is no program: a key pasted in the wrong field
            ("mistral-pasted-key-4242", "no program on PATH"),
        ):
            field.value = typed
            field.focus()
            await pilot.pause()  # focus() lands on the next message round
            await pilot.press("enter")
            await wait_until(lambda r=reason: r in text(result), 5, reason)
            assert text(result).startswith("not set: ") and "\n" not in text(result)
        assert "mistral-pasted-key-4242" not in text(result)
        assert field.value == ""  # the pasted key does not stay on screen
        await pilot.press("tab", "tab", "enter")  # Test command: nothing typed, none stored
        await wait_until(lambda: "no key command to test" in text(result), 5, "nothing to test")
    assert cfg.read_bytes() == before


async def test_the_environment_overrides_a_command_and_the_screen_says_so() -> None:
    cfg = write_commented_config("http://127.0.0.1:9")
    with cfg.open("a", encoding="utf-8") as out:
        out.write('apiKeyCommand = ["sh", "-c", "printf sk-from-command-0001"]\n')
    store = keyring_free_store({"OPENAI_API_KEY": "sk-from-environment-0002"})
    app = VoiceTuiApp(cfg, autostart=False, health_on_start=False, frozen=True, keys=store)
    async with app.run_test(size=(120, 40)):
        panel = await open_panel(app, OPENAI)
        shown = text(panel.query_one(".key-source", Static))
        assert "mode: byok" in shown and "environment (OPENAI_API_KEY)" in shown, shown
        assert "****0002" in shown
        note = text(panel.query_one(".key-command-result", Static))
        assert "not used" in note and "OPENAI_API_KEY" in note, note
        field = panel.query_one(".key-command-input", Input)
        assert field.value == "sh -c 'printf sk-from-command-0001'"


@pytest.fixture
def no_keyring() -> Iterator[None]:
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


async def test_without_a_keyring_the_command_row_is_the_way(no_keyring: None) -> None:
    cfg = write_commented_config("http://127.0.0.1:9")
    app = VoiceTuiApp(cfg, autostart=False, health_on_start=False, frozen=True, keys=KeyStore())
    async with app.run_test(size=(80, 24)) as pilot:
        panel = await open_panel(app, OPENAI)
        await wait_until(lambda: panel.has_class("-no-keyring"), 5, "no keyring")
        field = panel.query_one(".key-command-input", Input)
        assert not panel.query_one(".key-keyring-row").display  # no dead key field
        assert "key command below" in text(panel.query_one(".key-no-keyring", Static))
        await wait_until(lambda: app.focused is field, 5, "focus on the command field")
        await pilot.press(*COMMAND, "enter")
        source = panel.query_one(".key-source", Static)
        await wait_until(lambda: "****7731" in text(source), 10, "the managed key")
        assert "mode: byok" in text(source) and "source: command" in text(source)


async def test_a_configured_command_is_a_key_at_start_up() -> None:
    """With only an apiKeyCommand, start-up does not take the provider for keyless (the
    first-run Keys screen); a failing command is left to the session to report."""
    cfg = write_commented_config("http://127.0.0.1:9")
    app = VoiceTuiApp(
        cfg, autostart=False, health_on_start=False, frozen=True, keys=keyring_free_store()
    )
    async with app.run_test(size=(80, 24)):
        app.save_config(providers={OPENAI: {"apiKeyCommand": ["sh", "-c", f"printf {KEY}"]}})
        assert await app.key_source(OPENAI) == "command"
        app.save_config(providers={OPENAI: {"apiKeyCommand": ["sh", "-c", "exit 3"]}})
        assert await app.key_source(OPENAI) == "command"
