"""Helpers health probes share: HTTP statuses as :class:`ProbeFailure`, one-line details.

A provider's ``probe`` maps its SDK's errors to these; nothing here imports an SDK.
"""

from __future__ import annotations

import json
from typing import Any

from voicetui import logs
from voicetui.providers.base import ProbeFailure


def one_line(text: str, api_key: str, limit: int = 160) -> str:
    """``text`` on one line, at most ``limit`` characters, the key and secrets redacted."""
    text = logs.redact(text.replace(api_key, logs.REDACTED) if api_key else text)
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def server_message(body: Any) -> str:
    """The human part of an error body (``{error: {message}}``, ``{message}`` or
    ``{detail}``), or the raw text."""
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


def status_failure(code: int, headers: Any, body: Any, api_key: str, alias: str) -> ProbeFailure:
    """The failure an HTTP error status means for a health check."""
    if code in (401, 403):
        # Never echo the server's message here: some quote part of the rejected key.
        return ProbeFailure(
            "unauthorized", f"HTTP {code}: key rejected; set a valid one: voicetui keys set {alias}"
        )
    if code == 429:
        retry = ""
        if headers is not None:
            value = headers.get("retry-after-ms") or headers.get("retry-after")
            if value:
                unit = "ms" if headers.get("retry-after-ms") else "s"
                retry = f" (retry after {value} {unit})"
        msg = one_line(server_message(body), api_key, 100)
        return ProbeFailure(
            "rate_limited", f"HTTP 429: rate limited{retry}" + (f": {msg}" if msg else "")
        )
    msg = one_line(server_message(body), api_key, 120)
    return ProbeFailure("error", f"HTTP {code}" + (f": {msg}" if msg else ""))


def timed_out(base_url: str, timeout_ms: int) -> ProbeFailure:
    return ProbeFailure("timeout", f"no answer from {base_url} within {timeout_ms} ms")


def unreachable(base_url: str, why: str, api_key: str) -> ProbeFailure:
    return ProbeFailure(
        "unreachable", f"cannot connect to {base_url}: {one_line(why, api_key, 100)}"
    )
