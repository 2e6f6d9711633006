"""The integration specs: faithful to the seed documents, validated on load, documented
deterministically."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from voicetui.cli import main
from voicetui.specs.docs import GENERATED_MARKER, render_markdown, render_typescript
from voicetui.specs.model import SchemaWithExample
from voicetui.specs.registry import SpecInvalid, SpecRegistry, UnknownProvider, registry

GOLDEN = Path(__file__).parent / "data" / "golden"
SEEDS = GOLDEN / "seeds"
SEED_SOURCES = {"mistral": "000_mistral_source.txt", "openai": "003_openai_source.txt"}

EVERY_FIELD = {
    "meta": [
        "key",
        "version",
        "category",
        "title",
        "description",
        "domain",
        "owners",
        "tags",
        "stability",
    ],
    "supportedModes": None,
    "transports": None,
    "preferredTransport": None,
    "supportedAuthMethods": None,
    "capabilities": ["provides"],
    "configSchema": ["schema", "example"],
    "secretSchema": ["schema", "example"],
    "healthCheck": ["method", "timeoutMs"],
    "docsUrl": None,
    "byokSetup": ["setupInstructions", "keyRotationSupported", "quotaTrackingSupported"],
}


def _definition(text: str) -> list[str]:
    """The ``export const … });`` block of a seed, one stripped line per source line."""
    start = text.index("export const")
    end = text.index("});", start) + 3
    return [line.strip() for line in text[start:end].splitlines() if line.strip()]


@pytest.mark.parametrize("alias", ["mistral", "openai"])
def test_spec_matches_its_seed_source_definition_line_for_line(alias: str) -> None:
    # Rendering the typed data back to TypeScript reproduces the seed's source definition
    # exactly (indentation aside: the seeds are flattened / tab-indented web captures), so
    # every field and every value is the seed's.
    seed = _definition((SEEDS / SEED_SOURCES[alias]).read_text(encoding="utf-8"))
    ours = [line.strip() for line in render_typescript(registry().source(alias)).splitlines()]
    assert ours == seed


def test_mistral_doc_has_the_form_of_the_generated_seed_doc() -> None:
    # Seed 001 is ContractSpec's generated page for the same spec; it leaves out the
    # transports, auth methods and BYOK flags that the source (000) has. Dropping those from
    # our page must give 001 back, apart from the marker and the source file line.
    ours = render_markdown(registry().source("mistral")).splitlines()
    seed = (SEEDS / "001_mistral_generated.md").read_text(encoding="utf-8").rstrip().splitlines()
    skip_blocks = ("  transports: [", "  supportedAuthMethods: [")
    kept: list[str] = []
    skipping = False
    for line in ours:
        if line.startswith(skip_blocks):
            skipping = True
        if skipping:
            skipping = not line.startswith("  ]")
            continue
        if line.startswith(
            ("  preferredTransport:", "    keyRotationSupported:", "    quotaTrackingSupported:")
        ):
            continue
        kept.append(line)
    assert kept[0] == GENERATED_MARKER and seed[0].startswith("<!-- @generated")
    assert kept[0].startswith("<!-- @generated")
    seed_file = [i for i, line in enumerate(seed) if line.startswith("- **File**")]
    ours_file = [i for i, line in enumerate(kept) if line.startswith("- **File**")]
    assert seed_file == ours_file
    assert kept[ours_file[0]] == "- **File**: `voicetui/specs/mistral.py`"
    for i in (0, ours_file[0]):
        kept[i] = seed[i]
    assert kept == seed


def test_every_field_of_both_specs_is_in_specs_show_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for alias in ("mistral", "openai"):
        assert main(["specs", "show", alias, "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        spec = registry().get(alias)
        assert shown == spec.to_json()
        assert list(shown) == list(EVERY_FIELD)
        for name, inner in EVERY_FIELD.items():
            if inner:
                assert list(shown[name]) == inner, name
        assert shown["meta"]["stability"] == "Experimental"
        assert shown["healthCheck"] == {"method": "custom", "timeoutMs": 5000}
        assert shown["configSchema"]["schema"]["properties"]["turnDetection"]["enum"] == [
            "server_vad",
            "push_to_talk",
        ]
        assert shown["secretSchema"]["schema"]["required"] == ["apiKey"]


def test_specific_values_from_the_seeds() -> None:
    mistral, openai = registry().get("mistral"), registry().get("openai")
    assert mistral.rest_base_url == "https://api.mistral.ai"
    assert openai.rest_base_url == "https://api.openai.com"
    assert [t.to_json() for t in openai.transports] == [
        {"type": "rest", "baseUrl": "https://api.openai.com"},
        {"type": "sdk", "packageName": "openai"},
    ]
    assert openai.preferred_transport == "sdk" and mistral.preferred_transport == "rest"
    assert mistral.supported_modes == ("managed", "byok") and openai.supported_modes == ("byok",)
    assert mistral.config_schema.example["model"] == "mistral-medium-latest"
    assert openai.config_schema.example["defaultVoice"] == "alloy"
    assert mistral.secret_schema.example == {"apiKey": "mistral-***"}
    assert openai.secret_schema.example == {"apiKey": "sk-***"}
    assert mistral.turn_detection_modes == ("server_vad", "push_to_talk")
    assert mistral.byok_setup.key_rotation_supported is True
    assert openai.byok_setup.quota_tracking_supported is True


def test_registry_keys_aliases_and_unknown_provider() -> None:
    reg = registry()
    assert reg.keys() == ["ai-voice-conv.mistral", "ai-voice-conv.openai"]
    assert reg.get("mistral") is reg.get("ai-voice-conv.mistral")
    assert reg.get("openai").key == "ai-voice-conv.openai"
    assert [s.key for s in reg.all()] == reg.keys()
    assert reg.api_key_env("openai") == "OPENAI_API_KEY"
    with pytest.raises(UnknownProvider) as info:
        reg.get("anthropic")
    message = str(info.value)
    assert "\n" not in message
    assert "'anthropic'" in message and "ai-voice-conv.mistral (mistral)" in message


def test_registry_refuses_a_spec_whose_example_fails_its_schema() -> None:
    source = registry().source("openai")
    spec = source.spec
    bad_example = dict(spec.config_schema.example, turnDetection="always_on")
    bad = dataclasses.replace(
        spec,
        config_schema=SchemaWithExample(schema=spec.config_schema.schema, example=bad_example),
    )
    with pytest.raises(SpecInvalid, match=r"configSchema\.example .* turnDetection"):
        SpecRegistry([dataclasses.replace(source, spec=bad)])
    bad_secret = dataclasses.replace(
        spec, secret_schema=SchemaWithExample(schema=spec.secret_schema.schema, example={})
    )
    with pytest.raises(SpecInvalid, match=r"secretSchema\.example"):
        SpecRegistry([dataclasses.replace(source, spec=bad_secret)])
    bad_schema = dataclasses.replace(
        spec,
        config_schema=SchemaWithExample(schema={"type": "nonsense"}, example={}),
    )
    with pytest.raises(SpecInvalid, match="not a valid JSON Schema"):
        SpecRegistry([dataclasses.replace(source, spec=bad_schema)])
    # the real ones load
    assert SpecRegistry([registry().source("mistral"), source]).keys() == registry().keys()


def test_specs_docs_output_equals_the_golden_files(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    proc = subprocess.run(
        [sys.executable, "-m", "voicetui", "specs", "docs", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == ["ai-voice-conv.mistral.md", "ai-voice-conv.openai.md"]
    for name in written:
        assert (out / name).read_bytes() == (GOLDEN / name).read_bytes(), name
    # deterministic: a second run gives the same bytes
    again = tmp_path / "again"
    assert main(["specs", "docs", "--out", str(again)]) == 0
    for name in written:
        assert (again / name).read_bytes() == (out / name).read_bytes()


def test_specs_list_and_text_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["specs", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == registry().keys()
    assert main(["specs", "show", "mistral"]) == 0
    text = capsys.readouterr().out
    assert "Mistral Conversational Voice" in text and "one of server_vad, push_to_talk" in text
    assert main(["specs", "show", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown provider 'nope'" in err
