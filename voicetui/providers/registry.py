"""Provider discovery: the ``voicetui.providers`` entry-point group.

Each entry point is named by the spec key it implements and points at the package's
:class:`~voicetui.providers.base.Provider` object::

    [project.entry-points."voicetui.providers"]
    "example.voice" = "voicetui_example:PROVIDER"

Listing the keys reads installed metadata only; loading a provider imports its package (never
its SDK: providers import that lazily). This module is the one place that knows which
providers exist: the spec registry, the config defaults, health, the CLI and the app all ask
here, directly or through :func:`voicetui.specs.registry.registry`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging

from voicetui.providers.base import Provider, ProviderError

GROUP = "voicetui.providers"

log = logging.getLogger("voicetui.providers")

# What voicetui's own pyproject.toml declares in the group. Used only when the installed
# metadata predates the group (an editable install not reinstalled since), so an old checkout
# keeps working; ``pip install -e .`` makes the entry points the only source.
_BUNDLED: dict[str, str] = {
    "ai-voice-conv.mistral": "voicetui.providers.mistral:PROVIDER",
    "ai-voice-conv.openai": "voicetui.providers.openai:PROVIDER",
}


@functools.cache
def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            log.warning("two providers claim %s; keeping %s", ep.name, found[ep.name].value)
            continue
        found.setdefault(ep.name, ep)
    missing = {k: v for k, v in _BUNDLED.items() if k not in found}
    if missing and not any(ep.value in _BUNDLED.values() for ep in found.values()):
        log.warning("voicetui's entry points are not installed; run `pip install -e .`")
        for name, value in missing.items():
            found[name] = importlib.metadata.EntryPoint(name=name, value=value, group=GROUP)
    return found


def provider_keys() -> list[str]:
    """The spec keys of every installed provider, sorted. Imports nothing."""
    return sorted(_entry_points())


@functools.cache
def load_provider(spec_key: str) -> Provider:
    """The provider implementing ``spec_key``; :class:`ProviderError` (code ``config``) when
    none is installed or its package does not load."""
    try:
        ep = _entry_points()[spec_key]
    except KeyError:
        raise ProviderError(
            f"no provider implements {spec_key!r}; installed: {', '.join(provider_keys())}",
            code="config",
        ) from None
    try:
        provider: Provider = ep.load()
    except (ImportError, AttributeError) as err:
        raise ProviderError(
            f"provider {spec_key} ({ep.value}) does not load: {err}; reinstall its package",
            code="config",
        ) from None
    if provider.spec_key != spec_key:
        raise ProviderError(
            f"entry point {spec_key} loads a provider for {provider.spec_key}; fix its package",
            code="config",
        )
    return provider


def providers() -> list[Provider]:
    """Every installed provider, by spec key."""
    return [load_provider(key) for key in provider_keys()]


def default_provider_key() -> str:
    """The provider a config without ``provider`` selects (lowest ``preference``)."""
    return min(providers(), key=lambda p: (p.preference, p.spec_key)).spec_key


def reset() -> None:
    """Forget what was discovered, and the spec registry built from it (after installing a
    provider at run time; tests)."""
    from voicetui.specs.registry import registry

    _entry_points.cache_clear()
    load_provider.cache_clear()
    registry.cache_clear()
