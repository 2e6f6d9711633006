"""Health checks per spec: one cheap authenticated call through the real SDK.

The spec says ``healthCheck: { method: 'custom', timeoutMs }``; the custom method is the
provider's own ``probe`` (the built-in ones list models) against the configured ``baseUrl``.
The whole call runs under ``asyncio.timeout(timeoutMs)``, so a check never outlives its
timeout by more than the cancellation itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from voicetui import logs
from voicetui.config import AppConfig
from voicetui.keys import KeyringUnavailable, KeyStore
from voicetui.providers.base import ProbeFailure, ProviderError, get_provider
from voicetui.providers.probe import one_line
from voicetui.specs.registry import registry

Status = Literal["ok", "unauthorized", "rate_limited", "unreachable", "timeout", "no_key", "error"]
STATUSES: tuple[Status, ...] = (
    "ok",
    "unauthorized",
    "rate_limited",
    "unreachable",
    "timeout",
    "no_key",
    "error",
)


@dataclass(frozen=True, slots=True)
class HealthResult:
    provider: str  # spec key
    status: Status
    latency_ms: int | None  # None when no call was made (no key)
    detail: str  # one line, never containing the key

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "detail": self.detail,
        }


async def check(
    spec_key: str,
    config: AppConfig,
    keys: KeyStore | None = None,
    *,
    api_key: str | None = None,
    timeout_ms: int | None = None,
) -> HealthResult:
    """Check one provider (key or alias). ``api_key`` overrides the key store (rotation checks
    a new key); ``timeout_ms`` overrides the spec's ``healthCheck.timeoutMs``. Never raises
    for service, network or keyring problems: they become the result's status."""
    reg = registry()
    spec = reg.get(spec_key)
    alias = reg.alias(spec.key)
    timeout = timeout_ms if timeout_ms is not None else spec.health_check.timeout_ms
    if api_key is None:
        try:
            api_key = (keys or KeyStore()).get(spec.key).value
        except KeyringUnavailable as err:
            return HealthResult(spec.key, "no_key", None, str(err))
        if not api_key:
            return HealthResult(
                spec.key,
                "no_key",
                None,
                f"no API key: run `voicetui keys set {alias}` or set {reg.api_key_env(spec.key)}",
            )
    logs.register_secret(api_key)
    base_url = str(config.provider_options(spec.key)["baseUrl"]).rstrip("/")
    try:
        provider = get_provider(spec.key)
    except ProviderError as err:
        return HealthResult(spec.key, "error", None, str(err))
    # Import the SDK before the clock starts (imports are slow and not the service's fault).
    await asyncio.to_thread(provider.preload)
    started = time.perf_counter()
    status: Status = "ok"
    try:
        async with asyncio.timeout(timeout / 1000):
            detail = await provider.probe(base_url, api_key, timeout)
    except TimeoutError:
        status, detail = "timeout", f"no answer from {base_url} within {timeout} ms"
    except ProbeFailure as failure:
        status = next((s for s in STATUSES if s == failure.status), "error")
        detail = failure.detail
    except Exception as err:  # an SDK surprise: report it, never crash the caller
        status, detail = "error", f"{type(err).__name__}: {one_line(str(err), api_key, 120)}"
    latency = round((time.perf_counter() - started) * 1000)
    return HealthResult(spec.key, status, latency, detail)


async def check_all(
    config: AppConfig,
    keys: KeyStore | None = None,
    spec_keys: Sequence[str] | None = None,
    *,
    timeout_ms: int | None = None,
) -> list[HealthResult]:
    """Check several providers (default: every spec) concurrently, in key order."""
    names = list(spec_keys) if spec_keys else registry().keys()
    checks = (check(name, config, keys, timeout_ms=timeout_ms) for name in names)
    return list(await asyncio.gather(*checks))


def check_sync(
    spec_key: str,
    config: AppConfig,
    keys: KeyStore | None = None,
    *,
    api_key: str | None = None,
    timeout_ms: int | None = None,
) -> HealthResult:
    """:func:`check` for synchronous callers (the CLI)."""
    return asyncio.run(check(spec_key, config, keys, api_key=api_key, timeout_ms=timeout_ms))


def check_all_sync(
    config: AppConfig,
    keys: KeyStore | None = None,
    spec_keys: Sequence[str] | None = None,
    *,
    timeout_ms: int | None = None,
) -> list[HealthResult]:
    """:func:`check_all` for synchronous callers."""
    return asyncio.run(check_all(config, keys, spec_keys, timeout_ms=timeout_ms))
