"""Managed keys (``apiKeyCommand``): read from a command's stdout, in memory only, through
``keys list``, health checks (against the emulators) and the engine factory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from voicetui.config import update_config
from voicetui.health import check
from voicetui.keycommand import (
    KeyCommandFailed,
    format_key_command,
    parse_key_command,
    run_key_command,
)
from voicetui.keys import KeyStore

KEY = "sk-managed-test-key-7731"


def _keys_list(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voicetui", "--config", str(config), "keys", "list"],
        check=False, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )  # fmt: skip


def _xdg_files() -> list[Path]:
    roots = [
        Path(os.environ[v])
        for v in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")
    ]
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def test_run_key_command_strips_the_newline_and_reports_failures_in_one_line() -> None:
    assert run_key_command(["sh", "-c", f"echo {KEY}"]) == KEY
    with pytest.raises(KeyCommandFailed) as err:
        run_key_command(["sh", "-c", f"printf {KEY}; echo 'vault locked' >&2; exit 3"])
    line = str(err.value)
    assert "exit status 3" in line and "vault locked" in line and "\n" not in line
    assert KEY not in line
    with pytest.raises(KeyCommandFailed, match="not found"):
        run_key_command(["no-such-secret-manager-xyz"])
    with pytest.raises(KeyCommandFailed, match=r"within 0\.3 s"):
        run_key_command(["sleep", "5"], timeout_s=0.3)
    with pytest.raises(KeyCommandFailed, match="no key"):
        run_key_command(["true"])


def test_a_typed_command_is_split_like_a_shell_and_shown_back_quoted() -> None:
    typed = "op read 'op://Private Vault/mistral/key' --no-newline"
    argv = parse_key_command(typed)
    assert argv == ["op", "read", "op://Private Vault/mistral/key", "--no-newline"]
    assert parse_key_command(format_key_command(argv)) == argv
    assert format_key_command(["sh", "-c", "printf x"]) == "sh -c 'printf x'"
    for bad, reason in (
        ("op read 'unclosed", "does not parse"),
        ("", "empty"),
        ("  ", "empty"),
        ("op read ''", "empty argument"),
    ):
        with pytest.raises(ValueError, match=reason) as err:
            parse_key_command(bad)
        assert "\n" not in str(err.value) and "unclosed" not in str(err.value)


def test_keys_list_shows_the_command_source_and_mask(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    update_config(cfg, providers={"mistral": {"apiKeyCommand": ["sh", "-c", f"printf {KEY}"]}})
    # the other provider from the environment, so that no keyring is needed here
    out = _keys_list(cfg, {"OPENAI_API_KEY": "sk-env-key-0000-1234"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert out.stderr == "precedence: environment > command > keyring\n"
    assert any(
        ln.split() == ["ai-voice-conv.mistral", "command", "managed", "****7731"] for ln in lines
    )
    assert any(
        ln.split() == ["ai-voice-conv.openai", "environment", "byok", "****1234"] for ln in lines
    )
    assert KEY not in out.stdout + out.stderr
    # the environment wins over the command
    env_wins = _keys_list(
        cfg, {"OPENAI_API_KEY": "x" * 20, "MISTRAL_API_KEY": "sk-env-key-0000-9999"}
    )
    assert "ai-voice-conv.mistral    environment  byok     ****9999  (overrides apiKeyCommand)" in (
        env_wins.stdout
    )
    assert not [p for p in _xdg_files() if KEY.encode() in p.read_bytes()]


def test_a_command_key_for_a_byok_only_spec_stays_byok(tmp_path: Path) -> None:
    """OpenAI's spec lists only `byok` (seed 003): a key read by a command is still the user's
    own key, so the mode shown is the spec's, while the source says where it was read."""
    cfg = tmp_path / "config.toml"
    update_config(cfg, providers={"openai": {"apiKeyCommand": ["sh", "-c", f"printf {KEY}"]}})
    out = _keys_list(cfg, {"MISTRAL_API_KEY": "sk-env-key-0000-1234"})
    assert out.returncode == 0, out.stderr
    assert any(
        ln.split() == ["ai-voice-conv.openai", "command", "byok", "****7731"]
        for ln in out.stdout.splitlines()
    )


def test_keys_list_with_a_failing_command_is_one_line_naming_the_exit_status(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "config.toml"
    update_config(
        cfg,
        providers={
            "mistral": {"apiKeyCommand": ["sh", "-c", "echo 'op: not signed in' >&2; exit 3"]}
        },
    )
    out = _keys_list(cfg, {"OPENAI_API_KEY": "sk-env-key-0000-1234"})
    assert out.returncode == 1
    errors = out.stderr.strip().splitlines()
    assert errors == [
        "precedence: environment > command > keyring",
        "voicetui: error: ai-voice-conv.mistral: apiKeyCommand 'sh' failed with exit status 3: "
        "op: not signed in",
    ]
    assert "Traceback" not in out.stderr


@pytest.mark.asyncio
async def test_health_reads_the_command_refreshes_after_a_401_and_reports_failures(
    openai_emulator: Any, tmp_path: Path
) -> None:
    good = "sk-the-rotated-one-7731"
    openai_emulator.accepted_keys = {good}
    flag = tmp_path / "rotated"
    # the secret manager hands out the old key first, the rotated one from then on
    rotating = [
        "sh",
        "-c",
        f"if [ -e {flag} ]; then printf {good}; else touch {flag}; printf sk-old-0000; fi",
    ]
    cfg = update_config(
        tmp_path / "config.toml",
        providers={"openai": {"baseUrl": openai_emulator.base_url, "apiKeyCommand": rotating}},
    )
    store = KeyStore(environ={})
    result = await check("openai", cfg, store, timeout_ms=2000)
    assert result.status == "ok", result
    assert store.get("openai", cfg.key_command("openai")).value == good  # cached, in memory
    failing = update_config(
        tmp_path / "config.toml",
        providers={"openai": {"apiKeyCommand": ["sh", "-c", "echo locked >&2; exit 3"]}},
    )
    bad = await check("openai", failing, KeyStore(environ={}), timeout_ms=2000)
    assert bad.status == "no_key"
    assert bad.detail == "apiKeyCommand 'sh' failed with exit status 3: locked"
    assert not [p for p in _xdg_files() if good.encode() in p.read_bytes()]
