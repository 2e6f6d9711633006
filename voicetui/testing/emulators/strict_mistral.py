"""Strict validation of what the Mistral emulator sends, against the SDK's own models.

The SDK parses leniently: an unknown event type or a payload that does not fit its model turns
into an ``Unknown…`` object silently, and unknown keys are dropped. That would let an emulator
drift from the wire format without any test noticing. :class:`StrictChecker` therefore looks up
the pydantic class the SDK would use for each event ``type`` (per channel) or each REST body and
validates the JSON text with ``strict=True``; it also flags keys the model does not declare
(at every nesting level) and any ``Unknown…`` object produced inside a union. Every problem is
recorded as a one-line violation; nothing raises, so a test asserts ``emu.violations == []``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

# channel → {event type → class name in mistralai.client.models}; "" = the whole body.
_TABLES: dict[str, dict[str, str]] = {
    "json:models": {"": "ModelList"},
    "json:transcription": {"": "TranscriptionResponse"},
    "json:speech": {"": "SpeechResponse"},
    "json:voices_page": {"": "VoiceListPage"},
    "json:voices_list": {"": "VoiceListResponse"},
    "json:voice": {"": "VoiceResponse"},
    "json:agent": {"": "Agent"},
    "json:agent_list": {"": "Agent"},  # a JSON list of them
    "json:agent_page": {"": "AgentListPage"},
    "json:conversation": {"": "ConversationResponse"},
    "json:conversation_messages": {"": "ConversationMessages"},
    "sse:transcription": {
        "transcription.language": "TranscriptionStreamLanguage",
        "transcription.text.delta": "TranscriptionStreamTextDelta",
        "transcription.segment": "TranscriptionStreamSegmentDelta",
        "transcription.done": "TranscriptionStreamDone",
    },
    "sse:speech": {
        "speech.audio.delta": "SpeechStreamAudioDelta",
        "speech.audio.done": "SpeechStreamDone",
    },
    "sse:conversation": {
        "conversation.response.started": "ResponseStartedEvent",
        "conversation.response.done": "ResponseDoneEvent",
        "conversation.response.error": "ResponseErrorEvent",
        "tool.execution.started": "ToolExecutionStartedEvent",
        "tool.execution.delta": "ToolExecutionDeltaEvent",
        "tool.execution.done": "ToolExecutionDoneEvent",
        "message.output.delta": "MessageOutputEvent",
        "function.call.delta": "FunctionCallEvent",
        "agent.handoff.started": "AgentHandoffStartedEvent",
        "agent.handoff.done": "AgentHandoffDoneEvent",
    },
    "ws:stt": {
        "session.created": "RealtimeTranscriptionSessionCreated",
        "session.updated": "RealtimeTranscriptionSessionUpdated",
        "error": "RealtimeTranscriptionError",
        "transcription.language": "TranscriptionStreamLanguage",
        "transcription.segment": "TranscriptionStreamSegmentDelta",
        "transcription.text.delta": "TranscriptionStreamTextDelta",
        "transcription.done": "TranscriptionStreamDone",
        "turn.start": "TurnDetectionStartEvent",
        "turn.eager_end": "TurnDetectionEagerEndEvent",
        "turn.resume": "TurnDetectionResumeEvent",
        "turn.end": "TurnDetectionEndEvent",
    },
    "ws:tts": {
        "session.created": "RealtimeSpeechSessionCreated",
        "session.updated": "RealtimeSpeechSessionUpdated",
        "error": "RealtimeSpeechError",
        "speech.audio.delta": "SpeechStreamAudioDelta",
        "speech.audio.done": "SpeechStreamDone",
    },
}


def model_for(channel: str, event_type: str) -> type[BaseModel] | None:
    """The SDK class for ``event_type`` on ``channel`` (None if the SDK has none)."""
    from mistralai.client import models

    table = _TABLES.get(channel, {})
    name = table.get(event_type) or table.get("")
    if name is None:
        return None
    cls = getattr(models, name)
    assert isinstance(cls, type) and issubclass(cls, BaseModel)
    return cls


def _unknown_keys(model: Any, raw: Any, where: str) -> list[str]:
    """Keys in ``raw`` that the parsed ``model`` does not declare, recursively."""
    problems: list[str] = []
    if isinstance(model, BaseModel):
        name = type(model).__name__
        if name.startswith("Unknown"):
            return [f"{where}: parsed as {name}"]
        if not isinstance(raw, dict):
            return problems
        fields = type(model).model_fields
        by_wire = {(f.alias or n): n for n, f in fields.items()}
        for key, value in raw.items():
            if key not in by_wire:
                problems.append(f"{where}.{key}: not a field of {name}")
                continue
            problems += _unknown_keys(getattr(model, by_wire[key]), value, f"{where}.{key}")
    elif isinstance(model, list) and isinstance(raw, list):
        for i, (m, r) in enumerate(zip(model, raw, strict=False)):
            problems += _unknown_keys(m, r, f"{where}[{i}]")
    return problems


class StrictChecker:
    """Collects strict-validation violations of emitted events and bodies (thread-safe)."""

    def __init__(self, on_violation: Callable[[str], None] | None = None) -> None:
        self.violations: list[str] = []
        self.checked = 0
        self.on_violation = on_violation  # e.g. print them when running from the CLI
        self._lock = threading.Lock()

    def check(self, channel: str, event_type: str, text: str) -> None:
        """Validate one JSON text sent on ``channel`` (``event_type`` = its ``type``)."""
        problems = self.problems(channel, event_type, text)
        with self._lock:
            self.checked += 1
            self.violations += problems
        if self.on_violation is not None:
            for problem in problems:
                self.on_violation(problem)

    def problems(self, channel: str, event_type: str, text: str) -> list[str]:
        """The violations of one JSON text (empty when it is valid)."""
        import json

        where = f"{channel} {event_type or 'body'}"
        cls = model_for(channel, event_type)
        if cls is None:
            return [f"{where}: no SDK model for this type"]
        raw = json.loads(text)
        if channel.endswith("_list"):  # a bare JSON array of ``cls``
            if not isinstance(raw, list):
                return [f"{where}: expected a JSON list"]
            return [
                p
                for i, item in enumerate(raw)
                for p in self.problems(channel.removesuffix("_list"), event_type, json.dumps(item))
            ]
        try:
            model = cls.model_validate_json(text, strict=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            return [f"{where}: {loc}: {first['msg']} ({exc.error_count()} errors)"]
        return _unknown_keys(model, raw, where)
