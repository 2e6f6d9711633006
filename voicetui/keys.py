"""BYOK key store on the OS keyring (service ``voicetui``, username = spec key).

* Precedence: the provider's env var (``SpecSource.api_key_env``, e.g. ``<NAME>_API_KEY``)
  > the provider table's ``apiKeyCommand`` (managed mode, :mod:`voicetui.keycommand`)
  > the keyring.
* Keys are validated against the spec's ``secretSchema`` (plus: non-empty, one token).
* No plaintext fallback: the fail/null backends and keyrings.alt's file backends are refused;
  any keyring error becomes :class:`KeyringUnavailable`, one line saying what to do.
* A key never appears in an exception message, a log line (it is registered for redaction
  the moment it is read) or any output; :func:`mask` shows at most its last 4 characters.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Literal

import jsonschema

from voicetui import logs
from voicetui.keycommand import KeyCommandCache, KeyCommandFailed
from voicetui.specs.registry import registry

__all__ = ["KeyCommandFailed", "KeyStore", "KeyringUnavailable", "ResolvedKey", "mask"]

SERVICE = "voicetui"
MAX_KEY_LENGTH = 1024  # far beyond any real key; stops a whole pasted file being stored
KeySource = Literal["keyring", "environment", "command", "none"]
PRECEDENCE = "environment > command > keyring"


class KeyringUnavailable(RuntimeError):
    """No usable OS keyring. ``str()`` is one line saying what to do."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def unavailable_message(detail: str, env_vars: str) -> str:
    """The one line shown when no secure keyring is usable."""
    return (
        f"the OS keyring is not usable ({detail}); start and unlock a Secret Service "
        f"(e.g. gnome-keyring), or set {env_vars} in the environment instead"
    )


class InvalidKey(ValueError):
    """A key that fails the spec's secretSchema. The message never contains the key."""


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    """A provider's key and where it came from (``value`` is kept out of ``repr``)."""

    value: str | None = field(repr=False)
    source: KeySource

    @property
    def masked(self) -> str:
        return mask(self.value)

    def mode(self, supported_modes: Sequence[str]) -> str:
        """The spec's mode in use (see :func:`key_mode`)."""
        return key_mode(self.source, supported_modes)


def key_mode(source: str, supported_modes: Sequence[str]) -> str:
    """The spec's mode for a key from ``source``: ``managed`` for a key read by a command
    where the spec supports managed mode. A spec that lists only ``byok`` (OpenAI's) keeps
    ``byok``: the key is still the user's own, the command is only where it is read from."""
    return "managed" if source == "command" and "managed" in supported_modes else "byok"


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be an API key (it travels in an HTTP header: printable ASCII, no
    spaces), or None. Never quotes the key."""
    if any(ch.isspace() or (ch.isascii() and not ch.isprintable()) for ch in key):
        return "the API key contains spaces or control characters (paste only the key, on one line)"
    for position, ch in enumerate(key, 1):
        if not ch.isascii():
            return (
                f"the API key has a non-ASCII character at position {position}; API keys are "
                "printable ASCII (copy the key again from the provider's console)"
            )
    return None


def mask(value: str | None) -> str:
    """``****abcd``: always ``****`` and the last 4 characters, so every mask has the same
    shape and the length does not show; a value too short to spare 4 (under 8 characters,
    never a real key) shows none of them."""
    if not value:
        return ""
    return "****" + (value[-4:] if len(value) >= 8 else "")


def _unavailable(err: BaseException | None, env_var: str) -> KeyringUnavailable:
    detail = ""
    if err is not None:
        first = logs.redact(str(err)).strip().splitlines()[0] if str(err).strip() else ""
        first = first.split(". ")[0].rstrip(".")
        detail = type(err).__name__ + (f": {first[:80]}" if first else "")
    else:
        detail = "no secure backend"
    return KeyringUnavailable(unavailable_message(detail, env_var), detail)


def _is_insecure(backend: Any) -> bool:
    """Backends that do not store a secret safely (or at all)."""
    cls = type(backend)
    name = f"{cls.__module__}.{cls.__qualname__}"
    return (
        name.startswith(("keyring.backends.fail.", "keyring.backends.null.", "keyrings.alt."))
        or "plaintext" in name.lower()
    )


def _secure_backend(env_var: str) -> Any:
    """The keyring backend to use, never a plaintext, null or fail one."""
    import keyring
    import keyring.errors

    try:
        backend = keyring.get_keyring()
    except Exception as err:  # a broken keyring config file or backend import
        raise _unavailable(err, env_var) from None
    candidates = list(getattr(backend, "backends", None) or [backend])  # ChainerBackend
    secure = [b for b in candidates if not _is_insecure(b)]
    if not secure:
        if any(type(b).__module__ == "keyring.backends.fail" for b in candidates):
            raise _unavailable(keyring.errors.NoKeyringError("no recommended backend"), env_var)
        raise _unavailable(None, env_var)
    return secure[0]


class KeyStore:
    """Provider keys by spec key (or alias): environment first, then the OS keyring."""

    def __init__(self, *, service: str = SERVICE, environ: Mapping[str, str] | None = None):
        self.service = service
        self._environ = environ
        self._commands = KeyCommandCache()

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def env_var(self, provider: str) -> str:
        return registry().api_key_env(provider)

    def get(self, provider: str, command: Sequence[str] | None = None) -> ResolvedKey:
        """The key in use for ``provider``: environment > ``command`` (the provider table's
        ``apiKeyCommand``) > keyring. Raises :class:`KeyCommandFailed` when the command
        fails, :class:`KeyringUnavailable` when the keyring is needed and cannot be read."""
        env_value = self.environ.get(self.env_var(provider), "").strip()
        if env_value:
            logs.register_secret(env_value)
            return ResolvedKey(env_value, "environment")
        if command:
            spec_key = registry().resolve(provider)
            return ResolvedKey(self._commands.get(spec_key, command), "command")
        stored = self.get_stored(provider)
        if stored:
            return ResolvedKey(stored, "keyring")
        return ResolvedKey(None, "none")

    def refresh(self, provider: str, command: Sequence[str] | None = None) -> ResolvedKey:
        """After the service rejected the key: run the command again (the key may have been
        rotated in the secret manager); other sources are returned as they are."""
        if command and not self.environ.get(self.env_var(provider), "").strip():
            spec_key = registry().resolve(provider)
            return ResolvedKey(self._commands.refresh(spec_key, command), "command")
        return self.get(provider, command)

    def get_stored(self, provider: str) -> str | None:
        """The key in the keyring, ignoring the environment."""
        spec_key = registry().resolve(provider)
        env_var = self.env_var(spec_key)
        backend = _secure_backend(env_var)
        try:
            value: str | None = backend.get_password(self.service, spec_key)
        except Exception as err:  # KeyringError (InitError: locked), D-Bus errors
            raise _unavailable(err, env_var) from None
        if value:
            logs.register_secret(value)
        return value or None

    def validate(self, provider: str, value: str) -> str:
        """``value`` trimmed, checked against the spec's secretSchema; raises InvalidKey."""
        spec = registry().get(provider)
        key = value.strip()
        logs.register_secret(key)
        if not key:
            raise InvalidKey(f"{spec.key}: the API key is empty")
        if len(key) > MAX_KEY_LENGTH:  # first: the checks below are linear in the length
            raise InvalidKey(f"{spec.key}: the API key is longer than {MAX_KEY_LENGTH} characters")
        problem = key_problem(key)
        if problem is not None:
            raise InvalidKey(f"{spec.key}: {problem}")
        validator = jsonschema.Draft202012Validator(dict(spec.secret_schema.schema))
        error = jsonschema.exceptions.best_match(validator.iter_errors({"apiKey": key}))
        if error is not None:  # the message would quote the key: name the rule only
            where = ".".join(str(p) for p in error.absolute_path) or "apiKey"
            raise InvalidKey(
                f"{spec.key}: {where} fails the spec's secretSchema ({error.validator})"
            )
        return key

    def set(self, provider: str, value: str) -> None:
        """Store ``value`` for ``provider`` after validation, and read it back to make sure
        the backend really kept it.

        Every item already stored for (service, user) is removed first, whichever client
        made it (``secret-tool store`` adds items Python's keyring would not replace, and
        the older one would shadow the new key on every read)."""
        spec_key = registry().resolve(provider)
        key = self.validate(spec_key, value)
        env_var = self.env_var(spec_key)
        backend = _secure_backend(env_var)
        try:
            _delete_all(backend, self.service, spec_key)
            backend.set_password(self.service, spec_key, key)
            stored = backend.get_password(self.service, spec_key)
        except Exception as err:
            raise _unavailable(err, env_var) from None
        if stored != key:
            raise KeyringUnavailable(
                f"the OS keyring did not keep the key for {spec_key}; check that the Secret "
                f"Service is unlocked, or set {env_var} in the environment instead"
            )

    def delete(self, provider: str) -> bool:
        """Remove the stored key; ``False`` if there was none."""
        import keyring.errors

        spec_key = registry().resolve(provider)
        env_var = self.env_var(spec_key)
        backend = _secure_backend(env_var)
        try:
            if backend.get_password(self.service, spec_key) is None:
                return False
            backend.delete_password(self.service, spec_key)
        except keyring.errors.PasswordDeleteError:
            return False
        except Exception as err:
            raise _unavailable(err, env_var) from None
        return True


MAX_SHADOWS = 64  # items for one (service, user) we are willing to clear out


def _delete_all(backend: Any, service: str, username: str) -> None:
    """Delete every item for (service, username): the backends delete one per call."""
    import keyring.errors

    for _ in range(MAX_SHADOWS):
        if backend.get_password(service, username) is None:
            return
        try:
            backend.delete_password(service, username)
        except keyring.errors.PasswordDeleteError:
            return


def read_key(prompt: str, stdin: IO[str] | None = None) -> str:
    """Read a key from stdin when it is not a TTY (one line), else from a hidden prompt.
    Never from argv. Returns the raw text (validate it with :meth:`KeyStore.validate`)."""
    stream = stdin or sys.stdin
    if stream.isatty():
        value = getpass.getpass(prompt)
    else:
        lines = [line.strip() for line in stream.read(MAX_KEY_LENGTH * 4).splitlines()]
        lines = [line for line in lines if line]
        if len(lines) > 1:
            raise InvalidKey("expected the key alone on one line of standard input")
        value = lines[0] if lines else ""
    logs.register_secret(value.strip())
    return value
