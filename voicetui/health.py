"""Health checks per spec: one cheap authenticated call through the real SDK.

The spec says ``healthCheck: { method: 'custom', timeoutMs }``; the custom method is the
provider's own ``probe`` (the built-in ones list models) against the configured ``baseUrl``.
The whole call runs under ``asyncio.timeout(timeoutMs)``, so a check never outlives its
timeout by more than the cancellation itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from voicetui import logs
from voicetui.config import AppConfig
from voicetui.keys import KeyCommandFailed, KeyringUnavailable, KeyStore, key_problem
from voicetui.providers.base import ProbeFailure, ProviderError, get_provider
from voicetui.providers.catalog import Listing, catalog_for
from voicetui.providers.probe import one_line
from voicetui.specs.registry import registry

Status = Literal[
    "ok", "unauthorized", "rate_limited", "unreachable", "timeout", "no_key", "unavailable", "error"
]
STATUSES: tuple[Status, ...] = (
    "ok",
    "unauthorized",
    "rate_limited",
    "unreachable",
    "timeout",
    "no_key",
    "unavailable",  # the key works, but a configured model or voice is not available to it
    "error",
)


@dataclass(frozen=True, slots=True)
class HealthResult:
    provider: str  # spec key
    status: Status
    latency_ms: int | None  # None when no call was made (no key)
    detail: str  # one line, never containing the key
    # "unavailable": one message per missing model/voice ("voice ..." for the voice)
    missing: tuple[str, ...] = ()

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
    command = config.key_command(spec.key) if api_key is None else None
    store = keys or KeyStore()
    if api_key is None:
        try:
            # a command may run up to 10 s, a keyring call blocks on D-Bus: not on the loop
            resolved = await asyncio.to_thread(store.get, spec.key, command)
            api_key = resolved.value
            if resolved.source != "command":
                command = None  # the environment overrides it: nothing to refresh
        except (KeyringUnavailable, KeyCommandFailed) as err:
            return HealthResult(spec.key, "no_key", None, str(err))
        if not api_key:
            return HealthResult(
                spec.key,
                "no_key",
                None,
                f"no API key: run `voicetui keys set {alias}` or set {reg.api_key_env(spec.key)}",
            )
    logs.register_secret(api_key)
    problem = key_problem(api_key)
    if problem is not None:  # it could not even go into an HTTP header
        return HealthResult(spec.key, "no_key", None, f"{problem}; run `voicetui keys set {alias}`")
    options = config.provider_options(spec.key)
    base_url = str(options["baseUrl"]).rstrip("/")
    try:
        provider = get_provider(spec.key)
    except ProviderError as err:
        return HealthResult(spec.key, "error", None, str(err))
    # Import the SDK before the clock starts (imports are slow and not the service's fault).
    await asyncio.to_thread(provider.preload)
    started = time.perf_counter()
    status: Status = "ok"
    missing: tuple[str, ...] = ()
    # a provider with an ``inventory`` (the built-in ones) says what the account offers, so
    # the configured model(s) and voice are checked in the same call
    inventory: Inventory | None = getattr(provider, "inventory", None)
    try:
        async with asyncio.timeout(timeout / 1000):
            if inventory is None:
                detail = await provider.probe(base_url, api_key, timeout)
            else:
                voice = _voice_to_look_up(spec.key, options)
                listing = await inventory(base_url, api_key, timeout, voice)
                status, detail, missing = availability(spec.key, options, listing)
    except TimeoutError:
        status, detail = "timeout", f"no answer from {base_url} within {timeout} ms"
    except ProbeFailure as failure:
        status = next((s for s in STATUSES if s == failure.status), "error")
        detail = failure.detail
    except Exception as err:  # an SDK surprise: report it, never crash the caller
        status, detail = "error", f"{type(err).__name__}: {one_line(str(err), api_key, 120)}"
    latency = round((time.perf_counter() - started) * 1000)
    if status == "unauthorized" and command:
        # a managed key may have been rotated in the secret manager: read it once more
        try:
            fresh = (await asyncio.to_thread(store.refresh, spec.key, command)).value
        except KeyCommandFailed as err:
            return HealthResult(spec.key, "no_key", None, str(err))
        if fresh and fresh != api_key:
            return await check(spec_key, config, store, api_key=fresh, timeout_ms=timeout_ms)
    return HealthResult(spec.key, status, latency, detail, missing)


Inventory = Callable[[str, str, int, str], Awaitable[Listing]]


def _voice_to_look_up(spec_key: str, options: Mapping[str, Any]) -> str:
    """The configured voice when the catalogue does not document it (else "")."""
    voice = str(options.get("defaultVoice") or "")
    catalog = catalog_for(spec_key)
    return "" if catalog is None or catalog.voice(voice) is not None else voice


def availability(
    spec_key: str, options: Mapping[str, Any], listing: Listing
) -> tuple[Status, str, tuple[str, ...]]:
    """Whether the configured model(s) and voice are available to the key: status, one
    line naming what is missing and what to use instead, and each problem on its own."""
    catalog = catalog_for(spec_key)
    problems: list[str] = []
    notes: list[str] = []
    today = dt.date.today().isoformat()
    for option in catalog.model_options if catalog else ("model",):
        model = options.get(option)
        if not isinstance(model, str):
            continue
        info = catalog.find(model) if catalog else None
        gone = listing.shutdown.get(model, "9999") <= today
        if model not in listing.ids or gone:
            repl = catalog.replacement_for(model) if catalog and info else None
            if repl is None and catalog is not None:
                repl = catalog.defaults.get(option)
            use = f"; use {repl!r}" if repl and repl != model else ""
            problems.append(f"{option} {model!r} is not available to this key{use}")
        elif model in listing.shutdown:
            notes.append(f"{model} shuts down {listing.shutdown[model]}")
        elif info is not None and info.status_on() == "deprecated" and info.shutdown:
            notes.append(f"{model} shuts down {info.shutdown.isoformat()}")
    voice = str(options.get("defaultVoice") or "")
    known = catalog is not None and catalog.voice(voice) is not None
    custom = catalog is not None and catalog.voices_are_open and voice.startswith("voice_")
    if listing.voice_found is False or (listing.voice_found is None and not (known or custom)):
        default = catalog.defaults.get("defaultVoice") if catalog else None
        use = f"; use {default!r}" if default else ""
        problems.append(f"voice {voice!r} is not available{use}")
    if problems:
        return "unavailable", "; ".join(problems), tuple(problems)
    note = f" ({'; '.join(notes)})" if notes else ""
    ok = f"{listing.count} models listed; configured models and voice available{note}"
    return "ok", ok, ()


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
