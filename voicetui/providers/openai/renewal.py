"""When to renew an OpenAI Realtime session, and how fast to reconnect: monotonic clocks only.

The service caps a Realtime WebSocket session at 60 minutes ("Realtime sessions can now last
up to 60 minutes, up from 30", OpenAI's developer notes on the GA Realtime API, quoted at
community.openai.com/t/realtime-api-session-timeout-post-ga/1357331) and says when in
``session.created`` ``session.expires_at``: epoch seconds *on the server's clock*. Comparing
that with the local wall clock breaks whenever the two disagree (a laptop clock an hour off
renewed 1,245 times in 30 s). So the lifetime is read with one clock, the server's:
``expires_at`` minus the ``Date`` header of the same server's WebSocket handshake, and the
renewal is scheduled on ``time.monotonic()`` from the moment that handshake completed. When no
credible lifetime can be read, the documented cap is used; a session never renews sooner than
:data:`RENEW_FLOOR_S` after it started.

Reconnects (planned or not) go through :class:`ReconnectPacer`: exponential backoff over
consecutive failures (a session that dies young counts as one) with up to 25 % jitter, and
at most ``per_window`` attempts in any ``window_s`` whatever the server says.
"""

from __future__ import annotations

import email.utils
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MAX_SESSION_S = 3600.0
RENEW_FLOOR_S = 5.0
YOUNG_S = 10.0  # an unplanned end this soon after opening counts as a failure


def server_lifetime_s(conn: Any, expires_at: float | None) -> float | None:
    """``expires_at`` minus the server's clock at the handshake (its ``Date`` header): the
    session's lifetime in seconds by the server's own clock, or ``None`` when either is
    missing or the result is not credible (not positive, or far beyond the documented cap)."""
    if expires_at is None:
        return None
    # the SDK keeps the websockets connection, whose handshake response has the headers
    response = getattr(getattr(conn, "_connection", None), "response", None)
    headers = getattr(response, "headers", None)
    date = headers.get("Date") if headers is not None else None
    if not date:
        return None
    try:
        server_now = email.utils.parsedate_to_datetime(str(date)).timestamp()
    except (TypeError, ValueError):
        return None
    lifetime = expires_at - server_now
    return lifetime if 0 < lifetime <= 2 * MAX_SESSION_S else None


def backoff_s(base_s: float, failures: int, cap_s: float, jitter: float = 0.25) -> float:
    """``base * 2**failures``, capped, times ``1 + up to jitter`` (so many clients do not
    retry in step)."""
    delay: float = min(base_s * 2**failures, cap_s) * (1.0 + random.uniform(0.0, jitter))
    return delay


def renewal_schedule(lifetime_s: float | None, margin_s: float) -> tuple[float, float]:
    """``(renew_after, hard_limit)`` in seconds from the session's start: try to renew at a
    quiet moment from ``renew_after`` on, and no later than ``hard_limit``. The margin shrinks
    for short sessions (never more than a quarter of the lifetime) so they are not renewed
    as soon as they open."""
    lifetime = lifetime_s if lifetime_s is not None else MAX_SESSION_S
    margin = min(margin_s, lifetime / 4)
    renew_after = max(lifetime - margin, RENEW_FLOOR_S)
    return renew_after, max(lifetime - 0.5, renew_after)


@dataclass
class ReconnectPacer:
    """How long to wait before the next reconnect attempt."""

    base_s: float = 1.0
    cap_s: float = 4.0
    per_window: int = 5
    window_s: float = 60.0
    jitter: float = 0.25  # backoff x (1 + up to this), so many clients do not retry in step
    failures: int = 0  # consecutive: failed attempts, and reconnected sessions that died young
    _attempts: deque[float] = field(default_factory=deque)  # monotonic starts, last window
    _reconnected = False  # the current session came from a reconnect

    def delay_s(self, now: float, *, planned: bool) -> float:
        """The wait before an attempt at ``now``: none for a planned renewal with no failure
        behind it, else ``base * 2**failures`` (capped, plus jitter); and at least as long as it
        takes for the attempts of the last ``window_s`` to number fewer than ``per_window``."""
        backoff = 0.0
        if not planned or self.failures:
            backoff = backoff_s(self.base_s, self.failures, self.cap_s, self.jitter)
        while self._attempts and now - self._attempts[0] >= self.window_s:
            self._attempts.popleft()
        window_wait = 0.0
        if len(self._attempts) >= self.per_window:
            window_wait = self._attempts[-self.per_window] + self.window_s - now
        return max(backoff, window_wait, 0.0)

    def attempt(self, now: float) -> None:
        """An attempt starts now."""
        self._attempts.append(now)
        self._reconnected = True

    def attempt_failed(self) -> None:
        self.failures += 1

    def session_ended(self, lived_s: float, *, planned: bool) -> None:
        """The current session ended after ``lived_s``. A reconnected session that dies young
        (not by our renewal) is one more failure, so a loop of them backs off; a session that
        lived resets the count."""
        if lived_s >= YOUNG_S:
            self.failures = 0
        elif not planned and self._reconnected:
            self.failures += 1
