"""The audio seams: what the engine and providers need from capture, playback and echo gating.

Two implementations stand behind each port: real devices (sounddevice) and WAV files, so
every loop runs headless and the same code path is tested with real virtual devices.
All audio crossing these ports is mono at :data:`ENGINE_RATE`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

ENGINE_RATE = 24_000
"""Sample rate of every frame crossing the ports (both providers speak 24 kHz)."""

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Int16Array = npt.NDArray[np.int16]
    Float32Array = npt.NDArray[np.float32]


def __getattr__(name: str) -> Any:
    # The array aliases import numpy only when asked for at run time, so that config, specs
    # and keys (which import these contracts) start without paying numpy's ~0.15 s.
    if name in ("Int16Array", "Float32Array"):
        import numpy as np
        import numpy.typing as npt

        if name == "Int16Array":
            return npt.NDArray[np.int16]
        return npt.NDArray[np.float32]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True, slots=True)
class CaptureFrame:
    """One block of microphone audio, already resampled to :data:`ENGINE_RATE`."""

    pcm: Int16Array  # mono int16
    captured_at: float  # time.monotonic() when the block reached the event loop
    rms_dbfs: float
    peak_dbfs: float
    speech: bool | None = None  # local VAD verdict, None when not computed

    @property
    def duration_ms(self) -> float:
        return len(self.pcm) * 1000.0 / ENGINE_RATE


class DuplexPolicy(StrEnum):
    """How the microphone behaves while the assistant speaks (no headphones => echo)."""

    GATED = "gated"  # mic energy must exceed the playback-derived echo level by a margin
    HALF = "half"  # mic muted while the assistant is audible
    FULL = "full"  # trust the provider (headphones, or hardware AEC)
    AEC = "aec"  # WebRTC echo cancellation on the mic, then the measuring gate


@runtime_checkable
class AudioInput(Protocol):
    """A microphone: real device or WAV file."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def frames(self) -> AsyncIterator[CaptureFrame]:
        """Frames in order; ends when the input ends (WAV) or is stopped."""
        ...

    @property
    def level_dbfs(self) -> float:
        """RMS level of the latest block, for the meter (cheap; safe to poll)."""
        ...


@runtime_checkable
class AudioOutput(Protocol):
    """A speaker fed from a jitter buffer: real device or WAV file."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def enqueue(self, item_id: str, pcm: Int16Array | Float32Array) -> None:
        """Queue a chunk of ``item_id``'s audio (int16 or float32, mono, 24 kHz), in order."""
        ...

    def flush(self, fade_ms: float = 5.0) -> int:
        """Drop everything queued within one block (short fade); return ms played of the
        item that was playing (0 if none)."""
        ...

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of ``item_id`` actually handed to the device so far."""
        ...

    def is_active(self) -> bool:
        """True while audio is queued or still being played."""
        ...

    async def wait_idle(self) -> None:
        """Return once everything queued has been played."""
        ...

    def set_on_first_audio(self, callback: Callable[[str, float], None] | None) -> None:
        """Call ``callback(item_id, monotonic_time)`` on the event loop when an item's first
        sample enters the device callback (latency metrics)."""
        ...

    def set_on_played(self, callback: Callable[[str, float], None] | None) -> None:
        """Call ``callback(item_id, monotonic_time)`` on the event loop when everything
        queued of an item so far has been handed to the device (the buffer ran dry, or the
        next item started): how the reply ledger learns a reply played out, with no poll."""
        ...

    @property
    def level_dbfs(self) -> float:
        """RMS level of what is playing now (meter, echo gate)."""
        ...


@runtime_checkable
class BargeInGate(Protocol):
    """Decides, from recent mic and playback levels, whether user speech may interrupt."""

    policy: DuplexPolicy

    def mic_open(self) -> bool:
        """False when the mic must not be sent (half duplex while the assistant speaks)."""
        ...

    def allows_barge_in(self) -> bool:
        """True if the user's recent speech is loud enough over the echo to interrupt."""
        ...

    def observe_mic(self, frame: CaptureFrame) -> None:
        """Feed every captured frame (cheap)."""
        ...
