"""CPU of the echo paths, in one run: the measuring gate alone (``gated``) against WebRTC AEC
+ the gate (``aec``), on the same 20 ms mic frames of a reply heard through a simulated room
(-12 dB, 40 ms). Thread CPU time per frame (the loop's work), medians and p95 over the run,
and the ratio of the medians. No devices needed.

    .venv/bin/python benchmarks/bench_echo.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks._common import fmt, pct
from voicetui.audio.aec import EchoCanceller
from voicetui.audio.duplex import EchoGate
from voicetui.audio.level import rms_peak_dbfs
from voicetui.audio.ports import ENGINE_RATE, CaptureFrame, DuplexPolicy
from voicetui.audio.reference import SpeakerReference
from voicetui.audio.resample import to_int16
from voicetui.testing.emulators.common import speech_like_pcm

T0 = 1000.0
DEVICE_RATE = 48_000


class _Playing:
    def is_active(self) -> bool:
        return True

    def recent_level_dbfs(self, window_s: float = 0.2) -> float:
        return -14.0


def run(policy: DuplexPolicy, seconds: float) -> list[float]:
    """Per-frame CPU seconds of one path over ``seconds`` of a reply and its echo."""
    ref = SpeakerReference()
    gate = EchoGate(_Playing(), policy, reference=ref)
    canceller = EchoCanceller(ref, 30) if policy is DuplexPolicy.AEC else None
    text = "Well, that is a good question and the answer takes a while. " * 20
    speaker24 = speech_like_pcm(text)[: int(seconds * ENGINE_RATE)]
    speaker = np.repeat(speaker24, DEVICE_RATE // ENGINE_RATE)  # the device rate, as played
    d = int(0.04 * ENGINE_RATE)
    mic = np.zeros_like(speaker24)
    mic[d:] = speaker24[:-d] * 10 ** (-12 / 20)
    frame, block = ENGINE_RATE // 50, DEVICE_RATE // 100
    written, costs = 0, []
    for k in range(len(mic) // frame):
        end = (k + 1) * frame
        while written < end * 2:
            ref.write(speaker[written : written + block], DEVICE_RATE, T0 + written / DEVICE_RATE)
            written += block
        pcm = to_int16(mic[end - frame : end])
        rms, peak = rms_peak_dbfs(pcm)
        f = CaptureFrame(pcm, T0 + end / ENGINE_RATE + 0.004, rms, peak, True)
        started = time.thread_time()
        if canceller is not None:
            gate.observe_raw(f)
            clean = canceller.process(f)
            c_rms, c_peak = rms_peak_dbfs(clean)
            gate.observe_mic(CaptureFrame(clean, f.captured_at, c_rms, c_peak, True))
        else:
            gate.observe_mic(f)
        gate.allows_barge_in()
        costs.append(time.thread_time() - started)
    return costs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    gated = run(DuplexPolicy.GATED, args.seconds)
    aec = run(DuplexPolicy.AEC, args.seconds)
    frame_ms = 20.0
    print(f"per 20 ms mic frame, {len(gated)} frames each (same run)")
    for name, costs in (("gated", gated), ("aec", aec)):
        med, p95 = pct(costs, 50) * 1000, pct(costs, 95) * 1000
        print(
            f"  {name:<6} median {fmt(med, ' ms', 3)}  p95 {fmt(p95, ' ms', 3)}  "
            f"= {fmt(100 * med / frame_ms, ' %', 1)} of one core"
        )
    print(f"  aec / gated (medians): {fmt(pct(aec, 50) / pct(gated, 50), 'x', 1)}")
    # the gate analyses one frame in five: the mean, not the median frame, is its CPU share
    mean_g, mean_a = sum(gated) / len(gated), sum(aec) / len(aec)
    print(
        f"  aec / gated (means, the CPU share): {fmt(mean_a / mean_g, 'x', 1)}"
        f" ({fmt(100 * mean_a / (frame_ms / 1000), ' %', 1)} vs"
        f" {fmt(100 * mean_g / (frame_ms / 1000), ' %', 1)} of one core)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
