"""The conversation transcript: a virtualised, line-based scroll view.

Entries (user segments, assistant replies, tool activity, notices) are kept in a list and
rendered to wrapped strips lazily, one entry at a time, with the result cached per entry
version and width. Only the visible lines are painted (Textual's Line API), so thousands of
lines stay cheap; a streaming reply re-renders just its own entry, and many deltas arriving in
one frame are coalesced into a single re-layout.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Literal

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from voicetui.engine.events import (
    AssistantTextDelta,
    AssistantTextFinal,
    Event,
    Interrupted,
    ToolActivity,
    UserTranscript,
)

MAX_LAYOUT_HZ = 20.0

EntryKind = Literal["user", "assistant", "tool", "notice", "error"]
SPEAKER_COLOURS = 6


@dataclass(slots=True, eq=False)
class Entry:
    """One block of the transcript (one or more wrapped lines)."""

    kind: EntryKind
    turn_id: str
    text: str
    speaker: str | None = None
    start: float | None = None
    end: float | None = None
    segment_index: int = 0
    final: bool = True
    relabelled: bool = False
    streaming: bool = False
    interrupted: bool = False
    played_ms: int | None = None
    version: int = 0
    strips: list[Strip] = field(default_factory=list)
    rendered: tuple[int, int] = (-1, -1)  # (version, width) the strips were made for

    def touch(self) -> None:
        self.version += 1


def format_span(start: float | None, end: float | None) -> str:
    """``[0.1s -> 1.5s]`` (empty when the provider gave no times)."""
    if start is None and end is None:
        return ""
    a = "?" if start is None else f"{start:.1f}s"
    b = "?" if end is None else f"{end:.1f}s"
    return f"[{a} -> {b}]"


class TranscriptView(ScrollView, can_focus=True):
    """Speaker-labelled, streaming, relabel-aware transcript."""

    COMPONENT_CLASSES = {
        "transcript--time",
        "transcript--you",
        "transcript--assistant",
        "transcript--text",
        "transcript--partial",
        "transcript--interrupted",
        "transcript--tool",
        "transcript--notice",
        "transcript--error",
        *(f"transcript--speaker-{i}" for i in range(SPEAKER_COLOURS)),
    }

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.entries: list[Entry] = []
        self._user: dict[tuple[str, int], Entry] = {}
        self._turn_segments: dict[str, set[int]] = {}  # turn -> its user segment indexes
        self._assistant: dict[str, Entry] = {}
        self._tools: dict[tuple[str, str], Entry] = {}
        self._notices: dict[str, Entry] = {}
        self._relabelled_turns: set[str] = set()
        self._speakers: dict[str, int] = {}
        self._offsets: list[int] = []  # first line of each entry
        self._total_lines = 0
        self._layout_width = -1
        self._dirty_from = 0
        self._layout_pending = False
        self._styles: dict[str, Style] = {}
        self._anchor: tuple[str, int] | None = None  # where a relabelled turn's lines go
        self._last_layout = 0.0
        self._base_style: Style | None = None
        self._needs_layout = False
        self.paced = False  # True: the owner calls flush() on its own clock

    # --- public API ------------------------------------------------------------------------

    @property
    def line_count(self) -> int:
        """Wrapped lines currently laid out."""
        return self._total_lines

    def plain_lines(self) -> list[str]:
        """The transcript as plain text, one string per entry (tests, export previews)."""
        return [self._entry_text(e).plain for e in self.entries]

    def clear(self) -> None:
        """Start a fresh transcript (new conversation)."""
        self.entries.clear()
        self._user.clear()
        self._turn_segments.clear()
        self._assistant.clear()
        self._tools.clear()
        self._notices.clear()
        self._relabelled_turns.clear()
        self._speakers.clear()
        self._offsets.clear()
        self._total_lines = 0
        self._dirty_from = 0
        self.virtual_size = Size(self.virtual_size.width, 0)
        self.refresh()

    def add_notice(self, text: str, *, error: bool = False, key: str | None = None) -> None:
        """A line from the app itself (session started, errors with what to do). With a
        ``key``, a later notice of the same key updates that line in place (reconnects)."""
        kind: EntryKind = "error" if error else "notice"
        entry = self._notices.get(key) if key else None
        if entry is not None:
            entry.text, entry.kind = text, kind
            self._changed(entry)
            return
        entry = Entry(kind=kind, turn_id="", text=text)
        if key:
            self._notices[key] = entry
        self._append(entry)

    def end_notice(self, key: str) -> None:
        """The next notice with ``key`` starts a new line (this one is finished)."""
        self._notices.pop(key, None)

    def apply(self, event: Event) -> None:
        """Fold one engine event into the transcript."""
        if isinstance(event, UserTranscript):
            self._on_user(event)
        elif isinstance(event, AssistantTextDelta):
            entry = self._assistant.get(event.turn_id)
            if entry is None:
                entry = Entry(kind="assistant", turn_id=event.turn_id, text="", streaming=True)
                self._assistant[event.turn_id] = entry
                self._append(entry)
            entry.text += event.text
            self._changed(entry)
        elif isinstance(event, AssistantTextFinal):
            entry = self._assistant.get(event.turn_id)
            if entry is None:
                entry = Entry(kind="assistant", turn_id=event.turn_id, text=event.text)
                self._assistant[event.turn_id] = entry
                self._append(entry)
            entry.text = event.text or entry.text
            entry.streaming = False
            entry.interrupted = entry.interrupted or event.interrupted
            self._changed(entry)
        elif isinstance(event, Interrupted):
            entry = self._assistant.get(event.turn_id)
            if entry is not None:
                entry.interrupted = True
                entry.streaming = False
                entry.played_ms = event.played_ms
                self._changed(entry)
        elif isinstance(event, ToolActivity):
            key = (event.turn_id, event.name)
            tool = self._tools.get(key)
            if tool is None:
                tool = Entry(kind="tool", turn_id=event.turn_id, text=event.label)
                self._tools[key] = tool
                self._append(tool)
            tool.text = event.label
            tool.final = event.status != "started"
            tool.interrupted = event.status == "failed"
            self._changed(tool)

    # --- model updates ---------------------------------------------------------------------

    def _on_user(self, event: UserTranscript) -> None:
        if event.relabel and event.turn_id not in self._relabelled_turns:
            self._drop_turn_user_lines(event.turn_id)
            self._relabelled_turns.add(event.turn_id)
        key = (event.turn_id, event.segment_index)
        entry = self._user.get(key)
        if entry is not None and entry.final and not event.final:
            return  # a late partial never replaces a final line (deltas race segments)
        if entry is None:
            entry = Entry(kind="user", turn_id=event.turn_id, text=event.text)
            self._insert_user(entry, event.segment_index)
            self._user[key] = entry
            self._turn_segments.setdefault(event.turn_id, set()).add(event.segment_index)
        entry.text = event.text
        entry.final = event.final
        entry.speaker = event.speaker
        entry.start = event.start
        entry.end = event.end
        entry.segment_index = event.segment_index
        entry.relabelled = event.relabel
        self._changed(entry)

    def _drop_turn_user_lines(self, turn_id: str) -> None:
        """A diarized relabel replaces every earlier line of that turn."""
        segments = self._turn_segments.pop(turn_id, set())
        doomed = [self._user.pop((turn_id, seg)) for seg in segments]
        if not doomed:
            return
        first = min(self._index_of(e) for e in doomed)
        ids = {id(e) for e in doomed}
        self.entries = [e for e in self.entries if id(e) not in ids]
        self._anchor = (turn_id, first)
        self._mark_dirty(first)

    def _insert_user(self, entry: Entry, segment_index: int) -> None:
        """User lines of a turn stay together, in segment order, before that turn's reply."""
        same_turn = [
            (seg, self._index_of(self._user[(entry.turn_id, seg)]))
            for seg in self._turn_segments.get(entry.turn_id, ())
        ]
        if same_turn:
            after = [i for seg, i in same_turn if seg < segment_index]
            before = [i for seg, i in same_turn if seg > segment_index]
            index = max(after) + 1 if after else min(before) if before else len(self.entries)
        else:
            anchor = self._anchor
            if anchor is not None and anchor[0] == entry.turn_id:
                index = min(anchor[1], len(self.entries))
            else:
                index = len(self.entries)
        self.entries.insert(index, entry)
        self._mark_dirty(index)

    def _append(self, entry: Entry) -> None:
        self.entries.append(entry)
        self._mark_dirty(len(self.entries) - 1)

    def _changed(self, entry: Entry) -> None:
        entry.touch()
        self._mark_dirty(self._index_of(entry))

    def _index_of(self, entry: Entry) -> int:
        # Updates almost always hit the newest entries: search from the end.
        for i in range(len(self.entries) - 1, -1, -1):
            if self.entries[i] is entry:
                return i
        raise ValueError("entry not in transcript")

    def _mark_dirty(self, index: int) -> None:
        self._dirty_from = min(self._dirty_from, index)
        self._needs_layout = True
        if self.paced:
            return  # the owner's frame clock calls flush()
        if not self._layout_pending and self.is_mounted:
            self._layout_pending = True
            # At most MAX_LAYOUT_HZ re-layouts: a reply streaming 30+ deltas a second is
            # drawn ~20 times a second, which reads as smooth and costs a third of the CPU.
            wait = self._last_layout + 1 / MAX_LAYOUT_HZ - time.monotonic()
            if wait > 0:
                self.set_timer(wait, self._relayout)
            else:
                self.call_later(self._relayout)

    # --- layout and rendering --------------------------------------------------------------

    def _speaker_style(self, speaker: str) -> Style:
        index = self._speakers.setdefault(speaker, len(self._speakers))
        return self._styles[f"transcript--speaker-{index % SPEAKER_COLOURS}"]

    def _entry_text(self, entry: Entry) -> Text:
        s = self._styles or self._load_styles()
        text = Text(no_wrap=False, overflow="fold")
        if entry.kind == "user":
            span = format_span(entry.start, entry.end)
            if span:
                text.append(span + " ", s["transcript--time"])
            label = entry.speaker or "you"
            style = self._speaker_style(entry.speaker) if entry.speaker else s["transcript--you"]
            text.append(label, style)
            text.append("  ")
            body_style = s["transcript--text"] if entry.final else s["transcript--partial"]
            text.append(entry.text, body_style)
        elif entry.kind == "assistant":
            text.append("assistant", s["transcript--assistant"])
            text.append("  ")
            text.append(entry.text, s["transcript--text"])
            if entry.streaming:
                text.append(" ▍", s["transcript--partial"])
            if entry.interrupted:
                heard = f" at {entry.played_ms / 1000:.1f}s" if entry.played_ms else ""
                text.append(f"  [interrupted{heard}]", s["transcript--interrupted"])
        elif entry.kind == "tool":
            mark = "✗" if entry.interrupted else "✓" if entry.final else "⚙"
            text.append(f"  {mark} {entry.text}", s["transcript--tool"])
        elif entry.kind == "error":
            text.append(f"! {entry.text}", s["transcript--error"])
        else:
            text.append(f"· {entry.text}", s["transcript--notice"])
        return text

    def _load_base_style(self) -> Style:
        # rich_style walks the DOM each time; it only changes with the CSS (see below)
        self._base_style = self.rich_style
        return self._base_style

    def _load_styles(self) -> dict[str, Style]:
        self._styles = {
            name: self.get_component_rich_style(name) for name in self.COMPONENT_CLASSES
        }
        return self._styles

    def _render_entry(self, entry: Entry, width: int, console: Console) -> list[Strip]:
        if entry.rendered == (entry.version, width):
            return entry.strips
        options = console.options.update_width(width)
        segments = console.render(self._entry_text(entry), options)
        strips = [Strip(line) for line in Segment.split_lines(segments)] or [Strip.blank(width)]
        entry.strips = strips
        entry.rendered = (entry.version, width)
        return strips

    def flush(self) -> None:
        """Lay out pending changes now (the owner's frame clock, when ``paced``)."""
        if self._needs_layout and self.is_mounted:
            self._relayout()

    def set_paced(self, paced: bool) -> None:
        """Let the owner drive re-layouts (one clock for meters and text = fewer frames)."""
        self.paced = paced
        if not paced and self._needs_layout and self.is_mounted:
            self._mark_dirty(self._dirty_from)

    def _relayout(self) -> None:
        self._layout_pending = False
        self._needs_layout = False
        self._last_layout = time.monotonic()
        width = self.scrollable_content_region.width
        if width <= 0:
            return
        full = width != self._layout_width
        if full:
            self._layout_width = width
            self._dirty_from = 0
        old_total = self._total_lines
        start = min(self._dirty_from, len(self.entries))
        self._dirty_from = len(self.entries)
        at_end = self.scroll_y >= self.max_scroll_y - 1
        console = self.app.console
        del self._offsets[start:]
        line = (self._offsets[-1] + len(self.entries[start - 1].strips)) if start else 0
        # the common case, one entry changed in place: remember its lines to diff them
        before = list(self.entries[start].strips) if start == len(self.entries) - 1 else None
        for entry in self.entries[start:]:
            self._offsets.append(line)
            line += len(self._render_entry(entry, width, console))
        self._total_lines = line
        self.virtual_size = Size(width, line)
        if full or line != old_total:
            self.refresh()
        else:
            # Same height (the usual streaming delta): repaint only the changed lines, so a
            # reply streaming in rewrites one or two terminal rows, not the whole view.
            first = self._offsets[start] if start < len(self._offsets) else line
            if before is not None:
                after = self.entries[start].strips
                same = 0
                while same < len(before) and same < len(after) and before[same] == after[same]:
                    same += 1
                first += same
            if line > first:
                self.refresh_lines(first, line - first)
        if at_end and line != old_total:
            self.scroll_end(animate=False, immediate=False, x_axis=False)

    def on_mount(self) -> None:
        self._mark_dirty(0)

    def on_resize(self) -> None:
        self._mark_dirty(0)

    def notify_style_update(self) -> None:
        """Theme changed: every entry re-renders with the new component styles."""
        super().notify_style_update()
        self._styles = {}
        self._base_style = None
        for entry in self.entries:
            entry.touch()
        self._layout_width = -1
        self._mark_dirty(0)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        line_no = scroll_y + y
        base = self._base_style or self._load_base_style()
        if line_no >= self._total_lines or not self._offsets:
            return Strip.blank(width, base)
        index = bisect_right(self._offsets, line_no) - 1
        strips = self.entries[index].strips
        offset = line_no - self._offsets[index]
        if offset >= len(strips):
            return Strip.blank(width, base)
        # unstyled gaps take the widget's colours (as RichLog does)
        return strips[offset].crop_extend(scroll_x, scroll_x + width, base).apply_style(base)
