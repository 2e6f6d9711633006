"""OpenAI provider: the Realtime API over WebSocket (server VAD or push-to-talk, barge-in).

The SDK is imported lazily (inside functions), so importing this package is cheap.
"""

from voicetui.providers.openai.realtime import OpenAIRealtimeProvider

PROVIDER = OpenAIRealtimeProvider()

__all__ = ["PROVIDER", "OpenAIRealtimeProvider"]
