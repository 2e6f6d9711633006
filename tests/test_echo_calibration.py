"""Echo calibration on the sandbox's virtual devices: with the room (echo path) and without
(headphones), through to the saved config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voicetui.audio.calibrate import calibrate_echo, config_changes
from voicetui.audio.factory import AudioOptions
from voicetui.audio.ports import DuplexPolicy
from voicetui.config import load_config, update_config

pytestmark = [pytest.mark.audio, pytest.mark.asyncio, pytest.mark.timeout(60)]
DEVICES = AudioOptions(input_device="pulse", output_device="pulse")


@pytest.mark.parametrize("delay_ms", [40, 80])
async def test_calibration_measures_the_room_and_picks_aec(
    echo_path: Any, tmp_path: Path, delay_ms: int
) -> None:
    """Issue 15 (5): the sandbox room at -12 dB and ``delay_ms``: the delay within +-10 ms,
    the echo return loss near 12 dB, AEC removes most of the rest, the policy is aec, and
    the result lands in the config."""
    echo_path(db=-12.0, delay_ms=delay_ms)
    result = await calibrate_echo(DEVICES)
    print(f"\n{result.summary()}")
    assert result.delay_ms is not None and abs(result.delay_ms - delay_ms) <= 10
    assert result.echo_return_loss_db == pytest.approx(12.0, abs=1.5)
    assert result.aec_available and result.policy is DuplexPolicy.AEC
    assert result.erle_db is not None and result.erle_db >= 25
    cfg = update_config(tmp_path / "config.toml", audio=config_changes(result))
    again = load_config(cfg.path)
    assert again.audio.duplex is DuplexPolicy.AEC
    assert again.audio.echo_delay_ms == pytest.approx(result.delay_ms, abs=0.1)
    assert again.audio.echo_coupling_db == pytest.approx(result.coupling_db, abs=0.1)


async def test_calibration_without_an_echo_path_picks_full(audio_sandbox: Path) -> None:
    result = await calibrate_echo(DEVICES)
    print(f"\n{result.summary()}")
    assert result.delay_ms is None and result.policy is DuplexPolicy.FULL
    assert result.echo_return_loss_db >= 50
    assert "no echo path" in result.summary()
