"""``ai-voice-conv.mistral``: the Mistral conversational voice integration spec.

Transcribed field by field from the source definition (seed ``000``); the generated doc
(seed ``001``) leaves out transports, auth and the BYOK flags, the source has them.
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
        key="ai-voice-conv.mistral",
        version="1.0.0",
        category="ai-voice-conversational",
        title="Mistral Conversational Voice",
        description=(
            "Mistral conversational voice integration using conversation sessions and speech "
            "models for bidirectional interactions."
        ),
        domain="ai",
        owners=("platform.ai",),
        tags=("voice", "conversational", "mistral", "agents", "sessions"),
        stability=Stability.EXPERIMENTAL,
    ),
    supported_modes=("managed", "byok"),
    transports=(Transport(type="rest", base_url="https://api.mistral.ai"),),
    preferred_transport="rest",
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
                        "Mistral model used for response generation in conversational sessions."
                    ),
                },
                "defaultVoice": {
                    "type": "string",
                    "description": "Default voice profile for agent responses.",
                },
                "turnDetection": {
                    "type": "string",
                    "enum": ["server_vad", "push_to_talk"],
                    "description": "Turn detection strategy used during live conversations.",
                },
                "maxSessionDurationSeconds": {
                    "type": "number",
                    "description": "Maximum allowed conversational session duration.",
                },
            },
        },
        example={
            "model": "mistral-medium-latest",
            "defaultVoice": "default",
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
                    "description": "Mistral API key with access to conversational and agent APIs.",
                },
            },
        },
        example={"apiKey": "mistral-***"},
    ),
    health_check=HealthCheck(method="custom", timeout_ms=5000),
    docs_url="https://docs.mistral.ai/agents/agents",
    byok_setup=ByokSetup(
        setup_instructions=(
            "Create a Mistral API key, enable conversation-capable models for your account, "
            "and configure default turn detection settings."
        ),
        key_rotation_supported=True,
        quota_tracking_supported=True,
    ),
)

SOURCE = SpecSource(
    spec=SPEC,
    export_name="mistralConversationalIntegrationSpec",
    module_file="voicetui/specs/mistral.py",
    alias="mistral",
    api_key_env="MISTRAL_API_KEY",
    key_steps=(
        "Log in to Mistral AI Studio with your Mistral account (free or paid).",
        "Click your profile icon (top right).",
        "Open API Keys.",
        "Click Create New Key.",
        'Enter a name (e.g. "voicetui") and an expiration (or "No Expiration").',
        "Click Create New Key.",
        "Copy the key now and store it securely — treat it like a password. Paste it above.",
    ),
)
