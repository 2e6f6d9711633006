"""Property: any config file -> a config or one ConfigError line; never a traceback/hang."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicetui.config import AppConfig, ConfigError, load_config

SPEC = "ai-voice-conv.openai"
FIELDS = ["maxSessionDurationSeconds", "vadThreshold", "voice", "model", "turnDetection",
          "silenceDurationMs", "baseUrl", "instructions", "temperature"]  # fmt: skip

scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=5,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "provider": st.one_of(st.sampled_from(["openai", "mistral", SPEC]), st.text(max_size=12)),
        "theme": st.text(max_size=12),
        "audio": st.dictionaries(
            st.sampled_from(["block_ms", "prebuffer_ms", "duplex", "input_device", "x"]),
            scalars,
            max_size=3,
        ),
        "providers": st.fixed_dictionaries(
            {SPEC: st.dictionaries(st.sampled_from(FIELDS), values, max_size=4)}
        ),
    },
)
fragments = st.lists(
    st.sampled_from(
        ["[", "]", "[[", "]]", "=", '"', "'", '"""', ".", "a", "x = ", "nan", "inf", "{", "}",
         ",", "\n", "\ufeff", "\\", "#", "1e999", "0x", "[providers.", "\x00", "é", "  "]
    ),
    max_size=60,
).map("".join)  # fmt: skip


def _load(data: bytes, directory: Path) -> None:
    path = directory / "config.toml"
    path.write_bytes(data)
    started = time.monotonic()
    try:
        result = load_config(path)
    except ConfigError as err:
        message = str(err)
        assert message and "\n" not in message, message
        assert "Traceback" not in message
    else:
        assert isinstance(result, AppConfig)
    assert time.monotonic() - started < 2.0


def _dump(doc: dict[str, Any]) -> bytes:
    try:
        return tomli_w.dumps(doc).encode("utf-8")
    except (ValueError, TypeError):
        return b""


WORKDIR = Path(tempfile.mkdtemp(prefix="voicetui-fuzz-config-"))  # one file, rewritten
FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.one_of(st.binary(max_size=300), fragments.map(lambda s: s.encode("utf-8", "replace"))))
def test_any_bytes_give_a_config_or_one_line(data: bytes) -> None:
    _load(data, WORKDIR)


@FUZZ
@given(documents)
def test_any_document_gives_a_config_or_one_line(doc: dict[str, Any]) -> None:
    _load(_dump(doc), WORKDIR)


def teardown_module() -> None:
    shutil.rmtree(WORKDIR, ignore_errors=True)
