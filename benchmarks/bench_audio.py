"""bench_audio: the playback jitter buffer and the capture path on a real (virtual) device.

A report, not a timed test. Run: ``.venv/bin/python benchmarks/bench_audio.py [--seconds 60]``.
It starts a private PulseAudio sandbox unless ``PULSE_SERVER`` is set, and plays through
PortAudio's ``pulse`` device with the real callbacks.

Scenarios (the assistant's reply streamed into the speaker while the mic runs, as in a call):
  (a) chunks arrive at 1.5x real time, each jittered +-30 ms (how providers send);
  (b) chunks arrive at exactly real time, jittered +-30 ms (the worst case);
  (c) turn starts: a reply's first chunks land on an idle speaker; how long until its first
      sample reaches the DAC (pre-buffer + waiting for the callback + device buffer).
Baseline, measured in the same run: the seed's naive player (a list of chunks under a lock,
40 ms blocks, concatenation inside the callback, no pre-buffer, default 'high' latency), as in
OpenAI's push-to-talk example. It runs shorter streams (``--baseline-seconds``); rates are
reported per minute so they compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks._common import (
    CpuMeter,
    CpuSample,
    audio_sandbox,
    fmt,
    machine_line,
    pct,
    ratio,
    table,
)

SR = 24_000
CONFIG = {"chunk_ms": 40}  # --chunk-ms; the emulators send 100 ms, pipecat re-chunks to 40 ms
JITTER_MS = 30.0


# ------------------------------------------------------------------ the baseline player
class NaivePlayer:
    """The seed's player (OpenAI push_to_talk ``AudioPlayerAsync`` shape), instrumented."""

    def __init__(self, device: str, block_ms: int = 40) -> None:
        self.device = device
        self.block = SR * block_ms // 1000
        self.queue: list[tuple[str, np.ndarray]] = []
        self.lock = threading.Lock()
        self.stream: Any = None
        self.underruns = 0
        self.xruns = 0
        self.callback_s: list[float] = []
        self.dac_ahead_s = 0.0
        self._seen: set[str] = set()
        self._starved: str | None = None
        self._last_item: str | None = None
        self._first: dict[str, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.first_audio: dict[str, asyncio.Event] = {}
        self.played_frames = 0

    async def start(self) -> None:
        import sounddevice as sd

        self._loop = asyncio.get_running_loop()
        self.stream = sd.OutputStream(
            samplerate=SR,
            channels=1,
            dtype=np.int16,
            blocksize=self.block,
            device=self.device,
            callback=self._callback,
        )
        self.stream.start()

    async def stop(self) -> None:
        self.stream.abort()
        self.stream.close()

    def enqueue(self, item: str, pcm: np.ndarray) -> None:
        data = pcm if pcm.dtype == np.int16 else (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
        with self.lock:
            if self._starved is not None:
                if self._starved == item:
                    self.underruns += 1
                self._starved = None
            self.queue.append((item, data))

    def is_active(self) -> bool:
        with self.lock:
            return bool(self.queue)

    @property
    def buffered_ms(self) -> float:
        with self.lock:
            return sum(len(d) for _, d in self.queue) * 1000 / SR

    async def wait_idle(self) -> None:
        while self.is_active():  # noqa: ASYNC110 - the seed polls; kept as the baseline
            await asyncio.sleep(0.01)
        await asyncio.sleep(float(self.stream.latency))

    def first_time(self, item: str) -> float | None:
        return self._first.get(item)

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        t0 = time.perf_counter()
        now = time.monotonic()
        if status.output_underflow:
            self.xruns += 1
        self.dac_ahead_s = time_info.outputBufferDacTime - time_info.currentTime
        with self.lock:
            data = np.empty(0, dtype=np.int16)
            played_any = False
            while len(data) < frames and len(self.queue) > 0:
                item, chunk = self.queue.pop(0)
                if item not in self._seen:
                    self._seen.add(item)
                    self._first[item] = now
                    if self._loop is not None and item in self.first_audio:
                        self._loop.call_soon_threadsafe(self.first_audio[item].set)
                self._last_item = item
                played_any = True
                needed = frames - len(data)
                data = np.concatenate((data, chunk[:needed]))
                if len(chunk) > needed:
                    self.queue.insert(0, (item, chunk[needed:]))
            if len(data) < frames:
                if played_any:
                    self._starved = self._last_item
                data = np.concatenate((data, np.zeros(frames - len(data), dtype=np.int16)))
        outdata[:] = data.reshape(-1, 1)
        self.callback_s.append(time.perf_counter() - t0)


# ------------------------------------------------------------------ measurement
@dataclass
class StreamResult:
    name: str
    seconds: float
    underruns: int
    underrun_times: list[float]
    prebuffer_changes: list[tuple[float, float]]
    final_prebuffer_ms: float
    callback_p50_us: float
    callback_p99_us: float
    callback_max_us: float
    callback_busy_pct: float
    depth_p50_ms: float
    depth_p95_ms: float
    dac_ahead_ms: float
    enqueue_p99_us: float
    enqueue_busy_pct: float
    mic_queue_p50_ms: float
    mic_queue_p95_ms: float
    mic_process_p50_us: float
    mic_busy_pct: float
    mic_overflows: int
    xruns: int
    cpu: CpuSample
    extras: dict[str, float] = field(default_factory=dict)

    @property
    def underruns_per_min(self) -> float:
        return self.underruns * 60.0 / self.seconds

    @property
    def added_latency_p50_ms(self) -> float:
        """Per chunk: audio queued ahead of it when it arrived, plus the device buffer."""
        return self.extras["wait_p50_ms"] + self.dac_ahead_ms

    @property
    def added_latency_p95_ms(self) -> float:
        return self.extras["wait_p95_ms"] + self.dac_ahead_ms


def reply_signal(seconds: float, seed: int) -> np.ndarray:
    """A speech-like test signal: a 180 Hz buzz with harmonics under a syllable envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    buzz = sum(np.sin(2 * np.pi * 180 * h * t) / h for h in range(1, 6))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6.28))
    return (0.15 * buzz * env).astype(np.float32)


def schedule(n: int, speed: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival offsets (s): ideal pace / speed plus uniform +-JITTER, never out of order."""
    ideal = np.arange(n) * CONFIG["chunk_ms"] / 1000.0 / speed
    jit = rng.uniform(-JITTER_MS, JITTER_MS, n) / 1000.0
    return np.maximum.accumulate(np.maximum(ideal + jit, 0.0))


async def run_stream(
    name: str, player: Any, mic: Any, gate: Any, *, seconds: float, speed: float, seed: int
) -> StreamResult:
    rng = np.random.default_rng(seed)
    n = int(seconds * 1000 / CONFIG["chunk_ms"])
    sig = reply_signal(seconds, seed)
    step = SR * CONFIG["chunk_ms"] // 1000
    chunks = [sig[k * step : (k + 1) * step] for k in range(n)]
    # OpenAI sends PCM16, Mistral float32: alternate to exercise both paths
    chunks = [(c * 32767).astype(np.int16) if k % 2 else c for k, c in enumerate(chunks)]
    arrivals = schedule(n, speed, rng)
    ours = hasattr(player, "callback_seconds")
    if ours:
        player.callback_seconds.clear()
    else:
        player.callback_s.clear()
    mic.queue_latency_s.clear()
    mic.process_s.clear()
    mic_over0, xruns0 = mic.overflows, getattr(player, "xruns", 0)
    under0 = player.underruns
    depth: list[float] = []
    under_times: list[float] = []
    pre_changes: list[tuple[float, float]] = []
    enqueue_s: list[float] = []
    waits: list[float] = []
    item = f"{name}-reply"
    meter = CpuMeter()
    stop = asyncio.Event()

    async def sampler(t0: float) -> None:
        last_u, last_p = under0, getattr(player, "current_prebuffer_ms", 0.0)
        while not stop.is_set():
            await asyncio.sleep(0.1)
            t = time.monotonic() - t0
            depth.append(player.buffered_ms)
            if player.underruns != last_u:
                under_times.extend([t] * (player.underruns - last_u))
                last_u = player.underruns
            p = getattr(player, "current_prebuffer_ms", 0.0)
            if p != last_p:
                pre_changes.append((t, p))
                last_p = p

    async def mic_consumer() -> None:
        async for frame in mic.frames():
            gate.observe_mic(frame)
            if stop.is_set():
                return

    meter.start()
    t0 = time.monotonic() + 0.02
    samp = asyncio.create_task(sampler(t0))
    consumer = asyncio.create_task(mic_consumer())
    for k in range(n):
        delay = t0 + arrivals[k] - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        waits.append(player.buffered_ms)  # audio queued ahead of this chunk
        te = time.perf_counter()
        player.enqueue(item, chunks[k])
        enqueue_s.append(time.perf_counter() - te)
    await player.wait_idle()
    stop.set()
    cpu = meter.stop()
    await samp
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    cb = np.asarray(player.callback_seconds.values() if ours else player.callback_s)
    mq = mic.queue_latency_s.values()
    mp = mic.process_s.values()
    # depth samples from the start of playback to the end of the stream (buffer in use)
    active = np.asarray([d for d in depth if d > 0] or [0.0])
    wall = cpu.wall_s
    return StreamResult(
        name=name,
        seconds=seconds,
        underruns=player.underruns - under0,
        underrun_times=under_times,
        prebuffer_changes=pre_changes,
        final_prebuffer_ms=getattr(player, "current_prebuffer_ms", 0.0),
        callback_p50_us=pct(cb, 50) * 1e6,
        callback_p99_us=pct(cb, 99) * 1e6,
        callback_max_us=float(cb.max() * 1e6) if cb.size else float("nan"),
        callback_busy_pct=100.0 * float(cb.sum()) / wall,
        depth_p50_ms=pct(active, 50),
        depth_p95_ms=pct(active, 95),
        dac_ahead_ms=player.dac_ahead_s * 1000,
        enqueue_p99_us=pct(enqueue_s, 99) * 1e6,
        enqueue_busy_pct=100.0 * sum(enqueue_s) / wall,
        mic_queue_p50_ms=pct(mq, 50) * 1000,
        mic_queue_p95_ms=pct(mq, 95) * 1000,
        mic_process_p50_us=pct(mp, 50) * 1e6,
        mic_busy_pct=100.0 * float(mp.sum()) / wall,
        mic_overflows=mic.overflows - mic_over0,
        xruns=getattr(player, "xruns", 0) - xruns0,
        cpu=cpu,
        extras={"wait_p50_ms": pct(waits, 50), "wait_p95_ms": pct(waits, 95)},
    )


async def run_turn_starts(player: Any, turns: int, seed: int) -> list[float]:
    """Added latency (ms) from a reply's first chunk to its first sample at the DAC."""
    rng = np.random.default_rng(seed)
    sig = reply_signal(0.2, seed)
    out: list[float] = []
    ours = hasattr(player, "set_on_first_audio")
    events: dict[str, tuple[asyncio.Event, list[float]]] = {}
    if ours:

        def on_first(item: str, t: float) -> None:
            if item in events:
                events[item][1].append(t)
                events[item][0].set()

        player.set_on_first_audio(on_first)
    for i in range(turns):
        await asyncio.sleep(float(rng.uniform(0.08, 0.12)))  # random phase vs the callback
        item = f"turn-{i}"
        ev = asyncio.Event()
        events[item] = (ev, [])
        if not ours:
            player.first_audio[item] = ev
        t = time.monotonic()
        for k in range(5):  # the provider's first deltas arrive as a burst: 5 x 40 ms
            player.enqueue(item, sig[k * 960 : (k + 1) * 960])
        await asyncio.wait_for(ev.wait(), 2.0)
        t_first = events[item][1][0] if ours else player.first_time(item)
        out.append((t_first - t + player.dac_ahead_s) * 1000)
        await player.wait_idle()
    if ours:
        player.set_on_first_audio(None)
    return out


def measure_floor(device: str, seconds: float) -> float:
    """CPU % of one core for the bare streams (10 ms out + 20 ms in) with no-op callbacks:
    what PortAudio, ALSA and the PulseAudio client cost before any voicetui code runs."""
    import sounddevice as sd

    def out_cb(outdata: Any, frames: int, t: Any, status: Any) -> None:
        outdata.fill(0)

    def in_cb(indata: Any, frames: int, t: Any, status: Any) -> None:
        pass

    out = sd.OutputStream(
        samplerate=SR,
        channels=1,
        dtype="float32",
        device=device,
        blocksize=240,
        latency="low",
        callback=out_cb,
    )
    inp = sd.InputStream(
        samplerate=SR,
        channels=1,
        dtype="int16",
        device=device,
        blocksize=480,
        latency="low",
        callback=in_cb,
    )
    out.start()
    inp.start()
    time.sleep(0.3)
    meter = CpuMeter()
    meter.start()
    time.sleep(seconds)
    cpu = meter.stop()
    out.close()
    inp.close()
    return cpu.process_pct


def simulate(
    chunk_ms: int, speed: float, seed: int, seconds: float = 60.0, prebuffer_ms: float = 20.0
) -> tuple[int, float, float]:
    """The same JitterBuffer on a synthetic clock (10 ms pulls): underruns, final pre-buffer,
    time of the last underrun. Many seeds in seconds, to show the spread one run cannot."""
    from voicetui.audio.jitter import JitterBuffer

    rng = np.random.default_rng(seed)
    n = int(seconds * 1000 / chunk_ms)
    ideal = np.arange(n) * chunk_ms / 1000 / speed
    arrivals = np.maximum.accumulate(np.maximum(ideal + rng.uniform(-0.03, 0.03, n), 0.0))
    jb = JitterBuffer(SR, prebuffer_ms=prebuffer_ms, max_prebuffer_ms=40)
    out = np.zeros(240, np.float32)
    data = np.ones(SR * chunk_ms // 1000, np.float32)
    t, k, last, last_t = float(rng.uniform(0, 0.01)), 0, 0, 0.0
    while k < n or jb.is_active():
        while k < n and arrivals[k] <= t:
            jb.push("x", data, float(arrivals[k]))
            k += 1
        jb.pull(out, t)
        if jb.underruns != last:
            last, last_t = jb.underruns, t
        t += 0.01
    return jb.underruns, jb.prebuffer_ms, last_t


# ------------------------------------------------------------------ report
def pair(p50: float, p95: float, digits: int = 0) -> str:
    """'p50 / p95' in ms."""
    return f"{fmt(p50, ' ms', digits)} / {fmt(p95, ' ms', digits)}"


def print_stream(title: str, ours: StreamResult, base: StreamResult) -> None:
    print(f"\n## {title}")
    rows = [
        ["underruns (mid-reply dry buffer)", f"{ours.underruns}", f"{base.underruns}"],
        [
            "underruns per minute",
            fmt(ours.underruns_per_min, "", 1),
            fmt(base.underruns_per_min, "", 1),
        ],
        ["device xruns (PortAudio underflow)", f"{ours.xruns}", f"{base.xruns}"],
        [
            "callback run time p50",
            fmt(ours.callback_p50_us, " us", 0),
            fmt(base.callback_p50_us, " us", 0),
        ],
        [
            "callback run time p99",
            fmt(ours.callback_p99_us, " us", 0),
            fmt(base.callback_p99_us, " us", 0),
        ],
        [
            "callback run time max",
            fmt(ours.callback_max_us, " us", 0),
            fmt(base.callback_max_us, " us", 0),
        ],
        [
            "buffer depth while playing p50 / p95",
            f"{fmt(ours.depth_p50_ms, ' ms', 0)} / {fmt(ours.depth_p95_ms, ' ms', 0)}",
            f"{fmt(base.depth_p50_ms, ' ms', 0)} / {fmt(base.depth_p95_ms, ' ms', 0)}",
        ],
        [
            "added latency per chunk p50 / p95 (queued ahead + DAC)",
            pair(ours.added_latency_p50_ms, ours.added_latency_p95_ms),
            pair(base.added_latency_p50_ms, base.added_latency_p95_ms),
        ],
        [
            "device buffer (callback -> DAC)",
            fmt(ours.dac_ahead_ms, " ms", 1),
            fmt(base.dac_ahead_ms, " ms", 1),
        ],
        [
            "mic callback -> loop p50 / p95",
            f"{fmt(ours.mic_queue_p50_ms, ' ms', 3)} / {fmt(ours.mic_queue_p95_ms, ' ms', 3)}",
            f"{fmt(base.mic_queue_p50_ms, ' ms', 3)} / {fmt(base.mic_queue_p95_ms, ' ms', 3)}",
        ],
        [
            "CPU, whole process (% of one core)",
            fmt(ours.cpu.process_pct, " %"),
            fmt(base.cpu.process_pct, " %"),
        ],
    ]
    print(table(rows, ["metric", "voicetui", "naive baseline"]))
    if ours.prebuffer_changes or ours.underrun_times:
        changes = ", ".join(f"{p:.0f} ms at {t:.1f} s" for t, p in ours.prebuffer_changes)
        last = max(ours.underrun_times) if ours.underrun_times else 0.0
        after = sum(1 for t in ours.underrun_times if t > ours.seconds / 2)
        print(
            f"pre-buffer: 20 ms -> {changes or 'unchanged'};"
            f" final {ours.final_prebuffer_ms:.0f} ms; last underrun at {last:.1f} s;"
            f" underruns in the second half: {after}"
        )
    else:
        print(f"pre-buffer: stayed at {ours.final_prebuffer_ms:.0f} ms (no underrun)")
    c = ours.cpu
    rest = max(0.0, c.main_pct - ours.enqueue_busy_pct - ours.mic_busy_pct)
    print(
        "where the time goes (voicetui, % of one core): "
        f"output callback {ours.callback_busy_pct:.2f}; enqueue (convert + push) "
        f"{ours.enqueue_busy_pct:.2f}; mic loop side (resample, level, VAD) "
        f"{ours.mic_busy_pct:.2f} (p50 {ours.mic_process_p50_us:.0f} us/block); other main-"
        f"thread work (asyncio, sender, sampler) {rest:.2f}; audio threads in total (PortAudio/"
        f"ALSA/pulse client + both callbacks) {c.other_pct:.2f}; process {c.process_pct:.2f}"
    )


async def main_async(args: argparse.Namespace) -> int:
    from voicetui.audio.capture import DeviceInput
    from voicetui.audio.duplex import EchoGate
    from voicetui.audio.playback import DeviceOutput

    print("# bench_audio: playback jitter buffer and capture path (real PortAudio callbacks)")
    print(machine_line())
    floor = measure_floor(args.device, 3.0)
    mic = DeviceInput(args.device)
    ours = DeviceOutput(args.device)
    await ours.start()
    await mic.start()
    print(
        f"device '{ours.device_name}' at {ours.rate} Hz; voicetui: 10 ms blocks, latency 'low',"
        f" pre-buffer 20 ms (adaptive, cap 40 ms); chunks of {CONFIG['chunk_ms']} ms,"
        f" jitter +-{JITTER_MS:.0f} ms"
    )
    gate = EchoGate(ours)
    t_all = time.monotonic()
    a = await run_stream("a", ours, mic, gate, seconds=args.seconds, speed=1.5, seed=1)
    b = await run_stream("b", ours, mic, gate, seconds=args.seconds, speed=1.0, seed=2)
    starts_ours = await run_turn_starts(ours, args.turns, seed=3)
    await ours.stop()
    ours5 = DeviceOutput(args.device, block_ms=5.0)
    await ours5.start()
    starts_ours5 = await run_turn_starts(ours5, args.turns, seed=3)
    xruns5 = ours5.xruns
    await ours5.stop()

    base = NaivePlayer(args.device)
    await base.start()
    gate_b = EchoGate(ours)  # the mic consumer needs a gate; its reference is idle here
    ba = await run_stream(
        "base-a", base, mic, gate_b, seconds=args.baseline_seconds, speed=1.5, seed=1
    )
    bb = await run_stream(
        "base-b", base, mic, gate_b, seconds=args.baseline_seconds, speed=1.0, seed=2
    )
    starts_base = await run_turn_starts(base, args.turns, seed=3)
    await base.stop()
    await mic.stop()

    print_stream(
        f"(a) 1.5x real time, +-30 ms jitter ({args.seconds:.0f} s voicetui,"
        f" {args.baseline_seconds:.0f} s baseline)",
        a,
        ba,
    )
    print_stream(
        f"(b) exactly real time, +-30 ms jitter ({args.seconds:.0f} s voicetui,"
        f" {args.baseline_seconds:.0f} s baseline)",
        b,
        bb,
    )
    print(
        f"\n## (c) turn start: first chunk -> first sample at the DAC ({args.turns} replies each)"
    )
    rows = []
    for label, vals in (
        ("voicetui, 10 ms blocks (default)", starts_ours),
        ("voicetui, 5 ms blocks", starts_ours5),
        ("naive baseline, 40 ms blocks", starts_base),
    ):
        rows.append(
            [
                label,
                fmt(statistics.median(vals), " ms", 1),
                fmt(pct(vals, 95), " ms", 1),
                fmt(max(vals), " ms", 1),
            ]
        )
    print(table(rows, ["player", "median", "p95", "max"]))
    print(f"(5 ms blocks: {xruns5} device xruns during the turn starts)")

    print(
        "\n## (d) the same jitter buffer on a synthetic clock: 10 seeds x 60 s per cell"
        " (pre-buffer 20 ms, cap 40 ms)"
    )
    rows = []
    for chunk in (20, 40, 100):
        sa = [simulate(chunk, 1.5, s_) for s_ in range(10)]
        sb = [simulate(chunk, 1.0, s_) for s_ in range(10)]
        s30 = [simulate(chunk, 1.5, s_, prebuffer_ms=30) for s_ in range(10)]
        rows.append(
            [
                f"{chunk} ms",
                f"{sum(r[0] for r in sa)} (max {max(r[0] for r in sa)})",
                f"{sum(r[0] for r in s30)}",
                f"{sum(r[0] for r in sb)} (max {max(r[0] for r in sb)})",
                f"{statistics.median(r[1] for r in sb):.0f} / {max(r[1] for r in sb):.0f} ms",
                f"{max(r[2] for r in sb):.1f} s",
            ]
        )
    print(
        table(
            rows,
            [
                "chunk",
                "(a) underruns, all seeds",
                "(a) with prebuffer_ms=30",
                "(b) underruns, all seeds",
                "(b) final pre-buffer median / max",
                "(b) latest underrun",
            ],
        )
    )
    print(
        f"\n## floor: bare PortAudio streams with no-op callbacks use {floor:.2f} % of a core"
        " (PortAudio + ALSA pulse plugin + PulseAudio client threads)"
    )

    print("\n## summary against the goals")
    goals = [
        [
            "(a) underruns",
            "0",
            f"{a.underruns}",
            f"{ba.underruns_per_min:.1f}/min",
            ratio(a.underruns_per_min, ba.underruns_per_min),
        ],
        ["(b) final pre-buffer", "<= 40 ms", f"{b.final_prebuffer_ms:.0f} ms", "none", ""],
        [
            "(b) underruns after settling (2nd half)",
            "0",
            f"{sum(1 for t in b.underrun_times if t > b.seconds / 2)}",
            f"{bb.underruns_per_min:.1f}/min",
            "",
        ],
        [
            "callback p99 (worst of a, b)",
            "< 1 ms",
            fmt(max(a.callback_p99_us, b.callback_p99_us), " us", 0),
            fmt(max(ba.callback_p99_us, bb.callback_p99_us), " us", 0),
            ratio(
                max(a.callback_p99_us, b.callback_p99_us),
                max(ba.callback_p99_us, bb.callback_p99_us),
            ),
        ],
        [
            "mic callback -> loop p95",
            "(report)",
            fmt(max(a.mic_queue_p95_ms, b.mic_queue_p95_ms), " ms", 3),
            "same mic",
            "",
        ],
        [
            "added playback latency p95, turn start",
            "<= 20 ms",
            fmt(pct(starts_ours, 95), " ms", 1),
            fmt(pct(starts_base, 95), " ms", 1),
            ratio(pct(starts_ours, 95), pct(starts_base, 95)),
        ],
        [
            "added latency per chunk, (b) p50 / p95",
            "(report)",
            f"{fmt(b.added_latency_p50_ms, ' ms', 0)} / {fmt(b.added_latency_p95_ms, ' ms', 0)}",
            f"{fmt(bb.added_latency_p50_ms, ' ms', 0)} / {fmt(bb.added_latency_p95_ms, ' ms', 0)}",
            ratio(b.added_latency_p50_ms, bb.added_latency_p50_ms),
        ],
        [
            "CPU above the bare-stream floor (worst)",
            "(report)",
            fmt(max(a.cpu.process_pct, b.cpu.process_pct) - floor, " %"),
            fmt(max(ba.cpu.process_pct, bb.cpu.process_pct) - floor, " %"),
            "",
        ],
        [
            "CPU % of one core (worst of a, b)",
            "<= 3 %",
            fmt(max(a.cpu.process_pct, b.cpu.process_pct), " %"),
            fmt(max(ba.cpu.process_pct, bb.cpu.process_pct), " %"),
            ratio(
                max(a.cpu.process_pct, b.cpu.process_pct),
                max(ba.cpu.process_pct, bb.cpu.process_pct),
            ),
        ],
    ]
    print(table(goals, ["metric", "goal", "voicetui", "baseline", "baseline/voicetui"]))
    print(f"\ntotal run time {time.monotonic() - t_all:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="stream length per scenario (default 60)"
    )
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=None,
        help="baseline stream length (default: seconds / 6, at least 5)",
    )
    parser.add_argument("--turns", type=int, default=12, help="replies for the turn-start test")
    parser.add_argument("--chunk-ms", type=int, default=40, help="provider chunk size (default 40)")
    parser.add_argument("--device", default="pulse")
    args = parser.parse_args(argv)
    CONFIG["chunk_ms"] = args.chunk_ms
    if args.baseline_seconds is None:
        args.baseline_seconds = max(5.0, args.seconds / 6)
    with audio_sandbox():
        return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
