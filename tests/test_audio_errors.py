"""Audio failures become events with one-line, actionable messages; nothing crashes.

Broken environments run in child processes (PortAudio scans devices once per process):
PortAudio unloadable, no sound server, and a sound server that dies mid-session (a second
private PulseAudio, started for this test only and then stopped under the running streams).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicetui.audio.errors import AudioError, AudioErrorCode
from voicetui.audio.factory import AudioOptions, open_audio
from voicetui.audio.playback import DeviceOutput

pytestmark = pytest.mark.audio

ROOT = Path(__file__).resolve().parent.parent
SANDBOX = ROOT / "tools" / "audio-sandbox.sh"

RIG_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from voicetui.audio.errors import AudioError
    from voicetui.audio.factory import AudioOptions, open_audio

    async def main() -> None:
        rig = open_audio(AudioOptions())
        try:
            rig.check()
        except AudioError as exc:
            print("check", exc.code.value, exc.message, flush=True)
        try:
            await rig.start()
        except AudioError as exc:
            print("start", exc.code.value, exc.message, flush=True)
        print("alive", flush=True)

    asyncio.run(main())
    """
)


def run_child(
    code: str, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_portaudio_missing_names_the_package(tmp_path: Path) -> None:
    # a library that exists but cannot load: the same OSError as a missing libportaudio2
    (tmp_path / "libportaudio.so.2").write_bytes(b"")
    env = {**os.environ, "LD_LIBRARY_PATH": str(tmp_path)}
    res = run_child(RIG_SCRIPT, env)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    hint = "PortAudio not found: install libportaudio2 (apt-get install libportaudio2)"
    assert lines == [f"check portaudio_missing {hint}", f"start portaudio_missing {hint}", "alive"]
    cli = run_child(
        "import argparse, sys\nfrom voicetui.audio.devices import cli_main\n"
        "sys.exit(cli_main(argparse.Namespace(json=False)))",
        env,
    )
    assert cli.returncode == 1 and cli.stderr.strip() == f"voicetui: {hint}"


def test_no_sound_server_means_no_device() -> None:
    env = {**os.environ, "PULSE_SERVER": "unix:/nonexistent/voicetui-no-server"}
    res = run_child(RIG_SCRIPT, env)
    assert res.returncode == 0, res.stderr
    check, start, alive = res.stdout.splitlines()
    assert check.startswith("check no_input_device no audio input device found")
    assert start.startswith("start no_output_device no audio output device found")
    assert "voicetui devices" in start and alive == "alive"


@pytest.mark.asyncio
async def test_unknown_device_name_lists_what_exists() -> None:
    rig = open_audio(AudioOptions(input_device="pulse", output_device="Studio Monitor 9000"))
    with pytest.raises(AudioError) as err:
        await rig.start()
    assert err.value.code is AudioErrorCode.DEVICE_NOT_FOUND
    assert "'Studio Monitor 9000'" in err.value.message and "'pulse'" in err.value.message
    with pytest.raises(AudioError):
        rig.check()


@pytest.mark.asyncio
async def test_unsupported_rate_is_reported() -> None:
    out = DeviceOutput("pulse", device_rate=3_000_000)
    with pytest.raises(AudioError) as err:
        await out.start()
    assert err.value.code is AudioErrorCode.UNSUPPORTED_RATE
    assert "3000000 Hz" in err.value.message and "\n" not in err.value.message


LOST_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    import numpy as np
    from voicetui.audio.factory import AudioOptions, open_audio

    async def main() -> None:
        from pathlib import Path
        from voicetui.stderr_guard import stderr_to_log

        with stderr_to_log(Path(sys.argv[1])):
            await session()

    async def session() -> None:
        rig = open_audio(AudioOptions(input_device="pulse", output_device="pulse"))
        errors = []
        rig.set_on_error(errors.append)
        await rig.start()
        print("started", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # the parent kills the sound server now
        rig.output.enqueue("reply", np.zeros(24000, np.float32))
        t0 = time.monotonic()
        while len(errors) < 2 and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.05)
        for e in errors:
            print("error", e.code.value, e.message, flush=True)
        rig.output.enqueue("reply", np.zeros(2400, np.float32))  # no crash after the loss
        await rig.output.wait_idle()
        await rig.stop()
        print("alive", flush=True)

    asyncio.run(main())
    """
)


@pytest.fixture
def second_sound_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private PulseAudio just for one test, so it can be killed under a running stream."""
    env = {**os.environ, "AUDIO_SANDBOX_DIR": str(tmp_path / "pa2")}
    subprocess.run(["bash", str(SANDBOX), "start"], env=env, check=True, capture_output=True)
    out = subprocess.run(
        ["bash", str(SANDBOX), "env"], env=env, check=True, capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    yield env
    subprocess.run(["bash", str(SANDBOX), "stop"], env=env, check=False, capture_output=True)


def test_device_lost_mid_session_is_an_event(
    second_sound_server: dict[str, str], tmp_path: Path
) -> None:
    env = {**second_sound_server, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "voicetui.log"
    child = subprocess.Popen(
        [sys.executable, "-c", LOST_SCRIPT, str(log)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "started"
    subprocess.run(
        ["bash", str(SANDBOX), "stop"], env=second_sound_server, check=True, capture_output=True
    )
    out, err = child.communicate("\n", timeout=30)
    assert child.returncode == 0, err
    lines = out.splitlines()
    assert lines[-1] == "alive"
    errors = sorted(line for line in lines if line.startswith("error "))
    assert len(errors) == 2, out
    assert errors[0].startswith("error device_lost microphone 'pulse' lost:")
    assert errors[1].startswith("error device_lost speaker 'pulse' lost:")
    assert all("restart the session" in e for e in errors)
    # PortAudio's ALSA host API complained on fd 2 when the server vanished; the stderr guard
    # sent that to the log instead of the terminal
    assert "pa_linux_alsa" in log.read_text()
    assert "pa_linux_alsa" not in err and "ALSA" not in err


RESCAN_SCRIPT = textwrap.dedent(
    """
    import sys
    from voicetui.audio.devices import list_devices
    from voicetui.audio.sd_loader import rescan

    print(sorted(d.name for d in list_devices()), flush=True)
    sys.stdin.readline()  # the parent starts the sound server now
    print(sorted(d.name for d in list_devices()), flush=True)
    rescan()
    print(sorted(d.name for d in list_devices()), flush=True)
    """
)


def test_rescan_sees_a_sound_server_started_later(tmp_path: Path) -> None:
    """PortAudio scans devices once, at import; rescan() picks up what appeared since."""
    env = {**os.environ, "AUDIO_SANDBOX_DIR": str(tmp_path / "pa3")}
    listed = subprocess.run(
        ["bash", str(SANDBOX), "env"], env=env, check=True, capture_output=True, text=True
    ).stdout
    for line in listed.splitlines():  # the addresses are known before the server runs
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    child = subprocess.Popen(
        [sys.executable, "-c", RESCAN_SCRIPT],
        env={**env, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        assert child.stdout.readline().strip() == "[]"
        subprocess.run(["bash", str(SANDBOX), "start"], env=env, check=True, capture_output=True)
        out, err = child.communicate("\n", timeout=30)
    finally:
        subprocess.run(["bash", str(SANDBOX), "stop"], env=env, check=False, capture_output=True)
    assert child.returncode == 0, err
    before, after = out.splitlines()
    assert before == "[]"  # not seen without a rescan
    assert after == "['default', 'pulse']"
