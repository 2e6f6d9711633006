"""Outgoing event channels of the Mistral emulator (SSE responses and WebSockets).

Every server event goes through an :class:`Outlet`, which is where the per-stream fault knobs
(drop after N events, one malformed / unknown frame after N events, stall between frames), the
strict SDK-model check and the request log live — so REST streams and both WebSockets behave
the same way under faults.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from voicetui.testing.emulators.common import LogEntry

if TYPE_CHECKING:
    from voicetui.testing.emulators.mistral import MistralEmulator

ARRIVED_AT = web.RequestKey("arrived_at", float)  # monotonic time a request arrived

# Bodies are logged without these (audio payloads would bloat the log).
_BULKY_KEYS = ("audio", "audio_data", "ref_audio", "sample_audio")


class StreamDropped(Exception):
    """Raised by :meth:`Outlet.send` after a drop fault closed the stream."""


def now_iso() -> str:
    """The current UTC time as the service formats ``created_at``."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    """A service-looking id such as ``conv_3f…``."""
    return f"{prefix}_{uuid.uuid4().hex}"


def word_pieces(text: str) -> list[str]:
    """``text`` cut into word deltas whose concatenation is ``text`` again (" " leads)."""
    words = text.split()
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def loggable(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of a JSON body for the log: base64 audio replaced by its length."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in _BULKY_KEYS and isinstance(value, str):
            out[key] = f"<{len(value)} b64 chars>"
        elif isinstance(value, dict):
            out[key] = loggable(value)
        else:
            out[key] = value
    return out


def f32_b64(pcm: np.ndarray) -> str:
    """Base64 of float32 little-endian samples (the ``pcm`` response format)."""
    return base64.b64encode(pcm.astype("<f4").tobytes()).decode("ascii")


def decode_pcm(data: bytes, encoding: str) -> np.ndarray:
    """Raw PCM in one of the realtime STT encodings → float32 in [-1, 1]."""
    if encoding == "pcm_s16le":
        n = len(data) // 2 * 2
        return np.frombuffer(data[:n], "<i2").astype(np.float32) / 32768.0
    if encoding == "pcm_s32le":
        n = len(data) // 4 * 4
        return (np.frombuffer(data[:n], "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    if encoding == "pcm_f32le":
        n = len(data) // 4 * 4
        return np.frombuffer(data[:n], "<f4").astype(np.float32)
    if encoding == "pcm_f16le":
        n = len(data) // 2 * 2
        return np.frombuffer(data[:n], "<f2").astype(np.float32)
    raw = np.frombuffer(data, np.uint8).astype(np.int32) ^ (
        0xFF if encoding == "pcm_mulaw" else 0x55
    )
    if encoding == "pcm_mulaw":  # G.711 µ-law
        sign = np.where(raw & 0x80, -1.0, 1.0)
        exponent = (raw >> 4) & 0x07
        mantissa = raw & 0x0F
        magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
        mulaw: np.ndarray = (sign * magnitude / 32768.0).astype(np.float32)
        return mulaw
    # G.711 A-law
    sign = np.where(raw & 0x80, 1.0, -1.0)
    exponent = (raw >> 4) & 0x07
    mantissa = raw & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    alaw: np.ndarray = (sign * magnitude / 32768.0).astype(np.float32)
    return alaw


def bytes_per_sample(encoding: str) -> int:
    """Width of one sample of a realtime STT encoding."""
    return {"pcm_s16le": 2, "pcm_s32le": 4, "pcm_f32le": 4, "pcm_f16le": 2}.get(encoding, 1)


def dbfs(block: np.ndarray) -> float:
    """RMS level of ``block`` in dBFS (-120 for digital silence)."""
    if block.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(block, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 1e-6 else -120.0


class Outlet:
    """One outgoing event stream (an SSE response or a WebSocket) with the fault knobs.

    Subclasses implement the actual write. ``send`` raises :class:`StreamDropped` once a drop
    fault has fired; callers stop producing events then.
    """

    def __init__(self, emu: MistralEmulator, path: str, channel: str) -> None:
        self.emu = emu
        self.path = path
        self.channel = channel  # strict-check table: "sse:conversations", "ws:stt", …
        self.sent = 0
        self.dropped = False
        self.conversation_id: str | None = None

    def _in_scope(self) -> bool:
        return self.emu.fault_in_scope(self.path)

    async def send(self, event: dict[str, Any]) -> None:
        """Send one server event (``event["type"]`` names it), applying faults first."""
        if self.dropped:
            raise StreamDropped(self.path)
        faults = self.emu.faults
        if self._in_scope():
            if faults.stall_s > 0:
                await asyncio.sleep(faults.stall_s)
            if faults.drop_after_events is not None and self.sent >= faults.drop_after_events:
                faults.drop_after_events = None  # one-shot
                self.dropped = True
                self._log(f"{self.kind_prefix}_drop", "", None)
                await self._drop()
                raise StreamDropped(self.path)
            if (
                faults.malformed_after_events is not None
                and self.sent >= faults.malformed_after_events
            ):
                faults.malformed_after_events = None
                await self._send_malformed(event)
            if faults.unknown_after_events is not None and self.sent >= faults.unknown_after_events:
                faults.unknown_after_events = None
                unknown = {
                    "type": "emulator.unknown_event",
                    "detail": "an event type the SDK lacks",
                }
                await self._write(unknown["type"], json.dumps(unknown))
                self._log(f"{self.kind_prefix}_unknown", unknown["type"], unknown)
        text = json.dumps(event)
        if self.emu.strict is not None:
            self.emu.strict.check(self.channel, str(event.get("type", "")), text)
        try:
            await self._write(str(event["type"]), text)
        except ConnectionError as exc:  # the client went away (e.g. barge-in closed the stream)
            self.dropped = True
            self._log(f"{self.kind_prefix}_client_closed", str(event["type"]), None)
            raise StreamDropped(self.path) from exc
        self.sent += 1
        self._log(self.out_kind, str(event["type"]), event)

    out_kind = "out"

    def _log(self, kind: str, event_type: str, body: dict[str, Any] | None) -> None:
        self.emu.log.add(
            LogEntry(
                at=time.monotonic(),
                kind=kind,
                path=self.path,
                event_type=event_type,
                conversation_id=self.conversation_id,
                body=loggable(body) if body is not None else None,
            )
        )

    kind_prefix = ""

    async def _write(self, event_type: str, text: str) -> None:
        raise NotImplementedError

    async def _send_malformed(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    async def _drop(self) -> None:
        raise NotImplementedError


class SSEOutlet(Outlet):
    """Server-sent events with both ``event:`` and ``data:`` lines and no ``[DONE]``."""

    out_kind = "sse_out"
    kind_prefix = "sse"

    def __init__(
        self, emu: MistralEmulator, request: web.Request, channel: str, path: str | None = None
    ) -> None:
        super().__init__(emu, path or request.path, channel)
        self.request = request
        self.response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )

    async def open(self) -> None:
        """Send the 200 and the headers."""
        await self.response.prepare(self.request)

    async def _write(self, event_type: str, text: str) -> None:
        await self.response.write(f"event: {event_type}\ndata: {text}\n\n".encode())

    async def _send_malformed(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type", "message"))
        if self.emu.sse_malformed_json:
            # Not JSON at all: the SDK raises ResponseValidationError from the iterator.
            payload = '{"type": "' + kind + '", "broken'
        else:
            # A known type whose payload breaks its schema: the SDK yields an Unknown… object.
            payload = json.dumps({"type": kind, "unexpected": True})
        await self._write(kind, payload)
        self._log("sse_malformed", kind, None)

    async def _drop(self) -> None:
        # End the chunked body without its terminating chunk: httpx2 raises
        # RemoteProtocolError ("peer closed connection without sending complete message body").
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def finish(self) -> web.StreamResponse:
        """End the stream normally."""
        if not self.dropped:
            await self.response.write_eof()
        return self.response


class WSOutlet(Outlet):
    """A server→client JSON text-frame channel on an aiohttp WebSocket."""

    out_kind = "ws_out"
    kind_prefix = "ws"

    def __init__(
        self, emu: MistralEmulator, ws: web.WebSocketResponse, path: str, channel: str
    ) -> None:
        super().__init__(emu, path, channel)
        self.ws = ws
        self._lock = asyncio.Lock()

    async def _write(self, event_type: str, text: str) -> None:
        async with self._lock:
            await self.ws.send_str(text)

    async def _send_malformed(self, event: dict[str, Any]) -> None:
        async with self._lock:
            await self.ws.send_str('{"type": "' + str(event.get("type", "")) + '", "broken')
        self._log("ws_malformed", str(event.get("type", "")), None)

    async def _drop(self) -> None:
        await self.ws.close(code=self.emu.faults.drop_close_code, message=b"emulated drop")
