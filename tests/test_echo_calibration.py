"""Echo calibration on the sandbox's virtual devices: with the room (echo path) and without
(headphones), through to the saved config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from voicetui.audio.calibrate import calibrate_echo, config_changes
from voicetui.audio.factory import AudioOptions
from voicetui.audio.ports import DuplexPolicy
from voicetui.config import load_config, update_config

pytestmark = [pytest.mark.audio, pytest.mark.timeout(90)]
DEVICES = AudioOptions(input_device="pulse", output_device="pulse")


@pytest.mark.asyncio
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


@pytest.mark.asyncio
async def test_calibration_without_an_echo_path_picks_full(audio_sandbox: Path) -> None:
    result = await calibrate_echo(DEVICES)
    print(f"\n{result.summary()}")
    assert result.delay_ms is None and result.policy is DuplexPolicy.FULL
    assert result.echo_return_loss_db >= 50
    assert "no echo path" in result.summary()


def test_doctor_echo_reports_and_saves_the_calibration(echo_path: Any, tmp_path: Path) -> None:
    """``voicetui doctor --echo`` on the sandbox room: one line with the measurement, and the
    policy and echo path in the config file afterwards."""
    echo_path(db=-12.0, delay_ms=40)
    cfg = update_config(
        tmp_path / "config.toml", audio={"input_device": "pulse", "output_device": "pulse"}
    )
    out = subprocess.run(
        [sys.executable, "-m", "voicetui", "--config", str(cfg.path), "doctor", "--echo",
         "--timeout-s", "2"],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    (line,) = [ln for ln in out.stdout.splitlines() if " echo path " in ln]
    assert line.startswith("ok") and "duplex aec" in line, out.stdout + out.stderr
    saved = load_config(cfg.path).audio
    assert saved.duplex is DuplexPolicy.AEC
    assert saved.echo_delay_ms is not None and abs(saved.echo_delay_ms - 40) <= 10
