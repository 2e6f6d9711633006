"""``ai-voice-conv.openai``: the OpenAI Realtime conversational voice integration spec.

Transcribed field by field from the source definition (seed ``003``).
"""

from __future__ import annotations

from voicetui.specs.model import (
    AuthMethod,
    ByokSetup,
    Capabilities,
    CapabilityRef,
    HealthCheck,
    IntegrationSpec,
    Meta,
    SchemaWithExample,
    SpecSource,
    Stability,
    Transport,
)

SPEC = IntegrationSpec(
    meta=Meta(
        key="ai-voice-conv.openai",
        version="1.0.0",
        category="ai-voice-conversational",
        title="OpenAI Realtime Voice",
        description=(
            "OpenAI Realtime API integration for bidirectional conversational voice with GPT "
            "models."
        ),
        domain="ai",
        owners=("platform.ai",),
        tags=("voice", "conversational", "realtime", "openai"),
        stability=Stability.EXPERIMENTAL,
    ),
    supported_modes=("byok",),
    transports=(
        Transport(type="rest", base_url="https://api.openai.com"),
        Transport(type="sdk", package_name="openai"),
    ),
    preferred_transport="sdk",
    supported_auth_methods=(
        AuthMethod(type="api-key", header_name="Authorization", prefix="Bearer "),
    ),
    capabilities=Capabilities(
        provides=(CapabilityRef(key="ai.voice.conversational", version="1.0.0"),)
    ),
    config_schema=SchemaWithExample(
        schema={
            "type": "object",
            "properties": {
                "model": {
                    "type": "string",
                    "description": (
                        "OpenAI model for realtime conversations (e.g. gpt-4o-realtime-preview)."
                    ),
                },
                "defaultVoice": {
                    "type": "string",
                    "description": (
                        "Default voice for agent responses (e.g. alloy, echo, shimmer)."
                    ),
                },
                "turnDetection": {
                    "type": "string",
                    "enum": ["server_vad", "push_to_talk"],
                    "description": "Turn detection strategy.",
                },
                "maxSessionDurationSeconds": {
                    "type": "number",
                    "description": "Maximum session duration in seconds.",
                },
            },
        },
        example={
            "model": "gpt-4o-realtime-preview",
            "defaultVoice": "alloy",
            "turnDetection": "server_vad",
            "maxSessionDurationSeconds": 600,
        },
    ),
    secret_schema=SchemaWithExample(
        schema={
            "type": "object",
            "required": ["apiKey"],
            "properties": {
                "apiKey": {
                    "type": "string",
                    "description": "OpenAI API key with realtime API access.",
                },
            },
        },
        example={"apiKey": "sk-***"},
    ),
    health_check=HealthCheck(method="custom", timeout_ms=5000),
    docs_url="https://platform.openai.com/docs/guides/realtime",
    byok_setup=ByokSetup(
        setup_instructions=(
            "Create an OpenAI API key with Realtime API access enabled and store it in your "
            "secret provider."
        ),
        key_rotation_supported=True,
        quota_tracking_supported=True,
    ),
)

SOURCE = SpecSource(
    spec=SPEC,
    export_name="openaiRealtimeIntegrationSpec",
    module_file="voicetui/specs/openai.py",
    alias="openai",
    api_key_env="OPENAI_API_KEY",
)
