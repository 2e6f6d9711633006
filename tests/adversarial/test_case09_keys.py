"""Issue 13 case 9: keys must be printable ASCII; items made by other keyring clients are
replaced by ``keys set``/``keys rotate``, not left to shadow the new key.

The interop tests need the real Secret Service: run inside ``tools/keyring-sandbox.sh``.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from voicetui.cli import main
from voicetui.config import update_config
from voicetui.keys import InvalidKey, KeyStore
from voicetui.specs.registry import registry

SPEC = "ai-voice-conv.openai"
FOREIGN = "sk-foreign-key-XXXX9999yyyy"
NEW = "sk-new-key-CCCC2222dddd"
OLD = "sk-old-key-AAAA1111bbbb"


@pytest.mark.parametrize("key", ["sk-ключ-12345678", "sk-key-😀-12345678", "sk-key-\u00e9-1234"])
def test_non_ascii_keys_are_refused_in_one_line(key: str) -> None:
    with pytest.raises(InvalidKey, match="non-ASCII character at position") as info:
        KeyStore(environ={}).validate("openai", key)
    assert key not in str(info.value)


def test_health_with_a_non_ascii_key_in_the_environment_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-ключ-12345678")
    code = main(["health", "openai"])
    out = capsys.readouterr()
    assert code == 1
    assert "non-ASCII" in out.out
    assert "UnicodeEncodeError" not in out.out + out.err


def _secret_tool(*args: str, stdin: str | None = None) -> str:
    tool = shutil.which("secret-tool")
    assert tool, "secret-tool missing (apt-get install libsecret-tools)"
    proc = subprocess.run(
        [tool, *args], input=stdin, capture_output=True, text=True, check=False, timeout=20
    )
    return proc.stdout


@pytest.fixture
def secret_service() -> Any:
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        pytest.fail(
            "no D-Bus session bus: run inside tools/keyring-sandbox.sh (`make test` does this)"
        )
    store = KeyStore()
    for key in registry():
        store.delete(key)
        _clear(key)
    yield store
    for key in registry():
        _clear(key)


def _clear(spec_key: str) -> None:
    tool = shutil.which("secret-tool")
    assert tool
    for _ in range(8):
        subprocess.run([tool, "clear", "service", "voicetui", "username", spec_key], check=False)


@pytest.mark.keyring
@pytest.mark.parametrize("command", ["set", "rotate"])
def test_keys_set_and_rotate_replace_an_item_stored_by_another_client(  # noqa: PLR0917
    secret_service: KeyStore,
    openai_emulator_thread: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    openai_emulator_thread.accepted_keys = {NEW}
    config = tmp_path / "c.toml"
    update_config(config, providers={"openai": {"baseUrl": openai_emulator_thread.base_url}})
    # a key set by us, then another client (libsecret's CLI) stores one under the same
    # service/user: two items, the foreign one without keyring's "application" attribute
    secret_service.set("openai", OLD)
    _secret_tool(
        "store", "--label", "foreign", "service", "voicetui", "username", SPEC, stdin=FOREIGN
    )
    assert secret_service.get_stored("openai") in (OLD, FOREIGN)  # keys list still reads one
    monkeypatch.setattr(sys, "stdin", io.StringIO(NEW))
    code = main(["--config", str(config), "keys", command, "openai"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "did not keep the key" not in out.err
    assert secret_service.get_stored("openai") == NEW
    assert _secret_tool("lookup", "service", "voicetui", "username", SPEC) == NEW
