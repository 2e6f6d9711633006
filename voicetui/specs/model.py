"""The integration spec as typed data: one frozen dataclass per part of ``defineIntegration``.

Field names are Pythonic; :meth:`IntegrationSpec.to_json` gives back the spec's own camelCase
names (and the same key order as the source definition), so what ``specs show --json`` prints
is the spec, not our reshaping of it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Stability(StrEnum):
    """``StabilityEnum`` of the source definitions."""

    EXPERIMENTAL = "Experimental"
    BETA = "Beta"
    STABLE = "Stable"
    DEPRECATED = "Deprecated"


@dataclass(frozen=True, slots=True)
class Meta:
    key: str
    version: str
    category: str
    title: str
    description: str
    domain: str
    owners: tuple[str, ...]
    tags: tuple[str, ...]
    stability: Stability

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "version": self.version,
            "category": self.category,
            "title": self.title,
            "description": self.description,
            "domain": self.domain,
            "owners": list(self.owners),
            "tags": list(self.tags),
            "stability": self.stability.value,
        }


@dataclass(frozen=True, slots=True)
class Transport:
    """``{ type: 'rest', baseUrl }`` or ``{ type: 'sdk', packageName }``."""

    type: str
    base_url: str | None = None
    package_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.base_url is not None:
            out["baseUrl"] = self.base_url
        if self.package_name is not None:
            out["packageName"] = self.package_name
        return out


@dataclass(frozen=True, slots=True)
class AuthMethod:
    type: str
    header_name: str
    prefix: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "headerName": self.header_name, "prefix": self.prefix}


@dataclass(frozen=True, slots=True)
class CapabilityRef:
    key: str
    version: str

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "version": self.version}


@dataclass(frozen=True, slots=True)
class Capabilities:
    provides: tuple[CapabilityRef, ...]

    def to_json(self) -> dict[str, Any]:
        return {"provides": [c.to_json() for c in self.provides]}


@dataclass(frozen=True, slots=True)
class SchemaWithExample:
    """A JSON Schema plus an example instance (``configSchema`` / ``secretSchema``).

    The mappings are plain JSON data in source order; treat them as read-only (``to_json``
    hands out deep copies).
    """

    schema: Mapping[str, Any] = field(hash=False)
    example: Mapping[str, Any] = field(hash=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": copy.deepcopy(dict(self.schema)),
            "example": copy.deepcopy(dict(self.example)),
        }

    @property
    def properties(self) -> Mapping[str, Mapping[str, Any]]:
        """The schema's ``properties`` (empty if none)."""
        props: Mapping[str, Mapping[str, Any]] = self.schema.get("properties", {})
        return props


@dataclass(frozen=True, slots=True)
class HealthCheck:
    method: str
    timeout_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "timeoutMs": self.timeout_ms}


@dataclass(frozen=True, slots=True)
class ByokSetup:
    setup_instructions: str
    key_rotation_supported: bool | None = None
    quota_tracking_supported: bool | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"setupInstructions": self.setup_instructions}
        if self.key_rotation_supported is not None:
            out["keyRotationSupported"] = self.key_rotation_supported
        if self.quota_tracking_supported is not None:
            out["quotaTrackingSupported"] = self.quota_tracking_supported
        return out


@dataclass(frozen=True, slots=True)
class IntegrationSpec:
    """One ``defineIntegration({...})`` source definition, every field."""

    meta: Meta
    supported_modes: tuple[str, ...]
    transports: tuple[Transport, ...]
    preferred_transport: str
    supported_auth_methods: tuple[AuthMethod, ...]
    capabilities: Capabilities
    config_schema: SchemaWithExample
    secret_schema: SchemaWithExample
    health_check: HealthCheck
    docs_url: str
    byok_setup: ByokSetup

    @property
    def key(self) -> str:
        return self.meta.key

    @property
    def title(self) -> str:
        return self.meta.title

    @property
    def rest_base_url(self) -> str:
        """The ``rest`` transport's base URL (scheme://host, no ``/v1``)."""
        for transport in self.transports:
            if transport.type == "rest" and transport.base_url:
                return transport.base_url
        raise LookupError(f"spec {self.key} has no rest transport")

    @property
    def turn_detection_modes(self) -> tuple[str, ...]:
        """The ``turnDetection`` enum of the config schema."""
        return tuple(self.config_schema.properties.get("turnDetection", {}).get("enum", ()))

    def to_json(self) -> dict[str, Any]:
        """The spec with its own camelCase field names, in source order."""
        return {
            "meta": self.meta.to_json(),
            "supportedModes": list(self.supported_modes),
            "transports": [t.to_json() for t in self.transports],
            "preferredTransport": self.preferred_transport,
            "supportedAuthMethods": [a.to_json() for a in self.supported_auth_methods],
            "capabilities": self.capabilities.to_json(),
            "configSchema": self.config_schema.to_json(),
            "secretSchema": self.secret_schema.to_json(),
            "healthCheck": self.health_check.to_json(),
            "docsUrl": self.docs_url,
            "byokSetup": self.byok_setup.to_json(),
        }


@dataclass(frozen=True, slots=True)
class SpecSource:
    """Where a spec lives and how the product knows it (not part of the spec data)."""

    spec: IntegrationSpec
    export_name: str  # the source definition's ``export const`` name
    module_file: str  # repo-relative path of the Python module holding it
    alias: str  # short CLI name: "mistral", "openai"
    api_key_env: str  # environment variable that overrides the keyring
    key_steps: tuple[str, ...] = ()  # how to get a key, step by step (the keys screen)
