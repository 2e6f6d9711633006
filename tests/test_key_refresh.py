"""Managed keys in a running session: a key from ``apiKeyCommand`` that the provider rejects
while the session connects or reconnects is read again once (issue 15).

Both providers, against their emulators, through the real factory (``build_engine``), the
real key store and a real command: ``sh -c`` counting its runs in a file and printing the old
key on the first run, the rotated one afterwards. WAV in, WAV out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicetui import logs
from voicetui.audio.factory import AudioOptions
from voicetui.audio.ports import ENGINE_RATE, DuplexPolicy
from voicetui.audio.wav import write_wav_pcm16
from voicetui.config import update_config
from voicetui.engine.events import (
    AssistantDone,
    AssistantTextFinal,
    ErrorEvent,
    Event,
    Reconnected,
    SessionRolledOver,
    SessionWarning,
    UserTranscript,
)
from voicetui.engine.factory import CommandKey, build_engine
from voicetui.engine.keys import FixedKey, SessionKey
from voicetui.engine.session import ConversationEngine
from voicetui.engine.transcript import TranscriptStore
from voicetui.keys import KeyStore
from voicetui.providers.base import ProviderError
from voicetui.testing.emulators.common import Script, Turn, speech_like_pcm

pytestmark = [pytest.mark.timeout(60)]

# not shaped like an ``sk-`` key on purpose: only their registration can keep them out of logs
OLD_KEY = "mk-rotated-away-0a1b2c3d4e"
NEW_KEY = "mk-fresh-from-vault-5f6a7b8c"
HELLO = "Hello there, how are you?"
REPLY = "Fine, thanks for asking."
SECOND = "Tell me a joke."
SECOND_REPLY = "Why not? Here is one."
PROVIDERS = ["openai", "mistral"]


@pytest.fixture
def emulators(openai_emulator: Any, mistral_emulator: Any) -> dict[str, Any]:
    return {"openai": openai_emulator, "mistral": mistral_emulator}


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """The app's redacting log file, at DEBUG (SDK and socket debug lines included)."""
    root = logging.getLogger()
    level = root.level
    path = logs.setup_logging(logging.DEBUG, tmp_path / "xdg" / "state" / "key-refresh.log")
    assert path is not None
    try:
        yield path
    finally:
        for handler in list(root.handlers):
            if getattr(handler, "baseFilename", None) == str(path):
                root.removeHandler(handler)
                handler.close()
        logs._installed.clear()
        root.setLevel(level)


class Vault:
    """A secret manager behind ``sh -c``: prints ``first`` on its first run, ``then`` on every
    later one (``then=None``: fails like a locked vault), counting its runs in a file."""

    def __init__(self, tmp_path: Path, first: str, then: str | None) -> None:
        self.counter = tmp_path / "vault-runs"
        later = f"printf %s {then}" if then is not None else "echo 'vault locked' >&2; exit 3"
        script = (
            f"n=$(cat {self.counter} 2>/dev/null || echo 0); n=$((n + 1)); "
            f"echo $n > {self.counter}; "
            f"if [ $n -eq 1 ]; then printf %s {first}; else {later}; fi"
        )
        self.argv = ["sh", "-c", script]

    @property
    def runs(self) -> int:
        return int(self.counter.read_text()) if self.counter.exists() else 0


def clip(path: Path, *parts: str | float) -> Path:
    """A WAV of speech-like words (str) and silences (float seconds)."""
    pcm = [
        speech_like_pcm(p) if isinstance(p, str) else np.zeros(int(ENGINE_RATE * p), np.float32)
        for p in parts
    ]
    write_wav_pcm16(path, np.concatenate(pcm))
    return path


def session(
    provider: str,
    emu: Any,
    tmp_path: Path,
    vault: Vault,
    wav: Path,
    *,
    mode: str = "push_to_talk",
    environ: dict[str, str] | None = None,
    max_s: float | None = None,
) -> tuple[ConversationEngine, list[Event]]:
    """What ``voicetui talk`` builds: config -> key store -> factory -> engine."""
    extras: dict[str, Any] = {"transcriptionModel": "gpt-4o-transcribe"}
    options: dict[str, Any] = {
        "baseUrl": emu.base_url,
        "apiKeyCommand": vault.argv,
        "turnDetection": mode,
        **(extras if provider == "openai" else {}),
        **({"maxSessionDurationSeconds": max_s} if max_s is not None else {}),
    }
    config = update_config(
        tmp_path / "config.toml", provider=provider, providers={provider: options}
    )
    ptt = mode == "push_to_talk"
    engine = build_engine(
        config,
        KeyStore(environ=environ or {}),
        input_wav=wav,
        output_wav=tmp_path / "out.wav",
        realtime_input=not ptt,
        realtime_output=not ptt,
        end_when_input_ends=True,
        talk_on_connect=ptt,
        audio=AudioOptions(duplex=DuplexPolicy.FULL),
        store=TranscriptStore(),
    )
    events: list[Event] = []
    engine.subscribe(events.append)
    return engine, events


def script(emu: Any, *turns: Turn) -> None:
    if hasattr(emu, "reset_cursors"):  # Mistral: one cursor per endpoint
        emu.script = Script(turns=list(turns))
    else:
        emu.script.turns = list(turns)


def of(events: list[Event], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def lines(events: list[Event]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for e in events:
        if isinstance(e, UserTranscript) and e.final and not e.relabel:
            out.append(("user", e.text))
        elif isinstance(e, AssistantTextFinal):
            out.append(("assistant", e.text))
    return out


def assert_no_key_in_files(root: Path, *keys: str) -> None:
    """No file the app wrote (transcripts, usage, logs, agent cache) holds a key."""
    files = [p for p in (root / "xdg").rglob("*") if p.is_file()]
    assert files, "nothing was written: the scan would prove nothing"
    for path in files:
        data = path.read_bytes()
        for key in keys:
            assert key.encode() not in data, f"{key[:6]}… leaked into {path.name}"


def read_log(path: Path) -> str:
    """The log file's text (after a flush), redacted as the app writes it."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    return path.read_text(encoding="utf-8")


def refresh_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "voicetui.engine.keys" and "running the command again" in r.getMessage()
    ]


# --- connecting -------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_rotated_key_is_read_again_once_and_the_session_connects(
    provider: str,
    emulators: dict[str, Any],
    tmp_path: Path,
    log_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="voicetui")
    emu = emulators[provider]
    emu.accepted_keys = {NEW_KEY}  # rotated at the provider; the vault still has the old one
    script(emu, Turn(user_text=HELLO, reply=REPLY))
    vault = Vault(tmp_path, OLD_KEY, NEW_KEY)
    engine, events = session(provider, emu, tmp_path, vault, clip(tmp_path / "q.wav", HELLO))
    assert vault.runs == 1  # the factory read the key

    ended = await asyncio.wait_for(engine.run(), 40)

    assert ended.code == "input_finished", of(events, ErrorEvent)
    assert not [e for e in of(events, ErrorEvent) if e.fatal]
    assert lines(events) == [("user", HELLO), ("assistant", REPLY)]
    assert vault.runs == 2  # exactly one refresh
    (line,) = refresh_lines(caplog)
    assert "apiKeyCommand 'sh'" in line
    assert "running the command again" in read_log(log_file)
    assert OLD_KEY not in caplog.text and NEW_KEY not in caplog.text
    assert_no_key_in_files(tmp_path, OLD_KEY, NEW_KEY)


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_refreshed_key_rejected_again_ends_with_one_line(
    provider: str, emulators: dict[str, Any], tmp_path: Path, log_file: Path
) -> None:
    emu = emulators[provider]
    emu.accepted_keys = {"mk-a-key-no-vault-has-0000"}
    vault = Vault(tmp_path, OLD_KEY, NEW_KEY)
    engine, events = session(provider, emu, tmp_path, vault, clip(tmp_path / "q.wav", HELLO))

    ended = await asyncio.wait_for(engine.run(), 40)

    assert ended.code == "error"
    fatal = [e for e in of(events, ErrorEvent) if e.fatal]
    assert len(fatal) == 1, fatal
    assert fatal[0].code == "key_rejected"
    assert fatal[0].message == (
        f"{provider} rejected the key from apiKeyCommand 'sh', and also the new key it gave "
        "when run again; update the secret it reads"
    )
    assert ended.reason == fatal[0].message
    assert vault.runs == 2  # one refresh, not one per attempt
    assert "also the new key" in read_log(log_file)
    assert_no_key_in_files(tmp_path, OLD_KEY, NEW_KEY)


@pytest.mark.asyncio
async def test_a_command_failing_on_the_refresh_ends_with_its_one_line(
    openai_emulator: Any, tmp_path: Path
) -> None:
    openai_emulator.accepted_keys = {NEW_KEY}
    vault = Vault(tmp_path, OLD_KEY, None)
    wav = clip(tmp_path / "q.wav", HELLO)
    engine, events = session("openai", openai_emulator, tmp_path, vault, wav)

    ended = await asyncio.wait_for(engine.run(), 40)

    assert ended.code == "error"
    (fatal,) = [e for e in of(events, ErrorEvent) if e.fatal]
    assert fatal.code == "key_rejected"
    assert fatal.message == (
        "apiKeyCommand 'sh' failed with exit status 3: vault locked (the key it gave was rejected)"
    )
    assert vault.runs == 2


@pytest.mark.asyncio
async def test_a_key_from_the_environment_is_not_refreshed(
    openai_emulator: Any, tmp_path: Path
) -> None:
    openai_emulator.accepted_keys = {NEW_KEY}
    vault = Vault(tmp_path, OLD_KEY, NEW_KEY)
    engine, events = session(
        "openai", openai_emulator, tmp_path, vault, clip(tmp_path / "q.wav", HELLO),
        environ={"OPENAI_API_KEY": "mk-from-the-environment-9999"},
    )  # fmt: skip

    ended = await asyncio.wait_for(engine.run(), 40)

    assert ended.code == "error"
    (fatal,) = [e for e in of(events, ErrorEvent) if e.fatal]
    assert fatal.code == "key_rejected" and "voicetui keys set openai" in fatal.message
    assert vault.runs == 0  # the environment wins: the command never ran
    assert len(openai_emulator.log.of("ws_open")) == 1  # one handshake, no retry


# --- mid-session --------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_key_rotated_mid_session_is_read_again_and_the_conversation_goes_on(
    provider: str,
    emulators: dict[str, Any],
    tmp_path: Path,
    log_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="voicetui")
    emu = emulators[provider]
    emu.accepted_keys = {OLD_KEY}
    script(emu, Turn(user_text=HELLO, reply=REPLY), Turn(user_text=SECOND, reply=SECOND_REPLY))
    vault = Vault(tmp_path, OLD_KEY, NEW_KEY)
    # the user waits for the reply, the key is rotated (the service drops the sockets), the
    # user asks again: room for a reconnect (OpenAI's first backoff is 1 s) in between
    wav = clip(tmp_path / "q.wav", 0.3, HELLO, 6.0, SECOND, 1.0)
    engine, events = session(provider, emu, tmp_path, vault, wav, mode="server_vad")
    rotations: list[asyncio.Task[None]] = []

    def rotate_after_the_first_reply(event: Event) -> None:
        if isinstance(event, AssistantDone) and not rotations:
            rotations.append(asyncio.ensure_future(emu.rotate_keys(NEW_KEY)))

    engine.subscribe(rotate_after_the_first_reply)

    ended = await asyncio.wait_for(engine.run(), 50)

    assert rotations and rotations[0].done()
    assert ended.code == "input_finished", of(events, ErrorEvent)
    assert not [e for e in of(events, ErrorEvent) if e.fatal]
    assert lines(events) == [
        ("user", HELLO),
        ("assistant", REPLY),
        ("user", SECOND),
        ("assistant", SECOND_REPLY),
    ]
    assert len(of(events, Reconnected)) >= 1
    assert vault.runs == 2  # the factory's read and one refresh
    assert len(refresh_lines(caplog)) == 1
    assert OLD_KEY not in caplog.text and NEW_KEY not in caplog.text
    assert_no_key_in_files(tmp_path, OLD_KEY, NEW_KEY)


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_key_rotated_before_a_rollover_is_read_again_for_the_new_session(
    provider: str, emulators: dict[str, Any], tmp_path: Path
) -> None:
    emu = emulators[provider]
    emu.accepted_keys = {OLD_KEY}
    script(emu, Turn(user_text=HELLO, reply=REPLY), Turn(user_text=SECOND, reply=SECOND_REPLY))
    vault = Vault(tmp_path, OLD_KEY, NEW_KEY)
    # a 4 s limit: after the first reply the engine continues in a new provider session,
    # whose handshake meets the rotated key (the open session is left alone)
    wav = clip(tmp_path / "q.wav", 0.3, HELLO, 4.5, SECOND, 1.0)
    engine, events = session(provider, emu, tmp_path, vault, wav, mode="server_vad", max_s=4.0)
    rotations: list[asyncio.Task[None]] = []

    def rotate_after_the_first_reply(event: Event) -> None:
        if isinstance(event, AssistantDone) and not rotations:
            rotations.append(asyncio.ensure_future(emu.rotate_keys(NEW_KEY, drop_code=None)))

    engine.subscribe(rotate_after_the_first_reply)

    ended = await asyncio.wait_for(engine.run(), 50)

    assert ended.code == "input_finished", of(events, ErrorEvent)
    assert not [e for e in of(events, ErrorEvent) if e.fatal]
    assert of(events, SessionRolledOver), "no rollover happened"
    assert not [w for w in of(events, SessionWarning) if w.code == "rollover_failed"]
    assert lines(events)[-1] == ("assistant", SECOND_REPLY)
    assert vault.runs == 2
    assert_no_key_in_files(tmp_path, OLD_KEY, NEW_KEY)


# --- the policy, unit by unit --------------------------------------------------------------


class _Keys:
    """A KeyProvider whose refreshes are scripted (a str, or an exception to raise)."""

    def __init__(self, *answers: str | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    @property
    def refreshable(self) -> bool:
        return True

    @property
    def label(self) -> str:
        return "apiKeyCommand 'vault'"

    def current(self) -> str:
        return OLD_KEY

    def refresh(self) -> str:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


REJECTED = ProviderError("rejected", code="key_rejected")


@pytest.mark.asyncio
async def test_session_key_refreshes_once_per_rejection_and_again_after_an_acceptance() -> None:
    keys = _Keys(NEW_KEY, "mk-third-one-0000", "mk-fourth-one-1111")
    key = SessionKey(keys, OLD_KEY, service="openai")
    assert await key.refresh(REJECTED) == NEW_KEY
    key.accepted()  # the new key worked: a later rotation earns its own refresh
    assert await key.refresh(REJECTED) == "mk-third-one-0000"
    with pytest.raises(ProviderError, match="also the new key") as err:
        await key.refresh(REJECTED)  # rejected again before any acceptance: no third run
    assert err.value.code == "key_rejected" and keys.calls == 2
    with pytest.raises(ProviderError, match="also the new key"):
        await key.refresh(REJECTED)  # once given up, always the same line, no command run
    assert keys.calls == 2 and "mk-" not in repr(key)


@pytest.mark.asyncio
async def test_session_key_gives_up_on_the_same_key_and_on_a_failing_command() -> None:
    same = SessionKey(_Keys(OLD_KEY), OLD_KEY, service="mistral")
    with pytest.raises(ProviderError, match="gave the same key"):
        await same.refresh(REJECTED)
    timed_out = RuntimeError("apiKeyCommand 'vault' timed out")
    failing = SessionKey(_Keys(timed_out), OLD_KEY, service="x")
    with pytest.raises(ProviderError, match=r"^apiKeyCommand 'vault' timed out \(the key"):
        await failing.refresh(REJECTED)


@pytest.mark.asyncio
async def test_concurrent_rejections_share_one_refresh_and_fixed_keys_never_refresh() -> None:
    keys = _Keys(NEW_KEY)
    key = SessionKey(keys, OLD_KEY, service="mistral")
    # Mistral's transcription socket and an agent call both meet the rotated key
    got = await asyncio.gather(key.refresh(REJECTED), key.refresh(REJECTED))
    assert list(got) == [NEW_KEY, NEW_KEY] and keys.calls == 1
    fixed = SessionKey(FixedKey(OLD_KEY), OLD_KEY, service="openai")
    with pytest.raises(ProviderError) as err:
        await fixed.refresh(REJECTED)
    assert err.value is REJECTED  # the provider's own line, unchanged
    assert "mk-" not in repr(FixedKey(OLD_KEY))


def test_command_key_reads_through_the_key_store(tmp_path: Path) -> None:
    vault = Vault(tmp_path, OLD_KEY, NEW_KEY)
    key = CommandKey(KeyStore(environ={}), "ai-voice-conv.openai", vault.argv)
    assert key.refreshable and key.label == "apiKeyCommand 'sh'"
    assert key.current() == OLD_KEY and key.current() == OLD_KEY and vault.runs == 1  # cached
    assert key.refresh() == NEW_KEY and key.current() == NEW_KEY and vault.runs == 2
    assert OLD_KEY not in logs.redact(f"key {OLD_KEY}")  # registered for redaction
