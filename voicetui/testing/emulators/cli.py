"""What both emulators' command lines share: the knobs, the script, serving until Ctrl+C.

``python -m voicetui.testing.emulators.mistral --port N`` and ``… .openai --port N`` take the
same flags for the same knobs, so a benchmark or a manual run drives either the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

from voicetui.testing.emulators.common import EmulatorServer, Script, Turn, free_port


def add_common_arguments(parser: argparse.ArgumentParser, *, default_port: int = 0) -> None:
    """The flags every emulator takes: port, pacing, per-stage delays and the script."""
    parser.add_argument("--port", type=int, default=default_port, help="0 picks a free port")
    parser.add_argument(
        "--pace", type=float, default=1.0, help="assistant audio pace: 1 real time, 0 unpaced"
    )
    parser.add_argument(
        "--first-token-delay",
        "--token-delay",
        dest="token_delay",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds to the first reply token",
    )
    parser.add_argument(
        "--token-interval", type=float, default=0.0, metavar="S", help="between reply words"
    )
    parser.add_argument(
        "--first-audio-delay",
        "--audio-delay",
        dest="audio_delay",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds to the first assistant audio",
    )
    parser.add_argument("--reply", action="append", help="assistant reply (repeat per turn)")
    parser.add_argument("--user-text", action="append", help="user transcript (repeat per turn)")
    parser.add_argument(
        "--strict", action="store_true", help="validate every event sent against the SDK"
    )


def apply_common_arguments(
    emu: EmulatorServer,
    args: argparse.Namespace,
    *,
    segments: list[tuple[str, str]] | None = None,
    tool: str | None = None,
) -> None:
    """Set the emulator's timing and script from :func:`add_common_arguments`' flags;
    ``segments`` (diarized speakers) and ``tool`` go into every turn."""
    emu.timing.audio_pace = args.pace
    emu.timing.first_token_delay_s = args.token_delay
    emu.timing.token_interval_s = args.token_interval
    emu.timing.first_audio_delay_s = args.audio_delay
    users: list[str] = args.user_text or [Turn().user_text]
    replies: list[str] = args.reply or [Turn().reply]
    emu.script = Script(
        turns=[
            Turn(
                user_text=users[min(i, len(users) - 1)],
                reply=replies[min(i, len(replies) - 1)],
                segments=list(segments) if segments else None,
                tool=tool,
            )
            for i in range(max(len(users), len(replies)))
        ]
    )


def serve_forever(emu: EmulatorServer, banner: Callable[[], str]) -> int:
    """Start ``emu``, print ``banner()`` (it names the URL, so callers read the port from
    it), and serve until Ctrl+C or SIGINT."""

    async def serve() -> None:
        await emu.start()
        print(banner(), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await emu.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


@contextlib.contextmanager
def emulator_process(provider: str, *args: str) -> Iterator[str]:
    """``python -m voicetui.testing.emulators.<provider> --port N ARGS…`` in a child process,
    as a user starts it by hand; yields its base URL once it serves, stops it with SIGINT."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", f"voicetui.testing.emulators.{provider}", "--port", str(port),
         *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()  # the banner names the URL once the port is bound
        if f"127.0.0.1:{port}" not in banner:
            raise RuntimeError(f"the {provider} emulator did not start: {banner.strip()!r}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
