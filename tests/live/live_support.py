"""Opt-in live tests against the real services (``make test-live``).

They run only with ``VOICETUI_LIVE=1`` and the provider's key in the environment
(``OPENAI_API_KEY`` / ``MISTRAL_API_KEY``); otherwise every test is skipped with the reason.
They cost a few cents per run and need the network: a maintainer runs them before a release.
"""

from __future__ import annotations

import os

import pytest

KEY_ENV = {"openai": "OPENAI_API_KEY", "mistral": "MISTRAL_API_KEY"}


def live_key(provider: str) -> str:
    """The provider's real key, or skip the test saying what is missing."""
    if os.environ.get("VOICETUI_LIVE") != "1":
        pytest.skip("live tests are opt-in: set VOICETUI_LIVE=1 and the provider keys")
    key = os.environ.get(KEY_ENV[provider], "").strip()
    if not key:
        pytest.skip(f"no {KEY_ENV[provider]} in the environment: {provider} not tested live")
    return key
