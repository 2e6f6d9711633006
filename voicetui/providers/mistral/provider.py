"""The Mistral provider object: sessions and the voice list."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from voicetui.providers.base import ProviderSettings, SessionContext, Voice, import_quietly
from voicetui.providers.mistral.retry import RetryPolicy, call_with_retries

if TYPE_CHECKING:
    from voicetui.providers.mistral.session import MistralSession

SPEC_KEY = "ai-voice-conv.mistral"
VOICE_PAGE_SIZE = 50
MAX_VOICE_PAGES = 20


class MistralProvider:
    """Mistral streaming cascade (realtime STT → agent conversation → streamed TTS)."""

    spec_key = SPEC_KEY

    def create_session(self, ctx: SessionContext) -> MistralSession:
        """A new, unconnected session (the engine calls ``connect`` next)."""
        from voicetui.providers.mistral.session import MistralSession

        return MistralSession(ctx)

    def preload(self) -> None:
        """Import the SDK and the cascade (see :meth:`Provider.preload`)."""
        import_quietly("mistralai.client", "voicetui.providers.mistral.session")

    async def list_voices(self, settings: ProviderSettings, api_key: str) -> list[Voice]:
        """All voices from ``GET /v2/audio/voices``, following the cursor."""
        from mistralai.client import Mistral

        voices: list[Voice] = []
        token: str | None = None
        async with Mistral(
            api_key=api_key, server_url=settings.base_url or None, timeout_ms=15_000
        ) as client:
            for _ in range(MAX_VOICE_PAGES):
                response = await call_with_retries(
                    functools.partial(
                        client.audio.voices.search_async,
                        page_size=VOICE_PAGE_SIZE,
                        page_token=token,
                    ),
                    what="listing voices",
                    policy=RetryPolicy(attempts=3),
                )
                if response is None:
                    break
                page = response.result
                for item in page.data:
                    extras = [item.gender or "", ", ".join(item.tags or [])]
                    description = item.description or " · ".join(e for e in extras if e)
                    voices.append(
                        Voice(
                            id=item.id,
                            name=item.name,
                            languages=tuple(item.languages or ()),
                            description=description,
                        )
                    )
                token = page.next_page_token if isinstance(page.next_page_token, str) else None
                if not token or len(page.data) < VOICE_PAGE_SIZE:
                    break
        return voices
