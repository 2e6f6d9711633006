"""Issue 13 case 8: WAV input — extensible 24/32-bit and float read, every refusal names the
format and what is supported, long files streamed (memory flat)."""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voicetui.audio.errors import AudioError
from voicetui.audio.wav import WavInput, open_wav, read_wav_mono

SR = 24_000


def tone(seconds: float = 0.5, rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def wav_bytes(
    payload: bytes, *, tag: int = 1, channels: int = 1, rate: int = SR, bits: int = 16,
    extensible_tag: int | None = None, data_size: int | None = None,
) -> bytes:  # fmt: skip
    align = channels * bits // 8
    if extensible_tag is None:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    else:
        guid = struct.pack("<H", extensible_tag) + bytes.fromhex("000000001000800000aa00389b71")
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * align, align, bits, 22,
                          bits, 0x4) + guid  # fmt: skip
    size = len(payload) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", size) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def ints(x: np.ndarray, bits: int) -> bytes:
    if bits == 24:
        v = np.round(x * (2**23 - 1)).astype("<i4").tobytes()
        return b"".join(v[i : i + 3] for i in range(0, len(v), 4))
    return np.round(x * (2 ** (bits - 1) - 1)).astype(f"<i{bits // 8}").tobytes()


@pytest.mark.parametrize("bits", [24, 32])
def test_extensible_pcm_is_read(tmp_path: Path, bits: int) -> None:
    x = tone()
    path = tmp_path / f"ext{bits}.wav"
    path.write_bytes(wav_bytes(ints(x, bits), bits=bits, extensible_tag=1))
    got = read_wav_mono(path)
    assert np.max(np.abs(got - x)) < 1e-3


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("extensible", [False, True])
def test_float_wavs_are_read(tmp_path: Path, bits: int, extensible: bool) -> None:
    x = tone()
    data = x.astype(f"<f{bits // 8}").tobytes()
    path = tmp_path / "f.wav"
    path.write_bytes(wav_bytes(data, tag=3, bits=bits, extensible_tag=3 if extensible else None))
    assert np.max(np.abs(read_wav_mono(path) - x)) < 1e-6


@pytest.mark.skipif(not shutil.which("sox"), reason="sox is not installed")
@pytest.mark.parametrize("args", [["-b", "24"], ["-b", "32"], ["-e", "floating-point", "-b", "32"]])
def test_what_sox_writes_is_read(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "sox.wav"
    subprocess.run(["sox", "-n", "-r", "48000", "-c", "2", *args, str(out), "synth", "0.5",
                    "sine", "440", "vol", "0.5"], check=True)  # fmt: skip
    got = read_wav_mono(out)
    assert abs(len(got) - SR // 2) <= 2
    assert 0.3 < float(np.max(np.abs(got))) < 0.6


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: b"", "the file is empty"),
        (lambda: b"hello world, not a wav", "not a WAV file"),
        (lambda: wav_bytes(b"\0" * 100, rate=1), "sample rate 1 Hz is not supported"),
        (lambda: wav_bytes(b"\0" * 101, channels=2), "cannot read WAV"),  # torn frame: read
        (lambda: wav_bytes(b"\0" * 100, tag=7, bits=8), "mu-law audio is not supported"),
        (lambda: wav_bytes(b"\0" * 100, bits=12), "12-bit integer PCM is not supported"),
        (lambda: wav_bytes(b"\0" * 100, tag=3, bits=16), "16-bit float is not supported"),
        (lambda: wav_bytes(b"\0" * 100, channels=0), "0 channels"),
        (lambda: wav_bytes(b"", data_size=10**9)[:40], "no audio data"),
    ],
)
def test_refusals_name_the_format_and_what_is_supported(
    tmp_path: Path, make: object, expected: str
) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(make())  # type: ignore[operator]
    if expected == "cannot read WAV":  # a torn last frame is dropped, not an error
        assert len(read_wav_mono(path)) == 25  # 101 bytes = 25 whole stereo frames + 1
        return
    with pytest.raises(AudioError) as info:
        read_wav_mono(path)
    message = str(info.value)
    assert expected in message and "\n" not in message
    if "not supported" in expected and "rate" not in expected:
        assert "supported: PCM 8/16/24/32-bit integer or 32/64-bit float" in message


def test_a_data_chunk_longer_than_the_file_reads_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "streamed.wav"  # written by a recorder that never fixed the header
    path.write_bytes(wav_bytes(ints(tone(0.1), 16), data_size=0xFFFFFFFF))
    assert len(read_wav_mono(path)) == int(0.1 * SR)


LONG = r"""
import asyncio, resource, struct, sys
from voicetui.audio.wav import WavInput, iter_wav_resampled, open_wav
path = sys.argv[1]
async def main():
    wav = WavInput(path, realtime=False, vad_mode=None)
    await wav.start()
    n = 0
    async for _ in wav.frames():  # the first minute through the real input
        n += 1
        if n == 3000:
            break
    total = sum(len(b) for b in iter_wav_resampled(open_wav(path)))  # then all of it
    print(n, total, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
asyncio.run(main())
"""


@pytest.mark.timeout(300)
def test_a_one_hour_wav_is_streamed_in_flat_memory(tmp_path: Path) -> None:
    rate, channels, seconds = 48_000, 2, 3600
    n = seconds * rate * channels * 2
    path = tmp_path / "hour.wav"
    with path.open("wb") as fh:  # sparse: 691 MB of silence that takes no disk
        fh.write(wav_bytes(b"", rate=rate, channels=channels, data_size=n))
        fh.truncate(44 + n)
    assert open_wav(path).duration_s == seconds
    done = subprocess.run([sys.executable, "-c", LONG, str(path)], capture_output=True,
                          text=True, check=True, timeout=280)  # fmt: skip
    frames, samples, rss_mb = (int(v) for v in done.stdout.split())
    assert frames == 3000
    assert abs(samples - seconds * SR) < SR
    assert rss_mb < 200, f"peak RSS {rss_mb} MB"


def test_wav_input_refuses_a_bad_file_at_start(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="the file is empty"):
        asyncio.run(WavInput(path, realtime=False).start())
