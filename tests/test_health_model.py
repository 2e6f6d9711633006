"""Health checks what will be used: the configured model(s) and voice, named when missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voicetui.cli import main
from voicetui.config import update_config
from voicetui.health import check
from voicetui.testing.emulators import openai as openai_emu

KEY = "sk-health-model-key-0123456789"


def _config(tmp_path: Path, emu: Any, name: str, **options: Any) -> Any:
    return update_config(
        tmp_path / "config.toml", providers={name: {"baseUrl": emu.base_url, **options}}
    )


@pytest.mark.asyncio
async def test_a_model_the_account_lacks_is_named_with_its_replacement(
    openai_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an account without gpt-realtime-2.1 (say, not rolled out to it yet)
    monkeypatch.setattr(
        openai_emu, "MODELS", [m for m in openai_emu.MODELS if m["id"] != "gpt-realtime-2.1"]
    )
    cfg = _config(tmp_path, openai_emulator, "openai")
    result = await check("openai", cfg, api_key=KEY, timeout_ms=3000)
    assert result.status == "unavailable" and not result.ok
    assert "model 'gpt-realtime-2.1' is not available to this key" in result.detail
    assert "\n" not in result.detail and KEY not in result.detail


@pytest.mark.asyncio
async def test_an_unknown_model_names_the_catalogue_default(
    openai_emulator: Any, tmp_path: Path
) -> None:
    cfg = _config(tmp_path, openai_emulator, "openai", model="gpt-realtime-9000")
    result = await check("openai", cfg, api_key=KEY, timeout_ms=3000)
    assert result.status == "unavailable"
    assert result.detail == (
        "model 'gpt-realtime-9000' is not available to this key; use 'gpt-realtime-2.1'"
    )


@pytest.mark.asyncio
async def test_a_deprecated_model_passes_with_its_shutdown_date(
    openai_emulator: Any, tmp_path: Path
) -> None:
    cfg = _config(tmp_path, openai_emulator, "openai", model="gpt-realtime")
    result = await check("openai", cfg, api_key=KEY, timeout_ms=3000)
    assert result.status == "ok" and "gpt-realtime shuts down 2027-01-20" in result.detail


@pytest.mark.asyncio
async def test_an_unknown_voice_is_named(
    openai_emulator: Any, mistral_emulator: Any, tmp_path: Path
) -> None:
    cfg = _config(tmp_path, mistral_emulator, "mistral", defaultVoice="voice_999999")
    result = await check("mistral", cfg, api_key=KEY, timeout_ms=3000)
    assert result.status == "unavailable"
    assert result.detail == "voice 'voice_999999' is not available; use 'voice_478'"
    assert mistral_emulator.log.of("http", "/v1/audio/voices/voice_999999")
    cfg = _config(tmp_path, openai_emulator, "openai", defaultVoice="nobody")
    result = await check("openai", cfg, api_key=KEY, timeout_ms=3000)
    assert result.status == "unavailable" and "voice 'nobody'" in result.detail


def test_health_with_a_retired_model_names_the_replacement_and_fails(
    openai_emulator_thread: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[providers."ai-voice-conv.openai"]\n'
        f'baseUrl = "{openai_emulator_thread.base_url}"\n'
        'model = "gpt-4o-realtime-preview"\n'
    )
    code = main(["--config", str(path), "health", "openai"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "'gpt-4o-realtime-preview' was shut down on 2026-05-07" in err
    assert "use 'gpt-realtime-1.5'" in err and len(err.splitlines()) == 1
