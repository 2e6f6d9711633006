"""Sound devices: list them, pick one by name, find a sample rate it accepts.

Devices are chosen by *name* (a case-insensitive substring), never by index: indices move
with hot-plug and sound-server restarts. PortAudio scans devices once, at import; call
:func:`voicetui.audio.sd_loader.rescan` to pick up changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from voicetui.audio.errors import AudioError, AudioErrorCode
from voicetui.audio.ports import ENGINE_RATE
from voicetui.audio.sd_loader import load_sounddevice

Kind = Literal["input", "output"]

# Tried in order after the engine rate and the device's own default rate.
FALLBACK_RATES: tuple[int, ...] = (48_000, 44_100, 32_000, 16_000, 22_050, 96_000, 8_000)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One PortAudio device as the app shows it."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    is_default_input: bool
    is_default_output: bool

    @property
    def is_input(self) -> bool:
        return self.max_input_channels > 0

    @property
    def is_output(self) -> bool:
        return self.max_output_channels > 0

    def channels(self, kind: Kind) -> int:
        return self.max_input_channels if kind == "input" else self.max_output_channels


def _default_indices(sd: Any) -> tuple[int, int]:
    dev = sd.default.device
    try:
        return int(dev[0]), int(dev[1])
    except (TypeError, ValueError):
        return -1, -1


def list_devices() -> list[DeviceInfo]:
    """Every input and output device PortAudio sees (defaults marked)."""
    sd = load_sounddevice()
    default_in, default_out = _default_indices(sd)
    hostapis = sd.query_hostapis()
    out: list[DeviceInfo] = []
    for raw in sd.query_devices():
        idx = int(raw["index"])
        try:
            hostapi = str(hostapis[int(raw["hostapi"])]["name"])
        except (IndexError, KeyError, TypeError):
            hostapi = "?"
        out.append(
            DeviceInfo(
                index=idx,
                name=str(raw["name"]),
                hostapi=hostapi,
                max_input_channels=int(raw["max_input_channels"]),
                max_output_channels=int(raw["max_output_channels"]),
                default_samplerate=float(raw["default_samplerate"]),
                is_default_input=idx == default_in,
                is_default_output=idx == default_out,
            )
        )
    return out


def _names(devices: Iterable[DeviceInfo]) -> str:
    names = [f"'{d.name}'" for d in devices]
    return ", ".join(names) if names else "none"


def find_device(
    name: str | None, kind: Kind, devices: Sequence[DeviceInfo] | None = None
) -> DeviceInfo:
    """The device to open for ``kind``: the default when ``name`` is empty, else by name.

    Exact (case-insensitive) names win over substrings; a bare number is taken as an index.
    Raises :class:`AudioError` listing the devices that exist when nothing matches.
    """
    all_devices = list(devices) if devices is not None else list_devices()
    usable = [d for d in all_devices if d.channels(kind) > 0]
    no_code = AudioErrorCode.NO_INPUT_DEVICE if kind == "input" else AudioErrorCode.NO_OUTPUT_DEVICE
    if not usable:
        what = "microphone" if kind == "input" else "speaker"
        raise AudioError(
            f"no audio {kind} device found (no {what}): connect one or start the sound server"
            " (PulseAudio/PipeWire), then check `voicetui devices`",
            no_code,
        )
    if not name:
        for d in usable:
            if d.is_default_input if kind == "input" else d.is_default_output:
                return d
        # PortAudio reports no default (-1) although devices exist: take the first usable one
        return usable[0]
    wanted = name.strip().casefold()
    if wanted.isdigit():
        for d in usable:
            if d.index == int(wanted):
                return d
    for d in usable:
        if d.name.casefold() == wanted:
            return d
    for d in usable:
        if wanted in d.name.casefold():
            return d
    raise AudioError(
        f"no {kind} device matching '{name}'; {kind} devices: {_names(usable)}"
        f" (set audio.{kind}_device in the config, or leave it empty for the default)",
        AudioErrorCode.DEVICE_NOT_FOUND,
    )


def _accepts(
    device: DeviceInfo, kind: Kind, rate: int, channels: int, dtype: str
) -> Exception | None:
    sd = load_sounddevice()
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=device.index, samplerate=rate, channels=channels, dtype=dtype)
    except (sd.PortAudioError, ValueError) as exc:
        return exc
    return None


def supported_rate(
    device: DeviceInfo,
    kind: Kind,
    preferred: int = ENGINE_RATE,
    dtype: str = "float32",
    channels: int = 1,
) -> int:
    """The first sample rate the device accepts: ``preferred``, its default, then common ones."""
    candidates: list[int] = []
    for rate in (preferred, int(device.default_samplerate), *FALLBACK_RATES):
        if rate > 0 and rate not in candidates:
            candidates.append(rate)
    last: Exception | None = None
    for rate in candidates:
        last = _accepts(device, kind, rate, channels, dtype)
        if last is None:
            return rate
    raise AudioError(
        f"{kind} device '{device.name}' accepts none of the rates tried"
        f" ({', '.join(str(r) for r in candidates)} Hz): {last}",
        AudioErrorCode.UNSUPPORTED_RATE,
    )


def check_rate(
    device: DeviceInfo, kind: Kind, rate: int, dtype: str = "float32", channels: int = 1
) -> int:
    """Validate one forced rate; raise :class:`AudioError` (unsupported_rate) if refused."""
    exc = _accepts(device, kind, rate, channels, dtype)
    if exc is not None:
        raise AudioError(
            f"{kind} device '{device.name}' does not accept {rate} Hz: {exc}",
            AudioErrorCode.UNSUPPORTED_RATE,
        ) from exc
    return rate


def negotiate(
    device: DeviceInfo,
    kind: Kind,
    *,
    rate: int | None = None,
    channels: int | None = None,
    dtype: str = "float32",
) -> tuple[int, int]:
    """(rate, channels) to open ``device`` with: mono if it takes mono, else stereo (some ALSA
    ``hw:`` devices refuse one channel); the engine rate if possible, else a common rate.
    ``rate``/``channels`` force a value (tests, odd hardware)."""
    options = [channels] if channels else [1, 2]
    options = [c for c in options if c <= max(1, device.channels(kind))] or options[:1]
    first: AudioError | None = None
    for ch in options:
        try:
            if rate:
                return check_rate(device, kind, rate, dtype, ch), ch
            return supported_rate(device, kind, ENGINE_RATE, dtype, ch), ch
        except AudioError as exc:
            first = first or exc
    assert first is not None
    raise first


def format_table(devices: Sequence[DeviceInfo]) -> str:
    """Human-readable listing; ``*`` marks the default input/output."""
    lines = ["  idx  in  out    rate  name (host API)"]
    for d in devices:
        mark = ("<" if d.is_default_input else " ") + (">" if d.is_default_output else " ")
        lines.append(
            f"{mark}{d.index:>3}  {d.max_input_channels:>2}  {d.max_output_channels:>3}"
            f"  {int(d.default_samplerate):>6}  {d.name} ({d.hostapi})"
        )
    lines.append("< default input   > default output")
    return "\n".join(lines)


def cli_main(args: argparse.Namespace) -> int:
    """``voicetui devices [--json]``: list audio devices, defaults marked."""
    as_json = bool(getattr(args, "json", False))
    try:
        devices = list_devices()
    except AudioError as exc:
        if as_json:
            print(json.dumps({"error": exc.message, "code": exc.code.value, "devices": []}))
        else:
            print(f"voicetui: {exc.message}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"devices": [asdict(d) for d in devices]}, indent=2))
        return 0
    if not devices:
        print(
            "no audio devices found: start the sound server (PulseAudio/PipeWire) or connect"
            " a device",
            file=sys.stderr,
        )
        return 1
    print(format_table(devices))
    return 0


if __name__ == "__main__":  # pragma: no cover - handy for manual checks
    parser = argparse.ArgumentParser(prog="voicetui devices")
    parser.add_argument("--json", action="store_true")
    raise SystemExit(cli_main(parser.parse_args()))
