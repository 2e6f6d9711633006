"""The reply ledger: the one owner of assistant replies, for every provider.

A provider reports what it generates — text to show, text pieces to be spoken, the audio that
speaks them, "this piece's audio is complete" and "generation done" — and the ledger does the
rest the same way for every provider:

* queues the audio for playback under the reply's id and emits ``AssistantTextDelta`` /
  ``AssistantAudio`` / ``AssistantDone``;
* aligns text to audio: each spoken piece covers the stretch of audio that arrived for it
  (closed by :meth:`Reply.piece_done` or by generation done); inside a piece the words share
  its audio by their length in characters;
* knows how much has *played* from the playback device's own counter (samples handed to the
  device), never from what was received;
* makes the reply's one ``AssistantTextFinal`` when it has *played out* (a playback event,
  not a poll), or at a cut with the words in the played audio (:meth:`ReplyLedger.cut`);
* after a cut, tells the provider what was heard through its ``cancel(reply, heard_ms,
  heard_text)`` so the service's context matches what the user heard.

Nothing here imports Textual; everything runs on the engine's event loop.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from voicetui.audio.ports import ENGINE_RATE
from voicetui.engine.events import (
    AssistantAudio,
    AssistantDone,
    AssistantTextDelta,
    AssistantTextFinal,
    Event,
    Interrupted,
)

if TYPE_CHECKING:
    from voicetui.audio.ports import AudioOutput, Float32Array, Int16Array

log = logging.getLogger("voicetui.engine.replies")

CutBy = Literal["barge_in", "user_key"]
DoneStatus = Literal["completed", "cancelled", "failed", "incomplete"]
Canceller = Callable[["Reply", int, str], Awaitable[None]]

# Speaking rate assumed for text whose audio has not all arrived yet (about 17 characters a
# second, a typical conversational TTS pace); replaced by the rate measured on finished
# pieces as soon as there is one.
DEFAULT_SECONDS_PER_CHAR = 0.06
_WORD = re.compile(r"\S+")


@dataclass(slots=True)
class _Piece:
    """Text spoken by the reply's audio from ``start`` to ``end`` (samples, ``None``: open)."""

    text: str
    start: int
    end: int | None = None
    own_audio: bool = False  # its audio follows the previous piece's (a TTS request per piece)


@dataclass(eq=False)
class Reply:
    """One assistant reply, from its first text or audio until its final line."""

    id: str
    turn_id: str = ""  # the user turn it answers (for the provider's bookkeeping)
    shown: str = ""  # text shown so far (deltas)
    samples: int = 0  # audio received and queued for playback
    pieces: list[_Piece] = field(default_factory=list)
    closed_until: int = 0  # audio up to here belongs to closed pieces
    generated: bool = False
    status: DoneStatus = "completed"
    final: AssistantTextFinal | None = None
    cut_at_ms: int | None = None
    lost_reason: str = ""  # set when the reply was finally lost to a fault

    @property
    def text(self) -> str:
        """The whole reply as generated so far (shown text, else the spoken pieces)."""
        return self.shown.strip() or " ".join(p.text for p in self.pieces).strip()

    @property
    def received_ms(self) -> int:
        return self.samples * 1000 // ENGINE_RATE


class ReplyLedger:
    """All replies of one session (see the module docstring)."""

    def __init__(
        self,
        emit: Callable[[Event], None],
        playback: AudioOutput,
        *,
        seconds_per_char: float = DEFAULT_SECONDS_PER_CHAR,
    ) -> None:
        self._emit = emit
        self._playback = playback
        self._replies: dict[str, Reply] = {}
        self._order: list[str] = []
        self._samples_per_char = seconds_per_char * ENGINE_RATE
        self._measured_chars = 0
        self._measured_samples = 0
        self._canceller: Canceller | None = None
        self._on_final: list[Callable[[Reply], None]] = []

    # --- wiring ---------------------------------------------------------------------------

    def set_canceller(self, canceller: Canceller | None) -> None:
        """The provider's ``cancel(reply, heard_ms, heard_text)``, called after every cut."""
        self._canceller = canceller

    def on_final(self, callback: Callable[[Reply], None]) -> None:
        """``callback(reply)`` once each reply's final line is out."""
        self._on_final.append(callback)

    def played(self, item_id: str, at: float) -> None:
        """Playback event: ``item_id``'s queued audio has all been handed to the device."""
        reply = self._replies.get(item_id)
        if reply is not None and reply.generated and reply.final is None:
            self._maybe_final(reply)

    # --- what providers report --------------------------------------------------------------

    def open(self, reply_id: str, *, turn_id: str = "") -> Reply:
        """The reply ``reply_id`` (created on first use)."""
        reply = self._replies.get(reply_id)
        if reply is None:
            reply = Reply(id=reply_id, turn_id=turn_id)
            self._replies[reply_id] = reply
            self._order.append(reply_id)
            if len(self._order) > 256:  # old, final replies are forgotten
                old = self._order.pop(0)
                if (gone := self._replies.get(old)) is not None and gone.final is not None:
                    del self._replies[old]
        return reply

    def get(self, reply_id: str) -> Reply | None:
        return self._replies.get(reply_id)

    def show(self, reply: Reply, delta: str) -> None:
        """Text to show as it is generated (``AssistantTextDelta``)."""
        if not delta or reply.final is not None:
            return
        reply.shown += delta
        self._emit(AssistantTextDelta(turn_id=reply.id, text=delta))

    def speak(self, reply: Reply, text: str, *, own_audio: bool = False) -> None:
        """A piece of text the audio that follows will speak (in order).

        ``own_audio=False`` (a realtime model's transcript): the piece covers the audio that
        arrives from now on, until the next piece. ``own_audio=True`` (text sent to a TTS
        piece by piece): its audio starts where the previous piece's ends, and
        :meth:`piece_done` says where it ends.
        """
        if not text.strip() or reply.final is not None:
            return
        last = reply.pieces[-1] if reply.pieces else None
        if (
            not own_audio
            and last is not None
            and not last.own_audio
            and last.end is None
            and last.start == reply.samples
        ):
            last.text += text  # no audio yet since the last piece: the same stretch
            return
        reply.pieces.append(_Piece(text=text, start=reply.samples, own_audio=own_audio))

    def say(self, reply: Reply, delta: str) -> None:
        """Shown and spoken at once (a realtime model's transcript delta)."""
        self.show(reply, delta)
        self.speak(reply, delta)

    def audio(self, reply: Reply, pcm: Int16Array | Float32Array) -> None:
        """Queue reply audio for playback (mono 24 kHz) and report it."""
        n = len(pcm)
        if n == 0 or reply.final is not None:
            return
        self._playback.enqueue(reply.id, pcm)
        reply.samples += n
        self._emit(AssistantAudio(turn_id=reply.id, samples=n))

    def piece_done(self, reply: Reply, *, every: bool = False) -> None:
        """The oldest open piece's audio is complete (the TTS confirmed it); ``every``: the
        audio of all pieces so far is complete (one confirmation for them all), so they
        share it by length."""
        if every:
            self._close_pieces(reply)
            return
        for piece in reply.pieces:
            if piece.end is None:
                piece.start = (
                    max(piece.start, reply.closed_until) if piece.own_audio else piece.start
                )
                piece.end = max(reply.samples, piece.start)
                reply.closed_until = piece.end
                self._measure(piece)
                return

    def generated(self, reply: Reply, status: DoneStatus = "completed") -> None:
        """Nothing more will arrive for ``reply``; its line becomes final once played out."""
        if reply.generated:
            return
        reply.generated = True
        reply.status = status
        self._close_pieces(reply)
        self._emit(AssistantDone(turn_id=reply.id, status=status))
        self._maybe_final(reply)

    def lost(self, reply: Reply, reason: str) -> None:
        """The reply will never be complete (a fault): final now, ``interrupted`` with why."""
        reply.lost_reason = reason
        if not reply.generated:
            self.generated(reply, "failed")
        if reply.final is None:
            heard_ms = self._playback.played_ms(reply.id) if reply.samples else 0
            self._finalize(reply, self.heard_text(reply, heard_ms), interrupted=True)

    def restart(self, reply: Reply) -> None:
        """Generation starts over (a re-asked reply after a drop): its partial audio stops
        and its text and audio are forgotten; the whole reply comes again."""
        if reply.samples and self._playback.is_active():
            self._playback.flush()
        reply.shown = ""
        reply.samples = 0
        reply.pieces.clear()
        reply.closed_until = 0
        reply.generated = False

    # --- what the engine asks ---------------------------------------------------------------

    def active(self) -> Reply | None:
        """The newest reply whose line is not final yet (generating or playing)."""
        for rid in reversed(self._order):
            reply = self._replies.get(rid)
            if reply is not None and reply.final is None:
                return reply
        return None

    def audible(self) -> bool:
        """A non-final reply has audio queued or playing."""
        return self._playback.is_active() and any(
            r.final is None and r.samples > 0 for r in self._replies.values()
        )

    def busy(self) -> bool:
        """A reply is still generating, or its audio is still playing."""
        return any(r.final is None and not r.generated for r in self._replies.values()) or (
            self.audible()
        )

    def heard_text(self, reply: Reply, heard_ms: int) -> str:
        """The words of ``reply`` carried by its first ``heard_ms`` of audio (one rule for
        every provider: a word counts as heard once the middle of its audio has played)."""
        heard = heard_ms * ENGINE_RATE // 1000
        if heard <= 0 or not reply.pieces:
            return ""
        if reply.generated and heard >= reply.samples:
            return reply.text
        words: list[str] = []
        for text, start, end in self._layout(reply):
            if start >= heard:
                break
            span = max(end - start, 1)
            chars = max(len(text), 1)
            for match in _WORD.finditer(text):
                middle = start + span * (match.start() + match.end()) / 2 / chars
                if middle > heard:
                    return " ".join(words)
                words.append(match.group())
        return " ".join(words)

    def _layout(self, reply: Reply) -> list[tuple[str, int, int]]:
        """Where each piece's audio is (or, for text still ahead of its audio, will be)."""
        layout: list[tuple[str, int, int]] = []
        pieces = reply.pieces
        i = 0
        while i < len(pieces):
            piece = pieces[i]
            if piece.end is not None:
                layout.append((piece.text, piece.start, piece.end))
                i += 1
                continue
            # The open pieces from here on share the audio that has arrived since the last
            # closed one, by length; when their text is ahead of it, they last what the
            # speaking rate says that much text takes. (Where a transcript delta arrived
            # between audio chunks says nothing: text runs ahead of audio at its own pace.)
            group = pieces[i:]
            start = reply.closed_until
            chars = [max(len(p.text), 1) for p in group]
            arrived = reply.samples - start
            span = max(arrived, int(sum(chars) * self._samples_per_char))
            pos = float(start)
            for p, n in zip(group, chars, strict=True):
                layout.append((p.text, int(pos), int(pos + span * n / sum(chars))))
                pos += span * n / sum(chars)
            break
        return layout

    async def cut(self, by: CutBy) -> Reply | None:
        """Barge-in / interrupt: silence the speaker now, make the active reply's line what
        was heard, and tell the provider. Idempotent: a second cut finds nothing to cut."""
        reply = self.active()
        flushed = self._playback.flush()  # first: the speaker goes quiet within one block
        if reply is None or reply.cut_at_ms is not None:
            return None
        if reply.generated and reply.samples and not self._playback.is_active():
            played_all = self._playback.played_ms(reply.id) >= reply.received_ms - 1
            if played_all:
                self._finalize(reply, reply.text, interrupted=False)
                return None
        heard_ms = min(max(self._playback.played_ms(reply.id), flushed), reply.received_ms)
        reply.cut_at_ms = heard_ms
        text = self.heard_text(reply, heard_ms)
        if not reply.generated:
            self.generated(reply, "cancelled")  # final comes from the cut, just below
        self._emit(Interrupted(turn_id=reply.id, played_ms=heard_ms, by=by))
        self._finalize(reply, text, interrupted=True)
        if self._canceller is not None:
            await self._canceller(reply, heard_ms, text)
        return reply

    def close(self) -> None:
        """Session over: every reply still open gets its final line (what was heard)."""
        for rid in list(self._order):
            reply = self._replies.get(rid)
            if reply is None or reply.final is not None:
                continue
            heard_ms = self._playback.played_ms(reply.id) if reply.samples else 0
            complete = (
                reply.generated
                and reply.status == "completed"
                and (reply.samples == 0 or heard_ms >= reply.received_ms - 1)
            )
            if complete:
                self._finalize(reply, reply.text, interrupted=False)
            elif reply.samples == 0 and reply.text and not reply.lost_reason:
                # text only (audio never came): what was generated counts as said
                self._finalize(reply, reply.text, interrupted=not reply.generated)
            else:
                self._finalize(reply, self.heard_text(reply, heard_ms), interrupted=True)

    # --- internals ---------------------------------------------------------------------------

    def _close_pieces(self, reply: Reply) -> None:
        opened = [p for p in reply.pieces if p.end is None]
        if not opened:
            return
        # the audio after the last closed piece carries every open piece, shared by length
        start = reply.closed_until
        total = sum(max(len(p.text), 1) for p in opened)
        span = max(reply.samples - start, 0)
        pos = start
        for piece in opened:
            piece.start = pos
            pos += span * max(len(piece.text), 1) // total
            piece.end = pos
            self._measure(piece)
        opened[-1].end = reply.samples
        reply.closed_until = reply.samples

    def _measure(self, piece: _Piece) -> None:
        samples = (piece.end or piece.start) - piece.start
        if samples <= 0 or not piece.text.strip():
            return
        self._measured_chars += len(piece.text)
        self._measured_samples += samples
        self._samples_per_char = self._measured_samples / self._measured_chars

    def _maybe_final(self, reply: Reply) -> None:
        if reply.final is not None or not reply.generated:
            return
        if reply.samples == 0:
            self._finalize(reply, reply.text, interrupted=reply.status != "completed")
            return
        played = self._playback.played_ms(reply.id)
        if played >= reply.received_ms - 1 or not self._playback.is_active():
            complete = reply.status == "completed" and played >= reply.received_ms - 1
            text = reply.text if complete else self.heard_text(reply, played)
            self._finalize(reply, text, interrupted=not complete)

    def _finalize(self, reply: Reply, text: str, *, interrupted: bool) -> None:
        if reply.final is not None:
            return
        final = AssistantTextFinal(
            turn_id=reply.id,
            text=text.strip(),
            interrupted=interrupted,
            reason=reply.lost_reason,
        )
        reply.final = final
        self._emit(final)
        for callback in list(self._on_final):
            try:
                callback(reply)
            except Exception:  # a listener bug must not stop the conversation
                log.exception("reply final callback failed")
