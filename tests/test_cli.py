"""The command line: versions, headless subcommands without Textual, exit codes, dispatch."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import psutil
import pytest

from voicetui import __version__, cli
from voicetui.cli import main
from voicetui.config import update_config


def _run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, check=False, **kw
    )


def test_version_lists_every_component_without_importing_textual() -> None:
    code = (
        "import sys; from voicetui.cli import main; rc = main(['--version']); "
        "assert 'textual' not in sys.modules, 'textual imported'; sys.exit(rc)"
    )
    proc = _run(["-c", code])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"voicetui {__version__}"
    names = [line.split(":")[0] for line in lines[1:]]
    assert names == ["textual", "mistralai", "openai", "sounddevice", "PortAudio"]
    assert "textual: 8.2.8" in lines
    assert lines[-1].startswith("PortAudio: PortAudio V19")


def test_version_without_portaudio() -> None:
    # Make `import sounddevice` fail the way it does when libportaudio2 is missing.
    code = """
import sys
class NoPortAudio:
    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return None
sys.meta_path.insert(0, NoPortAudio())
from voicetui.cli import main
sys.exit(main(["--version"]))
"""
    proc = _run(["-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "PortAudio: not found (install libportaudio2)"


@pytest.mark.parametrize(
    "argv",
    [
        ["specs", "list"],
        ["specs", "show", "openai", "--json"],
        ["specs", "docs", "--out", "{tmp}/docs"],
        ["config", "show"],
        ["config", "check"],
        ["keys", "list"],
        ["health", "--timeout-ms", "200"],
        ["--config", "{tmp}/broken.toml"],
        # the delegated ones too (their modules belong to the audio and engine owners)
        ["devices", "--json"],
        ["usage", "--json"],
        ["transcripts", "list"],
    ],
)
def test_subcommands_never_import_textual(argv: list[str], tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text("provider = 3\n", encoding="utf-8")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = (
        "import sys; from voicetui.cli import main; rc = main(sys.argv[1:]); "
        "assert 'textual' not in sys.modules, 'textual imported'; print('rc', rc)"
    )
    proc = _run(["-c", code, *argv])
    assert proc.returncode == 0, proc.stderr  # the assertion held (rc is printed, any value)
    assert "rc " in proc.stdout


def test_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "usage: voicetui" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2  # unknown command
    assert main(["specs"]) == 2  # missing action
    assert main(["keys", "set"]) == 2  # missing provider
    assert main(["health", "nope"]) == 2  # unknown provider
    err = capsys.readouterr().err
    assert "unknown provider 'nope'" in err


def test_keyboard_interrupt_gives_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "specs", interrupted)
    assert main(["specs", "list"]) == 130


def test_ctrl_c_on_a_real_process_gives_130(openai_emulator_thread: Any, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    update_config(path, providers={"openai": {"baseUrl": openai_emulator_thread.base_url}})
    openai_emulator_thread.faults.stall_s = 3.0  # the health check will wait
    env = dict(os.environ, OPENAI_API_KEY="sk-ctrl-c-test-0000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicetui", "--config", str(path), "health", "openai"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    # SIGINT once the request is in flight: the process holds a connection to the emulator
    port = openai_emulator_thread.port
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        conns = psutil.Process(proc.pid).net_connections(kind="tcp")
        if any(c.raddr and c.raddr.port == port for c in conns):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the health check never connected")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err


def test_python_dash_m_and_console_script() -> None:
    proc = _run(["-m", "voicetui", "--help"])
    assert proc.returncode == 0 and "usage: voicetui" in proc.stdout
    for command in ("specs", "keys", "health", "devices", "talk", "usage", "transcripts"):
        assert command in proc.stdout
    script = Path(sys.executable).parent / "voicetui"
    assert script.exists(), "the console script is installed with the package"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "usage: voicetui" in proc.stdout


def test_delegated_commands_get_resolved_arguments(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[argparse.Namespace] = []
    fake = types.ModuleType("voicetui_test_delegate")

    def cli_main(args: argparse.Namespace) -> int:
        seen.append(args)
        return 7

    fake.cli_main = cli_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "voicetui_test_delegate", fake)
    for command in cli.DELEGATED:
        monkeypatch.setitem(cli.DELEGATED, command, "voicetui_test_delegate")
    cfg = tmp_path / "c.toml"
    assert main(["--config", str(cfg), "talk", "openai", "--input", "in.wav"]) == 7
    talk = seen[-1]
    assert talk.provider == "ai-voice-conv.openai" and talk.config == cfg
    assert talk.input == Path("in.wav") and talk.output is None and talk.transcript is None
    assert main(["talk", "--input", "x.wav", "--output", "o.wav", "--transcript", "t.jsonl"]) == 7
    assert seen[-1].provider is None and seen[-1].config is None
    assert main(["usage", "mistral", "--json"]) == 7
    assert seen[-1].provider == "ai-voice-conv.mistral" and seen[-1].json
    assert main(["devices", "--json"]) == 7 and seen[-1].json
    assert main(["transcripts", "list"]) == 7
    assert seen[-1].transcripts_command == "list"
    assert main(["transcripts", "export", "abc123", "--out", "t.md"]) == 7
    assert (seen[-1].transcripts_command, seen[-1].session) == ("export", "abc123")
    assert seen[-1].out == Path("t.md")
    assert main(["talk", "nope", "--input", "x.wav"]) == 2  # aliases resolved, unknown refused


def test_missing_delegate_module_is_a_clean_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli.DELEGATED, "usage", "voicetui.engine.no_such_module")
    assert main(["usage"]) == 1
    assert "not available in this build" in capsys.readouterr().err


def test_no_command_validates_then_launches_the_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from voicetui.tui import app

    calls: list[Path | None] = []

    def fake_run(config_path: Path | None) -> int:
        calls.append(config_path)
        return 0

    monkeypatch.setattr(app, "run", fake_run)
    path = tmp_path / "c.toml"
    update_config(path, theme="nord")
    assert main(["--config", str(path)]) == 0
    assert calls == [path]
    path.write_text("provider = 'x'\n", encoding="utf-8")
    assert main(["--config", str(path)]) == 2
    assert calls == [path]  # not launched with a broken config
