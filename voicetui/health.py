"""Health checks per spec: one cheap authenticated call through the real SDK.

The spec says ``healthCheck: { method: 'custom', timeoutMs }``; the custom method here is a
model listing (Mistral ``models.list_async``, OpenAI ``models.list``) against the configured
``baseUrl``. SDK retries are off and the whole call runs under ``asyncio.timeout(timeoutMs)``,
so a check never outlives its timeout by more than the cancellation itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from voicetui import logs
from voicetui.config import AppConfig
from voicetui.keys import KeyCommandFailed, KeyringUnavailable, KeyStore
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


class _Failure(Exception):
    def __init__(self, status: Status, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _one_line(text: str, api_key: str, limit: int = 160) -> str:
    text = logs.redact(text.replace(api_key, logs.REDACTED) if api_key else text)
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _server_message(body: Any) -> str:
    """The human part of an error body (OpenAI ``{error: {message}}``, Mistral ``{message}``
    or ``{detail}``), or the raw text."""
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except ValueError:
            return body.decode(errors="replace") if isinstance(body, bytes) else body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            for key in ("message", "detail"):
                if inner.get(key):
                    return str(inner[key])
        elif isinstance(inner, str):
            return inner
    return "" if body is None else str(body)


def _status_failure(code: int, headers: Any, body: Any, api_key: str, alias: str) -> _Failure:
    if code in (401, 403):
        # Never echo the server's message here: some quote part of the rejected key.
        return _Failure(
            "unauthorized", f"HTTP {code}: key rejected; set a valid one: voicetui keys set {alias}"
        )
    if code == 429:
        retry = ""
        if headers is not None:
            value = headers.get("retry-after-ms") or headers.get("retry-after")
            if value:
                unit = "ms" if headers.get("retry-after-ms") else "s"
                retry = f" (retry after {value} {unit})"
        msg = _one_line(_server_message(body), api_key, 100)
        return _Failure(
            "rate_limited", f"HTTP 429: rate limited{retry}" + (f": {msg}" if msg else "")
        )
    msg = _one_line(_server_message(body), api_key, 120)
    return _Failure("error", f"HTTP {code}" + (f": {msg}" if msg else ""))


async def _probe_openai(base_url: str, api_key: str, timeout_ms: int, alias: str) -> str:
    import openai

    try:
        async with openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url + "/v1",
            max_retries=0,
            timeout=timeout_ms / 1000,
        ) as client:
            page = await client.models.list()
            count = len(page.data)
    except openai.APITimeoutError:
        raise _Failure("timeout", f"no answer from {base_url} within {timeout_ms} ms") from None
    except openai.APIConnectionError as err:
        cause = err.__cause__ or err
        raise _Failure(
            "unreachable", f"cannot connect to {base_url}: {_one_line(str(cause), api_key, 100)}"
        ) from None
    except openai.APIStatusError as err:
        raise _status_failure(
            err.status_code, err.response.headers, err.body, api_key, alias
        ) from None
    return f"{count} models listed"


async def _probe_mistral(base_url: str, api_key: str, timeout_ms: int, alias: str) -> str:
    import httpx2
    from mistralai.client import Mistral
    from mistralai.client.errors import MistralError, NoResponseError

    try:
        async with Mistral(api_key=api_key, server_url=base_url, timeout_ms=timeout_ms) as client:
            listing = await client.models.list_async()
            count = len(listing.data or [])
    except httpx2.TimeoutException:
        raise _Failure("timeout", f"no answer from {base_url} within {timeout_ms} ms") from None
    except (httpx2.TransportError, NoResponseError) as err:
        raise _Failure(
            "unreachable",
            f"cannot connect to {base_url}: "
            + _one_line(str(err) or type(err).__name__, api_key, 100),
        ) from None
    except MistralError as err:
        raise _status_failure(err.status_code, err.headers, err.body, api_key, alias) from None
    return f"{count} models listed"


Probe = Callable[[str, str, int, str], Awaitable[str]]
PROBES: dict[str, Probe] = {
    "ai-voice-conv.openai": _probe_openai,
    "ai-voice-conv.mistral": _probe_mistral,
}


def _preload(spec_key: str) -> None:
    """Import the SDK before the clock starts (imports are slow and not the service's fault)."""
    if spec_key == "ai-voice-conv.openai":
        import openai  # noqa: F401
    elif spec_key == "ai-voice-conv.mistral":
        import mistralai.client  # noqa: F401


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
    base_url = str(config.provider_options(spec.key)["baseUrl"]).rstrip("/")
    probe = PROBES[spec.key]
    _preload(spec.key)
    started = time.perf_counter()
    status: Status = "ok"
    try:
        async with asyncio.timeout(timeout / 1000):
            detail = await probe(base_url, api_key, timeout, alias)
    except TimeoutError:
        status, detail = "timeout", f"no answer from {base_url} within {timeout} ms"
    except _Failure as failure:
        status, detail = failure.status, failure.detail
    except Exception as err:  # an SDK surprise: report it, never crash the caller
        status, detail = "error", f"{type(err).__name__}: {_one_line(str(err), api_key, 120)}"
    latency = round((time.perf_counter() - started) * 1000)
    if status == "unauthorized" and command:
        # a managed key may have been rotated in the secret manager: read it once more
        try:
            fresh = (await asyncio.to_thread(store.refresh, spec.key, command)).value
        except KeyCommandFailed as err:
            return HealthResult(spec.key, "no_key", None, str(err))
        if fresh and fresh != api_key:
            return await check(spec_key, config, store, api_key=fresh, timeout_ms=timeout_ms)
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
