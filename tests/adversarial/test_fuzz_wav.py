"""Property: any file given as a WAV -> audio or one AudioError line; never a traceback."""

from __future__ import annotations

import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicetui.audio.errors import AudioError
from voicetui.audio.wav import read_wav_mono

WORKDIR = Path(tempfile.mkdtemp(prefix="voicetui-fuzz-wav-"))
FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read(data: bytes) -> None:
    path = WORKDIR / "in.wav"
    path.write_bytes(data)
    try:
        audio = read_wav_mono(path)
    except AudioError as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert audio.dtype == np.float32 and np.all(np.isfinite(audio))


headers = st.builds(
    lambda tag, ext, ch, rate, align, bits, size, payload: _header(
        tag, ext, ch, rate, (ch * bits // 8) % 65536 if align < 0 else align, bits, size, payload
    ),
    st.sampled_from([0, 1, 2, 3, 6, 7, 0xFFFE, 0xFFFF]),
    st.booleans(),
    st.integers(0, 70),
    st.sampled_from([0, 1, 999, 8000, 16000, 44100, 48000, 768_000, 768_001, 2**32 - 1]),
    st.one_of(st.just(-1), st.integers(0, 64)),  # -1: the consistent block align
    st.sampled_from([0, 1, 8, 12, 16, 24, 32, 64, 65535]),
    st.one_of(st.integers(0, 2**32 - 1), st.just(0)),
    st.binary(max_size=512),
)


def _header(  # noqa: PLR0917
    tag: int, ext: bool, ch: int, rate: int, align: int, bits: int, size: int, payload: bytes
) -> bytes:
    return (
        b"RIFF" + struct.pack("<I", 36 + len(payload)) + b"WAVE"
        + b"fmt " + struct.pack("<I", 40 if ext else 16)
        + struct.pack("<HHIIHH", 0xFFFE if ext else tag, ch, rate, (rate * align) % 2**32,
                      align, bits)
        + (struct.pack("<HHI", 22, bits, 4) + struct.pack("<H", tag)
           + bytes.fromhex("000000001000800000aa00389b71") if ext else b"")
        + b"data" + struct.pack("<I", size) + payload
    )  # fmt: skip


@FUZZ
@given(st.binary(max_size=600))
def test_any_bytes(data: bytes) -> None:
    _read(data)


@FUZZ
@given(headers)
def test_any_header(data: bytes) -> None:
    _read(data)


def teardown_module() -> None:
    shutil.rmtree(WORKDIR, ignore_errors=True)
