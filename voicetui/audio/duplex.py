"""The barge-in gate: may the user's voice interrupt the assistant, given the echo?

Without headphones the assistant's own voice comes back through the microphone. Policies:

* ``gated`` (default): while the assistant is audible, a mic frame counts as barge-in only if
  the VAD says speech *and* its level exceeds the expected echo by ``margin_db``, sustained
  for ``sustain_ms`` (coughs and clicks are shorter; a dip between syllables is forgiven).
  The expected echo is the loudest recent playback level plus a coupling estimate
  (speaker -> mic gain) learned while the assistant talks and the user does not. The
  estimate is a peak follower (rises fast, by ``coupling_attack_db_s``; decays slowly, by
  ``coupling_release_db_s``): an *average* would sit below the echo of loud syllables,
  which would then pass as barge-in.
* ``half``: the mic is closed while the assistant is audible (no barge-in by voice).
* ``full``: always allow; the provider or hardware AEC deals with echo.
"""

from __future__ import annotations

import time
from typing import Protocol

from voicetui.audio.level import SILENCE_DBFS
from voicetui.audio.ports import CaptureFrame, DuplexPolicy

AUDIBLE_FLOOR_DBFS = -60.0  # playback quieter than this cannot produce a meaningful echo


class EchoReference(Protocol):
    """What the gate needs from the speaker."""

    def is_active(self) -> bool: ...

    def recent_level_dbfs(self, window_s: float = 0.2) -> float: ...


class EchoGate:
    """:class:`~voicetui.audio.ports.BargeInGate` driven by mic frames and playback levels."""

    def __init__(
        self,
        output: EchoReference,
        policy: DuplexPolicy = DuplexPolicy.GATED,
        *,
        margin_db: float = 8.0,
        sustain_ms: float = 60.0,
        echo_window_s: float = 0.25,
        initial_coupling_db: float = 0.0,
        coupling_release_db_s: float = 6.0,
        coupling_attack_db_s: float = 50.0,
    ) -> None:
        self.policy = DuplexPolicy(policy)
        self.output = output
        self.margin_db = margin_db
        self.sustain_ms = sustain_ms
        self.echo_window_s = echo_window_s
        # speaker->mic gain in dB; starts pessimistic (echo as loud as the playback) and adapts
        self.coupling_db = initial_coupling_db
        self._release_db_s = coupling_release_db_s
        self._attack_db_s = coupling_attack_db_s
        self._run_ms = 0.0
        self._last_frame_at = 0.0
        self.last_mic_dbfs = SILENCE_DBFS
        self.last_echo_dbfs = SILENCE_DBFS

    # ------------------------------------------------------------------ state
    def assistant_audible(self) -> bool:
        """Playback is running, or stopped so recently that its echo may still arrive."""
        if self.output.is_active():
            return True
        return self.output.recent_level_dbfs(self.echo_window_s) > AUDIBLE_FLOOR_DBFS

    def expected_echo_dbfs(self) -> float:
        """Level the echo of what is playing could reach at the mic."""
        play = self.output.recent_level_dbfs(self.echo_window_s)
        if play <= AUDIBLE_FLOOR_DBFS:
            return SILENCE_DBFS
        return play + self.coupling_db

    # ------------------------------------------------------------------ BargeInGate
    def mic_open(self) -> bool:
        """False only in half duplex while the assistant is audible."""
        return not (self.policy is DuplexPolicy.HALF and self.assistant_audible())

    def allows_barge_in(self) -> bool:
        """True if recent user speech may interrupt the assistant."""
        if self.policy is DuplexPolicy.FULL:
            return True
        if not self.assistant_audible():
            return True  # nothing to interrupt and no echo to fear
        if self.policy is DuplexPolicy.HALF:
            return False
        stale = time.monotonic() - self._last_frame_at > 0.2
        return not stale and self._run_ms >= self.sustain_ms

    def observe_mic(self, frame: CaptureFrame) -> None:
        """Feed every captured frame (cheap: a few float comparisons)."""
        self._last_frame_at = time.monotonic()
        self.last_mic_dbfs = frame.rms_dbfs
        if not self.assistant_audible():
            self._run_ms = 0.0
            self.last_echo_dbfs = SILENCE_DBFS
            return
        echo = self.expected_echo_dbfs()
        self.last_echo_dbfs = echo
        over = frame.rms_dbfs - echo
        candidate = bool(frame.speech) and over >= self.margin_db
        if candidate:
            self._run_ms += frame.duration_ms
        elif self._run_ms > 0:
            # leaky, not reset: a word's envelope dips between syllables; a cough does not
            # last long enough to climb to sustain_ms. No learning while a run is alive: those
            # frames are probably the user, not the echo.
            self._run_ms = max(0.0, self._run_ms - frame.duration_ms)
        elif echo > SILENCE_DBFS and frame.rms_dbfs > SILENCE_DBFS:
            # learn the real speaker->mic gain from frames that are (probably) pure echo
            measured = frame.rms_dbfs - (echo - self.coupling_db)
            target = min(max(measured, -60.0), 6.0)
            if target > self.coupling_db:
                # attack fast but not at once: the first quiet frames of a user's speech
                # onset would otherwise raise the bar above the user's own voice
                step = self._attack_db_s * frame.duration_ms / 1000.0
                self.coupling_db = min(target, self.coupling_db + step)
            else:
                step = self._release_db_s * frame.duration_ms / 1000.0
                self.coupling_db = max(target, self.coupling_db - step)

    def reset(self) -> None:
        """Forget the sustained-speech run (after a barge-in was acted on)."""
        self._run_ms = 0.0
