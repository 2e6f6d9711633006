"""Issue 13 case 6: a 50 kB paste into the key field must not hang the app."""

from __future__ import annotations

import time

import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.widgets import Input

from voicetui.keys import MAX_KEY_LENGTH
from voicetui.tui.widgets.key_panel import KeyPanel

PASTE = "k" * 50_000


class PanelApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyPanel(
            "ai-voice-conv.openai", "OpenAI", env_var="X_API_KEY", setup_instructions="set it up",
            docs_url="https://example.invalid", input_id="key-in",
        )  # fmt: skip


@pytest.mark.asyncio
async def test_a_bracketed_50kb_paste_returns_quickly_and_is_bounded() -> None:
    app = PanelApp()
    async with app.run_test() as pilot:
        field = app.query_one(Input)
        field.focus()
        await pilot.pause()
        started = time.perf_counter()
        field.post_message(events.Paste(PASTE))
        await pilot.pause()
        elapsed = time.perf_counter() - started
        assert len(field.value) <= MAX_KEY_LENGTH
        assert elapsed < 0.1, f"a 50 kB paste took {elapsed * 1000:.0f} ms"


@pytest.mark.asyncio
async def test_a_non_bracketed_paste_keystroke_by_keystroke_is_bounded() -> None:
    # without bracketed paste every character is a key event; the field stops growing at
    # MAX_KEY_LENGTH, so each later key costs the same (unbounded, 5 kB took 4.7 s+)
    app = PanelApp()
    async with app.run_test() as pilot:
        field = app.query_one(Input)
        field.focus()
        await pilot.pause()
        started = time.perf_counter()
        for ch in PASTE[:20_000]:
            field.post_message(events.Key(ch, ch))
        await pilot.pause()
        while len(field.value) < MAX_KEY_LENGTH and time.perf_counter() - started < 30:
            await pilot.pause(0.01)
        await pilot.pause()
        elapsed = time.perf_counter() - started
        assert len(field.value) == MAX_KEY_LENGTH
        assert elapsed < 5.0, f"20,000 keystrokes took {elapsed:.1f} s"
