"""bench_tui: the console's start-up, CPU cost, and transcript scaling.

A report, not a timed test. Run: ``.venv/bin/python benchmarks/bench_tui.py [--runs 5]``.
Starts a private PulseAudio sandbox unless ``PULSE_SERVER`` is set, and the OpenAI emulator
in this process (a thread); the app under test runs as ``python -m voicetui`` in a real
pseudo-terminal (120x40), driven by writing keys to the pty, exactly as a terminal would.

Measured (medians over ``--runs``), each with a baseline from the same run:
  1. start -> first frame: process spawn until the console's footer is on the terminal.
     Baseline: a minimal Textual app (Header, Static, Footer) started the same way.
  2. CPU % of one core, idle with a live push-to-talk session (mic open, meters polled at
     12 Hz, the engine ticking). Baseline: the minimal Textual app idle.
  3. CPU % of one core while a reply streams in (text deltas every 30 ms, audio played in
     real time through the virtual speaker). Baseline: the same app idle.
  4. a 5,000-line transcript: append time per line, the in-place update of the streaming
     line at the end of it, and memory. Baseline: Textual's RichLog writing the same lines.
Goals (issue 7): first frame <= 1 s, idle <= 1 % of a core, streaming <= 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import audio_sandbox, fmt, machine_line, table  # noqa: E402

COLS, ROWS = 120, 40
OPENAI = "ai-voice-conv.openai"

BASELINE_APP = """
from textual.app import App
from textual.widgets import Footer, Header, Static

class Baseline(App[None]):
    BINDINGS = [("q", "quit", "Quit"), ("space", "noop", "Talk")]
    def compose(self):
        yield Header(show_clock=False)
        yield Static("baseline")
        yield Footer()
    def action_noop(self) -> None:
        pass

Baseline().run()
"""


class PtyApp:
    """A program in a pseudo-terminal of a fixed size; its output is drained in a thread."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
            start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self.lock = threading.Lock()
        self.marks: dict[bytes, float] = {}
        self.watch: list[bytes] = []
        self.closed = False
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while not self.closed:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            now = time.perf_counter()
            with self.lock:
                self.output += chunk
                for needle in self.watch:
                    if needle not in self.marks and needle in self.output:
                        self.marks[needle] = now

    def wait_for(self, needle: str, limit: float = 20.0) -> float:
        """Seconds from spawn until ``needle`` was first written to the terminal."""
        key = needle.encode()
        with self.lock:
            self.watch.append(key)
            if key in self.output:
                self.marks.setdefault(key, time.perf_counter())
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with self.lock:
                if key in self.marks:
                    return self.marks[key] - self.started
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        tail = bytes(self.output[-2000:]).decode(errors="replace")
        raise RuntimeError(f"{needle!r} never appeared (exit {self.proc.poll()}): {tail}")

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def cpu_seconds(self) -> float:
        import psutil

        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def quit(self) -> int:
        self.send("q")
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.closed = True
        with contextlib.suppress(OSError):
            os.close(self.master)
        return code


def cpu_pct(app: PtyApp, seconds: float) -> float:
    """CPU of the app process over ``seconds``, in % of one core."""
    c0, t0 = app.cpu_seconds(), time.perf_counter()
    time.sleep(seconds)
    return 100.0 * (app.cpu_seconds() - c0) / (time.perf_counter() - t0)


@contextlib.contextmanager
def emulator_thread() -> Iterator[Any]:
    from voicetui.testing.emulators.openai import OpenAIEmulator

    emu = OpenAIEmulator()
    emu.start_in_thread()
    try:
        yield emu
    finally:
        emu.stop_thread()


def app_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TEXTUAL_THEME")}
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
    ):
        env[var] = str(home / sub)
    env.update(TERM="xterm-256color", COLORTERM="truecolor", OPENAI_API_KEY="sk-bench-0000")
    env.pop("MISTRAL_API_KEY", None)
    return env


def write_config(path: Path, base_url: str) -> Path:
    import tomli_w

    doc = {
        "provider": OPENAI,
        "theme": "voicetui-dusk",
        "audio": {"input_device": "pulse", "output_device": "pulse"},
        "providers": {OPENAI: {"baseUrl": base_url, "turnDetection": "push_to_talk"}},
    }
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return path


def speech_wav(path: Path, text: str) -> Path:
    import wave

    import numpy as np

    from voicetui.testing.emulators.common import speech_like_pcm

    data = (speech_like_pcm(text) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24_000)
        wav.writeframes(data.tobytes())
    return path


IDLE_SETTLE_S = 3.0

# --- 1-3: the real app in a pty ------------------------------------------------------------


def bench_process(runs: int, idle_s: float) -> dict[str, Any]:
    from voicetui.testing.emulators.common import Script, Turn

    out: dict[str, list[float]] = {
        "first_frame_s": [],
        "baseline_first_frame_s": [],
        "session_live_s": [],
        "idle_pct": [],
        "idle_no_session_pct": [],
        "baseline_idle_pct": [],
        "stream_pct": [],
        "stream_s": [],
    }
    reply = " ".join(["The quick brown fox jumps over the lazy dog."] * 12)
    with emulator_thread() as emu, tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        emu.timing.token_interval_s = 0.03
        emu.timing.audio_pace = 1.0
        clip = speech_wav(tmpdir / "q.wav", "tell me something long")
        for run in range(runs):
            home = tmpdir / f"home{run}"
            env = app_env(home)
            cfg = write_config(tmpdir / f"config{run}.toml", emu.base_url)
            emu.script = Script(turns=[Turn(user_text="tell me something long", reply=reply)])

            base = PtyApp([sys.executable, "-c", BASELINE_APP], env)
            out["baseline_first_frame_s"].append(base.wait_for("Talk"))
            time.sleep(1.0)
            out["baseline_idle_pct"].append(cpu_pct(base, idle_s))
            base.quit()

            app = PtyApp([sys.executable, "-m", "voicetui", "--config", str(cfg)], env)
            out["first_frame_s"].append(app.wait_for("Talk"))
            out["session_live_s"].append(app.wait_for("session started"))
            time.sleep(IDLE_SETTLE_S)
            out["idle_pct"].append(cpu_pct(app, idle_s))
            # one push-to-talk turn with a long streamed reply
            app.send(" ")
            app.wait_for("speaking", 10)
            subprocess.run(["paplay", "--device=vmic_feed", str(clip)], check=True)
            app.send(" ")
            app.wait_for("assistant", 20)
            c0, t0 = app.cpu_seconds(), time.perf_counter()
            app.wait_for("lazy dog.", 60)  # wait for the end of the text
            # the reply keeps playing (audio in real time) for a while after the text
            time.sleep(2.0)
            elapsed = time.perf_counter() - t0
            out["stream_pct"].append(100.0 * (app.cpu_seconds() - c0) / elapsed)
            out["stream_s"].append(elapsed)
            code = app.quit()
            if code != 0:
                raise RuntimeError(f"voicetui exited {code}")

            # the console without a session (what the UI alone costs)
            solo = PtyApp(
                [sys.executable, "-m", "voicetui", "--config", str(cfg)],
                {**env, "OPENAI_API_KEY": "", "VOICETUI_CONFIG": str(cfg)},
            )
            solo.wait_for("API keys")  # no key: the keys screen
            solo.send("\x1b")  # back to the console
            # start-up work (the SDK imports preloaded in a thread, the health checks) goes
            # on for a second or two after the first frame: idle is after it
            time.sleep(IDLE_SETTLE_S)
            out["idle_no_session_pct"].append(cpu_pct(solo, idle_s))
            solo.quit()
    return {k: v for k, v in out.items()}


# --- 4: the transcript in process ---------------------------------------------------------


async def _transcript(lines: int) -> dict[str, float]:
    from textual.app import App, ComposeResult
    from textual.widgets import RichLog

    from voicetui.engine.events import AssistantTextDelta, AssistantTextFinal, UserTranscript
    from voicetui.tui.widgets.transcript import TranscriptView

    texts = [
        f"line {i}: " + "a reasonably long sentence of conversation " * (1 + i % 3)
        for i in range(lines)
    ]

    class Host(App[None]):
        def __init__(self, widget: Any) -> None:
            super().__init__()
            self.widget = widget

        def compose(self) -> ComposeResult:
            yield self.widget

    results: dict[str, float] = {}

    # ours
    tracemalloc.start()
    view = TranscriptView()
    async with Host(view).run_test(size=(COLS, ROWS)) as pilot:
        await pilot.pause()
        m0 = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        for i, text in enumerate(texts):
            if i % 2:
                view.apply(AssistantTextFinal(turn_id=f"r{i}", text=text))
            else:
                view.apply(
                    UserTranscript(
                        turn_id=f"t{i}", text=text, final=True, speaker="speaker_1",
                        start=0.1, end=1.5,
                    )
                )  # fmt: skip
            if i % 50 == 49:
                view._relayout()  # a frame every 50 lines (the real app coalesces too)
        view._relayout()
        await pilot.pause()
        results["append_ms_per_line"] = 1000 * (time.perf_counter() - t0) / lines
        results["memory_mb"] = (tracemalloc.get_traced_memory()[0] - m0) / 1e6
        results["wrapped_lines"] = float(view.line_count)
        # streaming: a delta to the last line of a 5,000-line transcript, relaid out
        samples = []
        for k in range(200):
            t1 = time.perf_counter()
            view.apply(AssistantTextDelta(turn_id="stream", text=f" word{k}"))
            view._relayout()
            samples.append(time.perf_counter() - t1)
        results["stream_update_ms"] = 1000 * statistics.median(samples)
        t2 = time.perf_counter()
        view.scroll_home(animate=False)
        await pilot.pause()
        view.scroll_end(animate=False)
        await pilot.pause()
        results["scroll_ends_ms"] = 1000 * (time.perf_counter() - t2)
    tracemalloc.stop()

    # baseline: RichLog (Textual's own log widget) with the same lines
    tracemalloc.start()
    log = RichLog(wrap=True)
    async with Host(log).run_test(size=(COLS, ROWS)) as pilot:
        await pilot.pause()
        m0 = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        for i, text in enumerate(texts):
            who = "assistant" if i % 2 else "[0.1s -> 1.5s] speaker_1"
            log.write(f"{who}  {text}")
        await pilot.pause()
        results["base_append_ms_per_line"] = 1000 * (time.perf_counter() - t0) / lines
        results["base_memory_mb"] = (tracemalloc.get_traced_memory()[0] - m0) / 1e6
        # RichLog cannot edit a line in place: a streaming reply means clear + rewrite
        t1 = time.perf_counter()
        log.clear()
        for text in texts[:200]:
            log.write(text)
        await pilot.pause()
        results["base_rewrite_200_ms"] = 1000 * (time.perf_counter() - t1)
    tracemalloc.stop()
    return results


async def _ui_replay(seconds: float = 4.0) -> dict[str, float]:
    """The UI's own share of a streamed reply: the console fed the same event cadence
    (a text delta every 30 ms, the speaker meter moving at 12 Hz) with no engine or audio
    in the process. Baseline: the same console, idle, over the same window."""
    import os as _os

    from voicetui.engine.events import AssistantTextDelta, State, StateChanged
    from voicetui.tui.app import VoiceTuiApp
    from voicetui.tui.messages import EngineEvent
    from voicetui.tui.widgets.meters import LevelMeter

    with tempfile.TemporaryDirectory() as tmp:
        _os.environ["XDG_CONFIG_HOME"] = tmp
        app = VoiceTuiApp(frozen=False, autostart=False, health_on_start=False)
        async with app.run_test(size=(COLS, ROWS)) as pilot:
            await pilot.pause(0.5)
            console = app.console_screen
            meter = console.query_one("#spk-meter", LevelMeter)
            t0, c0 = time.perf_counter(), time.process_time()
            await asyncio.sleep(seconds)
            idle = 100 * (time.process_time() - c0) / (time.perf_counter() - t0)
            console.post_message(
                EngineEvent(StateChanged(state=State.ASSISTANT_SPEAKING, previous=State.THINKING))
            )
            words = ("The quick brown fox jumps over the lazy dog. " * 40).split()
            # as with a live session: the console's 12 Hz clock moves the meters and lays
            # out the streamed text (see ConsoleScreen._poll)
            view = console.transcript
            view.set_paced(True)
            t0, c0 = time.perf_counter(), time.process_time()
            i = 0
            next_tick = t0
            while time.perf_counter() - t0 < seconds:
                console.post_message(
                    EngineEvent(AssistantTextDelta(turn_id="r", text=words[i % len(words)] + " "))
                )
                if time.perf_counter() >= next_tick:
                    next_tick += 1 / 12
                    meter.set_level(-30 + (i % 5) * 4)
                    view.flush()
                i += 1
                await asyncio.sleep(0.03)
            stream = 100 * (time.process_time() - c0) / (time.perf_counter() - t0)
    return {"ui_idle_pct": idle, "ui_stream_pct": stream}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions (medians reported)")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    print(f"bench_tui — {machine_line()}")
    with audio_sandbox():
        proc = bench_process(args.runs, args.idle_seconds)
    tr = asyncio.run(_transcript(args.lines))
    ui = asyncio.run(_ui_replay())

    med = {k: statistics.median(v) for k, v in proc.items()}
    rows = [
        ["start -> first frame", fmt(med["first_frame_s"], " s", 3),
         fmt(med["baseline_first_frame_s"], " s", 3),
         f"{med['first_frame_s'] / med['baseline_first_frame_s']:.2f}x", "<= 1 s"],
        ["start -> session live", fmt(med["session_live_s"], " s", 3), "", "", ""],
        ["CPU idle, live session", fmt(med["idle_pct"], " %", 2),
         fmt(med["baseline_idle_pct"], " %", 2),
         f"+{med['idle_pct'] - med['baseline_idle_pct']:.2f} pt", "<= 1 %"],
        ["CPU idle, no session", fmt(med["idle_no_session_pct"], " %", 2),
         fmt(med["baseline_idle_pct"], " %", 2),
         f"+{med['idle_no_session_pct'] - med['baseline_idle_pct']:.2f} pt", ""],
        ["CPU streaming a reply", fmt(med["stream_pct"], " %", 2),
         fmt(med["idle_pct"], " %", 2) + " (idle)",
         f"{med['stream_pct'] / max(med['idle_pct'], 1e-9):.1f}x idle", "<= 10 %"],
        ["  of which the UI (replayed stream)", fmt(ui["ui_stream_pct"], " %", 2),
         fmt(ui["ui_idle_pct"], " %", 2) + " (same, idle)", "", ""],
        [f"append, {args.lines:,} lines", fmt(tr["append_ms_per_line"], " ms/line", 3),
         fmt(tr["base_append_ms_per_line"], " ms/line", 3) + " (RichLog)",
         f"{tr['append_ms_per_line'] / tr['base_append_ms_per_line']:.2f}x", ""],
        ["memory, same lines", fmt(tr["memory_mb"], " MB", 1),
         fmt(tr["base_memory_mb"], " MB", 1) + " (RichLog)",
         f"{tr['memory_mb'] / tr['base_memory_mb']:.2f}x", ""],
        ["streaming-line update at the end", fmt(tr["stream_update_ms"], " ms", 3),
         fmt(tr["base_rewrite_200_ms"], " ms", 1) + " (RichLog rewrite of 200)", "", ""],
    ]  # fmt: skip
    print(table(rows, ["measure (median)", "voicetui", "baseline", "ratio", "goal"]))
    print(
        f"runs={args.runs}  idle window={args.idle_seconds:.0f} s  "
        f"stream window={med['stream_s']:.1f} s  wrapped lines={tr['wrapped_lines']:.0f}"
    )
    print("raw:", json.dumps({k: [round(x, 4) for x in v] for k, v in proc.items()}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"process": proc, "transcript": tr, "ui": ui}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
