"""The session's API key, and the one refresh a managed key gets when the service rejects it.

A key read from ``apiKeyCommand`` may have been rotated in the secret manager since it was
read: when the provider rejects it (``ProviderError`` code ``key_rejected``) while a session
connects, reconnects or rolls over, the engine runs the command again — once — and goes on
with the new key if it differs. A key from the environment or the keyring is never refreshed
(reading it again would give the same key), so its rejection ends the session as before.

The seam is :class:`KeyProvider` (``current()``, ``refresh()``, blocking): the factory builds
one from the key store and the provider table's command; a plain string becomes a
:class:`FixedKey`. :class:`SessionKey` is the engine's side: it runs ``refresh()`` in a
thread, allows one refresh per rejection (a refreshed key must be accepted before another
refresh is tried) and turns every way of giving up into one ``key_rejected`` line that never
contains a key.
"""

from __future__ import annotations

import asyncio
import logging
from typing import NoReturn, Protocol

from voicetui.providers.base import ProviderError

log = logging.getLogger("voicetui.engine.keys")


class KeyProvider(Protocol):
    """Where the session's key comes from."""

    @property
    def refreshable(self) -> bool:
        """True when :meth:`refresh` can give another key (a command), False otherwise."""
        ...

    @property
    def label(self) -> str:
        """How messages name the key's origin (``apiKeyCommand 'op'``); never the key."""
        ...

    def current(self) -> str:
        """The key to connect with. Blocking."""
        ...

    def refresh(self) -> str:
        """Read the key again (run the command). Blocking: call it from a thread. Raises an
        exception whose ``str()`` is one line without the key when it cannot."""
        ...


class FixedKey:
    """A key that cannot change while the session runs (environment, keyring, a test)."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:  # never the key, even in a debugger or a traceback
        return "FixedKey(****)"

    @property
    def refreshable(self) -> bool:
        return False

    @property
    def label(self) -> str:
        return "the API key"

    def current(self) -> str:
        """The key."""
        return self._value

    def refresh(self) -> str:
        """The same key: there is nothing to read again."""
        return self._value


class SessionKey:
    """The key a session connects with, and the engine's refresh policy for it.

    ``service`` names the provider in messages (``openai``). Runs on the engine's loop.
    """

    def __init__(self, keys: KeyProvider, value: str, *, service: str) -> None:
        self._keys = keys
        self._value = value
        self._service = service
        self._lock = asyncio.Lock()
        self._generation = 0  # bumped by every refresh that produced a new key
        self._unconfirmed = False  # the newest key has not been accepted by the service yet
        self._gave_up: ProviderError | None = None
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"SessionKey({self._keys.label}, refreshes={self.refreshes})"

    @property
    def value(self) -> str:
        """The key to connect with now."""
        return self._value

    def accepted(self) -> None:
        """The service took the current key (a connect, reconnect, renewal or reply worked):
        a later rejection may be a new rotation and earns a refresh of its own."""
        self._unconfirmed = False

    async def refresh(self, rejected: ProviderError) -> str:
        """The service rejected the key with ``rejected``: the new key to retry with.

        Raises ``rejected`` itself when the key cannot be refreshed (not from a command),
        and a ``key_rejected`` :class:`ProviderError` of one line when the refresh does not
        help: the command fails, gives the same key, or the key it gave was rejected too.
        """
        if self._gave_up is not None:
            raise self._gave_up
        if not self._keys.refreshable:
            raise rejected
        generation = self._generation
        async with self._lock:
            if self._gave_up is not None:
                raise self._gave_up
            if self._generation != generation:
                # another part of the session (Mistral's sockets and REST calls run side by
                # side) refreshed while this one waited: its new key is the one to try
                return self._value
            label = self._keys.label
            if self._unconfirmed:
                self._give_up(
                    f"{self._service} rejected the key from {label}, and also the new key it "
                    "gave when run again; update the secret it reads"
                )
            log.info("%s rejected the key from %s; running the command again", self._service, label)
            self.refreshes += 1
            try:
                fresh = (await asyncio.to_thread(self._keys.refresh)).strip()
            except Exception as err:  # KeyCommandFailed: one line, never the key
                self._give_up(f"{str(err) or type(err).__name__} (the key it gave was rejected)")
            if not fresh or fresh == self._value:
                self._give_up(
                    f"{self._service} rejected the key from {label}, and running it again gave "
                    "the same key; update the secret it reads"
                )
            self._value = fresh
            self._generation += 1
            self._unconfirmed = True
            log.info("%s gave a new key; reconnecting with it", label)
            return fresh

    def _give_up(self, message: str) -> NoReturn:
        """Remember the final line (later callers get the same one) and raise it."""
        self._gave_up = ProviderError(message, code="key_rejected")
        log.warning("%s", message)
        raise self._gave_up
