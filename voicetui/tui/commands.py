"""Command palette (Ctrl+P): provider, voice, turn mode and device switching, and the rest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from voicetui.tui.app import VoiceTuiApp


MODE_HELP = {
    "push_to_talk": "the talk key starts and ends each turn",
    "server_vad": "the server detects when you start and stop talking",
}


@dataclass(frozen=True, slots=True)
class PaletteCommand:
    """One palette entry."""

    title: str
    help: str
    run: Callable[[], object]


def palette_commands(app: VoiceTuiApp) -> list[PaletteCommand]:
    """Every command the palette offers right now (built from the registry and caches)."""
    from voicetui.specs.registry import registry

    commands: list[PaletteCommand] = []
    cfg = app.config
    active = cfg.provider
    for spec in registry().all():
        key = spec.meta.key
        mark = " (active)" if key == active else ""
        commands.append(
            PaletteCommand(
                f"Provider: {spec.meta.title}{mark}",
                f"switch the conversation to {key}",
                partial(app.switch_provider, key),
            )
        )
    spec = registry().get(active)
    modes = spec.config_schema.schema.get("properties", {}).get("turnDetection", {}).get("enum", [])
    for mode in modes:
        commands.append(
            PaletteCommand(
                f"Turn mode: {mode}",  # the config value itself
                MODE_HELP.get(mode, mode),
                partial(app.update_provider_settings, active, {"turnDetection": mode}),
            )
        )
    commands += _model_commands(app, active)
    for voice in app.voices.get(active, []):
        commands.append(
            PaletteCommand(
                f"Voice: {voice.name}",
                voice_help(voice.name, voice.id, voice.description, voice.languages),
                partial(app.update_provider_settings, active, {"defaultVoice": voice.id}),
            )
        )
    for device in app.devices:
        if device.is_input:
            commands.append(
                PaletteCommand(
                    f"Input device: {device.name}",
                    "microphone for the conversation",
                    partial(app.set_device, "input_device", device.name),
                )
            )
        if device.is_output:
            commands.append(
                PaletteCommand(
                    f"Output device: {device.name}",
                    "speaker for the assistant",
                    partial(app.set_device, "output_device", device.name),
                )
            )
    commands += [
        PaletteCommand(
            "Health check", "check every provider's key and reachability", app.open_health
        ),
        PaletteCommand(
            "Doctor", "check devices, microphone, keys, models and voices", app.open_doctor
        ),
        PaletteCommand(
            "Export transcript", "write this conversation as Markdown", app.export_transcript
        ),
        PaletteCommand(
            "Theme: pick with preview", "browse themes with a live preview", app.open_theme_picker
        ),
        PaletteCommand("API keys", "set, rotate, test or delete provider keys", app.open_keys),
        PaletteCommand("Settings", "provider, voice, devices, duplex policy", app.open_settings),
        PaletteCommand(
            "New conversation", "end this session and start afresh", app.new_conversation
        ),
    ]
    return commands


def voice_help(name: str, voice_id: str, description: str, languages: tuple[str, ...]) -> str:
    """A voice entry's help line that adds something to its title (never the name again)."""
    parts = [description] if description and description.lower() != name.lower() else []
    if languages:
        parts.append(", ".join(languages))
    if voice_id.lower() != name.lower():
        parts.append(f"id {voice_id}")
    return " · ".join(parts) or "use this voice for the assistant"


def _model_commands(app: VoiceTuiApp, active: str) -> list[PaletteCommand]:
    """One entry per usable model of the active provider (from its catalogue): deprecated
    ones carry their shutdown date, retired ones are not offered."""
    from voicetui.config import usable_models

    current = app.config.provider_options(active).get("model")
    return [
        PaletteCommand(
            f"Model: {label}" + (" (active)" if model == current else ""),
            f"use {model} for {active}",
            partial(app.update_provider_settings, active, {"model": model}),
        )
        for model, label in usable_models(active)
    ]


class VoiceCommands(Provider):
    """voicetui's palette commands."""

    def _commands(self) -> list[PaletteCommand]:
        from voicetui.tui.app import VoiceTuiApp

        app = self.app
        if not isinstance(app, VoiceTuiApp):
            return []
        try:
            return palette_commands(app)
        except Exception:  # a broken config must not break the palette
            return []

    async def discover(self) -> Hits:
        """Shown before anything is typed."""
        for command in self._commands():
            yield DiscoveryHit(command.title, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        """Fuzzy-match the query against every command."""
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.title)
            if score > 0:
                yield Hit(score, matcher.highlight(command.title), command.run, help=command.help)
