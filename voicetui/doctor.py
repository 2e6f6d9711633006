"""``voicetui doctor``: the one command to run when something is wrong.

Every check is ``{name, status: ok|warn|fail|skip, detail}``. They run concurrently, each
under its own timeout, so the whole run is bounded (about ``network timeout + 1 s``, far
below 20 s) even with every provider unreachable; nothing here raises for a broken device,
keyring or network: it becomes a check's status. Exit 0 iff no check failed.

Checks: Python and platform; PortAudio (version); input/output devices and their rates; a
2-second microphone level check; the keyring backend; per provider: the key (source and
validity), the configured model(s) (available to the key, lifecycle), the voice, a realtime
handshake opened and closed, and the round-trip time. Later checks (``doctor --echo``
calibration, say) add a :data:`CheckFn` to :func:`default_checks`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar

from voicetui import logs
from voicetui.config import AppConfig, load_config
from voicetui.health import HealthResult, check
from voicetui.keys import KeyringUnavailable, KeyStore
from voicetui.providers.catalog import catalog_for, provider_module
from voicetui.specs.registry import registry

CheckStatus = Literal["ok", "warn", "fail", "skip"]
T = TypeVar("T")
NETWORK_TIMEOUT_S = 6.0  # per provider call
PROVIDER_BUDGET_S = 14.0  # all of one provider's calls together: the run stays under 20 s
LOCAL_TIMEOUT_S = 6.0  # device listing, keyring (a hung D-Bus must not hang doctor)
MIC_SECONDS = 2.0
SILENCE_DBFS = -90.0  # below this the input is digital silence (all zeros, or nearly)
QUIET_DBFS = -60.0
SLOW_RTT_MS = 3000


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report (``detail`` is one line, never a key)."""

    name: str
    status: CheckStatus
    detail: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


CheckFn = Callable[["DoctorContext"], Awaitable[list[Check]]]


@dataclass(slots=True)
class DoctorContext:
    """What the checks share: the config, the key store and the network timeout."""

    config: AppConfig
    keys: KeyStore
    timeout_s: float = NETWORK_TIMEOUT_S
    mic_seconds: float = MIC_SECONDS


# ------------------------------------------------------------------------------ local checks


async def check_python(ctx: DoctorContext) -> list[Check]:
    """Python and platform."""
    ok = sys.version_info >= (3, 11)
    detail = f"Python {platform.python_version()} on {platform.platform(terse=True)}"
    return [Check("python", "ok" if ok else "fail", detail + ("" if ok else "; needs 3.11+"))]


def _portaudio_and_devices(config: AppConfig) -> list[Check]:
    from voicetui.audio.devices import Kind, list_devices
    from voicetui.audio.errors import AudioError
    from voicetui.audio.sd_loader import load_sounddevice

    try:
        sd = load_sounddevice()
    except AudioError as err:
        return [
            Check("portaudio", "fail", str(err)),
            Check("input device", "skip", "no PortAudio"),
            Check("output device", "skip", "no PortAudio"),
        ]
    version = str(sd.get_portaudio_version()[1])
    out = [Check("portaudio", "ok", version)]
    devices = list_devices()
    kinds: tuple[tuple[Kind, str | None], ...] = (
        ("input", config.audio.input_device),
        ("output", config.audio.output_device),
    )
    for kind, wanted in kinds:
        usable = [d for d in devices if d.channels(kind) > 0]
        if wanted:
            chosen = next((d for d in usable if d.name == wanted), None)
        else:
            chosen = next((d for d in usable if getattr(d, f"is_default_{kind}")), None)
        if chosen is None and not usable:
            out.append(Check(f"{kind} device", "fail", f"no {kind} device found"))
        elif chosen is None:
            names = ", ".join(d.name for d in usable[:6])
            what = f"{wanted!r} not found" if wanted else "no default"
            out.append(Check(f"{kind} device", "fail", f"{what}; available: {names}"))
        else:
            rate = f"{chosen.default_samplerate:.0f} Hz"
            extra = f" ({len(usable)} {kind} devices)" if len(usable) > 1 else ""
            out.append(Check(f"{kind} device", "ok", f"{chosen.name}: {rate}{extra}"))
    return out


async def check_audio(ctx: DoctorContext) -> list[Check]:
    """PortAudio present (and its version); the input and output devices and their rates."""
    try:
        async with asyncio.timeout(LOCAL_TIMEOUT_S):
            return await in_daemon_thread(_portaudio_and_devices, ctx.config)
    except TimeoutError:
        return [Check("portaudio", "fail", f"listing devices took over {LOCAL_TIMEOUT_S:.0f} s")]
    except Exception as err:  # a PortAudio surprise: report, never crash
        return [Check("portaudio", "fail", f"{type(err).__name__}: {_line(str(err))}")]


def _record_level(device: str | None, seconds: float) -> tuple[float, float]:
    import numpy as np

    from voicetui.audio.level import rms_peak_dbfs
    from voicetui.audio.sd_loader import load_sounddevice

    sd = load_sounddevice()
    info = sd.query_devices(device, "input")
    rate = int(info["default_samplerate"]) or 48_000
    pcm = sd.rec(int(rate * seconds), samplerate=rate, channels=1, dtype="int16", device=device)
    sd.wait()
    return rms_peak_dbfs(np.ascontiguousarray(pcm[:, 0]))


async def check_microphone(ctx: DoctorContext) -> list[Check]:
    """Two seconds from the microphone: digital silence means muted or no permission."""
    name = "microphone level"
    try:
        async with asyncio.timeout(ctx.mic_seconds + LOCAL_TIMEOUT_S):
            rms, peak = await in_daemon_thread(
                _record_level, ctx.config.audio.input_device, ctx.mic_seconds
            )
    except TimeoutError:
        return [Check(name, "fail", "the microphone did not deliver audio in time")]
    except Exception as err:
        return [Check(name, "fail", f"cannot record: {type(err).__name__}: {_line(str(err))}")]
    level = f"RMS {rms:.0f} dBFS, peak {peak:.0f} dBFS over {ctx.mic_seconds:.0f} s"
    if peak <= SILENCE_DBFS:
        return [
            Check(name, "fail", f"the microphone gives no sound: muted, or no permission ({level})")
        ]
    if rms < QUIET_DBFS:
        return [
            Check(name, "warn", f"very quiet: speak during the check, or raise the gain ({level})")
        ]
    return [Check(name, "ok", level)]


def _keyring_state(keys: KeyStore) -> Check:
    import keyring

    backend = keyring.get_keyring()
    label = f"{type(backend).__module__}.{type(backend).__name__}"
    try:
        keys.get_stored(registry().keys()[0])
    except KeyringUnavailable as err:
        return Check("keyring", "warn", f"{label}: {_line(str(err))}")
    return Check("keyring", "ok", label)


async def check_keyring(ctx: DoctorContext) -> list[Check]:
    """The keyring backend can be read (keys in the environment work without it)."""
    try:
        async with asyncio.timeout(LOCAL_TIMEOUT_S):
            return [await in_daemon_thread(_keyring_state, ctx.keys)]
    except TimeoutError:
        return [Check("keyring", "warn", f"no answer within {LOCAL_TIMEOUT_S:.0f} s (locked?)")]
    except Exception as err:
        return [Check("keyring", "warn", f"{type(err).__name__}: {_line(str(err))}")]


# --------------------------------------------------------------------------- provider checks


Handshake = Callable[[str, str, Any], Awaitable[str]]


def handshake(spec_key: str) -> Handshake | None:
    """The provider's ``HANDSHAKE`` (``<provider package>.doctor``): opens the realtime
    socket a conversation uses and closes it, returning what it opened."""
    fn: Handshake | None = getattr(provider_module(spec_key, "doctor"), "HANDSHAKE", None)
    return fn


PARTS = ("key", "model", "voice", "handshake", "round trip")


def _provider_checks(ctx: DoctorContext, spec_key: str) -> CheckFn:
    async def run(ctx: DoctorContext) -> list[Check]:
        # the calls have their own timeouts; this also bounds the SDK import before them
        limit = PROVIDER_BUDGET_S + 2
        try:
            async with asyncio.timeout(limit):
                return await _check_provider(ctx, spec_key)
        except TimeoutError:
            short = registry().alias(spec_key)
            return [Check(f"{short}: key", "fail", f"no result within {limit:.0f} s")] + [
                Check(f"{short}: {part}", "skip", "the key check did not finish")
                for part in PARTS[1:]
            ]

    return run


async def _check_provider(ctx: DoctorContext, spec_key: str) -> list[Check]:
    reg = registry()
    short = reg.alias(spec_key)
    selected = ctx.config.provider == spec_key
    options = ctx.config.provider_options(spec_key)
    names = [f"{short}: {part}" for part in PARTS]
    deadline = time.monotonic() + PROVIDER_BUDGET_S

    def budget_ms() -> int:  # each call gets its timeout, within the provider's budget
        left = min(ctx.timeout_s, deadline - time.monotonic())
        return max(int(left * 1000), 1)

    try:  # a hung keyring (locked D-Bus) must not hang the run: a daemon thread, bounded
        async with asyncio.timeout(LOCAL_TIMEOUT_S):
            resolved = await in_daemon_thread(ctx.keys.get, spec_key)
        key, source = resolved.value or "", str(resolved.source)
    except (TimeoutError, KeyringUnavailable) as err:
        key, source = "", "none"
        why = (
            f"the keyring did not answer within {LOCAL_TIMEOUT_S:.0f} s"
            if isinstance(err, TimeoutError)
            else str(err)
        )
        if not selected:
            why = f"not the selected provider; {why}"
        return [Check(names[0], "fail" if selected else "skip", why)] + [
            Check(n, "skip", "no key") for n in names[1:]
        ]
    if not key:
        result = HealthResult(
            spec_key,
            "no_key",
            None,
            f"no API key: run `voicetui keys set {short}` or set {reg.api_key_env(spec_key)}",
        )
    else:
        result = await check(spec_key, ctx.config, api_key=key, timeout_ms=budget_ms())
    if result.status == "no_key":
        status: CheckStatus = "fail" if selected else "skip"
        why = result.detail if selected else f"not the selected provider; {result.detail}"
        return [Check(names[0], status, why)] + [Check(n, "skip", "no key") for n in names[1:]]
    if result.status not in ("ok", "unavailable"):
        return [Check(names[0], "fail", f"{result.status}: {result.detail}")] + [
            Check(n, "skip", f"the key check failed ({result.status})") for n in names[1:]
        ]
    out = [Check(names[0], "ok", f"from the {source}; accepted")]
    out += _model_and_voice(spec_key, options, result, names[1], names[2])
    out.append(await _handshake(ctx, spec_key, names[3], key, budget_ms() / 1000))
    # the first call paid for connection set-up and the SDK's lazy sub-clients: time a
    # second, warm one for the round trip
    again = await check(spec_key, ctx.config, api_key=key, timeout_ms=budget_ms())
    rtt = again.latency_ms if again.ok and again.latency_ms is not None else result.latency_ms
    rtt = rtt or 0
    slow = rtt >= SLOW_RTT_MS  # past this a spoken turn feels broken
    out.append(Check(names[4], "warn" if slow else "ok", f"{rtt} ms (model listing)"))
    return out


def _model_and_voice(
    spec_key: str, options: Any, result: HealthResult, model_name: str, voice_name: str
) -> list[Check]:
    catalog = catalog_for(spec_key)
    missing_models = [p for p in result.missing if not p.startswith("voice ")]
    voice_missing = next((p for p in result.missing if p.startswith("voice ")), None)
    models = [str(options[o]) for o in (catalog.model_options if catalog else ("model",))]
    if missing_models:
        model_check = Check(model_name, "fail", "; ".join(missing_models))
    else:
        states = []
        worst: CheckStatus = "ok"
        for model in models:
            info = catalog.find(model) if catalog else None
            life: str = info.status_on() if info else "not in the catalogue"
            if info is not None and life == "deprecated":
                worst = "warn"
                life += f", shuts down {info.shutdown}" if info.shutdown else ""
            # a cascade (no realtime speech model) relies on its streaming STT for turns
            cascade = catalog is not None and catalog.model_options.get("model") != "realtime"
            realtime_stt = info is not None and info.role == "stt" and info.has("streaming")
            server_vad = cascade and options.get("turnDetection") == "server_vad"
            if realtime_stt and server_vad and info is not None and not info.has("turn_detection"):
                life += "; no server turn detection: a local VAD ends turns"
            states.append(f"{model} ({life})")
        model_check = Check(model_name, worst, ", ".join(states))
    voice = str(options.get("defaultVoice"))
    if voice_missing:
        voice_check = Check(voice_name, "fail", voice_missing)
    else:
        voice_check = Check(voice_name, "ok", f"{voice} available")
    return [model_check, voice_check]


async def _handshake(
    ctx: DoctorContext, spec_key: str, name: str, key: str, timeout_s: float
) -> Check:
    """Open the realtime socket the conversation would use, then close it."""
    settings = ctx.config.provider_settings(spec_key)
    logs.register_secret(key)
    opener = handshake(spec_key)
    if opener is None:
        return Check(name, "skip", "this provider has no realtime handshake check")
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            what = await opener(settings.base_url, key, settings)
    except TimeoutError:
        return Check(name, "fail", f"no realtime session within {timeout_s:.0f} s")
    except Exception as err:
        text = _line(str(err)).replace(key, logs.REDACTED) if key else _line(str(err))
        return Check(name, "fail", f"{type(err).__name__}: {logs.redact(text)}")
    ms = round((time.perf_counter() - started) * 1000)
    return Check(name, "ok", f"{what} opened and closed in {ms} ms")


async def check_echo(ctx: DoctorContext) -> list[Check]:
    """``--echo``: play a probe, measure the echo path, save the duplex policy it implies."""
    from voicetui.audio.calibrate import PROBE_S, calibrate_echo, config_changes
    from voicetui.config import update_config

    name = "echo path"
    try:
        async with asyncio.timeout(PROBE_S + LOCAL_TIMEOUT_S):
            result = await calibrate_echo(ctx.config.audio)
    except TimeoutError:
        return [Check(name, "fail", "the devices did not play and record the probe in time")]
    except Exception as err:
        return [Check(name, "fail", f"cannot calibrate: {type(err).__name__}: {_line(str(err))}")]
    try:
        update_config(ctx.config.path, audio=config_changes(result))
    except Exception as err:  # ConfigError, an unwritable dir: measured, not saved
        return [Check(name, "warn", f"{result.summary()}; not saved: {_line(str(err))}")]
    return [Check(name, "ok", f"{result.summary()} (saved to {ctx.config.path})")]


# ----------------------------------------------------------------------------------- running


def default_checks(ctx: DoctorContext, *, microphone: bool = True) -> list[CheckFn]:
    """The checks in report order (each returns one or more lines)."""
    checks: list[CheckFn] = [check_python, check_audio]
    if microphone:
        checks.append(check_microphone)
    checks.append(check_keyring)
    spec_keys: list[str] = registry().keys()
    checks += [_provider_checks(ctx, key) for key in spec_keys if handshake(key)]
    return checks


async def run_checks(
    ctx: DoctorContext,
    checks: Sequence[CheckFn] | None = None,
    on_result: Callable[[list[Check]], None] | None = None,
) -> list[Check]:
    """Run every check concurrently; results in report order. ``on_result`` sees each
    group as it finishes (the Doctor screen fills in live)."""
    fns = list(checks) if checks is not None else default_checks(ctx)

    async def one(fn: CheckFn) -> list[Check]:
        try:
            found = await fn(ctx)
        except Exception as err:  # a check's own bug: one failed line, not a traceback
            name = getattr(fn, "__name__", "check").removeprefix("check_")
            found = [Check(name, "fail", f"{type(err).__name__}: {_line(str(err))}")]
        if on_result is not None:
            on_result(found)
        return found

    groups = await asyncio.gather(*(one(fn) for fn in fns))
    return [c for group in groups for c in group]


async def in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a daemon thread: unlike ``asyncio.to_thread``, a call that never
    returns (a hung D-Bus, a stuck audio driver) neither blocks the loop's shutdown nor the
    process's exit; the caller bounds the wait with a timeout."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def work() -> None:
        outcome: tuple[bool, Any]
        try:
            outcome = (True, fn(*args))
        except BaseException as err:  # handed to the waiting coroutine, not swallowed
            outcome = (False, err)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the run ended (timed out) and its loop is closed: nobody waits
            return

    threading.Thread(target=work, name="doctor-check", daemon=True).start()
    return await future


def passed(checks: Sequence[Check]) -> bool:
    """Nothing failed (warnings and skips are fine)."""
    return all(c.status != "fail" for c in checks)


def _line(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def format_report(checks: Sequence[Check]) -> str:
    """The text report: status, name, detail per line."""
    width = max((len(c.name) for c in checks), default=10)
    return "\n".join(f"{c.status:<5} {c.name:<{width}}  {c.detail}" for c in checks)


def cli_main(args: argparse.Namespace) -> int:
    """``voicetui doctor [--json] [--timeout-s S] [--echo]``."""
    config = load_config(args.config)
    timeout = args.timeout_s if args.timeout_s and args.timeout_s > 0 else NETWORK_TIMEOUT_S
    ctx = DoctorContext(config=config, keys=KeyStore(), timeout_s=min(timeout, PROVIDER_BUDGET_S))
    started = time.perf_counter()
    checks = asyncio.run(run_checks(ctx))
    if getattr(args, "echo", False):  # after the others: the mic check must not hear the probe
        checks += asyncio.run(run_checks(ctx, [check_echo]))
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({"checks": [c.to_json() for c in checks]}, indent=2))
    else:
        print(format_report(checks))
        verdict = "all good" if passed(checks) else "something failed: see the lines marked fail"
        print(f"\n{verdict} ({elapsed:.1f} s)")
    return 0 if passed(checks) else 1
