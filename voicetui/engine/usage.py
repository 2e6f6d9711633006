"""Usage and quota: totals per provider per day in a small JSON file in the state dir.

The file (``usage.json``) is rewritten atomically (:func:`voicetui.fileio.atomic_write`)
under a cross-process lock (``filelock``), so the app and ``voicetui usage`` can read it at
any time and two processes adding at once never lose a count. :meth:`UsageStore.add` only
adds to totals in memory and queues one flush on the disk-writer thread (coalesced: the
Usage events of one turn end in one write), so the event loop never waits on the disk.
Layout::

    {"version": 1,
     "days": {"<spec key>": {"2026-11-22": {"input_tokens": 0, ...}}},
     "rate_limits": {"<spec key>": {"tokens": {"limit": ..., "remaining": ...,
                                               "reset_seconds": ...}}}}
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import filelock

from voicetui import fileio, paths
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
        self._lock = threading.Lock()  # guards the pending totals
        self._io = threading.Lock()  # a read waits for a flush in progress
        # not yet on disk: (provider, day) -> totals to add; provider -> latest limits
        self._pending: dict[tuple[str, str], UsageTotals] = {}
        self._pending_limits: dict[str, dict[str, Any]] = {}
        self._flush_queued = False
        self.failure: str | None = None

    @property
    def path(self) -> Path:
        """The file (its directory is created by the first write, not by reading)."""
        directory = self._directory or paths.state_location()
        return directory / FILENAME

    def add(self, event: Usage, *, day: str | None = None) -> None:
        """Add one Usage event to today's totals (and remember its rate limits).

        Never touches the disk on the caller's thread: the write is queued (see module doc).
        """
        day = day or _today()
        with self._lock:
            if event.input_tokens or event.output_tokens or event.audio_seconds or event.requests:
                key = (event.provider, day)
                self._pending[key] = self._pending.get(key, UsageTotals()).plus(event)
            if event.rate_limits:
                self._pending_limits.setdefault(event.provider, {}).update(event.rate_limits)
            if self._flush_queued:
                return
            self._flush_queued = True
        fileio.writer().submit(self.flush)

    def flush(self) -> None:
        """Write what :meth:`add` gathered (on the writer thread; callable from anywhere)."""
        with self._io:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            limits, self._pending_limits = self._pending_limits, {}
            self._flush_queued = False
        if not pending and not limits:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with self._locked():
                data = self._read_file()
                _merge(data, pending, limits)
                fileio.atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True).encode())
        except OSError as exc:
            with self._lock:  # keep the counts: a later flush may find room
                for key, totals in pending.items():
                    self._pending[key] = _add(self._pending.get(key, UsageTotals()), totals)
                for provider, lim in limits.items():
                    self._pending_limits.setdefault(provider, {}).update(lim)
            if self.failure is None:
                self.failure = f"usage not saved: {fileio.reason(exc)} ({exc.filename or ''})"
                log.error("%s", self.failure)

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
        """The file plus what is still in memory."""
        with self._io:
            data = self._read_file()
            with self._lock:
                _merge(data, dict(self._pending), dict(self._pending_limits))
        return data

    def _read_file(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return {"version": 1}
        except PermissionError as exc:
            log.warning("usage file unreadable (%s)", exc)
            return {"version": 1}
        except (OSError, ValueError) as exc:
            # a damaged file must not stop a conversation: start over, keep the bad copy
            log.warning("usage file unreadable (%s); starting fresh", exc)
            with contextlib.suppress(OSError):
                self.path.replace(self.path.with_suffix(".json.bad"))
            return {"version": 1}
        return data if isinstance(data, dict) else {"version": 1}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # filelock: the same cross-process lock on POSIX and Windows
        with filelock.FileLock(str(self.path.with_suffix(".lock")), mode=0o600):
            yield


def _add(a: UsageTotals, b: UsageTotals) -> UsageTotals:
    return UsageTotals(
        a.input_tokens + b.input_tokens,
        a.output_tokens + b.output_tokens,
        round(a.audio_seconds + b.audio_seconds, 3),
        a.requests + b.requests,
    )


def _merge(
    data: dict[str, Any],
    pending: dict[tuple[str, str], UsageTotals],
    limits: dict[str, dict[str, Any]],
) -> None:
    for (provider, day), totals in pending.items():
        days = data.setdefault("days", {}).setdefault(provider, {})
        days[day] = asdict(_add(_totals(days.get(day)), totals))
    for provider, lim in limits.items():
        data.setdefault("rate_limits", {}).setdefault(provider, {}).update(lim)


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
    fileio.writer().drain()  # this process's queued flushes first (tests, the console)
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
