"""OpenAI session renewal on the monotonic clock, whatever the server's wall clock says.

The emulator's ``clock_skew_s`` puts the server's clock an hour ahead or behind: its
``expires_at`` and its handshake ``Date`` header both carry the skew, as a real server's would.
The old renewal compared ``expires_at`` with the local clock and, with the server an hour
behind, reconnected in a tight loop (1,245 times in 30 s). Now the lifetime is read on the
server's clock alone and renewal runs on ``time.monotonic()`` from the handshake.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from test_openai_provider import Run, emu, settings_for, write_clip

from voicetui.engine.events import ErrorEvent, Reconnected, Reconnecting, UserTranscript
from voicetui.providers.openai.renewal import (
    RENEW_FLOOR_S,
    ReconnectPacer,
    renewal_schedule,
)
from voicetui.testing.emulators.common import Turn
from voicetui.testing.emulators.openai import OpenAIEmulator

__all__ = ["emu"]  # the strict emulator fixture, shared with test_openai_provider

pytestmark = pytest.mark.timeout(90)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "skew_s",
    # one direction in `make test`, both in `make test-soak` (17 s each, real time)
    [pytest.param(-3600.0, marks=pytest.mark.soak), 3600.0],
    ids=["server-behind", "server-ahead"],
)
async def test_skewed_server_clock_renews_on_the_sessions_own_schedule(
    emu: OpenAIEmulator, tmp_path: Path, skew_s: float
) -> None:
    emu.clock_skew_s = skew_s
    emu.session_max_s = 8.0  # short, so renewals happen within the test: one per ~6 s
    emu.script.turns = [
        Turn(user_text="Hello there.", reply="Hi, good to hear you."),
        Turn(user_text="And then?", reply="Then we carry on."),
        Turn(user_text="One more thing.", reply="Of course, go ahead."),
    ]
    # turns at ~0.3 s, ~7.9 s and ~15.4 s: each inside one ~6 s session
    clip = write_clip(
        tmp_path / "q.wav", 0.3, "Hello there", 7.0, "And then", 7.0, "One more thing", 0.5
    )
    run = Run(emu, tmp_path, settings_for(emu, "server_vad"), clip, realtime=True)
    run.provider.reconnect_base_delay_s = 1.0  # the real backoff
    started = time.monotonic()
    ended = await run.run(limit_s=60)
    elapsed = time.monotonic() - started

    assert ended.code == "input_finished", run.of(ErrorEvent)
    reconnects = run.of(Reconnecting)
    # one renewal per session lifetime, planned before the server's cap: no loop
    assert 2 <= len(reconnects) <= 1 + elapsed / (8.0 - 2.0), (elapsed, reconnects)
    assert len(reconnects) <= 5  # within 60 s, whatever the server says
    assert all("renewing the session" in r.reason for r in reconnects), reconnects
    assert all(r.delay_s == 0 for r in reconnects)
    # each renewal reconnected, but one the end of the run overtook (the engine was closing)
    reconnected = run.of(Reconnected)
    assert len(reconnected) in (len(reconnects), len(reconnects) - 1)
    if len(reconnected) < len(reconnects):
        assert reconnects[-1].at >= reconnected[-1].at
        assert reconnects[-1].at >= run.of(UserTranscript)[-1].at  # after the last turn
    gaps = [b.at - a.at for a, b in itertools.pairwise(reconnects)]
    assert all(gap >= RENEW_FLOOR_S for gap in gaps), gaps
    assert run.lines() == [
        ("user", "Hello there."),
        ("assistant", "Hi, good to hear you."),
        ("user", "And then?"),
        ("assistant", "Then we carry on."),
        ("user", "One more thing."),
        ("assistant", "Of course, go ahead."),
    ]


@pytest.mark.asyncio
@pytest.mark.soak  # 17 s of real time; the renewal floor is also covered by the unit tests
async def test_a_session_cap_under_the_floor_backs_off_and_the_turn_is_answered(
    emu: OpenAIEmulator, tmp_path: Path
) -> None:
    """The server ends every session after 2 s (under the 5 s floor, and under the old 30 s
    margin, which looped on it): reconnects back off exponentially and stay a handful."""
    emu.clock_skew_s = -3600.0
    emu.session_max_s = 2.0
    emu.script.turns = [Turn(user_text="Hello there.", reply="Hi.")]
    clip = write_clip(tmp_path / "q.wav", 0.2, "Hello there", 14.0)
    run = Run(emu, tmp_path, settings_for(emu, "server_vad"), clip, realtime=True)
    run.provider.reconnect_base_delay_s = 1.0  # the real backoff
    ended = await run.run(limit_s=60)

    assert ended.code == "input_finished", run.of(ErrorEvent)
    reconnects = run.of(Reconnecting)
    assert all("time limit" in r.reason for r in reconnects), reconnects
    assert 2 <= len(emu.log.of("ws_open")) <= 6  # the first socket and at most five more
    delays = [r.delay_s for r in reconnects]
    # 1 s, 2 s, 4 s (capped), each with up to 25 % jitter: every session died young
    for delay, base in zip(delays, [1.0, 2.0, 4.0, 4.0, 4.0], strict=False):
        assert base <= delay <= base * 1.25, delays
    assert run.lines() == [("user", "Hello there."), ("assistant", "Hi.")]


def test_renewal_schedule_has_a_floor_and_a_margin_that_fits_the_session() -> None:
    assert renewal_schedule(3600.0, 30.0) == (3570.0, 3599.5)
    assert renewal_schedule(None, 30.0) == (3570.0, 3599.5)  # unknown: the documented cap
    assert renewal_schedule(20.0, 30.0) == (15.0, 19.5)  # margin at most a quarter
    assert renewal_schedule(2.0, 30.0)[0] == RENEW_FLOOR_S  # never sooner than the floor


def test_a_server_that_ends_every_session_at_once_gets_five_attempts_a_minute() -> None:
    """Every reconnected session dies 0.1 s after opening: the waits grow 1, 2, 4, 4… s and
    no 60 s window ever holds more than five attempts."""
    pacer = ReconnectPacer(base_s=1.0, cap_s=4.0, per_window=5, window_s=60.0, jitter=0.0)
    now, attempts, waits = 0.0, [], []
    while now < 300.0:
        wait = pacer.delay_s(now, planned=False)
        waits.append(wait)
        now += wait
        pacer.attempt(now)
        attempts.append(now)
        now += 0.1  # the session lives 0.1 s
        pacer.session_ended(0.1, planned=False)
    assert waits[:4] == [1.0, 2.0, 4.0, 4.0]
    for start in attempts:
        assert sum(1 for t in attempts if start <= t < start + 60.0) <= 5
    assert 20 <= len(attempts) <= 26  # five a minute, for five minutes


def test_a_session_that_lived_resets_the_backoff() -> None:
    pacer = ReconnectPacer(base_s=1.0)
    pacer.attempt(0.0)
    pacer.session_ended(0.5, planned=False)
    assert 2.0 <= pacer.delay_s(1.0, planned=False) <= 2.5  # doubled, plus up to 25 % jitter
    pacer.session_ended(120.0, planned=False)
    assert 1.0 <= pacer.delay_s(200.0, planned=False) <= 1.25
    assert pacer.delay_s(200.0, planned=True) == 0.0
