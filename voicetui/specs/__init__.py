"""Integration specs as typed data: one module per provider, a registry, a doc generator."""

from __future__ import annotations

from voicetui.specs.model import IntegrationSpec, SpecSource
from voicetui.specs.registry import SpecInvalid, SpecRegistry, UnknownProvider, registry

__all__ = [
    "IntegrationSpec",
    "SpecInvalid",
    "SpecRegistry",
    "SpecSource",
    "UnknownProvider",
    "registry",
]
