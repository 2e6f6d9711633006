"""bench_session: what a live conversation costs and how fast it reacts (issue 12 item 10).

A report, not a timed test. Run: ``.venv/bin/python benchmarks/bench_session.py [--rounds 3]``.
Starts a private PulseAudio sandbox unless ``PULSE_SERVER`` is set (virtual mic and speaker).
Every figure has a baseline measured in the same run, interleaved in rounds so both see the
same machine; compare ratios and differences, not absolute numbers (the machine is shared).

1. **Idle live session CPU** (% of one core, process CPU time over a window): ours = the
   ConversationEngine + OpenAI provider (real SDK) in server-VAD mode with the real mic and
   speaker devices open and the mic streaming to the service; baseline = the thinnest client
   doing the same: raw ``websockets``, a sounddevice InputStream whose blocks go out as
   ``input_audio_buffer.append``, an idle OutputStream. The emulator runs in a child process,
   so its CPU is not counted. Goal: ours <= baseline + 1 point.
2. **Barge-in reaction**: a reply plays on the virtual speaker; the user's speech starts on
   the mic. From the speech onset (the first loud mic block on the loop) to the speaker going
   silent (the first silent output block after the cut, plus the device's DAC delay), against
   the service's VAD decision (``speech_started`` leaving the emulator) — goal: reaction p95
   <= VAD decision + one block.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import audio_sandbox, machine_line, pct, table  # noqa: E402

SR = 24_000
MIC_BLOCK = 480  # 20 ms, the app's capture block
OUT_BLOCK = 240  # 10 ms, the app's playback block
SPEC = "ai-voice-conv.openai"
FADE_S = 0.005  # the click-free fade a flush plays at the start of the next block


# --- 1. idle CPU ---------------------------------------------------------------------------


async def idle_ours(base_url: str, settle_s: float, window_s: float) -> float:
    from voicetui.audio.factory import AudioOptions, open_audio
    from voicetui.engine.session import ConversationEngine
    from voicetui.providers.base import ProviderSettings
    from voicetui.providers.openai.realtime import OpenAIRealtimeProvider

    rig = open_audio(AudioOptions(input_device="pulse", output_device="pulse", duplex="full"))
    settings = ProviderSettings(
        spec_key=SPEC, model="gpt-realtime", voice="marin", turn_detection="server_vad",
        max_session_duration_s=3600, base_url=base_url,
    )  # fmt: skip
    engine = ConversationEngine(
        provider=OpenAIRealtimeProvider(), settings=settings, api_key="sk-bench",
        audio_in=rig.input, audio_out=rig.output, gate=rig.gate,
    )  # fmt: skip
    task = asyncio.create_task(engine.run())
    for _ in range(1000):
        if engine.state.value == "listening":
            break
        await asyncio.sleep(0.01)
    cpu = await measure(settle_s, window_s)
    await engine.end()
    await task
    return cpu


async def idle_baseline(base_url: str, settle_s: float, window_s: float) -> float:
    import sounddevice as sd
    from websockets.asyncio.client import connect

    loop = asyncio.get_running_loop()
    blocks: asyncio.Queue[bytes] = asyncio.Queue()

    def mic(indata: Any, frames: int, t: Any, status: Any) -> None:
        loop.call_soon_threadsafe(blocks.put_nowait, bytes(indata))

    def speaker(outdata: Any, frames: int, t: Any, status: Any) -> None:
        outdata.fill(0)

    url = base_url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
    async with connect(url, additional_headers={"Authorization": "Bearer sk-bench"}) as ws:
        fmt = {"type": "audio/pcm", "rate": SR}
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "audio": {
                            "input": {"format": fmt, "turn_detection": {"type": "server_vad"}},
                            "output": {"format": fmt},
                        },
                    },
                }
            )
        )

        async def receive() -> None:
            async for message in ws:
                json.loads(message)

        async def send() -> None:
            while True:
                pcm = await blocks.get()
                payload = base64.b64encode(pcm).decode("ascii")
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": payload}))

        inp = sd.RawInputStream(
            samplerate=SR, channels=1, dtype="int16", blocksize=MIC_BLOCK, device="pulse",
            callback=mic,
        )  # fmt: skip
        out = sd.OutputStream(
            samplerate=SR, channels=1, dtype="float32", blocksize=OUT_BLOCK, device="pulse",
            latency="low", callback=speaker,
        )  # fmt: skip
        inp.start()
        out.start()
        tasks = [asyncio.create_task(receive()), asyncio.create_task(send())]
        try:
            return await measure(settle_s, window_s)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            inp.stop()
            out.stop()
            inp.close()
            out.close()


async def measure(settle_s: float, window_s: float) -> float:
    """% of one core this process used over ``window_s`` after ``settle_s``."""
    await asyncio.sleep(settle_s)
    c0, w0 = time.process_time(), time.monotonic()
    await asyncio.sleep(window_s)
    return 100.0 * (time.process_time() - c0) / (time.monotonic() - w0)


# --- 2. barge-in reaction ---------------------------------------------------------------------


def speech(text: str) -> np.ndarray:
    from voicetui.testing.emulators.common import speech_like_pcm

    return speech_like_pcm(text)


async def barge_in_round(emu: Any, tmp: Path) -> tuple[float, float, float] | None:
    """One reply cut by speech: (onset -> speaker silent, onset -> VAD decision, the
    device's DAC delay) in ms."""
    from voicetui.audio.factory import AudioOptions, open_audio
    from voicetui.audio.wav import write_wav_pcm16
    from voicetui.engine.events import Event, Interrupted
    from voicetui.engine.session import ConversationEngine
    from voicetui.providers.base import ProviderSettings
    from voicetui.providers.openai.realtime import OpenAIRealtimeProvider
    from voicetui.testing.emulators.common import Turn

    long_reply = " ".join(["This answer keeps going for a good while so it can be cut."] * 3)
    emu.script.turns = [Turn(user_text="Tell me.", reply=long_reply), Turn(reply="Okay.")]
    emu.timing.audio_pace = 4.0
    head = np.concatenate(
        [np.zeros(SR // 3, np.float32), speech("Tell me now"), np.zeros(int(SR * 2.2), np.float32)]
    )  # fmt: skip
    onset_sample = len(head)  # where the user's second utterance starts in the mic signal
    clip = np.concatenate([head, speech("Stop stop"), np.zeros(SR * 2, np.float32)])
    wav = tmp / "barge.wav"
    write_wav_pcm16(wav, clip)
    rig = open_audio(
        AudioOptions(output_device="pulse", duplex="full"), input_wav=wav,
        realtime_input=True, realtime_output=False,
    )  # fmt: skip
    settings = ProviderSettings(
        spec_key=SPEC, model="gpt-realtime", voice="marin", turn_detection="server_vad",
        max_session_duration_s=3600, base_url=emu.base_url, extras={"silenceDurationMs": 300},
    )  # fmt: skip
    engine = ConversationEngine(
        provider=OpenAIRealtimeProvider(), settings=settings, api_key="sk-bench",
        audio_in=rig.input, audio_out=rig.output, gate=rig.gate, end_when_input_ends=True,
    )  # fmt: skip
    output = rig.output
    onsets: list[float] = []
    cut: list[float] = []
    observe = rig.gate.observe_mic
    seen = [0]

    def watch_mic(frame: Any) -> None:
        # the mic block holding the onset of the second utterance reaches the loop
        seen[0] += len(frame.pcm)
        if not onsets and seen[0] > onset_sample:
            onsets.append(frame.captured_at)
        observe(frame)

    rig.gate.observe_mic = watch_mic  # type: ignore[method-assign]

    quiet: list[float] = []
    parts: list[tuple[float, float]] = []

    def snapshot() -> None:
        # the output block ring (last ~1.3 s of callbacks), read soon after the cut: the
        # first block after the cut holds the 5 ms fade, then zeros
        times = [float(t) for t in output._jb._lvl_t if t >= cut[0]]
        if times:
            quiet.append(min(times) + FADE_S + output.dac_ahead_s)
            parts.append((min(times) + FADE_S - cut[0], output.dac_ahead_s))

    def listen(event: Event) -> None:
        if isinstance(event, Interrupted) and not cut:
            cut.append(event.at)
            asyncio.get_running_loop().call_later(0.2, snapshot)

    engine.subscribe(listen)
    await asyncio.wait_for(engine.run(), 40)
    if not onsets or not cut:
        return None
    onset = onsets[0]
    started = [
        e.at
        for e in emu.log.of("ws_out")
        if e.event_type == "input_audio_buffer.speech_started" and e.at > onset - 1.0
    ]
    if not started:
        return None
    if not quiet:  # the first silent block the callback produced after the cut (+ DAC delay)
        return None
    print(
        f"  decision->cut {(cut[0] - started[0]) * 1000:.1f} ms, cut->silent "
        f"{parts[0][0] * 1000:.1f} ms, DAC delay {parts[0][1] * 1000:.1f} ms"
    )
    return (quiet[0] - onset) * 1000.0, (started[0] - onset) * 1000.0, parts[0][1] * 1000.0


# --- main ----------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    from voicetui.testing.emulators.cli import emulator_process
    from voicetui.testing.emulators.openai import OpenAIEmulator

    print(machine_line())
    ours_cpu: list[float] = []
    base_cpu: list[float] = []
    with emulator_process("openai", "--pace", "1") as url:
        for r in range(args.rounds):
            ours_cpu.append(await idle_ours(url, args.settle, args.window))
            base_cpu.append(await idle_baseline(url, args.settle, args.window))
            print(f"round {r + 1}: ours {ours_cpu[-1]:.2f} %, minimal client {base_cpu[-1]:.2f} %")
    o, b = statistics.median(ours_cpu), statistics.median(base_cpu)
    print()
    print("1. idle live session, % of one core (medians)")
    print(table([[f"{o:.2f}", f"{b:.2f}", f"{o - b:+.2f}", "<= +1.00"]],
                ["ours", "minimal client", "difference", "goal"]))  # fmt: skip

    reactions: list[float] = []
    decisions: list[float] = []
    dacs: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.barge_rounds):
            emu = OpenAIEmulator()  # a fresh script per round
            emu.start_in_thread()
            try:
                result = await barge_in_round(emu, Path(tmp))
            finally:
                emu.stop_thread()
            if result is not None:
                reactions.append(result[0])
                decisions.append(result[1])
                dacs.append(result[2])
    print()
    print(f"2. barge-in reaction over {len(reactions)} cuts (ms from speech onset on the mic)")
    extra = [r - d for r, d in zip(reactions, decisions, strict=True)]
    client = [e - dac for e, dac in zip(extra, dacs, strict=True)]
    rows = [
        ["speaker silent", f"{pct(reactions, 50):.1f}", f"{pct(reactions, 95):.1f}"],
        ["VAD decision (baseline)", f"{pct(decisions, 50):.1f}", f"{pct(decisions, 95):.1f}"],
        ["silent - decision", f"{pct(extra, 50):.1f}", f"{pct(extra, 95):.1f}"],
        ["  less the device buffer", f"{pct(client, 50):.1f}", f"{pct(client, 95):.1f}"],
    ]
    print(table(rows, ["", "p50", "p95"]))
    print(f"goal: silent - decision p95 <= one block ({OUT_BLOCK * 1000 // SR} ms)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--barge-rounds", type=int, default=8)
    args = parser.parse_args(argv)
    with audio_sandbox():
        return asyncio.run(main_async(args))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    _ = threading  # the emulator thread is a daemon
