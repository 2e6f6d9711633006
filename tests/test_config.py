"""The TOML config: defaults from the spec examples, validation by the spec's configSchema
plus our extension schema, one-line errors with exit 2, atomic 0600 writes."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from voicetui import paths
from voicetui.audio.ports import DuplexPolicy
from voicetui.cli import main
from voicetui.config import (
    DEFAULT_INSTRUCTIONS,
    AppConfig,
    ConfigError,
    load_config,
    save_config,
    update_config,
)
from voicetui.providers.catalog import catalog_for
from voicetui.specs.registry import registry

BROKEN = Path(__file__).parent / "data" / "broken_configs"
EXPECTED: dict[str, str] = json.loads((BROKEN / "expected.json").read_text(encoding="utf-8"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_folder_holds_at_least_ten_broken_configs_each_with_its_expectation() -> None:
    files = sorted(p.name for p in BROKEN.glob("*.toml"))
    assert len(files) >= 10
    assert files == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_config_gives_one_line_error_exit_2_file_unchanged(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a copy, so a buggy writer could not damage the fixture itself
    path = tmp_path / "cfg" / name
    path.parent.mkdir()
    path.write_bytes((BROKEN / name).read_bytes())
    before, mode_before = _sha(path), path.stat().st_mode
    # `voicetui` alone validates the config before the screen would start
    assert main(["--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"voicetui: error: {path}: ")
    assert EXPECTED[name] in err
    # headless commands refuse it the same way; updating it must not rewrite it either
    assert main(["--config", str(path), "health"]) == 2
    with pytest.raises(ConfigError):
        update_config(path, theme="textual-light")
    assert _sha(path) == before and path.stat().st_mode == mode_before
    assert sorted(p.name for p in path.parent.iterdir()) == [name]  # no temp files left behind


def test_broken_config_through_the_real_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes((BROKEN / "negative_duration.toml").read_bytes())
    before = _sha(path)
    env = dict(os.environ, VOICETUI_CONFIG=str(path))  # the env override, this time
    proc = subprocess.run(
        [sys.executable, "-m", "voicetui"], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0
    assert EXPECTED["negative_duration.toml"] in proc.stderr
    assert _sha(path) == before


def test_missing_file_gives_the_spec_example_defaults(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "absent.toml")
    assert not cfg.from_file and not (tmp_path / "absent.toml").exists()
    assert cfg.provider == "ai-voice-conv.mistral"
    for spec in registry().all():
        options = cfg.provider_options(spec.key)
        catalog = catalog_for(spec.key)
        assert catalog is not None
        for field, value in spec.config_schema.example.items():
            # the catalogue's current models and real voices win over the spec's example
            assert options[field] == catalog.defaults.get(field, value)
        assert options["baseUrl"] == spec.rest_base_url
    settings = cfg.provider_settings()
    assert settings.spec_key == "ai-voice-conv.mistral"
    assert (settings.model, settings.voice) == ("mistral-medium-latest", "voice_478")
    assert settings.turn_detection == "server_vad"
    assert settings.max_session_duration_s == 600.0
    assert settings.base_url == "https://api.mistral.ai"
    assert settings.instructions == DEFAULT_INSTRUCTIONS
    assert settings.extras["webSearch"] is True and settings.extras["moderation"] is False
    assert settings.extras["ttsModel"] == "voxtral-mini-tts-latest"
    openai = cfg.provider_settings("openai")
    assert (openai.model, openai.voice) == ("gpt-realtime-2.1", "marin")
    assert openai.extras == {
        "transcriptionModel": "gpt-transcribe",
        "vadThreshold": 0.5,
        "silenceDurationMs": 500,
        "prefixPaddingMs": 300,
    }
    assert cfg.audio.duplex is DuplexPolicy.AEC and cfg.audio.block_ms == 20


def test_platform_path_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = paths.config_file()
    assert default.name == "config.toml" and str(default).startswith(os.environ["XDG_CONFIG_HOME"])
    cfg = update_config(theme="nord")  # no path: the platform default
    assert cfg.path == default and load_config().theme == "nord"
    other = tmp_path / "elsewhere.toml"
    monkeypatch.setenv("VOICETUI_CONFIG", str(other))
    update_config(provider="openai")
    assert load_config().provider == "ai-voice-conv.openai"
    assert load_config(default).provider == "ai-voice-conv.mistral"  # --config beats env


def test_valid_file_with_alias_extras_and_base_url(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        """
provider = "openai"
theme = "gruvbox"

[audio]
input_device = "pulse"
duplex = "half"
block_ms = 10

[providers."ai-voice-conv.openai"]
turnDetection = "push_to_talk"
maxSessionDurationSeconds = 90.5
baseUrl = "http://127.0.0.1:8765/"
transcriptionModel = "gpt-4o-transcribe-diarize"
instructions = "Answer in French."

[providers."ai-voice-conv.mistral"]
moderation = true
moderationThresholds = { sexual = 0.1, selfharm = 0.2 }
""",
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert cfg.provider == "ai-voice-conv.openai" and cfg.theme == "gruvbox"
    assert cfg.audio.input_device == "pulse" and cfg.audio.output_device is None
    assert cfg.audio.duplex is DuplexPolicy.HALF and cfg.audio.block_ms == 10
    s = cfg.provider_settings()
    assert s.turn_detection == "push_to_talk" and s.max_session_duration_s == 90.5
    assert s.base_url == "http://127.0.0.1:8765"
    assert s.model == "gpt-realtime-2.1"  # untouched fields keep the catalogue default
    assert s.instructions == "Answer in French."
    assert s.extras["transcriptionModel"] == "gpt-4o-transcribe-diarize"
    m = cfg.provider_settings("mistral")
    assert m.extras["moderationThresholds"] == {"sexual": 0.1, "selfharm": 0.2}


def test_writes_are_atomic_0600_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.toml"
    cfg = update_config(
        path,
        provider="mistral",
        audio={"output_device": "pulse", "duplex": DuplexPolicy.FULL},
        providers={"openai": {"defaultVoice": "shimmer"}, "mistral": {"webSearch": False}},
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_config(path)
    assert again == cfg
    assert again.audio.output_device == "pulse" and again.audio.duplex is DuplexPolicy.FULL
    assert again.provider_settings("openai").voice == "shimmer"
    assert again.provider_settings().extras["webSearch"] is False
    # None resets to the default; other values survive
    reset = update_config(
        path, audio={"output_device": None}, providers={"openai": {"defaultVoice": None}}
    )
    assert reset.audio.output_device is None and reset.audio.duplex is DuplexPolicy.FULL
    assert reset.provider_settings("openai").voice == "marin"
    # a bad change is refused and the file keeps its bytes
    before = _sha(path)
    with pytest.raises(ConfigError, match="turnDetection"):
        update_config(path, providers={"openai": {"turnDetection": "sometimes"}})
    with pytest.raises(ConfigError, match="maxSessionDurationSeconds"):
        save_config(
            AppConfig(
                path=path,
                providers={
                    k: dict(v, maxSessionDurationSeconds=-1) for k, v in reset.providers.items()
                },
            )
        )
    assert _sha(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.toml"]
    # save_config writes what load_config reads back
    save_config(reset)
    assert load_config(path) == reset


def test_config_cli_show_check_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    assert main(["--config", str(path), "config", "check"]) == 0
    assert "absent: defaults in use" in capsys.readouterr().out
    update_config(path, theme="nord")
    assert main(["--config", str(path), "config", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["theme"] == "nord" and set(shown["providers"]) == set(registry().keys())
    assert main(["--config", str(path), "config", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(path)
