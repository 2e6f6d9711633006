"""Turn the SDK's many exception types into :class:`ProviderError`, and retry what is worth it.

The Mistral SDK raises differently per channel (wire reference §12): REST → ``MistralError``
subclasses carrying ``status_code`` and ``headers``; transport → bare ``httpx2`` errors;
realtime sockets → ``Realtime*Exception`` (an HTTP status only inside the message) or raw
``websockets`` close errors. :func:`classify` maps all of them to one error with a one-line
message; :func:`call_with_retries` retries 429 / 5xx / network failures with exponential
backoff, honouring ``retry-after-ms`` / ``Retry-After``, and never retries a 401.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from voicetui.providers.base import ProviderError

T = TypeVar("T")

KEY_HINT = "set a valid key with `voicetui keys set mistral`"
_HTTP_IN_MESSAGE = re.compile(r"HTTP (\d{3})")
# how a vanished agent or conversation may be reported besides a 404
_GONE = re.compile(
    r"(agent|conversation)\b.{0,80}\b(not found|does not exist|unknown|deleted)", re.I
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff schedule: ``base_s * 2**n`` (+ up to 20 % jitter), capped at ``cap_s``."""

    attempts: int = 4  # total tries, first one included
    base_s: float = 0.5
    cap_s: float = 8.0
    max_retry_after_s: float = 30.0  # a longer server wish is an error, not a wait

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to sleep before try number ``attempt + 1`` (``attempt`` starts at 1)."""
        if retry_after is not None:
            return max(0.0, retry_after)
        backoff: float = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return backoff * (1.0 + 0.2 * random.random())


def status_of(exc: BaseException) -> int | None:
    """The HTTP status behind an SDK exception, when there is one."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    match = _HTTP_IN_MESSAGE.search(str(exc))
    if match and type(exc).__name__.startswith("Realtime"):
        return int(match.group(1))
    return None


def retry_after_s(exc: BaseException) -> float | None:
    """The server's requested wait from ``retry-after-ms`` or ``Retry-After``, if any."""
    headers: Any = getattr(exc, "headers", None)
    if headers is None:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis:
            return float(millis) / 1000.0
        value = headers.get("retry-after")
    except (AttributeError, ValueError, TypeError):
        return None
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(str(value))
        return max(0.0, parsed.timestamp() - time.time())


def _is_network_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    if module.startswith(("httpx2", "httpx", "websockets")):
        return True
    return isinstance(exc, OSError | asyncio.TimeoutError | EOFError)


def classify(exc: BaseException, *, what: str = "Mistral") -> ProviderError:
    """One :class:`ProviderError` with a one-line message for any SDK/network failure."""
    if isinstance(exc, ProviderError):
        return exc
    status = status_of(exc)
    if status == 401:
        return ProviderError(
            f"Mistral rejected the API key (HTTP 401) during {what}; {KEY_HINT}",
            code="key_rejected",
        )
    if status == 429:
        return ProviderError(
            f"Mistral rate limit reached during {what} (HTTP 429); wait a moment and retry",
            code="rate_limited",
            retryable=True,
        )
    if status is not None and status >= 500:
        return ProviderError(
            f"Mistral server error during {what} (HTTP {status}); try again shortly",
            code="server",
            retryable=True,
        )
    body = str(getattr(exc, "body", "") or "")
    if status == 404 or (status in (400, 422) and _GONE.search(body)):
        return ProviderError(f"Mistral: not found during {what} (HTTP {status})", code="not_found")
    if status is not None:
        detail = _short(getattr(exc, "body", "") or str(exc))
        return ProviderError(
            f"Mistral refused the request during {what} (HTTP {status}): {detail}",
            code="protocol",
        )
    name = type(exc).__name__
    if name in ("RealtimeTranscriptionException", "RealtimeSpeechException") or (
        _is_network_error(exc)
    ):
        return ProviderError(
            f"cannot reach Mistral during {what} ({name}: {_short(str(exc))}); "
            "check the network or baseUrl",
            code="network",
            retryable=True,
        )
    return ProviderError(f"Mistral {what} failed ({name}: {_short(str(exc))})", code="protocol")


def reraise_if_cancelling() -> None:
    """Re-raise a swallowed cancellation.

    The SDK's realtime ``events()`` iterators catch ``CancelledError`` and just end, so a
    cancelled task would carry on after its ``async for``; call this right after such loops.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _short(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


async def call_with_retries(
    op: Callable[[], Awaitable[T]],
    *,
    what: str,
    policy: RetryPolicy | None = None,
    log: logging.Logger | None = None,
    on_retry: Callable[[int, float, ProviderError], None] | None = None,
) -> T:
    """Run ``op``; on a retryable failure sleep and try again, up to ``policy.attempts``.

    Raises the classified :class:`ProviderError` when giving up (its message says so).
    """
    policy = policy or RetryPolicy()
    log = log or logging.getLogger("voicetui.provider.mistral")
    attempt = 0
    while True:
        attempt += 1
        try:
            return await op()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            err = classify(exc, what=what)
            wait = retry_after_s(exc)
            if not err.retryable or attempt >= policy.attempts:
                if err.retryable:
                    err = ProviderError(f"{err} — gave up after {attempt} attempts", code=err.code)
                raise err from exc
            if wait is not None and wait > policy.max_retry_after_s:
                raise ProviderError(
                    f"{err} — the service asks to wait {wait:.0f} s", code=err.code
                ) from exc
            delay = policy.delay(attempt, wait)
            log.warning("%s failed (%s); retry %d in %.2f s", what, err.code, attempt, delay)
            if on_retry is not None:
                on_retry(attempt, delay, err)
            await asyncio.sleep(delay)
