"""The measuring echo gate on synthetic but exact signals: a speaker reference written block
by block on a clock, and a microphone that hears a delayed, attenuated copy of it (or
nothing), plus the user."""

from __future__ import annotations

import numpy as np
import pytest

from voicetui.audio.duplex import COUPLING_FLOOR_DB, EchoGate, measure_coupling
from voicetui.audio.level import rms_peak_dbfs
from voicetui.audio.ports import ENGINE_RATE, CaptureFrame, DuplexPolicy
from voicetui.audio.reference import SpeakerReference
from voicetui.audio.resample import to_int16
from voicetui.testing.emulators.common import speech_like_pcm

T0 = 1000.0
REPLY = speech_like_pcm("Well that is a good question and the answer takes a while to give.")
# a higher voice than the reply's (its rate read as 24 kHz raises the pitch by a third)
USER = speech_like_pcm("Wait stop please, I have a question.", rate=18_000)


class Playing:
    """The speaker side the gate asks about: a reply is playing."""

    def is_active(self) -> bool:
        return True

    def recent_level_dbfs(self, window_s: float = 0.2) -> float:
        return -14.0


def run(
    *, echo_db: float | None, delay_s: float, user_db: float | None, user_at_s: float = 1.0
) -> tuple[EchoGate, list[bool]]:
    """Play ``REPLY`` for 2 s; the mic hears its echo (``echo_db`` gain, ``delay_s`` late)
    and, from ``user_at_s``, the user at ``user_db`` relative to the reply. Returns the gate
    and, per 20 ms mic frame, whether it allowed barge-in."""
    ref = SpeakerReference()
    gate = EchoGate(Playing(), DuplexPolicy.GATED, reference=ref)
    block, frame = ENGINE_RATE // 100, ENGINE_RATE // 50
    n = 2 * ENGINE_RATE
    speaker = np.zeros(n, dtype=np.float32)
    speaker[: min(n, len(REPLY))] = REPLY[:n]
    mic = np.zeros(n, dtype=np.float32)
    if echo_db is not None:
        d = int(delay_s * ENGINE_RATE)
        mic[d:] += speaker[: n - d] * 10 ** (echo_db / 20)
    user_from = int(user_at_s * ENGINE_RATE)
    if user_db is not None:
        voice = USER[: n - user_from] * 10 ** (user_db / 20)
        mic[user_from : user_from + len(voice)] += voice
    allowed: list[bool] = []
    written = 0
    for k in range(n // frame):
        end = (k + 1) * frame
        while written < end:  # the speaker runs ahead of the mic by its blocks
            ref.write(speaker[written : written + block], ENGINE_RATE, T0 + written / ENGINE_RATE)
            written += block
        pcm = to_int16(mic[end - frame : end])
        rms, peak = rms_peak_dbfs(pcm)
        user_now = user_db is not None and end > user_from
        speech = rms > -60 and (echo_db is not None or user_now)  # the VAD hears both
        gate.observe_mic(CaptureFrame(pcm, T0 + end / ENGINE_RATE + 0.004, rms, peak, speech))
        allowed.append(gate.allows_barge_in())
    return gate, allowed


def test_no_echo_path_measures_no_coupling_and_any_voice_barges_in() -> None:
    gate, allowed = run(echo_db=None, delay_s=0.0, user_db=-20.0)
    # measured from the silent mic: an upper bound far below any audible echo
    assert gate.measurements > 0 and COUPLING_FLOOR_DB <= gate.coupling_db < -60
    first = allowed.index(True)
    assert not any(allowed[:first]) and first * 20 <= 1000 + 60  # the user's first frames
    _, quiet = run(echo_db=None, delay_s=0.0, user_db=-30.0)
    assert quiet.index(True) * 20 <= 1000 + 60


def test_echo_path_is_measured_and_only_speech_above_it_barges_in() -> None:
    gate, allowed = run(echo_db=-12.0, delay_s=0.04, user_db=None)
    assert not any(allowed)  # the echo alone, heard as speech by the VAD, never barges in
    assert gate.coupling_db == pytest.approx(-12.0, abs=1.5)
    assert gate.echo_delay_s == pytest.approx(0.04 + 0.004, abs=0.005)
    # the user at the echo's level: not clearly above it, so the gate holds (why `aec` exists)
    _, same_level = run(echo_db=-12.0, delay_s=0.04, user_db=-12.0)
    assert not any(same_level)
    # the user well above the echo barges in within a few frames
    loud_gate, loud = run(echo_db=-12.0, delay_s=0.04, user_db=6.0)
    assert not any(loud[:50]) and loud.index(True) * 20 <= 1000 + 100
    assert loud_gate.coupling_db == pytest.approx(-12.0, abs=2.0)  # the user taught it nothing


def test_measure_coupling_finds_gain_and_delay() -> None:
    ref = REPLY[:ENGINE_RATE].copy()
    d = int(0.123 * ENGINE_RATE)
    mic = ref[int(0.5 * ENGINE_RATE) - d : int(0.5 * ENGINE_RATE) - d + int(0.3 * ENGINE_RATE)]
    result = measure_coupling(mic * 0.25, ref[: int(0.8 * ENGINE_RATE)], 0.5)
    assert result is not None
    gain_db, delay_s, rho, _, _, _ = result
    assert gain_db == pytest.approx(-12.04, abs=0.5) and rho > 0.95
    assert delay_s == pytest.approx(0.123, abs=0.002)
    assert measure_coupling(mic, np.zeros_like(ref), 0.5) is None  # silent speaker
