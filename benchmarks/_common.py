"""Generic helpers for the benchmark scripts: percentiles, CPU accounting, tables, and a
private audio sandbox for scripts run outside pytest.

Run a benchmark as ``.venv/bin/python benchmarks/bench_X.py``; this module puts the repo
root on ``sys.path`` so ``voicetui`` imports without installation.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pct(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-th percentile (0-100) of ``values``; NaN when empty."""
    arr = np.asarray(values, dtype=np.float64)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


def fmt(value: float, unit: str = "", digits: int = 2) -> str:
    """A number with a unit, or 'n/a' for NaN."""
    if math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}{unit}"


def ratio(ours: float, base: float) -> str:
    """'base/ours' as 'N.Nx better' style text (how many times lower ours is)."""
    if math.isnan(ours) or math.isnan(base):
        return "n/a"
    if ours == 0:
        return "inf x" if base > 0 else "1.0x"
    return f"{base / ours:.1f}x"


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A plain aligned text table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def machine_line() -> str:
    """One line describing where the numbers come from."""
    return (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load avg {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


@dataclass
class CpuSample:
    """CPU seconds used between ``start`` and ``stop``, by thread group."""

    wall_s: float = 0.0
    process_s: float = 0.0
    main_thread_s: float = 0.0
    other_threads_s: float = 0.0
    by_thread: dict[int, float] = field(default_factory=dict)

    @property
    def process_pct(self) -> float:
        """Percent of one core used by the whole process."""
        return 100.0 * self.process_s / self.wall_s if self.wall_s else float("nan")

    @property
    def main_pct(self) -> float:
        return 100.0 * self.main_thread_s / self.wall_s if self.wall_s else float("nan")

    @property
    def other_pct(self) -> float:
        return 100.0 * self.other_threads_s / self.wall_s if self.wall_s else float("nan")


class CpuMeter:
    """Measures this process's CPU time (total, main thread, other threads) over a span."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self._main = threading.main_thread().native_id
        self._t0 = 0.0
        self._cpu0 = 0.0
        self._threads0: dict[int, float] = {}

    def _threads(self) -> dict[int, float]:
        return {t.id: t.user_time + t.system_time for t in self._proc.threads()}

    def start(self) -> None:
        times = self._proc.cpu_times()
        self._cpu0 = times.user + times.system
        self._threads0 = self._threads()
        self._t0 = time.monotonic()

    def stop(self) -> CpuSample:
        wall = time.monotonic() - self._t0
        times = self._proc.cpu_times()
        threads = self._threads()
        by = {tid: cpu - self._threads0.get(tid, 0.0) for tid, cpu in threads.items()}
        main = by.get(self._main or -1, 0.0)
        total = times.user + times.system - self._cpu0
        return CpuSample(wall, total, main, max(0.0, total - main), by)


@contextlib.contextmanager
def audio_sandbox() -> Iterator[bool]:
    """Make sure a virtual sound device exists: reuse a running sandbox (PULSE_SERVER set),
    else start a private one for this process and stop it at exit. Must run before
    ``sounddevice`` is imported (PortAudio scans devices once, at import). Yields whether it
    started one."""
    if os.environ.get("PULSE_SERVER"):
        yield False
        return
    script = ROOT / "tools" / "audio-sandbox.sh"
    env = {**os.environ, "AUDIO_SANDBOX_DIR": f"/tmp/voicetui-bench-audio-{os.getpid()}"}
    subprocess.run(["bash", str(script), "start"], env=env, check=True, capture_output=True)
    try:
        out = subprocess.run(
            ["bash", str(script), "env"], env=env, check=True, capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            os.environ[key] = value
        yield True
    finally:
        subprocess.run(["bash", str(script), "stop"], env=env, check=False, capture_output=True)
