"""Task helpers that keep cancellation honest.

``contextlib.suppress(BaseException)`` around ``await task`` swallows the *waiter's* own
cancellation (and KeyboardInterrupt, SystemExit). :func:`cancel_and_wait` cancels a task and
waits for it with :func:`asyncio.wait`, which never raises the task's outcome: the task's
cancellation or failure stays inside it, while a cancellation of the caller propagates.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` (if still running) and wait until it has finished."""
    if task.done():
        return
    task.cancel()
    await asyncio.wait({task})


def outcome(task: asyncio.Future[Any]) -> BaseException | None:
    """The finished ``task``'s exception (``None`` if it returned or was cancelled); marks
    the exception retrieved so asyncio does not log it as never retrieved."""
    if not task.done() or task.cancelled():
        return None
    return task.exception()
