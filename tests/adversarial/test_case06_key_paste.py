"""Issue 13 case 6: a 50 kB paste into the key field must not hang the app."""

from __future__ import annotations

import asyncio
import time
from typing import Any

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


async def _type(pilot: Any, field: Input, text: str) -> float:
    """Send ``text`` as key events (what a non-bracketed paste is); seconds until the field
    has handled the last one (a callback queued behind them runs after them)."""
    handled = asyncio.Event()
    started = time.perf_counter()
    for ch in text:
        field.post_message(events.Key(ch, ch))
    field.call_later(handled.set)
    await asyncio.wait_for(handled.wait(), 120)
    return time.perf_counter() - started


@pytest.mark.asyncio
@pytest.mark.timeout(300)
async def test_a_non_bracketed_paste_keystroke_by_keystroke_is_bounded() -> None:
    # without bracketed paste every character is a key event. Unbounded, each key costs more
    # as the (masked) value grows: 5 kB took 4.7 s, 50 kB minutes. Bounded, a key past the
    # limit costs no more than one typed into an empty field: per-key time is compared with
    # the first 1,000 keys of the same run (a ratio, so a busy machine does not matter).
    app = PanelApp()
    async with app.run_test() as pilot:
        field = app.query_one(Input)
        field.focus()
        await pilot.pause()
        first = await _type(pilot, field, PASTE[:1000])
        assert len(field.value) == 1000
        rest = await _type(pilot, field, PASTE[1000:20_000])
        await pilot.pause()
        assert len(field.value) == MAX_KEY_LENGTH
        per_key_ratio = (rest / 19_000) / (first / 1000)
        assert per_key_ratio < 4, f"a key past the limit costs {per_key_ratio:.1f}x a first key"
