"""OpenAI Realtime: the models and voices voicetui offers or accepts (see docs/models.md).

Sources: the installed ``openai`` SDK's own type literals and deprecation docstrings
(``openai/types/realtime/realtime_session_create_request_param.py``,
``.../realtime_audio_config_output_param.py``, ``.../audio_transcription_param.py``), OpenAI's
deprecations page, and the model pages cited per entry.
"""

from __future__ import annotations

import datetime as dt

from voicetui.providers.catalog import ModelInfo, ProviderCatalog, VoiceInfo, caps

SDK_SESSION = "openai SDK 3.54 types/realtime/realtime_session_create_request_param.py"
SDK_VOICES = "openai SDK 3.54 types/realtime/realtime_audio_config_output_param.py"
SDK_TRANSCRIBE = "openai SDK 3.54 types/realtime/audio_transcription_param.py"
DEPRECATIONS = "https://developers.openai.com/api/docs/deprecations"
RT2 = "https://vercel.com/ai-gateway/models/gpt-realtime-2/about"
RT21 = "https://docs.retellai.com/deprecation-notice/2027/01-19_model_replacements"
PREVIEW_SHUTDOWN = "https://www.modelcostwatch.com/openai/deprecations/shutdown-schedule"

_SPEECH = caps("streaming", "turn_detection", "voices")
_REALTIME_2027 = dt.date(2027, 1, 20)  # SDK docstring: "Announced shutdown date: 2027-01-20"
_PREVIEW_GONE = dt.date(2026, 5, 7)  # preview realtime models, per the deprecations schedule
_TRANSCRIBE_2027 = dt.date(2027, 2, 26)  # SDK docstring of the transcription model literal

MODELS: tuple[ModelInfo, ...] = (
    ModelInfo("gpt-realtime-2.1", "realtime", _SPEECH, source=f"{SDK_SESSION}; {RT21}"),
    ModelInfo("gpt-realtime-2.1-mini", "realtime", _SPEECH, source=f"{SDK_SESSION}; {RT21}"),
    ModelInfo("gpt-realtime-2", "realtime", _SPEECH, source=f"{SDK_SESSION}; {RT2}"),
    ModelInfo("gpt-realtime-1.5", "realtime", _SPEECH, source=SDK_SESSION),
    ModelInfo(
        "gpt-realtime",
        "realtime",
        _SPEECH,
        "deprecated",
        _REALTIME_2027,
        "gpt-realtime-2.1",
        f"{SDK_SESSION}; {RT21}",
    ),
    ModelInfo(
        "gpt-realtime-2025-08-28",
        "realtime",
        _SPEECH,
        "deprecated",
        _REALTIME_2027,
        "gpt-realtime-2.1",
        SDK_SESSION,
    ),
    ModelInfo(
        "gpt-realtime-mini",
        "realtime",
        _SPEECH,
        "deprecated",
        _REALTIME_2027,
        "gpt-realtime-2.1-mini",
        f"{SDK_SESSION}; {RT21}",
    ),
    ModelInfo(
        "gpt-realtime-mini-2025-12-15",
        "realtime",
        _SPEECH,
        "deprecated",
        _REALTIME_2027,
        "gpt-realtime-2.1-mini",
        SDK_SESSION,
    ),
    *(
        ModelInfo(
            name,
            "realtime",
            _SPEECH,
            "retired",
            _PREVIEW_GONE,
            "gpt-realtime-1.5" if "mini" not in name else "gpt-realtime-mini",
            f"{PREVIEW_SHUTDOWN} (citing {DEPRECATIONS})",
            note="the seed spec's example model",
        )
        for name in (
            "gpt-4o-realtime-preview",
            "gpt-4o-realtime-preview-2024-10-01",
            "gpt-4o-realtime-preview-2024-12-17",
            "gpt-4o-realtime-preview-2025-06-03",
            "gpt-4o-mini-realtime-preview",
            "gpt-4o-mini-realtime-preview-2024-12-17",
        )
    ),
    # input transcription inside a Realtime session
    ModelInfo("gpt-realtime-whisper", "stt", caps("streaming"), source=SDK_TRANSCRIBE),
    ModelInfo("gpt-transcribe", "stt", caps("streaming"), source=SDK_TRANSCRIBE),
    ModelInfo("gpt-live-transcribe", "stt", caps("streaming"), source=SDK_TRANSCRIBE),
    ModelInfo(
        "gpt-4o-transcribe",
        "stt",
        caps("streaming"),
        "deprecated",
        _TRANSCRIBE_2027,
        "gpt-transcribe",
        SDK_TRANSCRIBE,
    ),
    ModelInfo(
        "gpt-4o-mini-transcribe",
        "stt",
        caps("streaming"),
        "deprecated",
        _TRANSCRIBE_2027,
        "gpt-transcribe",
        SDK_TRANSCRIBE,
    ),
    ModelInfo(
        "gpt-4o-transcribe-diarize",
        "stt",
        caps("diarization"),
        "deprecated",
        _TRANSCRIBE_2027,
        None,
        SDK_TRANSCRIBE,
        note="the only documented realtime input model with speaker labels",
    ),
    ModelInfo(
        "whisper-1",
        "stt",
        frozenset(),
        "deprecated",
        _TRANSCRIBE_2027,
        "gpt-transcribe",
        SDK_TRANSCRIBE,
    ),
)

VOICES: tuple[VoiceInfo, ...] = tuple(
    VoiceInfo(v, v.capitalize(), source=SDK_VOICES)
    for v in (
        "marin",
        "cedar",
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "sage",
        "shimmer",
        "verse",
    )
)

CATALOG = ProviderCatalog(
    spec_key="ai-voice-conv.openai",
    models=MODELS,
    voices=VOICES,
    model_options={"model": "realtime", "transcriptionModel": "stt"},
    # the SDK docstring recommends marin and cedar "for best quality"
    defaults={
        "model": "gpt-realtime-2.1",
        "defaultVoice": "marin",
        "transcriptionModel": "gpt-transcribe",
    },
    voices_are_open=True,  # custom voices ({"id": "voice_..."}) are accepted too
)
