"""``voicetui talk [PROVIDER] --input IN.wav [--output OUT.wav] [--transcript OUT.jsonl]``.

The real conversation loop, headless, with a WAV file as the microphone:

* push-to-talk: the whole file is one turn, sent as fast as the provider takes it;
* server VAD: the file is fed at real-time pace like a microphone, the replies are played
  (to OUT.wav, or the speaker) in real time too, so barge-in behaves as it would live.

Prints the transcript as it goes, one user line per turn (the diarized one when there is one,
in the seed's form ``[0.1s -> 1.5s] speaker_1 : text``, else ``user: text``) and
``assistant: text``; while a reply plays, a progress line on a terminal's stderr. Writes every
transcript event to OUT.jsonl (fsynced at each final), and exits 0, or non-zero with one line
saying why. Native audio libraries' noise (ALSA) goes to the log, not to stderr. Exits non-zero
also when any turn got no complete reply (a reply lost to a fault, or none at all).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import logging
import signal
import sys
from pathlib import Path
from typing import Protocol, TextIO

from voicetui import fileio
from voicetui.audio.ports import DuplexPolicy
from voicetui.engine.events import (
    AssistantAudio,
    AssistantDone,
    AssistantTextFinal,
    ErrorEvent,
    Event,
    Reconnected,
    Reconnecting,
    SessionEnded,
    SessionRolledOver,
    SessionWarning,
    UserTranscript,
)
from voicetui.engine.session import ConversationEngine
from voicetui.engine.transcript import JsonlWriter, TranscriptStore

log = logging.getLogger("voicetui.talk")

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_CONFIG = 2  # as the README says: a config the user must fix
EXIT_INTERRUPTED = 130


class Writer(Protocol):
    """A transcript sink written off the loop (:class:`JsonlWriter`, :class:`TranscriptStore`)."""

    @property
    def failure(self) -> str | None: ...

    def close(self) -> None: ...

    def wait(self, timeout: float | None = 10.0) -> bool: ...


def not_audio(event: Event) -> bool:
    """What OUT.jsonl keeps: every event but the audio chunks."""
    return not isinstance(event, AssistantAudio)


RELABEL_WAIT_S = 3.0  # longest a reply's line waits for its turn's diarized relabel


def seed_line(text: str, speaker: str | None, start: float | None, end: float | None) -> str:
    """A user line as the seed prints a diarized segment: ``[0.1s -> 1.5s] speaker_1 : text``
    (``user: text`` without speaker and times)."""
    if speaker and start is not None and end is not None:
        return f"[{start:.1f}s -> {end:.1f}s] {speaker} : {text}"
    return f"{speaker or 'user'}: {text}"


class Printer:
    """Prints the conversation as it happens: lines to ``out``, notices to ``err``.

    One user line per turn. With ``relabels`` (the provider runs a diarized second pass over
    each turn) a plain final is held until the turn's relabel replaces it, and the reply's
    line waits behind it, at most :data:`RELABEL_WAIT_S` after the reply is complete; the
    next turn or the session's end releases them too. Without, the plain line prints at once.
    """

    def __init__(
        self, out: TextIO = sys.stdout, err: TextIO = sys.stderr, *, relabels: bool = False
    ) -> None:
        self.out = out
        self.err = err
        self.fatal: str | None = None
        self.relabels = relabels
        self._pending: dict[str, list[str]] = {}  # turn -> plain final lines not printed yet
        self._held: list[str] = []  # reply lines waiting behind a pending user line
        self._timer: asyncio.TimerHandle | None = None
        self._relabelled: set[str] = set()
        self._printed_plain: set[str] = set()
        self._playing: dict[str, float] = {}  # reply -> seconds of audio queued so far
        self._progress_shown = False
        self._live = bool(getattr(err, "isatty", lambda: False)())
        self.lost: str | None = None  # why the first turn without a complete reply had none

    def __call__(self, event: Event) -> None:
        if isinstance(event, UserTranscript):
            if event.final:
                self._user(event)
            return
        if isinstance(event, AssistantAudio):
            seconds = self._playing.get(event.turn_id, 0.0) + event.samples / event.sample_rate
            self._playing[event.turn_id] = seconds
            self._progress(f"assistant speaking… {seconds:.1f} s")
        elif isinstance(event, AssistantTextFinal):
            self._playing.pop(event.turn_id, None)
            mark = " [interrupted]" if event.interrupted else ""
            line = f"assistant: {event.text}{mark}"
            if self._pending:
                self._held.append(line)  # its user line may still be relabelled
                self._later(RELABEL_WAIT_S)
            else:
                self._say(line)
            if event.reason:
                self._lost(event.reason, specific=True)
        elif isinstance(event, AssistantDone):
            if event.status == "failed":
                self._lost("the reply failed")
        elif isinstance(event, ErrorEvent):
            if event.code == "storage":
                return  # said once at exit, with the exit status it causes
            if event.code == "timeout":
                self._lost(event.message)
            if event.fatal:
                self.fatal = event.message
            else:
                self._note(f"warning: {event.message}")
        elif isinstance(event, Reconnecting):
            self._note(
                f"connection lost ({event.reason}); reconnecting in {event.delay_s:g} s "
                f"(attempt {event.attempt})"
            )
        elif isinstance(event, Reconnected):
            self._note("reconnected")
        elif isinstance(event, SessionWarning):
            self._note(event.message)
        elif isinstance(event, SessionRolledOver):
            self._note(f"continued in a new session ({event.number}) after {event.after_s:.0f} s")
        elif isinstance(event, SessionEnded):
            self._release()

    def _user(self, event: UserTranscript) -> None:
        line = seed_line(event.text, event.speaker, event.start, event.end)
        if event.relabel:
            # the diarized pass replaces the turn's plain line that was held back; one that
            # comes after the plain line was printed stays in OUT.jsonl only
            if event.turn_id in self._printed_plain:
                return
            self._pending.pop(event.turn_id, None)
            self._relabelled.add(event.turn_id)
            self._say(line)
            if self._held:
                self._later(0.0)  # after the turn's other segments, emitted right along
        elif event.speaker is not None and event.start is not None:
            self._say(line)  # diarized from the start (one segment per line)
        elif event.turn_id in self._relabelled:
            return
        elif not self.relabels:
            self._say(line)
        else:
            self._release()  # an earlier turn's lines go first
            self._pending.setdefault(event.turn_id, []).append(line)

    def _later(self, delay: float) -> None:
        """Release held lines after ``delay`` on the running loop (at once without one)."""
        if self._timer is not None:
            self._timer.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._release()
            return
        self._timer = loop.call_later(delay, self._release)

    def _release(self) -> None:
        """Print what is held: plain user lines (no relabel came), then the replies."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for turn_id, lines in self._pending.items():
            self._printed_plain.add(turn_id)
            for line in lines:
                self._say(line)
        self._pending.clear()
        held, self._held = self._held, []
        for line in held:
            self._say(line)

    def _progress(self, text: str) -> None:
        """One line on a terminal's stderr, rewritten in place (nothing when redirected)."""
        if self._live:
            self.err.write(f"\r\033[K{text}")
            self.err.flush()
            self._progress_shown = True

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.err.write("\r\033[K")
            self.err.flush()
            self._progress_shown = False

    def _lost(self, reason: str, *, specific: bool = False) -> None:
        if self.lost is None or (specific and self.lost == "the reply failed"):
            self.lost = reason

    def _say(self, line: str) -> None:
        self._clear_progress()
        print(line, file=self.out, flush=True)

    def _note(self, line: str) -> None:
        self._clear_progress()
        print(line, file=self.err, flush=True)


def prepare(
    args: argparse.Namespace, printer: Printer | None = None
) -> tuple[ConversationEngine, list[Writer]]:
    """Build the engine for ``args`` and hook up the printer and OUT.jsonl; raise the
    one-line errors of the set-up (config, key, provider, audio) before anything starts."""
    from voicetui.config import load_config
    from voicetui.engine.factory import build_engine
    from voicetui.keys import KeyStore

    input_wav = Path(args.input)
    if not input_wav.is_file():
        raise FileNotFoundError(f"input WAV not found: {input_wav}")
    _check_outputs(args, input_wav)  # before anything is touched
    config = load_config(getattr(args, "config", None))
    provider_key = getattr(args, "provider", None) or config.provider
    settings = config.provider_settings(provider_key)
    ptt = settings.turn_detection == "push_to_talk"
    output = Path(args.output) if getattr(args, "output", None) else None
    # a WAV microphone hears no loudspeaker, so there is no echo to gate: let the user's
    # speech over a reply barge in exactly as the provider decides
    audio = dataclasses.replace(config.audio, duplex=DuplexPolicy.FULL)
    store = TranscriptStore()
    engine = build_engine(
        config,
        KeyStore(),
        provider_key=provider_key,
        input_wav=input_wav,
        output_wav=output,
        realtime_input=not ptt,
        realtime_output=not ptt,
        end_when_input_ends=True,
        talk_on_connect=ptt,
        audio=audio,
        store=store,
    )
    writers: list[Writer] = [store]
    transcript = getattr(args, "transcript", None)
    if transcript:
        # a fresh file per run, put in place only when complete (the old one stays till then)
        writer = JsonlWriter(Path(transcript), keep=not_audio, replace=True)
        engine.subscribe(writer.append)
        writers.append(writer)
    if printer is not None:
        # a provider with a diarized second pass declares its model (a relabel will come)
        printer.relabels = "diarizeModel" in settings.extras
    engine.subscribe(printer or Printer())
    return engine, writers


def _check_outputs(args: argparse.Namespace, input_wav: Path) -> None:
    """Refuse an output that is the input itself, or not a regular file, in one line."""
    for flag in ("output", "transcript"):
        value = getattr(args, flag, None)
        if not value:
            continue
        if fileio.same_file(value, input_wav):
            raise fileio.UnsafePath(
                errno.EINVAL, f"--{flag} {value} is the input file; choose another path"
            )
        fileio.write_target(value)


async def run(engine: ConversationEngine, writers: list[Writer] | None = None) -> SessionEnded:
    """Run the prepared conversation to its end; Ctrl+C ends it cleanly (the transcript
    gets its SessionEnded line)."""
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Task[None]] = []

    def stop() -> None:
        pending.append(loop.create_task(engine.end("stopped with Ctrl+C")))

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop)
        loop.add_signal_handler(signal.SIGTERM, stop)
    try:
        return await engine.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        for writer in writers or ():
            writer.close()


def cli_main(args: argparse.Namespace) -> int:
    """Entry point from ``voicetui.cli``; returns the exit code, never a traceback."""
    from voicetui.stderr_guard import stderr_to_log

    # ALSA (through PortAudio) writes underrun and probe noise straight to fd 2: that goes
    # to the log; our own notices use the stream that still reaches the terminal.
    with stderr_to_log() as terminal:
        return _talk(args, terminal)


def _talk(args: argparse.Namespace, err: TextIO) -> int:
    printer = Printer(err=err)
    try:
        engine, writers = prepare(args, printer)
        ended = asyncio.run(run(engine, writers))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # set-up failures carry one-line messages
        if not _known(exc):
            log.exception("voicetui talk failed")
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"voicetui talk: {message}", file=err, flush=True)
        return EXIT_CONFIG if type(exc).__name__ == "ConfigError" else EXIT_FAIL
    # the transcript is written off the loop: wait for it, then say if the disk said no
    for writer in writers:
        writer.wait()
    failures = list(dict.fromkeys(w.failure for w in writers if w.failure))
    if failures:
        for failure in failures:
            print(f"voicetui talk: {failure}", file=err, flush=True)
        return EXIT_FAIL
    if ended.code == "user":
        return EXIT_INTERRUPTED  # only Ctrl+C / SIGTERM end a talk run early
    if ended.code in ("input_finished", "max_duration"):
        if printer.lost is None:
            return EXIT_OK
        print(
            f"voicetui talk: a turn got no complete reply ({printer.lost})",
            file=err,
            flush=True,
        )
        return EXIT_FAIL
    reason = printer.fatal or ended.reason
    print(f"voicetui talk: {reason}", file=err, flush=True)
    return EXIT_FAIL


def _known(exc: BaseException) -> bool:
    from voicetui.providers.base import ProviderError

    names = {"ConfigError", "AudioError", "KeyringUnavailable", "InvalidKey", "UnknownProvider"}
    known = ProviderError | FileNotFoundError | fileio.UnsafePath
    return isinstance(exc, known) or type(exc).__name__ in names
