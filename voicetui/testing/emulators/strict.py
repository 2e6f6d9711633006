"""Strict-validation helpers shared by the emulators.

The SDKs parse server events leniently (unknown types and missing fields never raise), so a
green test proves nothing unless every frame the emulator sends is checked against the SDK's
typed model *strictly*: no type coercion, every required field present, and no field the
model does not know (pydantic keeps unknown fields silently in ``model_extra``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class Violation:
    """One frame that failed strict validation."""

    direction: str  # "server" (emulator -> SDK) or "client" (SDK -> emulator)
    event_type: str
    problem: str
    frame: str  # the offending frame, shortened

    def __str__(self) -> str:
        return f"{self.direction} {self.event_type}: {self.problem} :: {self.frame}"


def shorten(text: str, limit: int = 400) -> str:
    """The first ``limit`` characters of ``text`` (frames can hold megabytes of base64)."""
    return text if len(text) <= limit else text[:limit] + f"...(+{len(text) - limit})"


def unexpected_extras(value: Any, path: str = "", allowed: Iterable[str] = ()) -> list[str]:
    """Dotted paths of fields pydantic accepted as *extras* anywhere inside ``value``.

    ``allowed`` lists dotted paths (e.g. ``"session.id"``) that are known to arrive as extras
    on purpose (a field the SDK types on a different model than the wire layout).
    """
    allowed_set = set(allowed)
    found: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, BaseModel):
            for key in node.model_extra or {}:
                dotted = f"{where}.{key}" if where else key
                if dotted not in allowed_set:
                    found.append(dotted)
            for name in type(node).model_fields:
                walk(getattr(node, name), f"{where}.{name}" if where else name)
        elif isinstance(node, list | tuple):
            for index, child in enumerate(node):
                walk(child, f"{where}[{index}]")
        elif isinstance(node, dict):
            for key, child in node.items():
                walk(child, f"{where}.{key}" if where else str(key))

    walk(value, path)
    return found


def literal_type_of(model: type[BaseModel], field: str = "type") -> str | None:
    """The single literal value of ``model.<field>`` (the discriminator), if it has one."""
    from typing import get_args

    info = model.model_fields.get(field)
    if info is None:
        return None
    args = get_args(info.annotation)
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None
