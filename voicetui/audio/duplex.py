"""The barge-in gate: may the user's voice interrupt the assistant, given the echo?

Without headphones the assistant's own voice comes back through the microphone. Policies:

* ``gated`` (the fallback where ``aec`` does not load): while the assistant is audible, a mic
  frame counts as barge-in only if the VAD says speech *and* its level exceeds the expected
  echo by ``margin_db``, sustained for ``sustain_ms`` (coughs and clicks are shorter; a dip
  between syllables is forgiven).
  The expected echo is *measured*: every ``analysis_every_s`` the last ``analysis_window_s``
  of microphone is cross-correlated with what the speaker played (a
  :class:`~voicetui.audio.reference.SpeakerReference`) over delays up to
  ``max_delay_s``. The peak gives the echo path's delay and gain (speaker -> mic coupling);
  the expected echo of a frame is the speaker level one delay earlier plus that coupling.
  A window counts as a measurement when the echo dominates it (normalised correlation
  >= ``ECHO_DOMINANT_RHO``; the least-squares gain is then unbiased even with the user
  talking) or when the mic is quieter than the echo assumed so far (an upper bound: the echo
  can be no louder than the whole mic). Windows where the mic is loud and unrelated to the
  speaker (the user, over little or no echo) teach nothing. So with headphones the coupling
  falls to the floor within a few hundred ms of the first reply and any normal voice barges
  in; with an echo path only speech ``margin_db`` above the measured echo does.
  Outputs without a speaker reference (WAV files) fall back to assuming the echo from the
  output level with a coupling learnt by a peak follower, as before.
* ``aec`` (the default): the mic goes through WebRTC's echo canceller
  (:mod:`voicetui.audio.aec`) first; the gate then works as under ``gated`` on the cleaned
  signal, where it measures the residual echo (25+ dB lower), so a voice at the level of the
  raw echo barges in. Once the gate has measured that there is no echo path
  (:meth:`EchoGate.no_echo_path`), the raw mic is used instead: AEC3 with nothing to learn
  from suppresses the user over the reply.
* ``half``: the mic is closed while the assistant is audible (no barge-in by voice).
* ``full``: always allow; the provider or hardware AEC deals with echo.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Protocol

import numpy as np

from voicetui.audio.level import SILENCE_DBFS
from voicetui.audio.ports import ENGINE_RATE, CaptureFrame, DuplexPolicy
from voicetui.audio.reference import Float32Array, SpeakerReference

AUDIBLE_FLOOR_DBFS = -60.0  # playback quieter than this cannot produce a meaningful echo
COUPLING_FLOOR_DB = -80.0  # "no echo path": the coupling measured with headphones
ECHO_DOMINANT_RHO = 0.5  # correlation above which a window is mostly echo (>= -6 dB of it)
ANALYSIS_RATE = 8_000  # speech band is enough to find the echo; 3x cheaper than 24 kHz
CLEAR_EXTRA_DB = 6.0  # over margin_db by this much: a measured gate decides on one frame
SETTLE_MIC_S = 0.2  # the mic's first frames arrive in bursts: they only seed the clock
MEASUREMENT_HOLD_S = 1.0  # the coupling is the loudest measurement of the last second
ERLE_FRAMES = 50  # aec: the cancellation of the last second of echo-only frames...
ERLE_MIN_FRAMES = 25  # ...once half a second of them was seen...
ERLE_PERCENTILE = 5.0  # ...taken at its worst 5 %
NO_ECHO_PATH_DB = -50.0  # a measured coupling below this: no echo path (headphones)
ECHO_ONLY_RHO = 0.8  # aec: a raw frame this correlated with the speaker is echo only
AEC_OPEN_ERLE_DB = 20.0  # an echo-only frame cancelled less than this...
AEC_LEAK_DBFS = -50.0  # ...and still audible closes the mic over the assistant...
AEC_HOLD_S = 0.5  # ...for this long (AEC3 re-converges within a few hundred ms)


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
        initial_coupling_db: float | None = None,
        coupling_release_db_s: float = 6.0,
        coupling_attack_db_s: float = 50.0,
        reference: SpeakerReference | None = None,
        analysis_window_s: float = 0.6,
        analysis_every_s: float = 0.1,
        max_delay_s: float = 0.5,
    ) -> None:
        self.policy = DuplexPolicy(policy)
        self.output = output
        self.margin_db = margin_db
        self.sustain_ms = sustain_ms
        self.echo_window_s = echo_window_s
        # speaker->mic gain in dB; starts pessimistic (echo as loud as the playback) and adapts
        self.coupling_db = 0.0 if initial_coupling_db is None else initial_coupling_db
        self._release_db_s = coupling_release_db_s
        self._attack_db_s = coupling_attack_db_s
        self._run_ms = 0.0
        self._last_frame_at = 0.0
        self.last_mic_dbfs = SILENCE_DBFS
        self.last_echo_dbfs = SILENCE_DBFS
        # measurement (only with a speaker reference)
        self.reference = reference
        self.echo_delay_s = 0.0  # mic timeline minus speaker timeline at the echo's peak
        self.last_rho = 0.0
        self.measurements = 0  # windows accepted as measurements (tests, diagnostics)
        self._window_s = analysis_window_s
        self._every_s = analysis_every_s
        self._max_delay_s = max_delay_s
        # accepted measurements: (time, coupling dB, only an upper bound)
        self._recent: deque[tuple[float, float, bool]] = deque()
        self._mic_ring: Float32Array = np.zeros(
            int(ENGINE_RATE * (analysis_window_s + 0.5)), dtype=np.float32
        )
        self._mic_written = 0
        self._mic_offset: float | None = None  # monotonic time of mic sample 0 (smoothed)
        self._since_analysis_s = 0.0
        self._clearly_user = False  # latest frame: speech far above a measured echo
        # aec: the raw mic's latest level, and cancellation (dB) of recent echo-only frames
        self._raw_db: float | None = None
        self._raw_rho = 0.0  # the latest raw frame's correlation with the delayed speaker
        self._erle: deque[float] = deque(maxlen=ERLE_FRAMES)
        self.erle_db = 0.0
        self._aec_hold = 0.0  # aec: mic closed over the assistant until then
        self._xruns = 0  # the speaker's underflow count last seen

    # ------------------------------------------------------------------ state
    def assistant_audible(self) -> bool:
        """Playback is running, or stopped so recently that its echo may still arrive."""
        if self.output.is_active():
            return True
        return self.output.recent_level_dbfs(self.echo_window_s) > AUDIBLE_FLOOR_DBFS

    def expected_echo_dbfs(self, frame: CaptureFrame | None = None) -> float:
        """Level the echo of what is playing could reach at the mic (for ``frame``: of what
        played one echo delay before it, when a speaker reference is measured)."""
        if frame is not None and self.reference is not None and self._mic_offset is not None:
            t1 = self._mic_offset + self._mic_written / ENGINE_RATE - self.echo_delay_s
            # the loudest block that could still ring in the room (echo_window_s back), plus
            # a margin for the clock jitter of both timelines: a gap between two words must
            # not let a voice at the echo's level through
            play = self.reference.loudest_dbfs(t1 - self.echo_window_s, t1 + 0.03)
            if play <= AUDIBLE_FLOOR_DBFS:
                return SILENCE_DBFS
            return play + self.coupling_db
        play = self.output.recent_level_dbfs(self.echo_window_s)
        if play <= AUDIBLE_FLOOR_DBFS:
            return SILENCE_DBFS
        return play + self.coupling_db

    # ------------------------------------------------------------------ BargeInGate
    def mic_open(self) -> bool:
        """False in half duplex while the assistant is audible, and under ``aec`` while the
        canceller is not measured to work (converging at the start, or upset by a glitch):
        the provider must not hear the echo it would take for the user."""
        if self.policy is DuplexPolicy.HALF:
            return not self.assistant_audible()
        if self.policy is DuplexPolicy.AEC and self._raw_db is not None:
            if self.no_echo_path():
                return True  # measured: nothing comes back (headphones), nothing to cancel
            unproven = len(self._erle) < ERLE_MIN_FRAMES or time.monotonic() < self._aec_hold
            return not (unproven and self.assistant_audible())
        return True

    def no_echo_path(self) -> bool:
        """True once the speaker -> mic coupling is measured to be negligible (headphones):
        under ``aec`` the raw mic is then used (see :mod:`voicetui.audio.aec`)."""
        return self.measurements > 0 and self.coupling_db <= NO_ECHO_PATH_DB

    def allows_barge_in(self) -> bool:
        """True if recent user speech may interrupt the assistant."""
        if self.policy is DuplexPolicy.FULL:
            return True
        if not self.assistant_audible():
            return True  # nothing to interrupt and no echo to fear
        if self.policy is DuplexPolicy.HALF:
            return False
        stale = time.monotonic() - self._last_frame_at > 0.2
        if stale:
            return False
        # a measured echo path and a voice far above its echo: no need to wait for the
        # sustained run (the caller's VAD already heard speech; echo cannot be it)
        return self._run_ms >= self.sustain_ms or self._clearly_user

    def observe_mic(self, frame: CaptureFrame) -> None:
        """Feed every captured frame (cheap: a few float comparisons)."""
        self._last_frame_at = time.monotonic()
        self.last_mic_dbfs = frame.rms_dbfs
        measuring = self.reference is not None
        # under aec the echo path is measured on the raw mic (observe_raw), not here
        cancelled = self.policy is DuplexPolicy.AEC and self._raw_db is not None
        if measuring and not cancelled:
            self._keep_mic(frame)
        self._clearly_user = False
        if not self.assistant_audible():
            self._run_ms = 0.0
            self.last_echo_dbfs = SILENCE_DBFS
            self._since_analysis_s = self._every_s  # measure as soon as it plays again
            return
        if measuring and not cancelled:
            self._tick_measure(frame)
        echo = self.expected_echo_dbfs(frame)
        if cancelled and self._raw_db is not None:
            echo = self._residual_echo_dbfs(echo, self._raw_db, frame.rms_dbfs)
        self.last_echo_dbfs = echo
        over = frame.rms_dbfs - echo
        candidate = bool(frame.speech) and over >= self.margin_db
        self._clearly_user = (
            candidate and self.measurements > 0 and over >= self.margin_db + CLEAR_EXTRA_DB
        )
        if candidate:
            self._run_ms += frame.duration_ms
        elif self._run_ms > 0:
            # leaky, not reset: a word's envelope dips between syllables; a cough does not
            # last long enough to climb to sustain_ms. No learning while a run is alive: those
            # frames are probably the user, not the echo.
            self._run_ms = max(0.0, self._run_ms - frame.duration_ms)
        elif not measuring and echo > SILENCE_DBFS and frame.rms_dbfs > SILENCE_DBFS:
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

    def observe_raw(self, frame: CaptureFrame) -> None:
        """Under ``aec``: the microphone before cancellation (called just before
        :meth:`observe_mic` gets the same frame cleaned). The echo path is measured on it."""
        self._raw_db = frame.rms_dbfs
        self._raw_rho = 0.0
        xruns = int(getattr(self.output, "xruns", 0))
        if xruns != self._xruns:  # the speaker skipped: the echo path moved, AEC3 re-adapts
            self._xruns = xruns
            self._aec_hold = time.monotonic() + AEC_HOLD_S
        if self.reference is None:
            return
        self._keep_mic(frame)
        if self.assistant_audible():
            self._tick_measure(frame)
            self._raw_rho = self._frame_rho(frame)
        else:
            self._since_analysis_s = self._every_s

    def _frame_rho(self, frame: CaptureFrame) -> float:
        """How much of this raw frame is the echo: its normalised correlation with the
        speaker signal one echo delay earlier (best within +-2 ms of clock jitter)."""
        if self.reference is None or self._mic_offset is None or self.measurements == 0:
            return 0.0
        mic = frame.pcm.astype(np.float64) / 32768.0
        jitter = int(0.002 * ENGINE_RATE)
        t1 = self._mic_offset + self._mic_written / ENGINE_RATE - self.echo_delay_s
        t0 = t1 - len(mic) / ENGINE_RATE
        ref = self.reference.segment(t0 - jitter / ENGINE_RATE, t1 + jitter / ENGINE_RATE)
        if ref is None or len(ref) < len(mic):
            return 0.0
        r = ref.astype(np.float64)
        corr = np.correlate(r, mic, mode="valid")
        csum = np.concatenate(([0.0], np.cumsum(r * r)))
        e_r = csum[len(mic) :] - csum[: len(r) - len(mic) + 1]
        e_m = float(np.dot(mic, mic))
        if e_m <= 0 or float(e_r.max()) <= 0:
            return 0.0
        rho = np.abs(corr) / np.sqrt(np.maximum(e_r, 1e-20) * e_m)
        return float(rho.max())

    def _tick_measure(self, frame: CaptureFrame) -> None:
        self._since_analysis_s += frame.duration_ms / 1000.0
        if self._since_analysis_s >= self._every_s:
            self._since_analysis_s = 0.0
            self._measure(frame.captured_at)

    def _residual_echo_dbfs(self, raw_echo: float, raw_db: float, clean_db: float) -> float:
        """The echo left after cancellation: the raw echo less the cancellation measured on
        frames that were only echo (the raw frame correlates with the speaker signal one
        echo delay earlier at >= ``ECHO_ONLY_RHO``: nobody else is talking). A low
        percentile of recent frames: the canceller lets a transient through now and then."""
        if raw_echo <= SILENCE_DBFS:
            return SILENCE_DBFS
        # only loud echo frames (within 10 dB of the loudest expected): on quiet ones the
        # residual sits on the canceller's floor and would understate what it achieves
        if self._raw_rho >= ECHO_ONLY_RHO and raw_db > max(raw_echo - 10.0, AUDIBLE_FLOOR_DBFS):
            erle = raw_db - clean_db
            self._erle.append(erle)
            if erle < AEC_OPEN_ERLE_DB and clean_db > AEC_LEAK_DBFS:
                self._aec_hold = time.monotonic() + AEC_HOLD_S  # the canceller slipped
        if len(self._erle) < ERLE_MIN_FRAMES or time.monotonic() < self._aec_hold:
            return raw_echo  # not measured yet, or just slipped: as strict as gated
        self.erle_db = float(np.percentile(self._erle, ERLE_PERCENTILE))
        return raw_echo - max(self.erle_db, 0.0)

    def reset(self) -> None:
        """Forget the sustained-speech run (after a barge-in was acted on)."""
        self._run_ms = 0.0
        self._clearly_user = False

    # ------------------------------------------------------------------ measurement
    def _keep_mic(self, frame: CaptureFrame) -> None:
        pcm = frame.pcm.astype(np.float32) / 32768.0
        size, n = len(self._mic_ring), len(pcm)
        start = self._mic_written % size
        first = min(n, size - start)
        self._mic_ring[start : start + first] = pcm[:first]
        if first < n:
            self._mic_ring[: n - first] = pcm[first:]
        self._mic_written += n
        # frames reach the loop late by a varying amount: the earliest arrival is the truest
        offset = frame.captured_at - self._mic_written / ENGINE_RATE
        settling = self._mic_written <= SETTLE_MIC_S * ENGINE_RATE  # start-up bursts
        if self._mic_offset is None or settling or offset < self._mic_offset:
            self._mic_offset = offset
        else:
            self._mic_offset += 0.02 * (offset - self._mic_offset)

    def _mic_window(self) -> Float32Array:
        n = min(int(ENGINE_RATE * self._window_s), self._mic_written, len(self._mic_ring))
        size = len(self._mic_ring)
        idx = np.arange(self._mic_written - n, self._mic_written) % size
        return self._mic_ring[idx]

    def _measure(self, now: float) -> None:
        """One analysis window: accept it as a coupling measurement or ignore it."""
        ref_src = self.reference
        if ref_src is None or self._mic_offset is None:
            return
        mic24 = self._mic_window()
        if len(mic24) < ENGINE_RATE * 0.2:
            return
        t_end = self._mic_offset + self._mic_written / ENGINE_RATE
        t_start = t_end - len(mic24) / ENGINE_RATE
        lead = 0.02  # a little of the "future": the two clocks' offsets are estimates
        ref24 = ref_src.segment(t_start - self._max_delay_s, t_end + lead)
        if ref24 is None:
            return
        while self._recent and self._recent[0][0] < now - MEASUREMENT_HOLD_S:
            self._recent.popleft()  # on every window: a user talking must not prolong a hold
        result = measure_coupling(mic24, ref24, self._max_delay_s)
        if result is None:
            return
        gain_db, delay_s, rho, mic_db, ref_db, quietest_db = result
        self.last_rho = rho
        bound = False
        if rho >= ECHO_DOMINANT_RHO:
            measured = gain_db  # the echo dominates: its least-squares gain
            self.echo_delay_s = delay_s
        elif mic_db <= ref_db + self.coupling_db - 6.0:
            # the mic is quieter than the echo assumed: the echo is no louder than the whole
            # mic. Over the speaker's quietest alignment (any delay up to max_delay_s) this
            # is an upper bound whatever the real delay; at a reply's start, where the real
            # alignment may still be silence, a loose one
            measured, bound = mic_db - quietest_db, True
        else:
            return  # loud mic unrelated to the speaker: the user, over little echo
        measured = min(max(measured, COUPLING_FLOOR_DB), 6.0)
        if bound and measured > self.coupling_db:
            return  # looser than what is known: says nothing
        self.measurements += 1
        self._recent.append((now, measured, bound))
        real = [m for _, m, b in self._recent if not b]
        # a measured echo: its loudest recent level. Only upper bounds: the tightest (the
        # loosest, held, kept the mic closed over the first reply's barge-in: issue 15)
        self.coupling_db = max(real) if real else min(m for _, m, _ in self._recent)


def measure_coupling(
    mic: Float32Array, ref: Float32Array, max_delay_s: float, *, rate: int = ENGINE_RATE
) -> tuple[float, float, float, float, float, float] | None:
    """Cross-correlate ``mic`` with ``ref`` (which starts ``max_delay_s`` before it and may run
    a little past its end); return ``(gain_db, delay_s, rho, mic_dbfs, ref_dbfs,
    quietest_dbfs)`` at the peak of the normalised correlation, or None when the speaker was
    silent.

    ``gain_db`` is the least-squares gain of the best-aligned speaker signal in the mic,
    ``rho`` the normalised correlation there (1 = the mic is only echo), ``ref_dbfs`` the
    speaker level over the aligned window, ``quietest_dbfs`` its level over the quietest
    alignment of all delays searched. Works at :data:`ANALYSIS_RATE`."""
    import soxr

    m = soxr.resample(mic, rate, ANALYSIS_RATE, quality="LQ").astype(np.float64)
    r = soxr.resample(ref, rate, ANALYSIS_RATE, quality="LQ").astype(np.float64)
    n_m, n_r = len(m), len(r)
    if n_m < 16 or n_r < n_m:
        return None
    size = 1 << math.ceil(math.log2(n_r + n_m))
    corr = np.fft.irfft(np.fft.rfft(r, size) * np.conj(np.fft.rfft(m, size)), size)
    lags = n_r - n_m + 1
    corr = corr[:lags]  # corr[k] = sum_i r[i + k] * m[i]
    csum = np.concatenate(([0.0], np.cumsum(r * r)))
    e_r = csum[n_m : n_m + lags] - csum[:lags]
    e_m = float(np.dot(m, m))
    floor = n_m * 10 ** (AUDIBLE_FLOOR_DBFS / 10)
    if float(e_r.max()) <= floor:
        return None
    usable = e_r > floor
    rho_all = np.zeros(lags)
    rho_all[usable] = np.abs(corr[usable]) / np.sqrt(e_r[usable] * max(e_m, 1e-20))
    k = int(np.argmax(rho_all))
    rho = float(rho_all[k])
    gain = abs(float(corr[k])) / float(e_r[k]) if e_r[k] > 0 else 0.0
    gain_db = 20 * math.log10(gain) if gain > 1e-6 else COUPLING_FLOOR_DB
    delay_s = max_delay_s - k / ANALYSIS_RATE
    mic_db = 10 * math.log10(e_m / n_m) if e_m > 0 else SILENCE_DBFS
    ref_db = 10 * math.log10(float(e_r[k]) / n_m) if e_r[k] > 0 else SILENCE_DBFS
    quietest = float(e_r.min())
    quietest_db = 10 * math.log10(quietest / n_m) if quietest > 0 else SILENCE_DBFS
    return gain_db, delay_s, rho, mic_db, ref_db, quietest_db
