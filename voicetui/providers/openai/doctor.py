"""The doctor's realtime handshake for OpenAI: open a Realtime session, then close it."""

from __future__ import annotations

from voicetui.providers.base import ProviderSettings


async def handshake(base_url: str, api_key: str, settings: ProviderSettings) -> str:
    """Open ``/v1/realtime`` with the configured model, wait for ``session.created``
    (an ``error`` event, e.g. an unknown model, raises), close. Returns what was opened."""
    import openai

    async with (
        openai.AsyncOpenAI(api_key=api_key, base_url=base_url + "/v1", max_retries=0) as client,
        client.realtime.connect(model=settings.model) as conn,
    ):
        event = await conn.recv()
        if event.type == "error":
            raise RuntimeError(f"{event.error.code}: {event.error.message}")
    return f"realtime session ({settings.model})"


HANDSHAKE = handshake
