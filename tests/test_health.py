"""Health checks per status, through the real SDKs against the loopback emulators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from voicetui.config import AppConfig, update_config
from voicetui.health import STATUSES, HealthResult, check, check_sync
from voicetui.keys import KeyStore
from voicetui.testing.emulators.common import free_port

PROVIDERS = ["openai", "mistral"]
KEY = "sk-health-test-key-0123456789"
TIMEOUT_MS = 400  # small, so the timeout case is quick; the bound below is timeout + 1 s


@pytest_asyncio.fixture
async def emulators(openai_emulator: Any, mistral_emulator: Any) -> dict[str, Any]:
    return {"openai": openai_emulator, "mistral": mistral_emulator}


def _config(tmp_path: Path, emulators: dict[str, Any]) -> AppConfig:
    return update_config(
        tmp_path / "config.toml",
        providers={name: {"baseUrl": emu.base_url} for name, emu in emulators.items()},
    )


async def _timed(coro: Any) -> tuple[HealthResult, float]:
    started = time.perf_counter()
    result = await coro
    elapsed = time.perf_counter() - started
    assert elapsed < TIMEOUT_MS / 1000 + 1.0, f"took {elapsed:.2f} s"
    return result, elapsed


def _assert_one_line(result: HealthResult) -> None:
    assert result.detail and "\n" not in result.detail
    assert KEY not in result.detail


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_ok(provider: str, emulators: dict[str, Any], tmp_path: Path) -> None:
    cfg = _config(tmp_path, emulators)
    result, _ = await _timed(check(provider, cfg, api_key=KEY, timeout_ms=TIMEOUT_MS))
    assert result.status == "ok" and result.ok, result
    assert result.provider.endswith(provider)
    assert result.latency_ms is not None and 0 <= result.latency_ms < TIMEOUT_MS
    assert "models listed" in result.detail
    _assert_one_line(result)
    assert emulators[provider].log.of("http", "/v1/models") or emulators[provider].log.of(
        None, "/v1/models"
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_unauthorized(provider: str, emulators: dict[str, Any], tmp_path: Path) -> None:
    cfg = _config(tmp_path, emulators)
    emulators[provider].faults.http_status = 401
    emulators[provider].faults.http_status_count = 1
    result, _ = await _timed(check(provider, cfg, api_key=KEY, timeout_ms=TIMEOUT_MS))
    assert result.status == "unauthorized", result
    assert "401" in result.detail and f"voicetui keys set {provider}" in result.detail
    _assert_one_line(result)


@pytest.mark.asyncio
async def test_unauthorized_by_key(emulators: dict[str, Any], tmp_path: Path) -> None:
    # The OpenAI emulator checks the bearer itself: a key it does not know is rejected.
    emulators["openai"].accepted_keys = {"sk-the-right-one-0000"}
    cfg = _config(tmp_path, emulators)
    result, _ = await _timed(check("openai", cfg, api_key=KEY, timeout_ms=TIMEOUT_MS))
    assert result.status == "unauthorized"
    good, _ = await _timed(
        check("openai", cfg, api_key="sk-the-right-one-0000", timeout_ms=TIMEOUT_MS)
    )
    assert good.status == "ok"


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_rate_limited(provider: str, emulators: dict[str, Any], tmp_path: Path) -> None:
    cfg = _config(tmp_path, emulators)
    faults = emulators[provider].faults
    faults.http_status, faults.http_status_count, faults.retry_after_s = 429, 1, 3
    result, _ = await _timed(check(provider, cfg, api_key=KEY, timeout_ms=TIMEOUT_MS))
    assert result.status == "rate_limited", result
    assert "429" in result.detail and "retry after" in result.detail
    _assert_one_line(result)


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_unreachable(provider: str, emulators: dict[str, Any], tmp_path: Path) -> None:
    cfg = update_config(
        tmp_path / "config.toml",
        providers={provider: {"baseUrl": f"http://127.0.0.1:{free_port()}"}},  # nobody listens
    )
    result, _ = await _timed(check(provider, cfg, api_key=KEY, timeout_ms=TIMEOUT_MS))
    assert result.status == "unreachable", result
    assert "cannot connect to http://127.0.0.1:" in result.detail
    _assert_one_line(result)


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_timeout(provider: str, emulators: dict[str, Any], tmp_path: Path) -> None:
    cfg = _config(tmp_path, emulators)
    emulators[provider].faults.stall_s = 1.2  # well past the timeout (teardown waits for it)
    result, elapsed = await _timed(check(provider, cfg, api_key=KEY, timeout_ms=TIMEOUT_MS))
    assert result.status == "timeout", result
    assert elapsed >= TIMEOUT_MS / 1000 * 0.9
    assert f"within {TIMEOUT_MS} ms" in result.detail
    _assert_one_line(result)


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_no_key(provider: str, emulators: dict[str, Any], tmp_path: Path) -> None:
    cfg = _config(tmp_path, emulators)
    # No key in the environment (conftest clears it); the keyring has none either, or is
    # not reachable at all - both are "no key" for a health check, never an exception.
    result, _ = await _timed(check(provider, cfg, KeyStore(environ={}), timeout_ms=TIMEOUT_MS))
    assert result.status == "no_key", result
    assert result.latency_ms is None
    env = "OPENAI_API_KEY" if provider == "openai" else "MISTRAL_API_KEY"
    assert env in result.detail
    assert not emulators[provider].log.entries  # no call was made


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_error(provider: str, emulators: dict[str, Any], tmp_path: Path) -> None:
    cfg = _config(tmp_path, emulators)
    emulators[provider].faults.http_status, emulators[provider].faults.http_status_count = 500, 1
    result, _ = await _timed(check(provider, cfg, api_key=KEY, timeout_ms=TIMEOUT_MS))
    assert result.status == "error", result
    assert result.detail.startswith("HTTP 500")
    _assert_one_line(result)


def test_every_status_has_a_test() -> None:
    tested = {"ok", "unauthorized", "rate_limited", "unreachable", "timeout", "no_key", "error"}
    tested.add("unavailable")  # test_health_model.py
    assert set(STATUSES) == tested


def test_spec_timeout_is_the_default(tmp_path: Path) -> None:
    # Sync wrapper, default timeout from the spec (5000 ms): an unreachable port answers
    # at once, so this shows the wrapper and the spec lookup rather than waiting 5 s.
    cfg = update_config(
        tmp_path / "c.toml", providers={"openai": {"baseUrl": f"http://127.0.0.1:{free_port()}"}}
    )
    result = check_sync("openai", cfg, api_key=KEY)
    assert result.status == "unreachable"


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voicetui", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_health_cli_json_and_exit_code(
    openai_emulator_thread: Any, mistral_emulator_thread: Any, tmp_path: Path
) -> None:
    path = tmp_path / "c.toml"
    update_config(
        path,
        providers={
            "openai": {"baseUrl": openai_emulator_thread.base_url},
            "mistral": {"baseUrl": mistral_emulator_thread.base_url},
        },
    )
    env = dict(os.environ, OPENAI_API_KEY=KEY, MISTRAL_API_KEY=KEY + "m")
    proc = _cli(["--config", str(path), "health", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [r["provider"] for r in results] == ["ai-voice-conv.mistral", "ai-voice-conv.openai"]
    for r in results:
        assert set(r) == {"provider", "status", "latency_ms", "detail"}
        assert r["status"] == "ok" and isinstance(r["latency_ms"], int)
    # one provider failing -> exit 1; a single provider by alias
    mistral_emulator_thread.faults.stall_s = 1.2
    proc = _cli(["--config", str(path), "health", "--json", "--timeout-ms", "300"], env)
    assert proc.returncode == 1
    statuses = {r["provider"]: r["status"] for r in json.loads(proc.stdout)}
    assert statuses == {"ai-voice-conv.mistral": "timeout", "ai-voice-conv.openai": "ok"}
    proc = _cli(["--config", str(path), "health", "openai"], env)
    assert proc.returncode == 0 and proc.stdout.startswith("ai-voice-conv.openai")
    assert len(proc.stdout.strip().splitlines()) == 1
    for text in (proc.stdout, proc.stderr):
        assert KEY not in text


@pytest.mark.asyncio
async def test_timeout_comes_from_the_spec(
    emulators: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A registry whose OpenAI spec says healthCheck.timeoutMs = 300: check() without a
    # timeout_ms argument must time out after ~300 ms, not the real spec's 5000 ms.
    import dataclasses

    from voicetui import health
    from voicetui.specs.model import HealthCheck
    from voicetui.specs.registry import SpecRegistry, registry

    real = registry()
    source = real.source("openai")
    quick = dataclasses.replace(
        source.spec, health_check=HealthCheck(method="custom", timeout_ms=300)
    )
    reg = SpecRegistry([real.source("mistral"), dataclasses.replace(source, spec=quick)])
    monkeypatch.setattr(health, "registry", lambda: reg)
    cfg = _config(tmp_path, emulators)
    emulators["openai"].faults.stall_s = 1.0
    started = time.perf_counter()
    result = await check("openai", cfg, api_key=KEY)
    elapsed = time.perf_counter() - started
    assert result.status == "timeout" and "within 300 ms" in result.detail
    assert 0.25 < elapsed < 1.3
