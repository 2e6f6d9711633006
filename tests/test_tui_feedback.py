"""Issue 14's "Why", one by one, in the real app (pilot): the console at every size, feedback
for every action, the keys / settings / health screens, the palette and the theme picker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_tui_support import MISTRAL, OPENAI, wait_until, write_config
from textual.widgets import DataTable, OptionList, Select, Static
from textual.widgets._footer import FooterKey

from voicetui.engine.events import (
    ErrorEvent,
    Reconnected,
    Reconnecting,
    SessionEnded,
    SessionStarted,
    SessionWarning,
    TurnLatency,
)
from voicetui.providers.base import Voice
from voicetui.tui.app import VoiceTuiApp
from voicetui.tui.commands import palette_commands
from voicetui.tui.messages import EngineEvent
from voicetui.tui.screens.health import HealthScreen
from voicetui.tui.screens.keys import KeysScreen
from voicetui.tui.screens.settings import SettingsScreen
from voicetui.tui.screens.theme_picker import ThemePickerScreen
from voicetui.tui.widgets.key_panel import KeyPanel
from voicetui.tui.widgets.meters import LevelMeter
from voicetui.tui.widgets.status import (
    FittedStatic,
    LatencySummary,
    SessionLine,
    TurnModeBadge,
)
from voicetui.tui.widgets.transcript import TranscriptView
from voicetui.tui.widgets.waterfall import LatencyWaterfall

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


@pytest.fixture
def env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fb-test-0000WXYZ")
    monkeypatch.setenv("MISTRAL_API_KEY", "mistral-feedback-key-0000ABCD")


def _app(tmp_path: Path, *, theme: str | None = "voicetui-dusk", **kw: Any) -> VoiceTuiApp:
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={OPENAI: {"baseUrl": "http://127.0.0.1:9", "turnDetection": "push_to_talk"}},
        audio={},
        theme=theme,
    )
    return VoiceTuiApp(cfg, frozen=True, autostart=False, health_on_start=False, **kw)


def _started() -> SessionStarted:
    return SessionStarted(
        provider=OPENAI,
        model="gpt-realtime",
        voice="marin",
        turn_detection="push_to_talk",
        session_id="s1",
        max_duration_s=600,
    )


def _lines(app: VoiceTuiApp) -> list[str]:
    return app.console_screen.query_one(TranscriptView).plain_lines()


@pytest.mark.parametrize("size", [(60, 20), (80, 24), (100, 30), (120, 40)])
async def test_status_reflows_and_nothing_essential_disappears(
    size: tuple[int, int], tmp_path: Path, env_keys: None
) -> None:
    app = _app(tmp_path)
    app.voices[OPENAI] = [Voice(id="marin", name="Marin")]
    async with app.run_test(size=size) as pilot:
        console = app.console_screen
        console.post_message(EngineEvent(_started()))
        await pilot.pause()
        width = size[0]
        # state > turn mode > provider/model > voice name, in that order of priority
        assert str(console.query_one(TurnModeBadge).content) == "push_to_talk"
        line = str(console.query_one(SessionLine).content)
        assert line.startswith("openai")
        if width >= 80:
            assert "gpt-realtime" in line
        if width >= 120:
            assert line == "openai · gpt-realtime · Marin"  # the voice by name, not its id
        for widget in [*console.query(LevelMeter), *console.query(FittedStatic)]:
            if not widget.display:
                continue
            region = widget.region
            assert region.width > 0 and region.right <= width, widget
            if isinstance(widget, FittedStatic):
                shown = str(widget.content)
                # fitted, or visibly cut with an ellipsis: never silently
                assert len(shown) <= widget.content_region.width or shown.endswith("…"), shown
        # the meters are there at every width
        assert all(m.region.width >= 12 for m in console.query(LevelMeter))
        keys = {k.action: k for k in console.query(FooterKey)}
        for action in ("talk", "app.quit"):
            key = keys[action]
            assert key.display and key.region.width > 0 and key.region.right <= width, action


async def test_waterfall_says_what_it_measures_and_resets_on_provider_switch(
    tmp_path: Path, env_keys: None
) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        console = app.console_screen
        console.post_message(EngineEvent(_started()))
        latency = TurnLatency(
            turn_id="u1", final_transcript_ms=300, first_text_ms=700, first_audio_ms=950
        )
        console.post_message(EngineEvent(latency))
        await pilot.pause()
        waterfall = console.query_one(LatencyWaterfall)
        assert waterfall.latency == latency
        assert "from end of your speech" in waterfall.render().plain
        console.session_starting(MISTRAL)  # a provider switch
        await pilot.pause()
        assert waterfall.latency is None
        assert "—" in str(console.query_one(LatencySummary).content)


async def test_barge_in_refusal_is_said_once(tmp_path: Path, env_keys: None) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        console = app.console_screen
        console.post_message(EngineEvent(_started()))
        for _ in range(3):
            console.post_message(
                EngineEvent(SessionWarning(code="barge_in_refused", message="not louder"))
            )
        await pilot.pause()
        said = [ln for ln in _lines(app) if "couldn't tell you from the echo" in ln]
        assert len(said) == 1 and "headphones" in said[0] and 'duplex = "full"' in said[0]
        assert not app._notifications  # no toast per attempt


async def test_reconnects_are_one_line_in_plain_words_and_the_end_is_said_once(
    tmp_path: Path, env_keys: None
) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        console = app.console_screen
        console.post_message(EngineEvent(_started()))
        for attempt in range(1, 6):
            console.post_message(
                EngineEvent(
                    Reconnecting(
                        attempt=attempt, delay_s=1, reason="no close frame received or sent"
                    )
                )
            )
        await pilot.pause()
        lost = [ln for ln in _lines(app) if "connection lost" in ln]
        assert len(lost) == 1, _lines(app)
        assert "try 5" in lost[0] and "close frame" not in lost[0] and "dropped" in lost[0]
        console.post_message(EngineEvent(Reconnected(attempt=5)))
        await pilot.pause()
        assert [ln for ln in _lines(app) if "connection lost" in ln] == [
            "· connection lost, then reconnected after 5 tries"
        ] or any("reconnected after 5 tries" in ln for ln in _lines(app))
        final = "cannot reach the provider after 5 tries: check the network"
        console.post_message(EngineEvent(ErrorEvent(message=final, code="network", fatal=True)))
        console.post_message(EngineEvent(SessionEnded(reason=final, code="error")))
        await pilot.pause()
        assert sum(final in ln for ln in _lines(app)) == 1, _lines(app)
        assert any(ln.endswith("session ended — press n for a new one") for ln in _lines(app))


async def test_health_line_says_checking_then_the_result(tmp_path: Path, env_keys: None) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        app.run_health_checks()
        line = app.console_screen.query_one("#health-line", Static)
        assert "checking…" in str(line.content)
        await wait_until(lambda: len(app.health) == 2, 20, "health results")
        await pilot.pause()
        assert "unreachable" in str(line.content)
        # the health screen's re-run says "checking…" in the rows, never blank ones
        await pilot.press("h")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HealthScreen)
        screen.action_rerun()  # what `r` does; read the rows before the results land
        table = screen.query_one(DataTable)
        statuses = [str(table.get_cell(key, "status")) for key in table.rows]
        assert statuses and all(s == "checking…" for s in statuses), statuses


async def test_keys_screen_opened_with_k_takes_the_typing(tmp_path: Path, env_keys: None) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("k")
        await wait_until(lambda: isinstance(app.screen, KeysScreen), 5, "keys screen")
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "key-openai"
        texts = " ".join(str(s.content) for s in app.screen.query(".key-help"))
        assert "turn detection" not in texts and "secret provider" not in texts


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import keyring
    from keyring.backends import fail

    for var in ("OPENAI_API_KEY", "MISTRAL_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


async def test_without_a_keyring_the_keys_screen_shows_the_environment_way(
    tmp_path: Path, no_keyring: None
) -> None:
    cfg = write_config(tmp_path / "config.toml", provider=OPENAI, providers={}, audio={})
    app = VoiceTuiApp(cfg, frozen=True, health_on_start=False)  # autostart: lands on keys
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(lambda: isinstance(app.screen, KeysScreen), 10, "keys screen")
        screen = app.screen
        assert isinstance(screen, KeysScreen)
        await wait_until(lambda: screen.panel_for(OPENAI) is not None, 5, "the panels")
        panel = screen.panel_for(OPENAI)
        assert panel is not None
        await wait_until(lambda: panel.has_class("-no-keyring"), 10, "no-keyring state")
        await pilot.pause()
        assert not panel.query_one(".key-row").display  # no dead field
        told = str(panel.query_one(".key-no-keyring", Static).content)
        assert "export OPENAI_API_KEY=" in told
        banner = str(screen.query_one("#first-run", Static).content)
        assert "OPENAI_API_KEY" in banner and "keyring" in banner
        assert not any("NoKeyringError" in n.message for n in app._notifications)
    assert isinstance(panel, KeyPanel)


async def test_settings_are_honest_before_saving(tmp_path: Path, env_keys: None) -> None:
    missing = tmp_path / "nothing-yet.toml"
    app = VoiceTuiApp(missing, frozen=True, autostart=False, health_on_start=False)
    app.voices[MISTRAL] = [Voice(id="en_paul_neutral", name="Paul (neutral)")]
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        await wait_until(lambda: isinstance(app.screen, SettingsScreen), 5, "settings")
        await pilot.pause()
        subtitle = str(app.screen.query_one("#config-path", Static).content)
        assert "not written yet" in subtitle and "saved to" not in subtitle
        voice = app.screen.query_one("#voice", Select)
        labels = [str(label) for label, _ in voice._options]
        assert not any("loading" in label for label in labels), labels
        turn = app.screen.query_one("#turn-mode", Select)
        assert all(str(label) == value for label, value in turn._options if value), turn._options
    assert not missing.exists()  # looking is not saving


async def test_palette_entries_are_the_apps_own_and_say_something(
    tmp_path: Path, env_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    app = _app(tmp_path)
    app.voices[OPENAI] = [Voice(id="marin", name="Marin", languages=("multilingual",))]
    async with app.run_test(size=(120, 40)) as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Keys" not in titles and "Key bindings help" in titles
        voice = next(c for c in palette_commands(app) if c.title == "Voice: Marin")
        assert "Marin" not in voice.help and "multilingual" in voice.help
        path = app.save_screen_svg()
        await pilot.pause()
        assert path is not None and path.is_file() and path.parent.name == "screenshots"
        assert any(str(path) in n.message for n in app._notifications)


async def test_theme_picker_opens_at_the_top_on_the_bundled_themes(
    tmp_path: Path, env_keys: None
) -> None:
    app = _app(tmp_path, theme="textual-dark")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("t")
        await wait_until(lambda: isinstance(app.screen, ThemePickerScreen), 5, "picker")
        await pilot.pause()
        options = app.screen.query_one(OptionList)
        assert options.highlighted == 0 and options.scroll_y == 0
        first = options.get_option_at_index(0).id or ""
        assert first.startswith("voicetui-")
        assert app.theme == "textual-dark"  # opening is not previewing
        await pilot.press("escape")
        assert app.theme == "textual-dark"


async def test_a_session_that_cannot_start_says_so_on_the_status_line(
    tmp_path: Path, env_keys: None
) -> None:
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={OPENAI: {"baseUrl": "http://127.0.0.1:9", "turnDetection": "push_to_talk"}},
        audio={"input_device": "no-such-microphone-anywhere"},
    )
    app = VoiceTuiApp(cfg, frozen=True, autostart=False, health_on_start=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.start_session()
        line = app.console_screen.query_one(SessionLine)
        await wait_until(lambda: "not connected" in str(line.content), 20, "the failed start")
        await pilot.pause()
        shown = str(line.content)
        assert shown.startswith("openai · not connected") and "connecting" not in shown
        assert "ai-voice-conv" not in shown


@pytest.mark.keyring
async def test_health_line_follows_a_saved_key(tmp_path: Path) -> None:
    import os
    import uuid

    if os.environ.get("KEYRING_SANDBOX") != "1":
        pytest.fail("needs the real Secret Service: run under tools/keyring-sandbox.sh")
    from voicetui.health import HealthResult
    from voicetui.keys import KeyStore
    from voicetui.tui.messages import HealthUpdated

    store = KeyStore(service=f"voicetui-test-{uuid.uuid4().hex[:8]}", environ={})
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={OPENAI: {"baseUrl": "http://127.0.0.1:9"}},
        audio={},
    )
    app = VoiceTuiApp(cfg, frozen=True, autostart=False, health_on_start=False, keys=store)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            no_key = HealthResult(OPENAI, "no_key", None, "no key")
            app.health[OPENAI] = no_key
            app.console_screen.post_message(HealthUpdated([no_key]))
            line = app.console_screen.query_one("#health-line", Static)
            await wait_until(lambda: "openai no key" in str(line.content), 5, "no key")
            app.open_keys(OPENAI)
            await wait_until(lambda: isinstance(app.screen, KeysScreen), 5, "keys screen")
            await pilot.pause()
            field = app.screen.query_one("#key-openai")
            field.value = "sk-saved-key-0001"  # type: ignore[attr-defined]
            await pilot.press("enter")
            # saved -> checked again at once: no stale "no key" until `r`
            await wait_until(
                lambda: str(app.health[OPENAI].status) != "no_key", 20, "a fresh health check"
            )
            await pilot.pause()
            assert "no key" not in str(line.content)
    finally:
        store.delete(OPENAI)


async def test_key_field_is_usable_at_60_columns(tmp_path: Path, env_keys: None) -> None:
    from textual.widgets import Input

    app = _app(tmp_path)
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.press("k")
        await wait_until(lambda: isinstance(app.screen, KeysScreen), 5, "keys screen")
        await pilot.pause()
        for field in app.screen.query(Input):
            assert field.region.width >= 30, field.region
            assert field.placeholder
