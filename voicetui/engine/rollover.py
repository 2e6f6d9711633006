"""Conversations past the session limit: when to roll over, and what to seed the new session with.

With ``onMaxDuration = "rollover"`` the engine does not end at ``maxSessionDurationSeconds``:
in the last part of the session (the *window*, a quarter of the limit, at most a minute) it
waits for a quiet moment between turns — no reply generating or playing, the user not
speaking, no push-to-talk key down — and asks the provider session to :meth:`renew` itself
(:class:`voicetui.providers.base.RenewableSession`): a new provider session, seeded with the
conversation so far, replaces the old one. The session clock then restarts. Nothing is ever
cut mid-reply: if the limit passes while a turn is in progress, the rollover waits for its end.

Seeding is the provider's business (Mistral keeps the history on the service under the same
``conversation_id``); for a provider that replays the conversation as items,
:func:`seed_messages` bounds what is replayed by a character budget, condensing the oldest
part into one summary message when the whole would not fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

WINDOW_FRACTION = 0.25  # the rollover window: the last quarter of the limit...
MAX_WINDOW_S = 60.0  # ...but at most the last minute
SUMMARY_LINE_CHARS = 160  # each condensed line keeps at most this much of its text
RETRY_S = 2.0  # a renewal that failed for a passing reason is tried again (at most) this later

Role = Literal["user", "assistant", "system"]


@dataclass(frozen=True, slots=True)
class SeedMessage:
    role: Role
    text: str


def window_s(max_s: float) -> float:
    """How long before the limit the engine starts looking for a quiet moment."""
    return min(max_s * WINDOW_FRACTION, MAX_WINDOW_S)


@dataclass(slots=True)
class RolloverClock:
    """Decides when the engine renews the provider session (times in seconds).

    ``failed`` is set when a renewal did not work for good: the engine then falls back to
    the old behaviour (warning, then a clean end at the limit) for the rest of the session.
    """

    max_s: float
    sessions: int = 1  # provider sessions so far
    failed: bool = False
    not_before_s: float = 0.0  # after a passing failure: the next try, in elapsed seconds

    def due(self, elapsed_s: float, *, busy: bool) -> bool:
        """True when the engine should renew now: inside the window and between turns."""
        if self.failed or self.max_s <= 0 or busy or elapsed_s < self.not_before_s:
            return False
        return elapsed_s >= self.max_s - window_s(self.max_s)

    def due_at_s(self) -> float:
        """The elapsed time from which :meth:`due` can be true (between turns)."""
        return max(self.max_s - window_s(self.max_s), self.not_before_s)

    def renewal_failed(self, elapsed_s: float, *, retryable: bool) -> bool:
        """Record a failed renewal; True when that is final (not retryable, or the limit
        has been reached), False when it is tried again shortly (:data:`RETRY_S` at most)."""
        retry_s = min(RETRY_S, window_s(self.max_s) / 4)  # several tries fit the window
        if retryable and elapsed_s + retry_s < self.max_s:
            self.not_before_s = elapsed_s + retry_s
            return False
        self.failed = True
        return True

    def renewed(self) -> None:
        """A new provider session took over (its clock starts at 0)."""
        self.sessions += 1
        self.not_before_s = 0.0


def seed_messages(
    history: Sequence[tuple[str, str]], budget_chars: int
) -> tuple[list[SeedMessage], Literal["items", "summary"]]:
    """The messages that re-create ``history`` (``(role, text)``, oldest first) on a new
    session: all of it when it fits in ``budget_chars``; otherwise the newest messages that
    fit in half the budget verbatim, preceded by one system message condensing the older
    ones (each cut to :data:`SUMMARY_LINE_CHARS`, the oldest dropped first when even the
    condensed lines do not fit)."""
    entries = [
        SeedMessage("assistant" if role == "assistant" else "user", text.strip())
        for role, text in history
        if text.strip()
    ]
    if sum(len(m.text) for m in entries) <= budget_chars:
        return entries, "items"
    recent: list[SeedMessage] = []
    used = 0
    for message in reversed(entries):
        if used + len(message.text) > budget_chars // 2:
            break
        recent.insert(0, message)
        used += len(message.text)
    older = entries[: len(entries) - len(recent)]
    head = "Summary of the earlier conversation (condensed):"
    lines: list[str] = []
    room = budget_chars - used - len(head)
    for message in reversed(older):  # newest of the old first: those matter most
        text = message.text
        if len(text) > SUMMARY_LINE_CHARS:
            text = text[: SUMMARY_LINE_CHARS - 1].rstrip() + "…"
        line = f"- {'User' if message.role == 'user' else 'Assistant'}: {text}"
        if len(line) + 1 > room:
            break
        lines.insert(0, line)
        room -= len(line) + 1
    summary = SeedMessage("system", "\n".join([head, *lines]))
    return [summary, *recent], "summary"
