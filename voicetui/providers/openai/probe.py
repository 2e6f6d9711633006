"""The OpenAI health probe: ``models.list`` through the SDK, errors as ProbeFailure."""

from __future__ import annotations

from voicetui.providers import probe
from voicetui.providers.catalog import Listing


async def list_models(base_url: str, api_key: str, timeout_ms: int, alias: str) -> str:
    """``GET /v1/models`` with the key; ``"N models listed"`` or :class:`ProbeFailure`."""
    listing = await inventory(base_url, api_key, timeout_ms, alias)
    return f"{listing.count} models listed"


async def inventory(base_url: str, api_key: str, timeout_ms: int, alias: str) -> Listing:
    """``GET /v1/models`` with the key: the ids and each ``shutdown_date`` the API
    announces (the Realtime API has no voice listing: the catalogue judges voices)."""
    import openai

    try:
        async with openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url + "/v1",
            max_retries=0,
            timeout=timeout_ms / 1000,
        ) as client:
            page = await client.models.list()
    except openai.APITimeoutError:
        raise probe.timed_out(base_url, timeout_ms) from None
    except openai.APIConnectionError as err:
        raise probe.unreachable(base_url, str(err.__cause__ or err), api_key) from None
    except openai.APIStatusError as err:
        raise probe.status_failure(
            err.status_code, err.response.headers, err.body, api_key, alias
        ) from None
    shutdown = {m.id: str(m.shutdown_date) for m in page.data if m.shutdown_date}
    return Listing(frozenset(m.id for m in page.data), shutdown, count=len(page.data))
