"""Issue 13 case 3: the console ends cleanly on SIGTERM, SIGHUP and SIGINT.

The real app runs in tmux (``tools/tmux-drive.sh``) against the OpenAI emulator and the
virtual audio devices; each signal is sent to the app's process. Checked: the exit status
(143/129/130), the pane's modes after exit (alternate screen and mouse reporting off: the
terminal was restored) and the session transcript (it ends with ``SessionEnded``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_tui_support import OPENAI, write_config

from voicetui import paths
from voicetui.testing.emulators.common import Script, Turn

ROOT = Path(__file__).resolve().parents[2]
DRIVE = ROOT / "tools" / "tmux-drive.sh"
PASSTHROUGH = ["XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME",
               "PULSE_SERVER", "PULSE_SINK", "PULSE_SOURCE", "PULSE_CLIENTCONFIG",
               "PULSE_COOKIE"]  # fmt: skip
MODES = " ".join(f"#{{{m}}}" for m in ("alternate_on", "mouse_any_flag", "mouse_button_flag",
                                       "mouse_standard_flag", "mouse_sgr_flag"))  # fmt: skip

pytestmark = [pytest.mark.tmux, pytest.mark.audio, pytest.mark.timeout(120)]


def drive(base: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(
        ["bash", str(DRIVE), *args], env={**os.environ, "TMUX_DRIVE_DIR": str(base)},
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"tmux-drive {args[0]} failed: {proc.stderr}\n{proc.stdout}")
    return proc.stdout


def tmux(base: Path, name: str, *args: str) -> str:
    sock = base / name / "sock"
    return subprocess.run(
        ["tmux", "-S", str(sock), *args], check=True, capture_output=True, text=True, timeout=10
    ).stdout.strip()


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)],
    ids=["SIGTERM", "SIGHUP", "SIGINT"],
)
def test_signal_ends_the_console_cleanly(
    openai_emulator_thread: Any, tmp_path: Path, audio_sandbox: Path, sig: int, code: int
) -> None:
    emulator = openai_emulator_thread
    emulator.script = Script(turns=[Turn(user_text="hello", reply="Hello.")])
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={OPENAI: {"baseUrl": emulator.base_url, "turnDetection": "push_to_talk"}},
    )
    base, name = tmp_path / "tmux", f"vt-{uuid.uuid4().hex[:8]}"
    envs = ["-e", "OPENAI_API_KEY=sk-test-tmux-000000000000"]
    for var in PASSTHROUGH:
        if var in os.environ:
            envs += ["-e", f"{var}={os.environ[var]}"]
    drive(base, "start", name, "-x", "120", "-y", "40", *envs, "--",
          sys.executable, "-m", "voicetui", "--config", str(cfg))  # fmt: skip
    try:
        drive(base, "wait", name, "session started with openai", "30")
        drive(base, "wait", name, "● (idle|listening)", "10")
        assert tmux(base, name, "display", "-p", "-t", name, MODES).split()[0] == "1"
        pid = int(tmux(base, name, "display", "-p", "-t", name, "#{pane_pid}"))
        os.kill(pid, sig)
        status = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status = drive(base, "status", name).strip()
            if status.startswith(("exited", "killed")):
                break
            time.sleep(0.2)
        assert status == f"exited {code}", status
        modes = tmux(base, name, "display", "-p", "-t", name, MODES).split()
        assert modes == ["0", "0", "0", "0", "0"], f"terminal left in modes {modes}"
    finally:
        drive(base, "stop", name, check=False)
    sessions = sorted((paths.transcripts_location()).glob("*.jsonl"))
    assert sessions, "no session transcript"
    last = json.loads(sessions[-1].read_text().splitlines()[-1])
    assert last["type"] == "SessionEnded", last
    assert signal.Signals(sig).name in last["reason"]
