"""Build the audio rig (microphone, speaker, barge-in gate) from the audio settings.

``open_audio`` touches no device: PortAudio is loaded and devices are opened in
``AudioRig.start()``, which is where :class:`AudioError` is raised. ``AudioRig.check()`` does
the same validation synchronously, for callers that want to fail before anything starts.
Failures after start (a device unplugged) go to the callback given to ``set_on_error``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from voicetui.audio.aec import EchoCancelledInput
from voicetui.audio.capture import DeviceInput
from voicetui.audio.devices import find_device, list_devices
from voicetui.audio.duplex import EchoGate
from voicetui.audio.errors import AudioError, AudioErrorCode, ErrorCallback
from voicetui.audio.playback import DeviceOutput
from voicetui.audio.ports import DuplexPolicy
from voicetui.audio.reference import SpeakerReference
from voicetui.audio.wav import WavInput, WavOutput

log = logging.getLogger(__name__)

PLAYBACK_BLOCK_MS = 10.0  # speaker blocks: small, since each block adds its length to latency
MAX_PREBUFFER_MS = 40.0  # the adaptive pre-buffer never grows past this (see bench_audio (d))
WAV_TAIL_SILENCE_MS = 1200.0  # after a WAV mic ends: lets VAD-driven providers close the turn


class AudioSettingsLike(Protocol):
    """The fields of ``voicetui.config.AudioSettings`` the rig needs."""

    @property
    def input_device(self) -> str | None: ...

    @property
    def output_device(self) -> str | None: ...

    @property
    def duplex(self) -> DuplexPolicy | str: ...

    @property
    def block_ms(self) -> int: ...

    @property
    def prebuffer_ms(self) -> int: ...


@dataclass(frozen=True)
class AudioOptions:
    """A stand-alone :class:`AudioSettingsLike` (tests, benchmarks, scripts)."""

    input_device: str | None = None
    output_device: str | None = None
    duplex: DuplexPolicy | str = DuplexPolicy.GATED
    block_ms: int = 20
    prebuffer_ms: int = 20
    echo_coupling_db: float | None = None


@dataclass
class AudioRig:
    """Microphone, speaker and barge-in gate, started and stopped together."""

    input: DeviceInput | WavInput | EchoCancelledInput
    output: DeviceOutput | WavOutput
    gate: EchoGate
    _on_error: ErrorCallback | None = field(default=None, repr=False)

    def set_on_error(self, callback: ErrorCallback | None) -> None:
        """Receive mid-session failures (device lost) on the event loop."""
        self._on_error = callback
        self.input.set_on_error(callback)
        self.output.set_on_error(callback)

    def check(self) -> None:
        """Validate synchronously that PortAudio loads and the devices exist (no stream is
        opened); raise :class:`AudioError` otherwise. A no-op for WAV endpoints."""
        devices = None
        mic = self.input.inner if isinstance(self.input, EchoCancelledInput) else self.input
        if isinstance(mic, DeviceInput):
            devices = list_devices()
            find_device(mic.device, "input", devices)
        if isinstance(self.output, DeviceOutput):
            devices = devices if devices is not None else list_devices()
            find_device(self.output.device, "output", devices)

    async def start(self) -> None:
        """Start the speaker, then the microphone; on failure nothing is left running."""
        await self.output.start()
        try:
            await self.input.start()
        except BaseException:
            await self.output.stop()
            raise

    async def stop(self) -> None:
        """Stop both ends (idempotent)."""
        await self.input.stop()
        await self.output.stop()


def open_audio(
    settings: AudioSettingsLike,
    *,
    input_wav: Path | None = None,
    output_wav: Path | None = None,
    realtime_input: bool = True,
    realtime_output: bool | None = None,
) -> AudioRig:
    """Build (not start) the rig: devices chosen by name, or WAV files when given.

    ``realtime_output`` defaults to ``realtime_input``: a real-time WAV speaker keeps
    ``played_ms``/``flush`` semantics, a fast one writes everything at once.
    """
    try:
        policy = DuplexPolicy(settings.duplex)
    except ValueError as exc:
        raise AudioError(
            f"unknown duplex policy '{settings.duplex}' (use aec, gated, half or full)",
            AudioErrorCode.STREAM_ERROR,
        ) from exc
    block_ms = int(settings.block_ms) or 20
    audio_in: DeviceInput | WavInput
    if input_wav is not None:
        audio_in = WavInput(
            input_wav, realtime_input, block_ms=block_ms, tail_silence_ms=WAV_TAIL_SILENCE_MS
        )
    else:
        audio_in = DeviceInput(settings.input_device, block_ms=block_ms)
    audio_out: DeviceOutput | WavOutput
    if output_wav is not None:
        rt = realtime_input if realtime_output is None else realtime_output
        audio_out = WavOutput(
            output_wav,
            rt,
            block_ms=PLAYBACK_BLOCK_MS,
            prebuffer_ms=settings.prebuffer_ms,
            max_prebuffer_ms=MAX_PREBUFFER_MS,
        )
    else:
        audio_out = DeviceOutput(
            settings.output_device,
            block_ms=PLAYBACK_BLOCK_MS,
            prebuffer_ms=settings.prebuffer_ms,
            max_prebuffer_ms=MAX_PREBUFFER_MS,
        )
    reference = None
    if isinstance(audio_out, DeviceOutput):
        # the gate measures the echo against what the speaker really played
        reference = audio_out.reference = SpeakerReference()
    mic: DeviceInput | WavInput | EchoCancelledInput = audio_in
    if policy is DuplexPolicy.AEC:
        from voicetui.audio import aec

        if reference is None or not isinstance(audio_in, DeviceInput):
            policy = DuplexPolicy.FULL  # a WAV end hears no loudspeaker: nothing to cancel
        elif (reason := aec.aec_unavailable_reason()) is not None:
            log.warning("duplex aec -> gated: WebRTC echo cancellation unavailable (%s)", reason)
            policy = DuplexPolicy.GATED
        else:
            # render + capture buffering; AEC3 finds the acoustic delay on its own
            delay_ms = round(block_ms + PLAYBACK_BLOCK_MS)
            mic = aec.EchoCancelledInput(audio_in, aec.EchoCanceller(reference, delay_ms))
    # a calibrated echo path is where the gate starts (it goes on measuring)
    coupling = getattr(settings, "echo_coupling_db", None)
    gate = EchoGate(audio_out, policy, reference=reference, initial_coupling_db=coupling)
    if isinstance(mic, EchoCancelledInput):
        mic.on_raw = gate.observe_raw
        mic.passthrough = gate.no_echo_path  # AEC3 with no echo to learn eats the user
    return AudioRig(mic, audio_out, gate)
