"""Usage and quota: totals per provider per day in a small JSON file in the state dir.

The file (``usage.json``) is rewritten atomically (temp file, fsync, rename) under an
advisory lock, so the app and ``voicetui usage`` can read it at any time and two processes
adding at once never lose a count. Layout::

    {"version": 1,
     "days": {"<spec key>": {"2026-11-22": {"input_tokens": 0, ...}}},
     "rate_limits": {"<spec key>": {"tokens": {"limit": ..., "remaining": ...,
                                               "reset_seconds": ...}}}}
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from voicetui import paths
from voicetui.engine.events import Usage

log = logging.getLogger("voicetui.usage")

FILENAME = "usage.json"


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Totals for one provider on one day."""

    input_tokens: int = 0
    output_tokens: int = 0
    audio_seconds: float = 0.0
    requests: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def plus(self, event: Usage) -> UsageTotals:
        return UsageTotals(
            self.input_tokens + event.input_tokens,
            self.output_tokens + event.output_tokens,
            round(self.audio_seconds + event.audio_seconds, 3),
            self.requests + event.requests,
        )


def _today() -> str:
    return dt.date.today().isoformat()


class UsageStore:
    """Per-provider, per-day usage totals plus the latest rate limits."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory

    @property
    def path(self) -> Path:
        directory = self._directory or paths.state_dir()
        directory.mkdir(parents=True, exist_ok=True)
        return directory / FILENAME

    def add(self, event: Usage, *, day: str | None = None) -> None:
        """Add one Usage event to today's totals (and remember its rate limits)."""
        day = day or _today()
        with self._locked():
            data = self._read()
            if event.input_tokens or event.output_tokens or event.audio_seconds or event.requests:
                days = data.setdefault("days", {}).setdefault(event.provider, {})
                totals = _totals(days.get(day)).plus(event)
                days[day] = asdict(totals)
            if event.rate_limits:
                limits = data.setdefault("rate_limits", {}).setdefault(event.provider, {})
                limits.update(event.rate_limits)
            self._write(data)

    def today(self, spec_key: str) -> UsageTotals:
        """Today's totals for ``spec_key`` (zeros when nothing was used)."""
        return self.day(spec_key, _today())

    def day(self, spec_key: str, day: str) -> UsageTotals:
        return _totals(self._read().get("days", {}).get(spec_key, {}).get(day))

    def days(self, spec_key: str) -> dict[str, UsageTotals]:
        """Every recorded day of ``spec_key``, oldest first."""
        raw = self._read().get("days", {}).get(spec_key, {})
        return {d: _totals(raw[d]) for d in sorted(raw)}

    def providers(self) -> list[str]:
        data = self._read()
        return sorted(set(data.get("days", {})) | set(data.get("rate_limits", {})))

    def rate_limits(self, spec_key: str) -> dict[str, dict[str, float]]:
        """The latest limits the service reported (``rate_limits.updated``)."""
        limits: dict[str, dict[str, float]] = self._read().get("rate_limits", {}).get(spec_key, {})
        return limits

    # --- file handling ----------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": 1}
        except (OSError, json.JSONDecodeError) as exc:
            # a damaged file must not stop a conversation: start over, keep the bad copy
            log.warning("usage file unreadable (%s); starting fresh", exc)
            with contextlib.suppress(OSError):
                self.path.replace(self.path.with_suffix(".json.bad"))
            return {"version": 1}
        return data if isinstance(data, dict) else {"version": 1}

    def _write(self, data: dict[str, Any]) -> None:
        path = self.path
        fd, tmp = tempfile.mkstemp(prefix=".usage-", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.path.with_suffix(".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _totals(raw: Any) -> UsageTotals:
    if not isinstance(raw, dict):
        return UsageTotals()
    return UsageTotals(
        int(raw.get("input_tokens", 0)),
        int(raw.get("output_tokens", 0)),
        float(raw.get("audio_seconds", 0.0)),
        int(raw.get("requests", 0)),
    )


def cli_main(args: argparse.Namespace) -> int:
    """``voicetui usage [PROVIDER] [--json]``: today's and recent totals per provider."""
    store = UsageStore()
    provider = getattr(args, "provider", None)
    keys = [provider] if provider else store.providers()
    if getattr(args, "json", False):
        out = {
            key: {
                "today": asdict(store.today(key)),
                "days": {d: asdict(t) for d, t in store.days(key).items()},
                "rate_limits": store.rate_limits(key),
            }
            for key in keys
        }
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    if not keys:
        print("no usage recorded yet")
        return 0
    for key in keys:
        today = store.today(key)
        print(
            f"{key}: today {today.input_tokens} in / {today.output_tokens} out tokens, "
            f"{today.audio_seconds:.1f} s audio, {today.requests} requests"
        )
        for day, totals in list(store.days(key).items())[-7:]:
            print(
                f"  {day}  {totals.input_tokens:>9} in {totals.output_tokens:>9} out "
                f"{totals.audio_seconds:>8.1f} s {totals.requests:>6} req"
            )
        for name, limit in sorted(store.rate_limits(key).items()):
            remaining, cap = limit.get("remaining"), limit.get("limit")
            if remaining is not None and cap:
                print(f"  limit {name}: {remaining:g} of {cap:g} left")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli_main(argparse.Namespace(provider=None, json=False)))
