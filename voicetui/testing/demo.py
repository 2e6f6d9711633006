"""``voicetui demo``: the bundled emulators of both providers, started in this process on free
loopback ports and scripted for a short showcase: two speakers in one turn (speaker labels),
a web search before the answer, and a reply that is spoken aloud at real-time pace.

No key, no network: the demo keys below only ever reach 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voicetui.testing.emulators.common import EmulatorServer, Script, Turn

DEMO_KEY = "demo-key-for-the-local-emulator-0000"  # not a secret: loopback only
# per provider: a named voice (the status line shows its name) and speaker labels on
DEMO_OPTIONS: dict[str, dict[str, str]] = {
    "ai-voice-conv.mistral": {"defaultVoice": "en_paul_neutral"},
    "ai-voice-conv.openai": {
        "defaultVoice": "marin",
        "transcriptionModel": "gpt-4o-transcribe-diarize",
    },
}


def demo_script() -> Script:
    """What the demo's "user" says (whatever is spoken) and what the assistant answers."""
    return Script(
        turns=[
            Turn(
                user_text="What's the weather in Paris this weekend? Should I pack an umbrella?",
                segments=[
                    ("speaker_1", "What's the weather in Paris this weekend?"),
                    ("speaker_2", "Should I pack an umbrella?"),
                ],
                reply=(
                    "Saturday looks rainy in Paris, around fourteen degrees, so yes, pack the "
                    "umbrella. Sunday should be drier."
                ),
                tool="web_search",
            ),
            Turn(
                user_text="Thanks! Tell me something fun about lighthouses.",
                reply=(
                    "Some old lighthouse lenses could throw their beam more than twenty miles "
                    "out to sea. This is the demo's last scripted answer; press q to quit."
                ),
            ),
        ]
    )


@dataclass
class DemoServers:
    """The running emulators by spec key; :meth:`stop` ends them."""

    servers: dict[str, EmulatorServer] = field(default_factory=dict)

    def base_url(self, spec_key: str) -> str:
        """``http://127.0.0.1:PORT`` of the emulator for ``spec_key``."""
        return self.servers[spec_key].base_url

    def options(self, spec_key: str) -> dict[str, str]:
        """The provider options of the demo's config for ``spec_key``."""
        out = {"baseUrl": self.base_url(spec_key), "turnDetection": "push_to_talk"}
        out.update(DEMO_OPTIONS.get(spec_key, {}))
        return out

    def stop(self) -> None:
        """Stop every emulator (their threads end)."""
        for server in self.servers.values():
            server.stop_thread()


def start_demo_servers() -> DemoServers:
    """Start both emulators (each in its own thread) on free loopback ports."""
    from voicetui.testing.emulators.mistral import MistralEmulator
    from voicetui.testing.emulators.openai import OpenAIEmulator

    out = DemoServers()
    emulators: dict[str, EmulatorServer] = {
        "ai-voice-conv.mistral": MistralEmulator(),
        "ai-voice-conv.openai": OpenAIEmulator(strict=False),
    }
    try:
        for spec_key, emulator in emulators.items():
            emulator.script = demo_script()
            # paced like a real service: a spoken reply in real time, a little thinking first
            emulator.timing.audio_pace = 1.0
            emulator.timing.first_token_delay_s = 0.3
            emulator.timing.token_interval_s = 0.03
            emulator.timing.first_audio_delay_s = 0.2
            if isinstance(emulator, MistralEmulator):
                emulator.speech_threshold_dbfs = -70.0  # a quiet laptop mic still counts
            emulator.start_in_thread()
            out.servers[spec_key] = emulator
    except BaseException:
        out.stop()
        raise
    return out
