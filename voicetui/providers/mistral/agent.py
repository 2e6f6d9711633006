"""The Mistral agent behind the conversation: created once, its id cached in the state dir.

The seed creates a new agent on every launch; we create it once per distinct configuration
(endpoint, model, instructions, tools, completion args, guardrails) and remember its id in
``<state_dir>/mistral_agent.json``. When the service says the agent is gone (404 when a
conversation starts) the caller asks for :meth:`AgentManager.recreate`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voicetui import fileio
from voicetui.providers.base import ProviderError, ProviderSettings
from voicetui.providers.mistral.retry import RetryPolicy, call_with_retries

if TYPE_CHECKING:
    from mistralai.client import Mistral

CACHE_FILE = "mistral_agent.json"
AGENT_NAME = "voicetui voice agent"
AGENT_DESCRIPTION = "Voice assistant for the voicetui terminal console (web search enabled)."
VOICE_STYLE = (
    " Your replies are spoken aloud: keep them short and conversational, plain sentences, "
    "no markdown, lists or code."
)


def agent_spec(settings: ProviderSettings) -> dict[str, Any]:
    """The ``beta.agents.create`` arguments for these settings (seed 002's agent)."""
    extras = settings.extras
    spec: dict[str, Any] = {
        "model": settings.model,
        "name": AGENT_NAME,
        "description": AGENT_DESCRIPTION,
        "instructions": settings.instructions.rstrip() + VOICE_STYLE,
        "completion_args": {"temperature": 0.3, "top_p": 0.95},
    }
    if extras.get("webSearch", True):
        spec["tools"] = [{"type": "web_search"}]
    if extras.get("moderation", False):
        moderation: dict[str, Any] = {"ignore_other_categories": False, "action": "block"}
        thresholds = extras.get("moderationThresholds") or {}
        if isinstance(thresholds, Mapping) and thresholds:
            moderation["custom_category_thresholds"] = {
                str(k): float(v) for k, v in thresholds.items()
            }
        spec["guardrails"] = [{"block_on_error": True, "moderation_llm_v2": moderation}]
    return spec


def fingerprint(settings: ProviderSettings) -> str:
    """Stable hash of everything that makes an agent different (never the key)."""
    blob = json.dumps(
        {"base_url": settings.base_url.rstrip("/"), "spec": agent_spec(settings)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class AgentManager:
    """Finds or creates the agent; one per configuration, shared across launches."""

    def __init__(
        self,
        client: Mistral,
        settings: ProviderSettings,
        state_dir: Path,
        *,
        log: logging.Logger | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self._path = state_dir / CACHE_FILE
        self._log = log or logging.getLogger("voicetui.provider.mistral")
        self._policy = policy
        self._key = fingerprint(settings)
        self._lock = asyncio.Lock()
        self.agent_id: str | None = None
        self.created = False  # True if this process created the agent (tests, logs)

    async def ensure(self, *, verify: bool = False) -> str:
        """The agent id: cached if known for this configuration, else newly created.

        ``verify`` (at connect) asks the service whether a cached agent still exists — a
        cheap GET that also opens the keep-alive connection the first reply will reuse.
        """
        async with self._lock:
            if self.agent_id is None:
                cached = self._read_cache()
                if cached is not None and verify and not await self._exists(cached):
                    self._log.warning("cached agent %s is gone; creating a new one", cached)
                    cached = None
                self.agent_id = cached or await self._create()
            return self.agent_id

    async def _exists(self, agent_id: str) -> bool:
        try:
            await call_with_retries(
                lambda: self._client.beta.agents.get_async(agent_id=agent_id),
                what="checking the agent",
                policy=self._policy,
                log=self._log,
            )
        except ProviderError as err:
            if err.code == "not_found":
                return False
            raise
        return True

    async def recreate(self, stale_id: str | None) -> str:
        """The service says ``stale_id`` is gone: forget it and create a new agent."""
        async with self._lock:
            if self.agent_id is not None and self.agent_id != stale_id:
                return self.agent_id  # someone else already recreated it
            self._log.warning("agent %s is gone; creating a new one", stale_id)
            self.agent_id = await self._create()
            return self.agent_id

    async def _create(self) -> str:
        spec = agent_spec(self._settings)
        agent = await call_with_retries(
            lambda: self._client.beta.agents.create_async(**spec),
            what="creating the agent",
            policy=self._policy,
            log=self._log,
        )
        self.created = True
        self._write_cache(agent.id)
        self._log.info("created Mistral agent %s (model %s)", agent.id, spec["model"])
        return str(agent.id)

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _read_cache(self) -> str | None:
        entry = self._load().get("agents", {}).get(self._key)
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            self._log.info("reusing Mistral agent %s", entry["id"])
            return str(entry["id"])
        return None

    def _write_cache(self, agent_id: str) -> None:
        data = self._load()
        agents = data.setdefault("agents", {})
        if not isinstance(agents, dict):
            agents = data["agents"] = {}
        agents[self._key] = {"id": agent_id, "model": self._settings.model}
        try:
            payload = json.dumps(data, indent=2, sort_keys=True).encode("utf-8")
            fileio.atomic_write(self._path, payload)  # a crash never leaves half a file
        except OSError as exc:  # a read-only state dir costs an agent per launch, nothing more
            self._log.warning("cannot cache the agent id in %s: %s", self._path, exc)
