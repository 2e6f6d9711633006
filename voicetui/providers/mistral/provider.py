"""The Mistral provider object: its declaration, sessions, the voice list, the health probe."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from voicetui.providers import probe
from voicetui.providers.base import (
    ProviderOption,
    ProviderSettings,
    SessionContext,
    Voice,
    import_quietly,
)
from voicetui.providers.catalog import Listing
from voicetui.providers.mistral.catalog import CATALOG
from voicetui.providers.mistral.retry import RetryPolicy, call_with_retries
from voicetui.specs.mistral import SOURCE
from voicetui.specs.model import SpecSource

if TYPE_CHECKING:
    from voicetui.providers.mistral.session import MistralSession

SPEC_KEY = SOURCE.spec.key

_MODEL: dict[str, Any] = {"type": "string", "minLength": 1}
OPTIONS: dict[str, ProviderOption] = {
    # defaults from the catalogue: a realtime model with server turn detection
    "transcriptionModel": ProviderOption(CATALOG.defaults["transcriptionModel"], _MODEL),
    "diarizeModel": ProviderOption(CATALOG.defaults["diarizeModel"], _MODEL),
    "ttsModel": ProviderOption(CATALOG.defaults["ttsModel"], _MODEL),
    "webSearch": ProviderOption(True, {"type": "boolean"}),
    "moderation": ProviderOption(False, {"type": "boolean"}),
    "moderationThresholds": ProviderOption(
        {},
        {
            "type": "object",
            "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
            "description": "moderation category -> threshold between 0 and 1",
        },
    ),
}
VOICE_PAGE_SIZE = 50
MAX_VOICE_PAGES = 20


class MistralProvider:
    """Mistral streaming cascade (realtime STT → agent conversation → streamed TTS)."""

    spec_key = SPEC_KEY
    preference = 0  # the seeds' own pipeline, and it works with every turn mode of the spec
    distributions = ("mistralai",)

    @property
    def source(self) -> SpecSource:
        return SOURCE

    @property
    def options(self) -> Mapping[str, ProviderOption]:
        return OPTIONS

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

    async def probe(self, base_url: str, api_key: str, timeout_ms: int) -> str:
        """List models (``GET /v1/models``) with the configured key."""
        listing = await self.inventory(base_url, api_key, timeout_ms, "")
        return f"{listing.count} models listed"

    async def inventory(self, base_url: str, api_key: str, timeout_ms: int, voice: str) -> Listing:
        """The account's models (aliases included) and, when ``voice`` is not a documented
        preset, whether the account has it (``GET /v1/audio/voices/{id}``, concurrently)."""
        import httpx2
        from mistralai.client import Mistral
        from mistralai.client.errors import MistralError, NoResponseError

        try:
            async with Mistral(
                api_key=api_key, server_url=base_url, timeout_ms=timeout_ms
            ) as client:

                async def voice_lookup() -> bool | None:
                    if not voice:
                        return None
                    try:
                        await client.audio.voices.get_async(voice_id=voice)
                    except MistralError as err:
                        if err.status_code != 404:
                            raise
                        return False
                    return True

                listed, found = await asyncio.gather(client.models.list_async(), voice_lookup())
        except httpx2.TimeoutException:
            raise probe.timed_out(base_url, timeout_ms) from None
        except (httpx2.TransportError, NoResponseError) as err:
            raise probe.unreachable(base_url, str(err) or type(err).__name__, api_key) from None
        except MistralError as err:
            raise probe.status_failure(
                err.status_code, err.headers, err.body, api_key, SOURCE.alias
            ) from None
        models = listed.data or []
        ids = {m.id for m in models} | {a for m in models for a in (m.aliases or [])}
        return Listing(frozenset(ids), {}, found, count=len(models))
