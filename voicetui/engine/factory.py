"""Build a ready-to-run :class:`ConversationEngine` from the config and the key store.

Everything that can fail before the session starts fails here, with a one-line message:
an unknown provider or a missing key (:class:`ProviderError`), a keyring problem
(``KeyringUnavailable`` from the key store), a bad audio setting (``AudioError``).

This is also the app's one door to the providers (it never imports ``providers.base``):
:func:`preload_provider` and :func:`list_voices` take a spec key and find the provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from voicetui import paths
from voicetui.engine.keys import KeyProvider
from voicetui.engine.session import ConversationEngine
from voicetui.engine.transcript import TranscriptStore
from voicetui.engine.usage import UsageStore
from voicetui.keycommand import KeyCommandFailed
from voicetui.providers.base import ProviderError, ProviderSettings, Voice, get_provider
from voicetui.specs.registry import registry

if TYPE_CHECKING:
    from voicetui.audio.factory import AudioSettingsLike
    from voicetui.config import AppConfig


class _ResolvedKey(Protocol):
    @property
    def value(self) -> str | None: ...

    @property
    def source(self) -> str: ...


class KeySource(Protocol):
    """What the factory needs from ``voicetui.keys.KeyStore``."""

    def get(self, spec_key: str, command: Sequence[str] | None = None) -> _ResolvedKey: ...

    def refresh(self, spec_key: str, command: Sequence[str] | None = None) -> _ResolvedKey: ...


class CommandKey:
    """A :class:`~voicetui.engine.keys.KeyProvider` for a key read from ``apiKeyCommand``:
    :meth:`refresh` runs the command again through the key store (which caches the key in
    memory only and registers it for redaction)."""

    def __init__(self, keys: KeySource, spec_key: str, command: Sequence[str]) -> None:
        self._keys = keys
        self._spec_key = spec_key
        self._command = tuple(command)

    def __repr__(self) -> str:
        return f"CommandKey({self._spec_key}, {self.label})"

    @property
    def refreshable(self) -> bool:
        return True

    @property
    def label(self) -> str:
        return f"apiKeyCommand {self._command[0]!r}" if self._command else "apiKeyCommand"

    def current(self) -> str:
        """The key (the store's cached one; the command runs only on first use)."""
        return self._keys.get(self._spec_key, self._command).value or ""

    def refresh(self) -> str:
        """Run the command again. Raises ``KeyCommandFailed`` (one line) when it fails."""
        return self._keys.refresh(self._spec_key, self._command).value or ""


__all__ = [
    "CommandKey",
    "ProviderError",
    "Voice",
    "build_engine",
    "list_voices",
    "preload_provider",
]


def missing_key_message(spec_key: str) -> str:
    """One line telling the user how to provide the key."""
    source = registry().source(spec_key)
    return (
        f"no API key for {source.alias}: run `voicetui keys set {source.alias}` "
        f"or set {source.api_key_env}"
    )


def preload_provider(spec_key: str) -> None:
    """Import what connecting to ``spec_key`` needs. Blocking: call it from a thread."""
    get_provider(spec_key).preload()


async def list_voices(settings: ProviderSettings, api_key: str) -> list[Voice]:
    """The voices of the provider ``settings`` are for (loading it in a thread)."""
    provider = await asyncio.to_thread(get_provider, settings.spec_key)
    return await provider.list_voices(settings, api_key)


def build_engine(
    config: AppConfig,
    keys: KeySource,
    *,
    provider_key: str | None = None,
    input_wav: Path | None = None,
    output_wav: Path | None = None,
    realtime_input: bool = True,
    realtime_output: bool | None = None,
    end_when_input_ends: bool | None = None,
    talk_on_connect: bool = False,
    store: TranscriptStore | None = None,
    usage: UsageStore | None = None,
    audio: AudioSettingsLike | None = None,
) -> ConversationEngine:
    """The engine for ``provider_key`` (default: the configured provider), its audio rig
    opened on the configured devices or on WAV files. Nothing is started yet.

    ``end_when_input_ends`` defaults to True when the input is a WAV file; ``audio``
    replaces the config's ``[audio]`` settings.
    """
    from voicetui.audio.factory import open_audio

    settings = config.provider_settings(provider_key)
    command = config.key_command(settings.spec_key)
    try:
        resolved = keys.get(settings.spec_key, command)
    except KeyCommandFailed as err:
        raise ProviderError(str(err), code="no_key") from None
    if not resolved.value:
        raise ProviderError(missing_key_message(settings.spec_key), code="no_key")
    # a key from a command is read again (once) when the service rejects it mid-session;
    # one from the environment or the keyring would come back the same
    api_key: str | KeyProvider = (
        CommandKey(keys, settings.spec_key, command)
        if command and resolved.source == "command"
        else resolved.value
    )
    provider = get_provider(settings.spec_key)
    rig = open_audio(
        audio if audio is not None else config.audio,
        input_wav=input_wav,
        output_wav=output_wav,
        realtime_input=realtime_input,
        realtime_output=realtime_output,
    )
    rig.check()
    engine = ConversationEngine(
        provider=provider,
        settings=settings,
        api_key=api_key,
        audio_in=rig.input,
        audio_out=rig.output,
        gate=rig.gate,
        store=store if store is not None else TranscriptStore(),
        usage=usage if usage is not None else UsageStore(),
        state_dir=paths.state_location(),  # created on first write: read-only is no crash
        end_when_input_ends=(input_wav is not None)
        if end_when_input_ends is None
        else end_when_input_ends,
        talk_on_connect=talk_on_connect,
    )
    rig.set_on_error(lambda err: engine.report_error(str(err), code="device", fatal=True))
    return engine
