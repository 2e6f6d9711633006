"""Mistral provider: the streaming cascade Voxtral realtime STT → agent conversation
(web search, optional moderation) → Voxtral TTS, with diarized speaker labels.

The SDK is imported lazily (inside functions), so importing this package is cheap.
"""

from voicetui.providers.mistral.provider import MistralProvider

PROVIDER = MistralProvider()

__all__ = ["PROVIDER", "MistralProvider"]
