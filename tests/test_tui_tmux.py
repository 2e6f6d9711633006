"""The real app in a real terminal: tmux at 120x40, keys sent, the screen read back.

``python -m voicetui --config CFG`` runs exactly what a user runs; the OpenAI emulator
serves in a thread; the virtual PulseAudio devices are the microphone and speaker. The test
talks one push-to-talk turn by sending Space, feeding the virtual mic and sending Space
again, reads the transcript and status back from the screen, then quits with ``q`` and
checks the exit status is 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_tui_support import OPENAI, speech_wav, write_config

from voicetui.testing.emulators.common import Script, Turn

ROOT = Path(__file__).resolve().parent.parent
DRIVE = ROOT / "tools" / "tmux-drive.sh"

pytestmark = [pytest.mark.tmux, pytest.mark.audio, pytest.mark.timeout(120)]


class Tmux:
    """A thin wrapper over tools/tmux-drive.sh for one named session."""

    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.env = {**os.environ, "TMUX_DRIVE_DIR": str(base)}

    def run(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            ["bash", str(DRIVE), args[0], self.name, *args[1:]],
            env=self.env,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"tmux-drive {args[0]} failed: {proc.stderr}\n{proc.stdout}")
        return proc.stdout

    def screen(self) -> str:
        out = Path(self.env["TMUX_DRIVE_DIR"]).parent / f"{self.name}.txt"
        self.run("dump", str(out))
        return out.read_text(encoding="utf-8")

    def wait(self, regex: str, seconds: int = 20) -> None:
        self.run("wait", regex, str(seconds))


def test_console_in_tmux_talks_and_quits_cleanly(
    openai_emulator_thread: Any, tmp_path: Path, audio_sandbox: Path
) -> None:
    emulator = openai_emulator_thread
    emulator.script = Script(turns=[Turn(user_text="hello terminal", reply="Hello from tmux.")])
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={OPENAI: {"baseUrl": emulator.base_url, "turnDetection": "push_to_talk"}},
    )
    clip = speech_wav(tmp_path / "hello.wav", "hello terminal")
    tmux = Tmux(f"vt-{uuid.uuid4().hex[:8]}", tmp_path / "tmux")
    passthrough = [
        "XDG_CONFIG_HOME",
        "XDG_STATE_HOME",
        "XDG_DATA_HOME",
        "XDG_CACHE_HOME",
        "PULSE_SERVER",
        "PULSE_SINK",
        "PULSE_SOURCE",
        "PULSE_CLIENTCONFIG",
        "PULSE_COOKIE",
    ]
    envs: list[str] = ["-e", "OPENAI_API_KEY=sk-test-tmux-000000000000"]
    for var in passthrough:
        if var in os.environ:
            envs += ["-e", f"{var}={os.environ[var]}"]
    tmux.run(
        "start", "-x", "120", "-y", "40", *envs, "--",
        sys.executable, "-m", "voicetui", "--config", str(cfg),
    )  # fmt: skip
    try:
        tmux.wait("Space Talk", 20)  # the footer: the console is up
        tmux.wait("session started with openai", 20)
        tmux.wait("● (idle|listening)", 10)  # push-to-talk rests in idle
        tmux.run("keys", "Space")
        tmux.wait("you're speaking", 10)
        subprocess.run(["paplay", "--device=vmic_feed", str(clip)], check=True, timeout=20)
        tmux.run("keys", "Space")
        tmux.wait("Hello from tmux", 20)
        screen = tmux.screen()
        lines = screen.splitlines()
        assert len(lines) == 40 and max(len(line) for line in lines) <= 120
        assert "hello terminal" in screen  # the user's line
        assert "openai" in screen and "push_to_talk" in screen  # the session line
        assert "mic" in screen and "spk" in screen  # level meters
        assert "first audio" in screen or "transcript" in screen  # latency waterfall
        tmux.run("keys", "q")
        status = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            status = tmux.run("status").strip()
            if status.startswith(("exited", "killed")):
                break
            time.sleep(0.2)
        assert status == "exited 0", f"{status}\n{tmux.screen()}"
    finally:
        tmux.run("stop", check=False)


def _wait_exit(tmux: Tmux, seconds: float = 15) -> str:
    status = ""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = tmux.run("status").strip()
        if status.startswith(("exited", "killed")):
            break
        time.sleep(0.2)
    return status


@pytest.mark.parametrize(
    "case",
    [(80, 24, "mistral", ""), (120, 40, "mistral", "Paul"), (120, 40, "openai", "Marin")],
    ids=["80x24-mistral", "120x40-mistral", "120x40-openai"],
)
def test_demo_in_tmux_shows_the_essentials_and_quits_0(
    case: tuple[int, int, str, str], tmp_path: Path, audio_sandbox: Path
) -> None:
    """`voicetui demo`: no key, no config, no network — the bundled emulators in-process."""
    width, height, provider, voice = case
    tmux = Tmux(f"vt-demo-{uuid.uuid4().hex[:8]}", tmp_path / "tmux")
    passthrough = ["PULSE_SERVER", "PULSE_SINK", "PULSE_SOURCE", "PULSE_CLIENTCONFIG"]
    # a fresh home: no config, no keyring, no key in the environment
    envs: list[str] = [
        "-e", f"XDG_CONFIG_HOME={tmp_path / 'config'}",
        "-e", f"XDG_STATE_HOME={tmp_path / 'state'}",
        "-e", f"XDG_DATA_HOME={tmp_path / 'data'}",
        "-e", "PYTHON_KEYRING_BACKEND=keyring.backends.fail.Keyring",
    ]  # fmt: skip
    for var in passthrough:
        if var in os.environ:
            envs += ["-e", f"{var}={os.environ[var]}"]
    env_unset = [v for v in os.environ if v.endswith("_API_KEY")]
    cmd = [
        "env", *(f"--unset={v}" for v in env_unset),
        sys.executable, "-m", "voicetui", "demo", provider,
    ]  # fmt: skip
    tmux.run("start", "-x", str(width), "-y", str(height), *envs, "--", *cmd)
    try:
        tmux.wait(f"session started with {provider}", 30)
        tmux.wait("push_to_talk", 10)
        screen = tmux.screen()
        lines = screen.splitlines()
        status = [line for line in lines if "push_to_talk" in line]
        assert status, screen
        # state, turn mode and provider on one status line
        assert "●" in status[0] and provider in status[0], screen
        footer = lines[-1]
        assert "Talk" in footer and "Quit" in footer, footer
        assert max(len(line) for line in lines) <= width
        if voice:
            tmux.wait(voice, 10)  # the voice by name once the voice list is in
        # one spoken turn: the emulator answers whatever is said, with a web search
        clip = speech_wav(tmp_path / "ask.wav", "what is the weather in paris")
        tmux.run("keys", "Space")
        tmux.wait("you're speaking", 10)
        subprocess.run(["paplay", "--device=vmic_feed", str(clip)], check=True, timeout=20)
        tmux.run("keys", "Space")
        tmux.wait("pack the", 40)
        screen = tmux.screen()
        assert "speaker_1" in screen and "speaker_2" in screen, screen
        if provider == "mistral":  # the agent's web search (the Realtime API has none)
            assert "web" in screen, screen
        tmux.run("keys", "q")
        assert _wait_exit(tmux) == "exited 0", tmux.screen()
    finally:
        tmux.run("stop", check=False)
