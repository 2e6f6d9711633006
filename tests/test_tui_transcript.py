"""The transcript widget on its own: streaming, relabelling, interruption, scale."""

from __future__ import annotations

import time

import pytest
from textual.app import App, ComposeResult

from voicetui.engine.events import (
    AssistantTextDelta,
    AssistantTextFinal,
    Interrupted,
    ToolActivity,
    UserTranscript,
)
from voicetui.tui.widgets.transcript import TranscriptView, format_span


class Host(App[None]):
    def compose(self) -> ComposeResult:
        yield TranscriptView()


def test_span_format() -> None:
    assert format_span(0.1, 1.5) == "[0.1s -> 1.5s]"
    assert format_span(None, None) == ""
    assert format_span(2.0, None) == "[2.0s -> ?]"


@pytest.mark.asyncio
async def test_partial_final_and_diarized_relabel_replace_the_turn() -> None:
    app = Host()
    async with app.run_test(size=(100, 20)) as pilot:
        view = app.query_one(TranscriptView)
        view.apply(UserTranscript(turn_id="t1", text="hello the", final=False))
        view.apply(UserTranscript(turn_id="t1", text="hello there how are you", final=True))
        view.apply(AssistantTextDelta(turn_id="r1", text="Hi"))
        assert view.plain_lines() == ["you  hello there how are you", "assistant  Hi ▍"]
        # the diarized pass arrives later and replaces the turn's line, before the reply
        view.apply(
            UserTranscript(
                turn_id="t1", text="hello there", final=True, speaker="speaker_1",
                start=0.1, end=0.9, segment_index=0, relabel=True,
            )
        )  # fmt: skip
        view.apply(
            UserTranscript(
                turn_id="t1", text="how are you", final=True, speaker="speaker_2",
                start=1.0, end=1.6, segment_index=1, relabel=True,
            )
        )  # fmt: skip
        # a late partial of the same turn never overwrites a final line
        view.apply(UserTranscript(turn_id="t1", text="hello there how", final=False))
        await pilot.pause()
        assert view.plain_lines() == [
            "[0.1s -> 0.9s] speaker_1  hello there",
            "[1.0s -> 1.6s] speaker_2  how are you",
            "assistant  Hi ▍",
        ]
        assert view._speakers == {"speaker_1": 0, "speaker_2": 1}  # one colour each


@pytest.mark.asyncio
async def test_streaming_tool_activity_and_interruption() -> None:
    app = Host()
    async with app.run_test(size=(100, 20)) as pilot:
        view = app.query_one(TranscriptView)
        view.apply(ToolActivity(turn_id="r1", name="web_search", status="started",
                                detail="searching the web…"))  # fmt: skip
        assert view.plain_lines() == ["  ⚙ searching the web…"]
        view.apply(ToolActivity(turn_id="r1", name="web_search", status="done",
                                detail="web search: 2 results"))  # fmt: skip
        for word in ("It ", "will ", "rain "):
            view.apply(AssistantTextDelta(turn_id="r1", text=word))
        view.apply(Interrupted(turn_id="r1", played_ms=1200))
        view.apply(AssistantTextFinal(turn_id="r1", text="It will", interrupted=True))
        await pilot.pause()
        assert view.plain_lines() == [
            "  ✓ web search: 2 results",
            "assistant  It will  [interrupted at 1.2s]",
        ]


@pytest.mark.asyncio
async def test_five_thousand_lines_stay_cheap() -> None:
    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.query_one(TranscriptView)
        start = time.perf_counter()
        for i in range(5000):
            view.apply(AssistantTextFinal(turn_id=f"r{i}", text=f"reply number {i} " * 4))
        await pilot.pause()
        view._relayout()
        appended = time.perf_counter() - start
        assert view.line_count >= 5000
        # an in-place update of the streaming line at the end: independent of the length
        samples = []
        for k in range(50):
            t = time.perf_counter()
            view.apply(AssistantTextDelta(turn_id="live", text=f" w{k}"))
            view._relayout()
            samples.append(time.perf_counter() - t)
        samples.sort()
        assert samples[len(samples) // 2] < 0.02, samples  # median well under a frame
        assert appended < 20, appended  # generous: shared 2-core CI
        await pilot.pause()  # let the deferred follow-the-end scrolls run first
        view.scroll_home(animate=False, immediate=True)
        await pilot.pause()
        assert view.scroll_y == 0
        assert "reply number 0" in str(view.render_line(0).text)
