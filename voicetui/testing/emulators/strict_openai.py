"""Strict validation of OpenAI Realtime frames against the installed SDK's typed models.

``validate_server_event`` looks the concrete class up by ``type`` among the members of
``openai.types.realtime.RealtimeServerEvent`` and validates the exact JSON text with
``strict=True``; it also rejects fields the model does not define (the SDK would keep them
silently as extras). An event type the SDK does not know is a violation too.

One deliberate exception, from the wire reference §3.3: ``session.created`` /
``session.updated`` carry the session in the *response* layout (``id``, ``object``,
``expires_at``) while the SDK types it as the *request* model. Those three extras are allowed
there, and the session is additionally validated strictly as ``RealtimeSessionCreateResponse``.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from voicetui.testing.emulators.strict import literal_type_of, unexpected_extras

_SESSION_RESPONSE_EXTRAS = ("session.id", "session.object", "session.expires_at")


def _union_members(alias: Any) -> list[type[BaseModel]]:
    union = get_args(alias)[0]  # Annotated[Union[...], PropertyInfo]
    return [m for m in get_args(union) if isinstance(m, type) and issubclass(m, BaseModel)]


@cache
def server_event_classes() -> dict[str, type[BaseModel]]:
    """``type`` string -> SDK class for every server event the SDK knows."""
    from openai.types.realtime import RealtimeServerEvent

    table: dict[str, type[BaseModel]] = {}
    for model in _union_members(RealtimeServerEvent):
        name = literal_type_of(model)
        if name:
            table[name] = model
    return table


@cache
def client_event_classes() -> dict[str, type[BaseModel]]:
    """``type`` string -> SDK class for every client event the SDK can send."""
    from openai.types.realtime import RealtimeClientEvent

    table: dict[str, type[BaseModel]] = {}
    for model in _union_members(RealtimeClientEvent):
        name = literal_type_of(model)
        if name:
            table[name] = model
    return table


def _validate(text: str, table: dict[str, type[BaseModel]], side: str) -> tuple[str, list[str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return "", [f"not JSON: {exc}"]
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return "", ["no string 'type' field"]
    event_type: str = data["type"]
    model = table.get(event_type)
    if model is None:
        return event_type, [f"type {event_type!r} is unknown to the SDK ({side} events)"]
    try:
        parsed = model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        return event_type, [f"{model.__name__}: {err['loc']} {err['msg']}" for err in exc.errors()]
    allowed: tuple[str, ...] = ()
    problems: list[str] = []
    if event_type in ("session.created", "session.updated"):
        allowed = _SESSION_RESPONSE_EXTRAS
        problems += _validate_session_response(data.get("session"))
    problems += [
        f"field unknown to {model.__name__}: {p}" for p in unexpected_extras(parsed, "", allowed)
    ]
    return event_type, problems


def _validate_session_response(session: Any) -> list[str]:
    from openai.types.realtime import RealtimeSessionCreateResponse

    try:
        parsed = RealtimeSessionCreateResponse.model_validate_json(json.dumps(session), strict=True)
    except ValidationError as exc:
        return [f"RealtimeSessionCreateResponse: {e['loc']} {e['msg']}" for e in exc.errors()]
    return [
        f"session field unknown to RealtimeSessionCreateResponse: {p}"
        for p in unexpected_extras(parsed)
    ]


def validate_server_event(text: str) -> tuple[str, list[str]]:
    """Check one server frame; returns ``(event type, problems)`` — no problems means valid."""
    return _validate(text, server_event_classes(), "server")


def validate_client_event(text: str) -> tuple[str, list[str]]:
    """Check one client frame against ``RealtimeClientEvent`` the same strict way."""
    return _validate(text, client_event_classes(), "client")
