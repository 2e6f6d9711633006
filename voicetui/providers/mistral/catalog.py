"""Mistral: the models and voices of the Voxtral cascade voicetui offers or accepts.

Sources: docs.mistral.ai model pages and audio guides (cited per entry), and the installed
``mistralai`` SDK (``client/models/audiotranscriptioncapabilities.py``: realtime models
declare ``turn_detection``; ``realtimetranscriptionsessionupdatepayload.py``: session
fields are set before audio). See docs/models.md.
"""

from __future__ import annotations

from voicetui.providers.catalog import ModelInfo, ProviderCatalog, VoiceInfo, caps

RT3 = "https://docs.mistral.ai/models/voxtral-mini-transcribe-realtime-3-0.md"
TURNS = "https://docs.mistral.ai/studio/audio/speech-to-text/turn-detection"
RT2602 = "https://huggingface.co/mistralai/voxtral-mini-4b-realtime-2602"
VOICES_DOC = "https://docs.mistral.ai/studio/audio/text-to-speech/voices"
TTS2603 = "https://docs.livekit.io/agents/models/tts/mistralai"
TTS3 = "https://docs.jambonz.org/guides/features/tts-vendor-settings/mistral"
TRANSCRIBE = "https://docs.mistral.ai/models/voxtral-mini-transcribe-25-07"
MODELS_DOC = "https://docs.mistral.ai/getting-started/models/"
MEDIUM = "https://openrouter.ai/mistralai/mistral-medium-3-5"
SDK_EXAMPLES = "mistralai SDK 3.7 extra/tests (model ids used)"

MODELS: tuple[ModelInfo, ...] = (
    ModelInfo(
        "voxtral-mini-transcribe-realtime-3",
        "stt",
        caps("streaming", "turn_detection", "diarization"),
        source=f"{RT3}; {TURNS}",
        aliases=("voxtral-mini-transcribe-realtime-3-0", "voxtral-mini-transcribe-realtime-latest"),
        note="public preview since 2026-10-20; diarization only without turn detection",
    ),
    ModelInfo(
        "voxtral-mini-transcribe-realtime-2602",
        "stt",
        caps("streaming"),
        source=f"{RT2602}; {RT3}",
        note="no end-of-turn detection: voicetui ends turns with its local VAD",
    ),
    ModelInfo(
        "voxtral-mini-latest",
        "stt",
        caps("diarization"),
        source=TRANSCRIBE,
        aliases=("voxtral-mini-2602", "voxtral-mini-2507"),
        note="batch transcription: the speaker relabel",
    ),
    ModelInfo(
        "voxtral-mini-tts-latest",
        "tts",
        caps("streaming", "voices"),
        source=f"{VOICES_DOC}; {TTS3}",
        aliases=("voxtral-mini-tts-3-0",),
        note="points at Voxtral TTS 3",
    ),
    ModelInfo("voxtral-mini-tts-2603", "tts", caps("streaming", "voices"), source=TTS2603),
    ModelInfo(
        "mistral-medium-latest",
        "agent",
        caps("streaming"),
        source=f"seed spec ai-voice-conv.mistral (example); {MEDIUM}",
        note="the -latest alias of Mistral Medium (3.5 since 2026-04-29); health checks it",
    ),
    ModelInfo(
        "mistral-small-latest", "agent", caps("streaming"), source=f"{SDK_EXAMPLES}; {MODELS_DOC}"
    ),
    ModelInfo(
        "mistral-large-latest", "agent", caps("streaming"), source=f"{SDK_EXAMPLES}; {MODELS_DOC}"
    ),
)

_V3 = (
    ("voice_478", "Sarah", "en"),
    ("voice_447", "Yael", "en"),
    ("voice_485", "Eric", "en-US"),
    ("voice_484", "Jesse", "en-US"),
    ("voice_483", "Esmeralda", "es"),
    ("voice_482", "Andrea", "it"),
    ("voice_481", "Fiona", "de"),
    ("voice_480", "Marina", "pt"),
    ("voice_479", "Linda", "ar"),
)
_V2 = (
    ("en_paul_neutral", "Paul (neutral)", "en-US"),
    ("gb_jane_neutral", "Jane (neutral)", "en-GB"),
    ("gb_oliver_neutral", "Oliver (neutral)", "en-GB"),
)
VOICES: tuple[VoiceInfo, ...] = (
    *(VoiceInfo(i, n, lang, ("voxtral-mini-tts-latest",), VOICES_DOC) for i, n, lang in _V3),
    *(VoiceInfo(i, n, lang, (), VOICES_DOC) for i, n, lang in _V2),
)

CATALOG = ProviderCatalog(
    spec_key="ai-voice-conv.mistral",
    models=MODELS,
    voices=VOICES,
    model_options={
        "model": "agent",
        "transcriptionModel": "stt",
        "diarizeModel": "stt",
        "ttsModel": "tts",
    },
    defaults={
        "defaultVoice": "voice_478",
        "transcriptionModel": "voxtral-mini-transcribe-realtime-3",
        "diarizeModel": "voxtral-mini-latest",
        "ttsModel": "voxtral-mini-tts-latest",
    },
    voices_are_open=True,  # saved / cloned voices of the account are accepted by id
)
