"""The TOML config: one table per spec key, validated against the spec's own configSchema.

Layout::

    provider = "<spec key>"                 # spec key (or its alias); default: see below
    theme = "textual-dark"

    [audio]
    input_device = "pulse"                  # by name; absent = system default
    output_device = "pulse"
    duplex = "aec"                          # aec | gated | half | full (aec, the default,
                                            #   falls back to gated where WebRTC AEC does
                                            #   not load)
    echo_coupling_db = -12.0                # set by echo calibration: the measured echo path
    echo_delay_ms = 40.0
    block_ms = 20
    prebuffer_ms = 20

    [providers."<spec key>"]
    model = "..."                           # spec fields: model, defaultVoice, turnDetection,
    turnDetection = "push_to_talk"          #   maxSessionDurationSeconds
    baseUrl = "https://api.example.com"     # voicetui: replaces the spec's REST base URL (no /v1)
    instructions = "..."                    # voicetui: system prompt
    onMaxDuration = "rollover"              # voicetui: at the session limit, rollover | end
    webSearch = true                        # the provider's own options (Provider.options)

Which providers exist, their specs and their own options come from the installed provider
packages (:mod:`voicetui.providers.registry`); a config without ``provider`` selects the one
with the lowest ``preference``.

Spec fields are validated by the spec's ``configSchema`` (the source of truth); voicetui's own
keys by an extension schema that also rejects unknown keys in our sections and a
non-positive session duration. Errors are :class:`ConfigError`, one line naming the file, the
field (and its line when it can be found) and what is allowed. Loading never writes; writing
is atomic (temp file in the same directory, fsync, rename) with mode 0600, so the file is
never truncated or lost.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import jsonschema
import tomlkit

from voicetui import fileio, paths
from voicetui.audio.ports import DuplexPolicy
from voicetui.providers.base import (
    OnMaxDuration,
    ProviderOption,
    ProviderSettings,
    TurnDetection,
)
from voicetui.providers.catalog import catalog_for
from voicetui.providers.registry import default_provider_key, load_provider
from voicetui.specs.model import IntegrationSpec
from voicetui.specs.registry import SpecRegistry, UnknownProvider, registry

DEFAULT_THEME = "textual-dark"  # built into Textual, so it always exists
DEFAULT_ON_MAX_DURATION: OnMaxDuration = "rollover"
# voicetui's own keys in a provider table (not the spec's, not the provider's extras)
_OWN_KEYS = frozenset({"baseUrl", "instructions", "apiKeyCommand", "onMaxDuration"})
DEFAULT_INSTRUCTIONS: str = str(
    next(f.default for f in dataclasses.fields(ProviderSettings) if f.name == "instructions")
)

# Provider options beyond the spec (defaults, and the JSON Schema of each).
_COMMON_EXTENSION: dict[str, dict[str, Any]] = {
    "baseUrl": {
        "type": "string",
        "description": "scheme://host[:port] replacing the spec's REST base URL (no /v1)",
    },
    "instructions": {"type": "string", "minLength": 1, "description": "system prompt"},
    "onMaxDuration": {
        "enum": ["rollover", "end"],
        "description": "at maxSessionDurationSeconds: continue in a new session, or end",
    },
    "apiKeyCommand": {
        "type": "array",
        "items": {"type": "string", "minLength": 1},
        "minItems": 1,
        "description": "managed key: argv of a command printing the key (no shell)",
    },
}


def default_provider() -> str:
    """The spec key a config without ``provider`` selects (the installed provider with the
    lowest ``preference``): the app's way to ask without importing ``voicetui.providers``."""
    return default_provider_key()


def _options(spec: IntegrationSpec) -> Mapping[str, ProviderOption]:
    """The options the provider implementing ``spec`` takes beyond the spec."""
    return load_provider(spec.key).options


_AUDIO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "input_device": {"type": "string", "minLength": 1, "description": "device name"},
        "output_device": {"type": "string", "minLength": 1, "description": "device name"},
        "duplex": {"enum": [p.value for p in DuplexPolicy]},
        "block_ms": {"type": "integer", "minimum": 5, "maximum": 200},
        "prebuffer_ms": {"type": "integer", "minimum": 0, "maximum": 2000},
        "echo_coupling_db": {"type": "number", "minimum": -120, "maximum": 20},
        "echo_delay_ms": {"type": "number", "minimum": 0, "maximum": 1000},
    },
}
_TOP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "provider": {"type": "string", "description": "a provider spec key"},
        "theme": {"type": "string", "minLength": 1, "description": "a theme name"},
        "audio": {"type": "object"},
        "providers": {"type": "object"},
    },
}


MAX_CONFIG_BYTES = 1 << 20  # a real config is a few hundred bytes
MAX_DEPTH = 16  # tables/arrays within each other; ours use 3


class ConfigError(Exception):
    """An unusable config. ``str(err)`` is one line: file, field or line, what is allowed."""

    def __init__(self, message: str, *, path: Path | None = None, field: str | None = None):
        super().__init__(message)
        self.path = path
        self.field = field


# aec: the rig falls back to gated (one log line) where livekit's APM does not load;
# deciding that here would cost every config load the module's ~0.3 s import
DEFAULT_DUPLEX = DuplexPolicy.AEC


@dataclass(frozen=True, slots=True)
class AudioSettings:
    """The ``[audio]`` table. Devices by name; ``None`` = the system default."""

    input_device: str | None = None
    output_device: str | None = None
    duplex: DuplexPolicy = DEFAULT_DUPLEX
    block_ms: int = 20
    prebuffer_ms: int = 20
    echo_coupling_db: float | None = None  # from echo calibration (voicetui doctor --echo)
    echo_delay_ms: float | None = None

    def to_toml(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = value.value if isinstance(value, DuplexPolicy) else value
        return out


@dataclass(frozen=True, slots=True)
class AppConfig:
    """The validated config. ``providers[key]`` holds every option of that provider, defaults
    filled in (spec fields from the spec's example, ``baseUrl`` from its REST transport)."""

    path: Path
    provider: str = field(default_factory=default_provider_key)
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    audio: AudioSettings = field(default_factory=AudioSettings)
    theme: str = DEFAULT_THEME
    from_file: bool = False  # False when the file did not exist (all defaults)
    warnings: tuple[str, ...] = ()  # one line each: deprecated models still configured

    def provider_options(self, key: str | None = None) -> Mapping[str, Any]:
        """Every option of a provider (key or alias; default: the selected one)."""
        spec_key = registry().resolve(key) if key else self.provider
        if spec_key in self.providers:
            return self.providers[spec_key]
        return provider_defaults(registry().get(spec_key))

    def key_command(self, key: str | None = None) -> tuple[str, ...] | None:
        """The provider's ``apiKeyCommand`` (managed key), None when it has none."""
        argv = self.provider_options(key).get("apiKeyCommand")
        return tuple(str(a) for a in argv) if argv else None

    def provider_settings(self, key: str | None = None) -> ProviderSettings:
        """What a provider needs: spec fields, ``baseUrl`` -> ``base_url``, instructions, and
        the provider extras in ``extras``."""
        spec = registry().get(key or self.provider)
        opts = dict(self.provider_options(spec.key))
        spec_fields = set(spec.config_schema.properties)
        extras = {k: v for k, v in opts.items() if k not in spec_fields | _OWN_KEYS}
        return ProviderSettings(
            spec_key=spec.key,
            model=str(opts["model"]),
            voice=str(opts["defaultVoice"]),
            turn_detection=cast(TurnDetection, opts["turnDetection"]),
            max_session_duration_s=float(opts["maxSessionDurationSeconds"]),
            base_url=str(opts["baseUrl"]).rstrip("/"),
            instructions=str(opts["instructions"]),
            extras=extras,
            on_max_duration=cast(OnMaxDuration, opts.get("onMaxDuration", DEFAULT_ON_MAX_DURATION)),
        )

    def to_toml(self) -> dict[str, Any]:
        """The document :func:`save_config` writes (every value explicit)."""
        return {
            "provider": self.provider,
            "theme": self.theme,
            "audio": self.audio.to_toml(),
            "providers": {k: copy.deepcopy(dict(v)) for k, v in sorted(self.providers.items())},
        }


def provider_defaults(spec: IntegrationSpec) -> dict[str, Any]:
    """A provider's options when the config says nothing: the spec's example, its REST base
    URL, the default instructions and the provider extras' defaults."""
    out = copy.deepcopy(dict(spec.config_schema.example))
    out["baseUrl"] = spec.rest_base_url
    out["instructions"] = DEFAULT_INSTRUCTIONS
    out["onMaxDuration"] = DEFAULT_ON_MAX_DURATION
    for name, option in _options(spec).items():
        out[name] = copy.deepcopy(option.default)
    catalog = catalog_for(spec.key)  # current models and a real voice, not the spec's example
    if catalog is not None:
        out.update(catalog.defaults)
    return out


def usable_models(spec_key: str, option: str = "model") -> list[tuple[str, str]]:
    """``(model id, label)`` for each model the provider's catalogue offers today for
    ``option`` (active first; a deprecated one's label carries its shutdown date; retired
    ones never). The TUI's pickers read this, not the providers."""
    catalog = catalog_for(spec_key)
    role = catalog.model_options.get(option) if catalog else None
    if catalog is None or role is None:
        return []
    out = []
    for model in catalog.usable(role):
        gone = model.shutdown.isoformat() if model.shutdown else "soon"
        deprecated = model.status_on() == "deprecated"
        out.append(
            (model.id, model.id + (f" (deprecated: shuts down {gone})" if deprecated else ""))
        )
    return out


def extension_schema(spec: IntegrationSpec) -> dict[str, Any]:
    """voicetui's schema for a provider table, next to the spec's: spec fields pass through
    (``true``; the spec schema judges them) except that the session duration must be > 0;
    our own keys are typed; anything else is an unknown key."""
    props: dict[str, Any] = dict.fromkeys(spec.config_schema.properties, True)
    if "maxSessionDurationSeconds" in props:
        props["maxSessionDurationSeconds"] = {
            "exclusiveMinimum": 0,
            "description": "a session limit in seconds",
        }
    props.update(copy.deepcopy(_COMMON_EXTENSION))
    for name, option in _options(spec).items():
        props[name] = copy.deepcopy(dict(option.schema))
    return {"type": "object", "properties": props, "additionalProperties": False}


# ---------------------------------------------------------------------------------- loading


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def load_config(path: Path | str | None = None) -> AppConfig:
    """Read and validate the config (``--config`` > ``VOICETUI_CONFIG`` > platform default).

    A missing file gives the defaults. Raises :class:`ConfigError`; never writes.
    """
    target = paths.config_file(path)
    data = _read_bounded(target)
    if data is None:
        return _build(target, {}, from_file=False, text="")
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")  # a BOM some editors add
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{target}: not UTF-8 text (byte {err.start}); TOML files must be UTF-8", path=target
        ) from None
    _refuse_long_keys(target, text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{target}: TOML syntax error: {err}", path=target) from None
    except RecursionError:
        raise ConfigError(
            f"{target}: nested too deeply (at most {MAX_DEPTH} levels)", path=target
        ) from None
    return _build(target, doc, from_file=True, text=text)


# tomllib's cost grows with the square of a dotted key's parts (50,000 parts: minutes):
# refuse such keys before parsing. Far above MAX_DEPTH, so no real file comes near.
MAX_KEY_DOTS = 256
_NOT_KEY_CHARS = re.compile(r"[^\w\"'.-]+")  # splits a line into runs that may be dotted keys


def _refuse_long_keys(target: Path, text: str) -> None:
    """Linear scan: a key line's head (``a . b = ``, ``[a.b]``) or any run like ``a.b.c``."""
    for number, line in enumerate(text.splitlines(), 1):
        head = line.lstrip()
        end = head.find("]") if head.startswith("[") else head.find("=")
        key = head[:end] if end > 0 else ""
        runs = _NOT_KEY_CHARS.split(line) if line.count(".") >= MAX_KEY_DOTS else []
        if any(_parts_in(r) > MAX_KEY_DOTS for r in [key, *runs]):
            raise ConfigError(
                f"{target}: line {number}: a dotted key nested more than {MAX_DEPTH} levels deep",
                path=target,
            )


def _parts_in(run: str) -> int:
    """How many non-empty dotted parts ``run`` has ("a.b" 2, "..." 0)."""
    return sum(1 for part in run.split(".") if part.strip()) if "." in run else 0


def _read_bounded(target: Path) -> bytes | None:
    """The config's bytes (None when absent), refusing what is not a small regular file.

    Opened non-blocking so a FIFO cannot hang us; size checked before and while reading."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        if target.is_symlink():
            raise ConfigError(f"{target}: is a broken symlink", path=target) from None
        return None
    except OSError as err:
        raise ConfigError(f"{target}: cannot read: {fileio.reason(err)}", path=target) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = fileio.kind_of(st.st_mode)
            raise ConfigError(f"{target}: is {kind}, not a TOML file", path=target)
        too_big = ConfigError(
            f"{target}: too large (a config file is at most {MAX_CONFIG_BYTES // 1024} KiB)",
            path=target,
        )
        if st.st_size > MAX_CONFIG_BYTES:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_CONFIG_BYTES:  # it grew while we read
                raise too_big
        return b"".join(chunks)
    except OSError as err:
        raise ConfigError(f"{target}: cannot read: {fileio.reason(err)}", path=target) from None
    finally:
        os.close(fd)


def _check_shape(path: Path, text: str, doc: Mapping[str, Any]) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` and NaN/infinite numbers (iteratively:
    a hostile file must not blow the stack)."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(doc, ())]
    while stack:
        value, where = stack.pop()
        if len(where) > MAX_DEPTH:
            head = _dotted(where[:3])
            raise ConfigError(
                f"{path}: {head}...: nested more than {MAX_DEPTH} levels deep", path=path
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise _error(path, text, where, f"must be a finite number, got {value}")
        if isinstance(value, Mapping):
            stack.extend((v, (*where, str(k))) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*where, str(i))) for i, v in enumerate(value))


def _build(path: Path, doc: Mapping[str, Any], *, from_file: bool, text: str) -> AppConfig:
    reg = registry()
    _check_shape(path, text, doc)
    _validate(path, text, doc, _TOP_SCHEMA, ())
    provider = default_provider_key()
    if "provider" in doc:
        try:
            provider = reg.resolve(doc["provider"])
        except UnknownProvider:
            raise _error(
                path,
                text,
                ("provider",),
                f"{doc['provider']!r} is not a known provider; allowed: "
                + ", ".join(reg.allowed_names()),
            ) from None

    audio_doc = doc.get("audio", {})
    _validate(path, text, audio_doc, _AUDIO_SCHEMA, ("audio",))
    audio = AudioSettings(
        input_device=audio_doc.get("input_device"),
        output_device=audio_doc.get("output_device"),
        duplex=DuplexPolicy(audio_doc.get("duplex", DEFAULT_DUPLEX.value)),
        block_ms=int(audio_doc.get("block_ms", 20)),
        prebuffer_ms=int(audio_doc.get("prebuffer_ms", 20)),
        echo_coupling_db=_opt_float(audio_doc.get("echo_coupling_db")),
        echo_delay_ms=_opt_float(audio_doc.get("echo_delay_ms")),
    )

    providers: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    tables = doc.get("providers", {})
    for name, table in tables.items():
        if name not in reg:
            hint = f" (use the spec key {reg.resolve(name)!r})" if _is_alias(reg, name) else ""
            raise _error(
                path,
                text,
                ("providers", name),
                f"unknown provider table{hint}; allowed: {', '.join(reg.keys())}",
            )
        if not isinstance(table, dict):
            raise _error(path, text, ("providers", name), f"must be a table, got {_kind(table)}")
    for spec in reg.all():
        table = tables.get(spec.key, {})
        where = ("providers", spec.key)
        merged = provider_defaults(spec)
        merged.update(copy.deepcopy(table))
        spec_part = {k: merged[k] for k in spec.config_schema.properties if k in merged}
        _validate(path, text, spec_part, spec.config_schema.schema, where)
        _validate(path, text, table, extension_schema(spec), where)
        if "baseUrl" in table:
            problem = base_url_problem(table["baseUrl"])
            if problem:
                raise _error(path, text, (*where, "baseUrl"), problem)
        providers[spec.key] = merged
        catalog = catalog_for(spec.key)
        for life in catalog.lifecycle_problems(merged) if catalog else ():
            if life.status == "retired":
                raise _error(path, text, (*where, life.option), life.message)
            warnings.append(f"{path}: {_dotted((*where, life.option))}: {life.message}")
    theme = doc.get("theme", DEFAULT_THEME)
    return AppConfig(
        path=path,
        provider=provider,
        providers=providers,
        audio=audio,
        theme=theme,
        from_file=from_file,
        warnings=tuple(warnings),
    )


def _is_alias(reg: SpecRegistry, name: str) -> bool:
    try:
        reg.resolve(name)
    except UnknownProvider:
        return False
    return True


def base_url_problem(value: str) -> str | None:
    """Why ``value`` is not a usable ``baseUrl`` (``None`` if it is)."""
    shown = "" if "@" in value else f" (got {value!r})"
    rule = "must be scheme://host[:port] with scheme http or https and no path"
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return f"{rule}{shown}"
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        return f"{rule}{shown}"
    if parts.username or parts.password:
        return "must not contain credentials; keys belong in the keyring (voicetui keys set)"
    if parts.path.rstrip("/") == "/v1":
        return f"{rule}: drop the /v1, voicetui adds it where the API needs it{shown}"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"{rule}{shown}"
    return None


def _validate(
    path: Path, text: str, instance: Any, schema: Mapping[str, Any], where: tuple[str, ...]
) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is None:
        return
    field_path = (*where, *(str(p) for p in error.absolute_path))
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        name = unknown[0] if unknown else "?"
        raise _error(path, text, (*field_path, name), f"unknown key; allowed: {', '.join(allowed)}")
    raise _error(path, text, field_path, _explain(error))


def _explain(error: jsonschema.ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    value = error.instance
    described = f" ({schema['description']})" if schema.get("description") else ""
    match error.validator:
        case "enum":
            allowed = ", ".join(repr(v) for v in schema.get("enum", []))
            return f"{_short(value)} is not allowed; allowed: {allowed}"
        case "type":
            want = schema.get("type")
            wants = want if isinstance(want, list) else [want]
            return f"must be {' or '.join(_TYPE_NAMES.get(str(w), str(w)) for w in wants)}" + (
                f"{described}, got {_kind(value)}"
            )
        case "exclusiveMinimum":
            return f"must be greater than {schema['exclusiveMinimum']}{described}, got {value!r}"
        case "minimum":
            return f"must be at least {schema['minimum']}{described}, got {value!r}"
        case "maximum":
            return f"must be at most {schema['maximum']}{described}, got {value!r}"
        case "minLength":
            return f"must not be empty{described}"
        case _:
            return str(error.message).splitlines()[0]


_TYPE_NAMES = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "object": "a table",
    "array": "an array",
}


def _kind(value: Any) -> str:
    """The TOML type of ``value``, never the value (it might be something secret)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _dotted(parts: tuple[str, ...]) -> str:
    return ".".join(p if re.fullmatch(r"[A-Za-z0-9_-]+", p) else f'"{p}"' for p in parts)


def _error(path: Path, text: str, field_path: tuple[str, ...], what: str) -> ConfigError:
    line = _find_line(text, field_path)
    at = f" (line {line})" if line else ""
    name = _dotted(field_path)
    return ConfigError(f"{path}: {name}{at}: {what}", path=path, field=name)


_HEADER = re.compile(r"^\s*\[\[?\s*(.+?)\s*\]\]?\s*(?:#.*)?$")
_PART = re.compile(r"\"((?:[^\"\\]|\\.)*)\"|'([^']*)'|([A-Za-z0-9_-]+)")


def _parts(dotted: str) -> tuple[str, ...]:
    return tuple(a or b or c for a, b, c in _PART.findall(dotted))


_KEYLINE = re.compile(
    r"^\s*((?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+))*)\s*="
)


def _find_line(text: str, field_path: tuple[str, ...]) -> int | None:
    """The 1-based line defining ``field_path`` or the nearest key holding it (best effort)."""
    if not text or not field_path:
        return None
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _parts(header.group(1))
            if table == field_path:
                return number
            continue
        key = _KEYLINE.match(line)
        if key:
            full = (*table, *_parts(key.group(1)))
            if full == field_path[: len(full)]:
                return number
    return None


# ---------------------------------------------------------------------------------- writing


def save_config(cfg: AppConfig) -> None:
    """Write what differs between ``cfg`` and the file at ``cfg.path`` (see
    :func:`update_config`: comments, order and untouched keys stay as the user wrote them)."""
    current = load_config(cfg.path)
    audio: dict[str, Any] = {}
    for f in dataclasses.fields(AudioSettings):
        value = getattr(cfg.audio, f.name)
        if value != getattr(current.audio, f.name):
            audio[f.name] = value
    providers: dict[str, dict[str, Any]] = {}
    for key, options in cfg.providers.items():
        before = current.provider_options(key)
        changed = {k: v for k, v in options.items() if before.get(k) != v}
        if changed:
            providers[key] = changed
    update_config(
        cfg.path,
        provider=cfg.provider if cfg.provider != current.provider else None,
        theme=cfg.theme if cfg.theme != current.theme else None,
        audio=audio,
        providers=providers,
    )


def update_config(
    path: Path | str | None = None,
    *,
    provider: str | None = None,
    theme: str | None = None,
    audio: Mapping[str, Any] | None = None,
    providers: Mapping[str, Mapping[str, Any]] | None = None,
) -> AppConfig:
    """Load the config, apply changes, validate, write atomically; return the new config.

    The file stays the user's own: it is edited with ``tomlkit``, so comments, order and
    formatting survive, and only a key whose value really changes is written (a value equal
    to what is already in effect, default or not, leaves the file alone; defaults are never
    frozen into it). ``audio`` uses :class:`AudioSettings` field names; ``providers`` maps a
    spec key or alias to option changes. A ``None`` value removes that key, so the default
    applies again. A broken existing file raises :class:`ConfigError` and is left untouched;
    with nothing to change the file is not written at all.
    """
    cfg = load_config(path)
    text = cfg.path.read_text(encoding="utf-8") if cfg.from_file else ""
    doc = tomlkit.parse(text)
    changed = False
    if provider is not None:
        try:
            wanted = registry().resolve(provider)
        except UnknownProvider as err:
            raise ConfigError(f"{cfg.path}: provider: {err}", path=cfg.path) from None
        if wanted != cfg.provider:
            doc["provider"] = provider
            changed = True
    if theme is not None and theme != cfg.theme:
        doc["theme"] = theme
        changed = True
    for name, value in (audio or {}).items():
        plain = value.value if isinstance(value, DuplexPolicy) else value
        changed |= _edit(doc, ("audio",), name, plain, _audio_value(cfg.audio, name))
    for name, changes in (providers or {}).items():
        try:
            key = registry().resolve(name)
        except UnknownProvider as err:
            raise ConfigError(f"{cfg.path}: providers: {err}", path=cfg.path) from None
        current = cfg.provider_options(key)
        for option, value in changes.items():
            changed |= _edit(doc, ("providers", key), option, value, current.get(option))
    if not changed:
        return cfg
    new_text = tomlkit.dumps(doc)
    new = _build(cfg.path, doc.unwrap(), from_file=True, text=new_text)
    _atomic_write(cfg.path, new_text.encode("utf-8"))
    return new


def _audio_value(audio: AudioSettings, name: str) -> Any:
    value = getattr(audio, name, None)
    return value.value if isinstance(value, DuplexPolicy) else value


def _edit(
    doc: tomlkit.TOMLDocument, table_path: tuple[str, ...], key: str, value: Any, current: Any
) -> bool:
    """Set (or, for ``None``, remove) ``key`` in the table at ``table_path`` when that changes
    anything; the table is created only when a value has to go into it. True if edited."""
    container: Any = doc
    for depth, part in enumerate(table_path):
        if part not in container:
            if value is None:
                return False  # nothing to remove
            # [providers] holds only sub-tables: a super table writes no empty header for it
            container[part] = tomlkit.table(is_super_table=depth < len(table_path) - 1)
        container = container[part]
    if value is None:
        if key in container:
            del container[key]
            return True
        return False
    if key in container and container[key] == value:
        return False
    if key not in container and value == current:
        return False  # already in effect (the default): keep it out of the file
    container[key] = value
    return True


def _atomic_write(path: Path, data: bytes) -> None:
    # one helper for every file the app writes: follows a symlink, refuses a device/FIFO
    try:
        fileio.atomic_write(path, data, 0o600)
    except fileio.UnsafePath as err:
        raise ConfigError(str(err.strerror), path=path) from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot save: {fileio.reason(err)}", path=path) from None
