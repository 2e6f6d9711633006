"""Transcript store: one append-only JSONL file per session, fsynced at every final event.

Every line is ``event_to_dict(event)`` as JSON, serialised on the caller's thread and
written by the one disk-writer thread (:func:`voicetui.fileio.writer`), so the event loop
never waits on the disk. Lines are whole or absent (:class:`voicetui.fileio.LineAppender`):
when the disk refuses (full, read-only, forbidden) writing stops, the lines stay in memory
(:attr:`JsonlWriter.unsaved`) and ``on_failure`` hears one line saying so. Final events
(:func:`is_final`) are fsynced. Partial text and audio chunks are not kept: they are
superseded by the finals and would only bloat the file.

Also here: the Markdown export and ``voicetui transcripts list|export``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicetui import fileio, paths
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
    """Appends events to one JSONL file through the disk-writer thread; fsyncs each final.

    ``keep`` filters which events are written (default: :func:`keeps`). By default the file
    is opened in append mode, so a resumed session never rewrites earlier lines. With
    ``replace=True`` a fresh file is written; if one is already at ``path`` the lines go
    to a temp file next to it that replaces it at :meth:`close` (only if every line was
    written): whatever was at ``path`` is untouched until the new file is complete. A path
    that is not a regular file raises :class:`voicetui.fileio.UnsafePath` here.
    """

    def __init__(
        self,
        path: Path,
        *,
        keep: Any = keeps,
        replace: bool = False,
        what: str = "transcript",
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self._keep = keep
        self._target: Path | None = None
        sink = path
        if replace:
            target = fileio.write_target(path)
            if target.exists():  # else write in place: a kill -9 then keeps every final line
                self._target = target
                sink = target.with_name(f".{target.name}.{os.getpid()}.partial")
        self._appender = fileio.LineAppender(sink, what=what, on_failure=self._failed)
        self._on_failure = on_failure
        self._closed = False
        self._writer = fileio.writer()
        self._writer.submit(self._appender.open)

    @property
    def failure(self) -> str | None:
        """The one line saying why lines were not saved (None while all is well)."""
        return self._appender.failure

    @property
    def unsaved(self) -> list[bytes]:
        """Lines the disk refused, oldest first (read after :meth:`wait`)."""
        return list(self._appender.unsaved)

    @property
    def unsaved_lines(self) -> list[bytes]:
        """The live list behind :attr:`unsaved` (appended to by the writer thread)."""
        return self._appender.unsaved

    def _failed(self, message: str) -> None:
        if self._target is not None:  # name the path the user gave, not the temp file
            message = message.replace(str(self._appender.path), str(self.path))
            self._appender.failure = message
        if self._on_failure is not None:
            self._on_failure(message)

    def append(self, event: Event) -> None:
        """Queue ``event`` if kept; it is fsynced if it is final."""
        if self._closed or not self._keep(event):
            return
        line = (json.dumps(event_to_dict(event), ensure_ascii=False) + "\n").encode("utf-8")
        sync = is_final(event)
        self._writer.submit(lambda: self._appender.append(line, sync=sync))

    def close(self) -> None:
        """Queue the fsync and close (idempotent; :meth:`wait` waits for it)."""
        if self._closed:
            return
        self._closed = True
        self._writer.submit(self._finish)

    def wait(self, timeout: float | None = 10.0) -> bool:
        """Block until everything queued so far is on disk (not on the event loop)."""
        return self._writer.drain(timeout)

    def _finish(self) -> None:
        self._appender.close()
        if self._target is None:
            return
        sink = self._appender.path
        try:
            if self._appender.failure is None:
                fileio.replace_with(sink, self._target)
                return
        except OSError as exc:
            self._appender.failure = f"transcript not saved: {fileio.reason(exc)} at {self.path}"
            log.error("%s", self._appender.failure)
            if self._on_failure is not None:
                self._on_failure(self._appender.failure)
        with contextlib.suppress(OSError):
            os.unlink(sink)


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One stored session, for ``voicetui transcripts list``."""

    session_id: str
    path: Path
    provider: str
    started: str  # ISO time from the session id
    lines: int  # user + assistant lines


# session id -> lines the disk refused in this process (read by exports: nothing is lost)
_UNSAVED: dict[str, list[bytes]] = {}


class TranscriptStore:
    """Append-only JSONL per session in :func:`voicetui.paths.transcripts_location`.

    Nothing here raises for a disk that says no: :attr:`failure` gets one line and
    :attr:`on_failure` (set by the engine) hears it once, from the writer thread.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory
        self._writer: JsonlWriter | None = None
        self._last: JsonlWriter | None = None
        self.session_id: str | None = None
        self.on_failure: Callable[[str], None] | None = None
        self.failure: str | None = None

    @property
    def directory(self) -> Path:
        """Where the files are (not created here: listing needs no writable disk)."""
        if self._directory is None:
            self._directory = paths.transcripts_location()
        return self._directory

    def path_for(self, session_id: str) -> Path:
        return self.directory / f"{session_id}{SUFFIX}"

    def open(self, session_id: str) -> Path:
        """Start (or resume) the file of ``session_id``; later events go there."""
        self.close()
        self.session_id = session_id
        self._writer = JsonlWriter(self.path_for(session_id), on_failure=self._failed)
        return self._writer.path

    def _failed(self, message: str) -> None:
        writer = self._writer or self._last
        if self.session_id is not None and writer is not None:
            _UNSAVED[self.session_id] = writer.unsaved_lines  # live: it keeps growing
        if self.failure is None:
            self.failure = message
            if self.on_failure is not None:
                self.on_failure(message)

    def append(self, event: Event) -> None:
        """Record ``event`` in the open session (no-op when none is open)."""
        if self._writer is not None:
            self._writer.append(event)

    @property
    def unsaved(self) -> list[bytes]:
        """The last session's lines the disk refused (see :class:`JsonlWriter`), so the
        user can still export them elsewhere."""
        writer = self._writer or self._last
        return writer.unsaved if writer is not None else []

    def close(self) -> None:
        """Queue the close of the open session (does not wait: see :meth:`wait`)."""
        if self._writer is not None:
            self._writer.close()
            self._last, self._writer = self._writer, None

    def wait(self, timeout: float | None = 10.0) -> bool:
        """Block until everything queued so far is written (never call on the event loop)."""
        return fileio.writer().drain(timeout)

    # --- reading ----------------------------------------------------------------------

    def session_ids(self) -> list[str]:
        """Stored session ids, oldest first (ids sort by time)."""
        try:
            names = os.listdir(self.directory)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(n[: -len(SUFFIX)] for n in names if n.endswith(SUFFIX) and n[0] != ".")

    def load(self, session_id: str) -> list[dict[str, Any]]:
        """The events of a session as dicts; a torn last line (crash mid-write) is skipped.

        Waits for lines still queued for the disk first (call it off the event loop). Lines
        the disk refused in this process are added from memory, so an export still has the
        whole conversation."""
        fileio.writer().drain()
        path = self.path_for(session_id)
        events = list(read_jsonl(path)) if path.exists() else []
        for line in _UNSAVED.get(session_id, ()):
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

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
        if not self.path_for(session_id).exists() and session_id not in _UNSAVED:
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
        try:
            # a session that never got a line (a failed `talk`, no key) is not a conversation
            sessions = [s for s in store.sessions() if s.lines > 0]
        except OSError as err:
            where = store.directory
            print(f"voicetui: cannot read {where}: {fileio.reason(err)}", file=sys.stderr)
            return 1
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
            try:
                fileio.atomic_write(out, text.encode("utf-8"))
            except fileio.UnsafePath as err:
                print(f"voicetui: {err.strerror}", file=sys.stderr)
                return 1
            except OSError as err:
                print(f"voicetui: cannot write {out}: {fileio.reason(err)}", file=sys.stderr)
                return 1
            print(f"wrote {out}")
        else:
            sys.stdout.write(text)
        return 0
    print(f"voicetui: unknown transcripts command {command!r}", file=sys.stderr)
    return 2
