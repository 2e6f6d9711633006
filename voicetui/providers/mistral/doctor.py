"""The doctor's realtime handshake for Mistral: open the transcription socket, then close it."""

from __future__ import annotations

from voicetui.providers.base import ProviderSettings
from voicetui.providers.mistral.catalog import CATALOG


async def handshake(base_url: str, api_key: str, settings: ProviderSettings) -> str:
    """Open the realtime transcription socket with the configured model (the SDK raises on
    the service's error event, e.g. an unknown model), close it. Returns what was opened."""
    from mistralai.client import Mistral
    from mistralai.client.models import AudioFormat

    model = str(settings.extras.get("transcriptionModel") or CATALOG.defaults["transcriptionModel"])
    async with Mistral(api_key=api_key, server_url=base_url, timeout_ms=8000) as client:
        conn = await client.audio.realtime.connect(
            model=model, audio_format=AudioFormat(encoding="pcm_s16le", sample_rate=24_000)
        )
        await conn.close()
    return f"transcription socket ({model})"


HANDSHAKE = handshake
