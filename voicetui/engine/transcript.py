"""Transcript store: one append-only JSONL file per session, fsynced at every final event.

Every line is ``event_to_dict(event)`` as JSON. Final events (:func:`is_final`) are flushed
and fsynced before the engine shows them to anyone else, so a crash (even ``kill -9``) loses
nothing that was on screen. Partial text and audio chunks are not kept: they are superseded
by the finals and would only bloat the file.

Also here: the Markdown export and ``voicetui transcripts list|export``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicetui import paths
from voicetui.engine.events import (
    AssistantAudio,
    AssistantTextDelta,
    Event,
    StateChanged,
    UserTranscript,
    event_to_dict,
    is_final,
)

log = logging.getLogger("voicetui.transcript")

SUFFIX = ".jsonl"


def keeps(event: Event) -> bool:
    """True for the events a session transcript keeps (finals and turn/session markers)."""
    if isinstance(event, AssistantAudio | AssistantTextDelta | StateChanged):
        return False
    if isinstance(event, UserTranscript):
        return event.final
    return True


class JsonlWriter:
    """Appends events to one JSONL file; fsyncs after each final event.

    ``keep`` filters which events are written (default: :func:`keeps`). The file is opened in
    append mode, so a resumed session never rewrites earlier lines.
    """

    def __init__(self, path: Path, *, keep: Any = keeps) -> None:
        self.path = path
        self._keep = keep
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, event: Event) -> None:
        """Write ``event`` if kept; make it durable if it is final.

        Each line goes out in one unbuffered ``write`` (O_APPEND), so a crash can never
        leave half a line behind, whatever the process was doing.
        """
        if self._fd is None or not self._keep(event):
            return
        line = json.dumps(event_to_dict(event), ensure_ascii=False) + "\n"
        os.write(self._fd, line.encode("utf-8"))
        if is_final(event):
            os.fsync(self._fd)

    def close(self) -> None:
        """Fsync and close (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One stored session, for ``voicetui transcripts list``."""

    session_id: str
    path: Path
    provider: str
    started: str  # ISO time from the session id
    lines: int  # user + assistant lines


class TranscriptStore:
    """Append-only JSONL per session in :func:`voicetui.paths.transcripts_dir`."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory
        self._writer: JsonlWriter | None = None
        self.session_id: str | None = None

    @property
    def directory(self) -> Path:
        if self._directory is None:
            self._directory = paths.transcripts_dir()
        self._directory.mkdir(parents=True, exist_ok=True)
        return self._directory

    def path_for(self, session_id: str) -> Path:
        return self.directory / f"{session_id}{SUFFIX}"

    def open(self, session_id: str) -> Path:
        """Start (or resume) the file of ``session_id``; later events go there."""
        self.close()
        self.session_id = session_id
        self._writer = JsonlWriter(self.path_for(session_id))
        return self._writer.path

    def append(self, event: Event) -> None:
        """Record ``event`` in the open session (no-op when none is open)."""
        if self._writer is not None:
            self._writer.append(event)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # --- reading ----------------------------------------------------------------------

    def session_ids(self) -> list[str]:
        """Stored session ids, oldest first (ids sort by time)."""
        return sorted(p.stem for p in self.directory.glob(f"*{SUFFIX}"))

    def load(self, session_id: str) -> list[dict[str, Any]]:
        """The events of a session as dicts; a torn last line (crash mid-write) is skipped."""
        return list(read_jsonl(self.path_for(session_id)))

    def sessions(self) -> list[SessionSummary]:
        out: list[SessionSummary] = []
        for sid in self.session_ids():
            events = self.load(sid)
            provider = next(
                (str(e.get("provider", "")) for e in events if e["type"] == "SessionStarted"), ""
            )
            lines = len(conversation_lines(events))
            out.append(SessionSummary(sid, self.path_for(sid), provider, _started(sid), lines))
        return out

    def export_markdown(self, session_id: str) -> str:
        """The session as Markdown: a heading, then one paragraph per line."""
        if not self.path_for(session_id).exists():
            raise FileNotFoundError(f"no transcript with id {session_id!r}")
        return to_markdown(session_id, self.load(session_id))


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Parse a JSONL file, skipping lines that do not parse (a torn tail after a crash)."""
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: unparsable line skipped", path, number)
                continue
            if isinstance(data, dict) and "type" in data:
                yield data


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the conversation as shown to the user."""

    role: str  # "user" | "assistant"
    text: str
    speaker: str | None = None
    start: float | None = None
    end: float | None = None
    interrupted: bool = False


def conversation_lines(events: Iterable[dict[str, Any]]) -> list[Line]:
    """User and assistant lines in order; a relabelled final replaces the earlier one."""
    lines: list[Line] = []
    user_index: dict[tuple[str, int], int] = {}
    for ev in events:
        kind = ev.get("type")
        if kind == "UserTranscript" and ev.get("final"):
            line = Line(
                "user",
                str(ev.get("text", "")),
                ev.get("speaker"),
                ev.get("start"),
                ev.get("end"),
            )
            key = (str(ev.get("turn_id")), int(ev.get("segment_index", 0)))
            if key in user_index:
                lines[user_index[key]] = line
            else:
                user_index[key] = len(lines)
                lines.append(line)
        elif kind == "AssistantTextFinal":
            lines.append(
                Line("assistant", str(ev.get("text", "")), interrupted=bool(ev.get("interrupted")))
            )
    return lines


def format_user_line(text: str, speaker: str | None, start: float | None, end: float | None) -> str:
    """``[0.1s -> 1.5s] speaker_1: text`` where speaker and times are known, else ``user: text``."""
    who = speaker or "user"
    if start is not None and end is not None:
        return f"[{start:.1f}s -> {end:.1f}s] {who}: {text}"
    return f"{who}: {text}"


def to_markdown(session_id: str, events: list[dict[str, Any]]) -> str:
    started = next((e for e in events if e.get("type") == "SessionStarted"), None)
    out = [f"# Conversation {session_id}", ""]
    if started is not None:
        out += [
            f"- provider: `{started.get('provider', '')}`",
            f"- model: `{started.get('model', '')}`, voice: `{started.get('voice', '')}`",
            f"- started: {_started(session_id)}",
            "",
        ]
    for line in conversation_lines(events):
        if line.role == "user":
            label = format_user_line(line.text, line.speaker, line.start, line.end)
            who, _, text = label.rpartition(": ")
            out.append(f"**{who}:** {text}")
        else:
            suffix = " *(interrupted)*" if line.interrupted else ""
            out.append(f"**assistant:** {line.text}{suffix}")
        out.append("")
    ended = next((e for e in reversed(events) if e.get("type") == "SessionEnded"), None)
    if ended is not None:
        out.append(f"*Session ended: {ended.get('reason', '')}*")
        out.append("")
    return "\n".join(out)


def _started(session_id: str) -> str:
    # ids look like 20261122T034512Z-1a2b3c
    stamp = session_id.split("-", 1)[0]
    if len(stamp) == 16 and stamp[8] == "T":
        day = f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}"
        return f"{day} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z"
    return stamp


def cli_main(args: argparse.Namespace) -> int:
    """``voicetui transcripts list`` / ``voicetui transcripts export [SESSION_ID] [--out FILE]``."""
    store = TranscriptStore()
    command = getattr(args, "transcripts_command", None) or "list"
    if command == "list":
        # a session that never got a line (a failed `talk`, no key) is not a conversation
        sessions = [s for s in store.sessions() if s.lines > 0]
        if not sessions:
            print(f"no transcripts yet (they are kept in {store.directory})")
            return 0
        for s in sessions:
            print(f"{s.session_id}  {s.started}  {s.provider or '-':<24} {s.lines:>4} lines")
        return 0
    if command == "export":
        session_id = getattr(args, "session", None)
        ids = store.session_ids()
        if not session_id:
            if not ids:
                print("voicetui: no transcripts to export", file=sys.stderr)
                return 1
            session_id = ids[-1]
        elif session_id not in ids:
            matches = [i for i in ids if i.startswith(session_id)]
            if len(matches) != 1:
                print(f"voicetui: no single transcript matches {session_id!r}", file=sys.stderr)
                return 1
            session_id = matches[0]
        text = store.export_markdown(session_id)
        out = getattr(args, "out", None)
        if out:
            Path(out).write_text(text, encoding="utf-8")
            print(f"wrote {out}")
        else:
            sys.stdout.write(text)
        return 0
    print(f"voicetui: unknown transcripts command {command!r}", file=sys.stderr)
    return 2
