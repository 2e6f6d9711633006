"""Echo calibration: play a short probe on the speaker, listen on the microphone, and measure
the echo path (delay, echo return loss) before and after echo cancellation.

The probe is broadband noise in bursts (an echo canceller converges on it in a fraction of a
second; a narrowband tone would leave most frequencies unmeasured). The measurement is the
duplex gate's own (speaker reference x raw mic), so what calibration reports is what the gate
will see. The result picks the duplex policy: nothing comes back (headphones) -> ``full``;
an echo and WebRTC AEC loads -> ``aec``; an echo and no AEC -> ``gated``, seeded with the
measured coupling.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import numpy as np

from voicetui.audio.duplex import NO_ECHO_PATH_DB, EchoGate
from voicetui.audio.factory import AudioOptions, AudioSettingsLike, open_audio
from voicetui.audio.ports import ENGINE_RATE, DuplexPolicy

PROBE_S = 2.0
PROBE_DBFS = -20.0


@dataclass(frozen=True)
class EchoCalibration:
    """What calibration measured and decided."""

    delay_ms: float | None  # echo path delay (None: no echo measured)
    coupling_db: float  # speaker -> mic gain; the echo return loss is its negative
    erle_db: float | None  # cancellation achieved by AEC on the probe (None: AEC not run)
    aec_available: bool
    policy: DuplexPolicy

    @property
    def echo_return_loss_db(self) -> float:
        return -self.coupling_db

    def summary(self) -> str:
        """One line for the console and ``doctor --echo``."""
        if self.delay_ms is None:
            return (
                f"no echo path (echo return loss {self.echo_return_loss_db:.0f} dB or more): "
                f"duplex {self.policy.value}"
            )
        after = f", {self.erle_db:.0f} dB more after AEC" if self.erle_db is not None else ""
        return (
            f"echo {self.delay_ms:.0f} ms late, {self.echo_return_loss_db:.0f} dB under the "
            f"speaker{after}: duplex {self.policy.value}"
        )


def probe_signal(seconds: float = PROBE_S, seed: int = 15) -> np.ndarray:
    """Deterministic bursts of band-limited noise (200 ms on, 50 ms off) at ``PROBE_DBFS``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * ENGINE_RATE)
    noise = rng.standard_normal(n).astype(np.float32)
    # a gentle low-pass (speech band): a moving average over 3 samples (0.9 of 8 kHz)
    noise = np.convolve(noise, np.ones(3, dtype=np.float32) / 3, mode="same").astype(np.float32)
    period, on = int(0.25 * ENGINE_RATE), int(0.2 * ENGINE_RATE)
    envelope = (np.arange(n) % period < on).astype(np.float32)
    probe = noise * envelope
    rms = float(np.sqrt(np.mean(probe[envelope > 0] ** 2)))
    scaled: np.ndarray = (probe * (10 ** (PROBE_DBFS / 20) / rms)).astype(np.float32)
    return scaled


async def calibrate_echo(
    settings: AudioSettingsLike | None = None, *, seconds: float = PROBE_S
) -> EchoCalibration:
    """Play the probe, measure the echo path on the configured devices, pick a policy.
    Raises :class:`~voicetui.audio.errors.AudioError` when the devices cannot be opened."""
    from voicetui.audio.aec import EchoCancelledInput, aec_available

    base = settings if settings is not None else AudioOptions()
    have_aec = aec_available()
    policy = DuplexPolicy.AEC if have_aec else DuplexPolicy.GATED
    rig = open_audio(
        AudioOptions(
            input_device=base.input_device,
            output_device=base.output_device,
            duplex=policy,
            block_ms=base.block_ms,
            prebuffer_ms=base.prebuffer_ms,
        )
    )
    gate: EchoGate = rig.gate
    raw_clean: list[tuple[float, float, float]] = []
    await rig.start()
    t0 = time.monotonic()

    async def listen() -> None:
        async for frame in rig.input.frames():
            gate.observe_mic(frame)
            if isinstance(rig.input, EchoCancelledInput):
                raw_clean.append((time.monotonic() - t0, rig.input.raw_level_dbfs, frame.rms_dbfs))

    task = asyncio.create_task(listen())
    try:
        rig.output.enqueue("echo-probe", probe_signal(seconds))
        await asyncio.sleep(seconds + 0.3)
    finally:
        await rig.stop()
        await task
    no_echo = gate.measurements == 0 or gate.coupling_db <= NO_ECHO_PATH_DB
    erle = None
    if raw_clean and not no_echo:
        # the second half of the probe: the canceller has converged
        late = [(r, c) for t, r, c in raw_clean if t >= seconds / 2 and r > -60]
        if late:
            erle = _energy_db([r for r, _ in late]) - _energy_db([c for _, c in late])
    fallback = DuplexPolicy.AEC if have_aec else DuplexPolicy.GATED
    chosen = DuplexPolicy.FULL if no_echo else fallback
    return EchoCalibration(
        delay_ms=None if no_echo else gate.echo_delay_s * 1000,
        coupling_db=gate.coupling_db,
        erle_db=erle,
        aec_available=have_aec,
        policy=chosen,
    )


def _energy_db(levels: list[float]) -> float:
    return 10 * math.log10(sum(10 ** (lv / 10) for lv in levels) / len(levels))


def config_changes(result: EchoCalibration) -> dict[str, object]:
    """The ``[audio]`` changes a calibration implies (for ``config.update_config(audio=...)``):
    the policy, and the measured echo path (none: both cleared)."""
    return {
        "duplex": result.policy.value,
        "echo_coupling_db": None if result.delay_ms is None else round(result.coupling_db, 1),
        "echo_delay_ms": None if result.delay_ms is None else round(result.delay_ms, 1),
    }
