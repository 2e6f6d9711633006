"""The services' rules as data: each provider's models and voices, typed, with their lifecycle.

One catalogue per provider (``voicetui/providers/<name>/catalog.py`` exposes ``CATALOG``),
shared by the config defaults, config validation, the pickers, health, doctor and the
emulators. Every entry names the source it came from (``docs/models.md`` is the table).

Lifecycle is judged on a date: a *deprecated* model whose shutdown date has passed is
*retired* from that day on, so the data need not be edited the day a model goes away.
"""

from __future__ import annotations

import datetime as dt
import importlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Literal

Role = Literal["realtime", "stt", "tts", "agent"]
Capability = Literal[
    "streaming",  # results while audio/text is still arriving (a socket or SSE)
    "turn_detection",  # the service ends the user's turn itself (server VAD)
    "diarization",  # speaker labels
    "voices",  # speaks with one of the catalogue's voices
]
Status = Literal["active", "deprecated", "retired"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model id the app offers or accepts."""

    id: str
    role: Role
    capabilities: frozenset[Capability]
    status: Status = "active"
    shutdown: dt.date | None = None  # announced shutdown date (deprecated / retired)
    replacement: str | None = None  # what the provider recommends instead
    source: str = ""  # where the facts came from (URL or SDK file)
    aliases: tuple[str, ...] = ()
    note: str = ""

    def has(self, capability: Capability) -> bool:
        """Whether the model has ``capability``."""
        return capability in self.capabilities

    def status_on(self, today: dt.date | None = None) -> Status:
        """The lifecycle on ``today`` (a deprecated model past its shutdown is retired)."""
        day = today or dt.date.today()
        if self.status == "deprecated" and self.shutdown is not None and day >= self.shutdown:
            return "retired"
        return self.status


@dataclass(frozen=True, slots=True)
class VoiceInfo:
    """A preset voice the service documents."""

    id: str
    name: str
    language: str = ""
    models: tuple[str, ...] = ()  # model families that take it ("" = any of the provider's)
    source: str = ""


@dataclass(frozen=True, slots=True)
class Listing:
    """What an account offers, as a provider's ``inventory`` probe saw it: model ids
    (aliases included), announced shutdown dates where the API gives them, and whether the
    configured voice exists (``None``: not looked up; the catalogue judges)."""

    ids: frozenset[str]
    shutdown: dict[str, str] = field(default_factory=dict)
    voice_found: bool | None = None
    count: int = 0


@dataclass(frozen=True, slots=True)
class LifecycleProblem:
    """A configured model that is deprecated or retired (``message`` is one line)."""

    option: str
    model: str
    status: Status
    replacement: str | None
    message: str


@dataclass(frozen=True, slots=True)
class ProviderCatalog:
    """A provider's models and voices, and the defaults the app takes from them."""

    spec_key: str
    models: tuple[ModelInfo, ...]
    voices: tuple[VoiceInfo, ...]
    # config option -> role it names ("model" -> "realtime", "ttsModel" -> "tts", ...)
    model_options: dict[str, Role] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)  # option -> default value
    voices_are_open: bool = False  # the service also takes voices it created for the account

    def find(self, model_id: str) -> ModelInfo | None:
        """The entry for ``model_id`` (or one of its aliases)."""
        for model in self.models:
            if model.id == model_id or model_id in model.aliases:
                return model
        return None

    def usable(self, role: Role, today: dt.date | None = None) -> list[ModelInfo]:
        """Models of ``role`` that still work on ``today``, active first."""
        alive = [m for m in self.models if m.role == role and m.status_on(today) != "retired"]
        return sorted(alive, key=lambda m: m.status_on(today) != "active")

    def voice(self, voice_id: str) -> VoiceInfo | None:
        """The preset voice ``voice_id``, if documented."""
        return next((v for v in self.voices if v.id == voice_id), None)

    def replacement_for(self, model_id: str, today: dt.date | None = None) -> str | None:
        """The recommended replacement, followed until one that still works."""
        seen: set[str] = set()
        current = self.find(model_id)
        while current is not None and current.replacement and current.id not in seen:
            seen.add(current.id)
            nxt = self.find(current.replacement)
            if nxt is None or nxt.status_on(today) == "active":
                return current.replacement
            current = nxt
        return None

    def lifecycle_problems(
        self, options: dict[str, object], today: dt.date | None = None
    ) -> list[LifecycleProblem]:
        """Deprecated or retired models among a provider's configured ``options``."""
        out: list[LifecycleProblem] = []
        for option in self.model_options:
            value = options.get(option)
            if not isinstance(value, str):
                continue
            model = self.find(value)
            if model is None:
                continue
            status = model.status_on(today)
            if status == "active":
                continue
            repl = self.replacement_for(model.id, today)
            use = f"; use {repl!r}" if repl else ""
            when = f" on {model.shutdown.isoformat()}" if model.shutdown else ""
            if status == "retired":
                text = f"{option} {value!r} was shut down{when}{use}"
            else:
                text = f"{option} {value!r} is deprecated and shuts down{when}{use}"
            out.append(LifecycleProblem(option, value, status, repl, text))
        return out


def provider_module(spec_key: str, name: str) -> ModuleType | None:
    """``<provider package>.<name>`` of the provider implementing ``spec_key`` (its
    ``catalog`` or ``doctor`` module), or None when it has none. The package is the one
    the provider object lives in, found through the provider registry."""
    from voicetui.providers.base import ProviderError
    from voicetui.providers.registry import load_provider

    try:
        provider = load_provider(spec_key)
    except ProviderError:
        return None
    module = type(provider).__module__
    package = module if hasattr(sys.modules[module], "__path__") else module.rsplit(".", 1)[0]
    try:
        return importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{package}.{name}":
            raise
        return None


def catalog_for(spec_key: str) -> ProviderCatalog | None:
    """The catalogue of the provider implementing ``spec_key`` (None if it has none)."""
    module = provider_module(spec_key, "catalog")
    catalog = getattr(module, "CATALOG", None)
    return catalog if isinstance(catalog, ProviderCatalog) else None


def caps(*names: Capability) -> frozenset[Capability]:
    """A capability set (reads better in the data files)."""
    return frozenset(names)


def ids(models: Iterable[ModelInfo]) -> list[str]:
    """The ids of ``models``."""
    return [m.id for m in models]


def markdown_table(catalogs: Iterable[ProviderCatalog], today: dt.date | None = None) -> str:
    """``docs/models.md``'s tables: model, role, capabilities, status, shutdown, source."""
    lines: list[str] = []
    for catalog in catalogs:
        lines += [
            f"## `{catalog.spec_key}`",
            "",
            "| Model | Role | Capabilities | Status | Shutdown | Replacement | Source |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in catalog.models:
            names = ", ".join(f"`{n}`" for n in (m.id, *m.aliases))
            cap = ", ".join(sorted(m.capabilities)) or "-"
            shut = m.shutdown.isoformat() if m.shutdown else "-"
            repl = f"`{m.replacement}`" if m.replacement else "-"
            src = "; ".join(
                f"<{s.strip()}>" if s.strip().startswith("http") else s.strip()
                for s in m.source.split(";")
            )
            lines.append(
                f"| {names} | {m.role} | {cap} | {m.status_on(today)} | {shut} | {repl} | {src} |"
            )
        lines += ["", "Voices (preset ids):", ""]
        for v in catalog.voices:
            lang = f" ({v.language})" if v.language else ""
            lines.append(f"- `{v.id}` {v.name}{lang}: {v.source}")
        defaults = ", ".join(f"`{k}` = `{val}`" for k, val in catalog.defaults.items())
        lines += ["", f"Defaults: {defaults}.", ""]
    return "\n".join(lines)


GENERATED_MARK = "<!-- generated from the catalogues: python -m voicetui.providers.catalog -->"


def all_catalogs() -> list[ProviderCatalog]:
    """Every installed provider's catalogue, in spec-key order."""
    from voicetui.providers.registry import provider_keys

    found = (catalog_for(key) for key in provider_keys())
    return [c for c in found if c is not None]


if __name__ == "__main__":  # pragma: no cover - regenerates docs/models.md's tables
    # the catalogues hold instances of the imported module's classes, not __main__'s
    imported = importlib.import_module("voicetui.providers.catalog")

    print(GENERATED_MARK)
    print()
    print(imported.markdown_table(imported.all_catalogs()), end="")
