"""The OpenAI health probe: ``models.list`` through the SDK, errors as ProbeFailure."""

from __future__ import annotations

from voicetui.providers import probe


async def list_models(base_url: str, api_key: str, timeout_ms: int, alias: str) -> str:
    """``GET /v1/models`` with the key; ``"N models listed"`` or :class:`ProbeFailure`."""
    import openai

    try:
        async with openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url + "/v1",
            max_retries=0,
            timeout=timeout_ms / 1000,
        ) as client:
            page = await client.models.list()
            count = len(page.data)
    except openai.APITimeoutError:
        raise probe.timed_out(base_url, timeout_ms) from None
    except openai.APIConnectionError as err:
        raise probe.unreachable(base_url, str(err.__cause__ or err), api_key) from None
    except openai.APIStatusError as err:
        raise probe.status_failure(
            err.status_code, err.response.headers, err.body, api_key, alias
        ) from None
    return f"{count} models listed"
