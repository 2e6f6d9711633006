"""The one place the rest of voicetui asks about integration specs.

Pickers, validation messages, setup help and health timeouts all come from here. Loading
checks every spec's schemas and refuses a spec whose own example does not validate.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence

import jsonschema
from jsonschema.validators import validator_for

from voicetui.specs.model import IntegrationSpec, SchemaWithExample, SpecSource


class UnknownProvider(LookupError):
    """A provider name that is neither a spec key nor an alias. ``str()`` is one line."""

    def __init__(self, name: str, allowed: Iterable[str]) -> None:
        self.name = name
        self.allowed = tuple(allowed)
        super().__init__(f"unknown provider {name!r}; allowed: {', '.join(self.allowed)}")

    def __str__(self) -> str:  # LookupError would repr() the args
        return str(self.args[0])


class SpecInvalid(ValueError):
    """A spec refused at load (bad schema, or its example does not validate)."""


def _check_schema_example(key: str, part: str, swe: SchemaWithExample) -> None:
    cls = validator_for(swe.schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(dict(swe.schema))
    except jsonschema.SchemaError as err:
        raise SpecInvalid(
            f"spec {key}: {part}.schema is not a valid JSON Schema: {err.message}"
        ) from None
    error = jsonschema.exceptions.best_match(cls(swe.schema).iter_errors(swe.example))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(root)"
        raise SpecInvalid(
            f"spec {key}: {part}.example does not validate against its schema at {where}: "
            f"{error.message}"
        )


class SpecRegistry:
    """Specs by key, with aliases; validated on construction."""

    def __init__(self, sources: Sequence[SpecSource]) -> None:
        self._sources: dict[str, SpecSource] = {}
        self._aliases: dict[str, str] = {}
        for source in sources:
            spec = source.spec
            if spec.key in self._sources or source.alias in self._aliases:
                raise SpecInvalid(f"spec {spec.key}: duplicate key or alias {source.alias!r}")
            _check_schema_example(spec.key, "configSchema", spec.config_schema)
            _check_schema_example(spec.key, "secretSchema", spec.secret_schema)
            if spec.health_check.timeout_ms <= 0:
                raise SpecInvalid(f"spec {spec.key}: healthCheck.timeoutMs must be positive")
            spec.rest_base_url  # noqa: B018 - every spec we run needs a REST base URL
            self._sources[spec.key] = source
            self._aliases[source.alias] = spec.key

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._sources

    def keys(self) -> list[str]:
        """Spec keys, sorted."""
        return sorted(self._sources)

    def all(self) -> list[IntegrationSpec]:
        """Every spec, sorted by key."""
        return [self._sources[k].spec for k in self.keys()]

    def resolve(self, name: str) -> str:
        """The spec key for a key or alias (raises :class:`UnknownProvider`)."""
        if name in self._sources:
            return name
        try:
            return self._aliases[name]
        except KeyError:
            raise UnknownProvider(name, self.allowed_names()) from None

    def get(self, name: str) -> IntegrationSpec:
        """The spec for a key or alias (raises :class:`UnknownProvider`)."""
        return self._sources[self.resolve(name)].spec

    def source(self, name: str) -> SpecSource:
        """Spec plus product facts (alias, env var, export name, module file)."""
        return self._sources[self.resolve(name)]

    def alias(self, name: str) -> str:
        return self.source(name).alias

    def api_key_env(self, name: str) -> str:
        """The environment variable that overrides the keyring for this provider."""
        return self.source(name).api_key_env

    def allowed_names(self) -> list[str]:
        """``key (alias)`` for every spec, for error messages."""
        return [f"{k} ({self._sources[k].alias})" for k in self.keys()]


@functools.cache
def registry() -> SpecRegistry:
    """The process-wide registry of the spec of every installed provider (each declares its
    own; see :mod:`voicetui.providers.registry`)."""
    from voicetui.providers.registry import providers

    return SpecRegistry([provider.source for provider in providers()])
