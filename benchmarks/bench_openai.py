"""Benchmark (report): what the voicetui OpenAI path adds on top of the wire.

Against the OpenAI emulator (in a thread, its own event loop) and the virtual PulseAudio
speaker (started here when not already running), push-to-talk turns are measured in two
clients, interleaved in rounds so both see the same machine:

* **ours**: the ConversationEngine + OpenAI provider (real SDK) + the audio engine's
  DeviceOutput, exactly as the app runs them;
* **baseline**: the thinnest client that can do the same job: raw ``websockets``,
  ``json.loads``, base64 -> numpy, a deque read by a bare sounddevice callback with the
  same 10 ms block.

Figures (medians and p95 over all turns):

1. client-added latency: the first ``response.output_audio.delta`` of a reply leaving the
   emulator's socket -> its first sample entering the device callback (goal p95 <= 30 ms);
2. commit-to-first-audio overhead: talk key released (commit) -> first sample in the device
   callback, minus the emulator's injected first-audio delay.

Run: ``.venv/bin/python benchmarks/bench_openai.py [--turns N] [--delay S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SR = 24_000
BLOCK = 240  # 10 ms, the app's playback block
REPLY = "Okay, sure thing."
TALK_S = 0.12


def ensure_audio_sandbox() -> Callable[[], None]:
    """Start a private PulseAudio (virtual speaker) unless one is configured already."""
    if os.environ.get("PULSE_SERVER"):
        return lambda: None
    os.environ["AUDIO_SANDBOX_DIR"] = f"/tmp/voicetui-bench-audio-{os.getpid()}"
    script = ROOT / "tools" / "audio-sandbox.sh"
    subprocess.run(["bash", str(script), "start"], check=True, capture_output=True)
    out = subprocess.run(["bash", str(script), "env"], check=True, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        os.environ[key] = value

    def stop() -> None:
        subprocess.run(["bash", str(script), "stop"], check=False, capture_output=True)

    return stop


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(round(q * (len(ordered) - 1)), len(ordered) - 1)]


def first_delta_sent(emu: Any, item_id: str) -> float:
    for entry in emu.log.of("ws_out"):
        if (
            entry.event_type == "response.output_audio.delta"
            and (entry.body or {}).get("item_id") == item_id
        ):
            at: float = entry.at
            return at
    raise LookupError(item_id)


# --- ours --------------------------------------------------------------------------------------


async def run_ours(
    emu: Any, turns: int, delay: float, tmp: Path
) -> tuple[list[float], list[float]]:
    from voicetui.audio.factory import AudioOptions, open_audio
    from voicetui.audio.wav import write_wav_pcm16
    from voicetui.engine.events import AssistantTextFinal, Event, TurnLatency
    from voicetui.engine.session import ConversationEngine
    from voicetui.providers.base import ProviderSettings
    from voicetui.providers.openai.realtime import OpenAIRealtimeProvider

    silence = tmp / "silence.wav"
    write_wav_pcm16(silence, np.zeros(SR * (turns * 3 + 10), np.int16))
    rig = open_audio(
        AudioOptions(output_device="pulse"), input_wav=silence, realtime_input=True,
        realtime_output=True,
    )  # fmt: skip
    settings = ProviderSettings(
        spec_key="ai-voice-conv.openai", model="gpt-realtime", voice="marin",
        turn_detection="push_to_talk", max_session_duration_s=3600, base_url=emu.base_url,
    )  # fmt: skip
    engine = ConversationEngine(
        provider=OpenAIRealtimeProvider(), settings=settings, api_key="sk-bench",
        audio_in=rig.input, audio_out=rig.output, gate=rig.gate, preroll_ms=0,
    )  # fmt: skip
    finals: asyncio.Queue[AssistantTextFinal] = asyncio.Queue()
    latencies: list[TurnLatency] = []

    def listen(event: Event) -> None:
        if isinstance(event, AssistantTextFinal):
            finals.put_nowait(event)
        elif isinstance(event, TurnLatency):
            latencies.append(event)

    engine.subscribe(listen)
    client_added: list[float] = []
    overhead: list[float] = []

    async def drive() -> None:
        for _ in range(1000):  # until connected
            if engine.state.value == "idle":
                break
            await asyncio.sleep(0.01)
        for _ in range(turns):
            await engine.start_talking()
            await asyncio.sleep(TALK_S)
            t_commit = time.monotonic()
            await engine.stop_talking()
            final = await asyncio.wait_for(finals.get(), 10)
            await asyncio.sleep(0.05)
            lat = latencies[-1]
            assert lat.first_audio_ms is not None
            first_sample = t_commit + lat.first_audio_ms / 1000.0
            client_added.append((first_sample - first_delta_sent(emu, final.turn_id)) * 1000)
            overhead.append(lat.first_audio_ms - delay * 1000)
        await engine.end()

    task = asyncio.create_task(drive())
    await engine.run()
    await task
    return client_added, overhead


# --- baseline ----------------------------------------------------------------------------------


class BarePlayer:
    """A deque of float32 chunks pulled by a sounddevice callback (10 ms blocks)."""

    def __init__(self) -> None:
        import sounddevice as sd

        self.chunks: deque[tuple[str, np.ndarray]] = deque()
        self.lock = threading.Lock()
        self.first: dict[str, float] = {}
        self.stream = sd.OutputStream(
            samplerate=SR, channels=1, dtype="float32", blocksize=BLOCK, device="pulse",
            latency="low", callback=self.callback,
        )  # fmt: skip

    def callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        now = time.monotonic()
        out = outdata[:, 0]
        written = 0
        with self.lock:
            while written < frames and self.chunks:
                item, data = self.chunks[0]
                self.first.setdefault(item, now)
                take = min(frames - written, len(data))
                out[written : written + take] = data[:take]
                written += take
                if take == len(data):
                    self.chunks.popleft()
                else:
                    self.chunks[0] = (item, data[take:])
        out[written:] = 0.0

    def enqueue(self, item: str, pcm: np.ndarray) -> None:
        with self.lock:
            self.chunks.append((item, pcm))

    def busy(self) -> bool:
        with self.lock:
            return bool(self.chunks)


async def run_baseline(emu: Any, turns: int, delay: float) -> tuple[list[float], list[float]]:
    from websockets.asyncio.client import connect

    player = BarePlayer()
    player.stream.start()
    url = emu.base_url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
    client_added: list[float] = []
    overhead: list[float] = []
    chunk = base64.b64encode(np.zeros(int(SR * 0.02), "<i2").tobytes()).decode()
    async with connect(url, additional_headers={"Authorization": "Bearer sk-bench"}) as ws:
        session = {
            "type": "realtime", "output_modalities": ["audio"],
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": SR},
                                "turn_detection": None,
                                "transcription": {"model": "gpt-4o-transcribe"}},
                      "output": {"format": {"type": "audio/pcm", "rate": SR}, "voice": "marin"}},
        }  # fmt: skip
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        while json.loads(await ws.recv())["type"] != "session.updated":
            pass
        for _ in range(turns):
            for _ in range(int(TALK_S / 0.02)):
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                await asyncio.sleep(0.02)
            t_commit = time.monotonic()
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await ws.send(json.dumps({"type": "response.create"}))
            item = ""
            while True:
                event = json.loads(await ws.recv())
                if event["type"] == "response.output_audio.delta":
                    item = event["item_id"]
                    pcm = np.frombuffer(base64.b64decode(event["delta"]), "<i2")
                    player.enqueue(item, pcm.astype(np.float32) / 32768.0)
                elif event["type"] == "response.done":
                    break
            for _ in range(1000):  # until played out
                if not player.busy():
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            first = player.first[item]
            client_added.append((first - first_delta_sent(emu, item)) * 1000)
            overhead.append((first - t_commit) * 1000 - delay * 1000)
    player.stream.stop()
    player.stream.close()
    return client_added, overhead


# --- report ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=15, help="turns per client per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.2, help="injected first-audio delay")
    args = parser.parse_args()

    stop_audio = ensure_audio_sandbox()
    import tempfile

    from voicetui.testing.emulators.common import Turn
    from voicetui.testing.emulators.openai import OpenAIEmulator

    emu = OpenAIEmulator()
    emu.script.turns = [Turn(user_text="Go on.", reply=REPLY)]
    emu.timing.first_audio_delay_s = args.delay
    emu.timing.first_token_delay_s = args.delay
    emu.start_in_thread()
    results: dict[str, tuple[list[float], list[float]]] = {"baseline": ([], []), "ours": ([], [])}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.rounds):
                for name in ("baseline", "ours"):
                    if name == "ours":
                        got = asyncio.run(run_ours(emu, args.turns, args.delay, Path(tmp)))
                    else:
                        got = asyncio.run(run_baseline(emu, args.turns, args.delay))
                    results[name][0].extend(got[0])
                    results[name][1].extend(got[1])
    finally:
        emu.stop_thread()
        stop_audio()

    n = len(results["ours"][0])
    print(
        f"OpenAI path, {n} push-to-talk turns per client, injected first-audio delay "
        f"{args.delay * 1000:.0f} ms, 10 ms device blocks (virtual PulseAudio speaker)"
    )
    print(f"{'':38}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}")
    rows = [
        ("delta on socket -> device callback", 0),
        ("commit -> first audio, minus delay", 1),
    ]
    for label, idx in rows:
        for name in ("baseline", "ours"):
            vals = results[name][idx]
            print(f"  {label if name == 'baseline' else '':36}{name:>9}"
                  f"{statistics.median(vals):9.1f}{pct(vals, 0.95):9.1f}"
                  f"{statistics.fmean(vals):9.1f}")  # fmt: skip
    ours_p50 = statistics.median(results["ours"][0])
    base_p50 = statistics.median(results["baseline"][0])
    ours_p95 = pct(results["ours"][0], 0.95)
    ratio = ours_p50 / max(base_p50, 1e-9)
    print(
        f"ratio ours/baseline (delta -> callback, p50): {ratio:.2f}x; "
        f"added by voicetui over the bare client: {ours_p50 - base_p50:+.1f} ms (p50)"
    )
    verdict = "met" if ours_p95 <= 30.0 else "NOT met"
    print(f"goal p95 <= 30 ms: {verdict} ({ours_p95:.1f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
