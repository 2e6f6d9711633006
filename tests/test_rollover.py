"""The rollover policy and seeding (:mod:`voicetui.engine.rollover`) and its config field."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicetui.config import ConfigError, load_config
from voicetui.engine.rollover import RolloverClock, seed_messages, window_s


def test_the_window_is_the_last_quarter_of_the_limit_at_most_a_minute() -> None:
    assert window_s(20.0) == 5.0
    assert window_s(1800.0) == 60.0
    clock = RolloverClock(max_s=20.0)
    assert clock.due_at_s() == 15.0  # the engine's idle tick wakes then
    assert not clock.due(14.9, busy=False)
    assert clock.due(15.0, busy=False)
    assert not clock.due(19.0, busy=True)  # never mid-turn: it waits
    assert clock.due(25.0, busy=False)  # past the limit, still between turns: now
    # a passing failure is tried again shortly (a quarter of the window at most 2 s)...
    assert not clock.renewal_failed(15.0, retryable=True)
    assert not clock.due(16.0, busy=False) and clock.due(16.25, busy=False)
    assert clock.due_at_s() == 16.25
    # ...until no retry fits before the limit, or at once when it is not retryable
    assert clock.renewal_failed(18.9, retryable=True)
    assert not clock.due(19.0, busy=False)  # a failed renewal falls back to the end
    assert RolloverClock(max_s=20.0).renewal_failed(15.0, retryable=False)
    assert not RolloverClock(max_s=0).due(100.0, busy=False)


def test_a_short_history_is_replayed_whole_as_items() -> None:
    history = [("user", "Hi."), ("assistant", "Hello."), ("user", "  "), ("user", "More?")]
    messages, how = seed_messages(history, budget_chars=100)
    assert how == "items"
    assert [(m.role, m.text) for m in messages] == [
        ("user", "Hi."),
        ("assistant", "Hello."),
        ("user", "More?"),
    ]  # empty lines are not replayed


def test_over_the_budget_the_oldest_part_becomes_one_summary() -> None:
    history = [
        (role, f"{role} line {i}: " + "word " * 60)
        for i in range(40)
        for role in ("user", "assistant")
    ]
    budget = 4000
    messages, how = seed_messages(history, budget_chars=budget)
    assert how == "summary"
    summary, *recent = messages
    assert summary.role == "system" and summary.text.startswith("Summary of the earlier")
    # the newest lines are verbatim and in order, ending with the last one
    assert [m.text for m in recent] == [t.strip() for _r, t in history[-len(recent) :]]
    assert len(recent) >= 2
    # the whole seed fits the budget, and the summary keeps the most recent of the old lines
    assert sum(len(m.text) for m in messages) <= budget
    older = history[: len(history) - len(recent)]
    assert f"line {older[-1][1].split(':')[0].split()[-1]}:" in summary.text
    assert "line 0:" not in summary.text  # the oldest went first


def test_on_max_duration_is_validated_and_defaults_to_rollover(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[providers."ai-voice-conv.openai"]\n')
    assert load_config(path).provider_settings("openai").on_max_duration == "rollover"
    path.write_text('[providers."ai-voice-conv.openai"]\nonMaxDuration = "end"\n')
    settings = load_config(path).provider_settings("openai")
    assert settings.on_max_duration == "end" and "onMaxDuration" not in settings.extras
    path.write_text('[providers."ai-voice-conv.mistral"]\nonMaxDuration = "sometimes"\n')
    with pytest.raises(ConfigError, match="onMaxDuration"):
        load_config(path)


@pytest.mark.asyncio
async def test_the_console_shows_a_rollover_briefly_and_restarts_the_timer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_tui_support import OPENAI, wait_until, write_config

    from voicetui.engine.events import SessionRolledOver, SessionStarted
    from voicetui.tui.app import VoiceTuiApp
    from voicetui.tui.messages import EngineEvent
    from voicetui.tui.widgets.status import SessionTimer
    from voicetui.tui.widgets.transcript import TranscriptView

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai-key-0000WXYZ")
    cfg = write_config(tmp_path / "config.toml", provider=OPENAI, providers={}, audio={})
    app = VoiceTuiApp(cfg, frozen=True, autostart=False, health_on_start=False)
    async with app.run_test(size=(120, 40)) as pilot:
        console = app.console_screen
        started = SessionStarted(
            provider=OPENAI, model="gpt-realtime", voice="marin", turn_detection="server_vad",
            session_id="s", max_duration_s=20,
        )  # fmt: skip
        console.post_message(EngineEvent(started))
        await pilot.pause()
        timer = console.query_one(SessionTimer)
        timer.show(19, 20)  # near the limit: the warning style
        assert timer.has_class("-warning")
        console.post_message(EngineEvent(SessionRolledOver(number=2, after_s=19.0, seeded="items")))
        view = console.query_one(TranscriptView)
        await wait_until(lambda: any("new session (2)" in line for line in view.plain_lines()))
        assert not timer.has_class("-warning") and "00:00 / 00:20" in str(timer.render())
        assert any("conversation carries on" in n.message for n in app._notifications)
