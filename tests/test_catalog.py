"""The model/voice catalogue: defaults from it, lifecycle in config validation, docs/models.md."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from voicetui.cli import main
from voicetui.config import ConfigError, load_config
from voicetui.providers.catalog import GENERATED_MARK, all_catalogs, catalog_for, markdown_table

ROOT = Path(__file__).resolve().parent.parent
OPENAI = "ai-voice-conv.openai"
MISTRAL = "ai-voice-conv.mistral"


def test_config_show_defaults_are_current_models_and_real_voices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(tmp_path / "absent.toml"), "config", "show", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    openai, mistral = doc["providers"][OPENAI], doc["providers"][MISTRAL]
    oa, mi = catalog_for(OPENAI), catalog_for(MISTRAL)
    assert oa is not None and mi is not None
    # OpenAI: the current realtime family, not a preview, not gpt-realtime(-mini) or 2025 snapshots
    model = openai["model"]
    assert not re.search(r"gpt-4o.*realtime-preview", model)
    assert model not in {"gpt-realtime", "gpt-realtime-mini"} and "2025" not in model
    info = oa.find(model)
    assert info is not None and info.role == "realtime" and info.status_on() == "active"
    assert oa.voice(openai["defaultVoice"]) is not None
    # Mistral: server VAD with a realtime model that does turn detection, a real voice id
    assert mistral["turnDetection"] == "server_vad"
    stt = mi.find(mistral["transcriptionModel"])
    assert stt is not None and stt.has("turn_detection") and stt.status_on() == "active"
    assert mistral["defaultVoice"] != "default" and mi.voice(mistral["defaultVoice"]) is not None
    for option, role in mi.model_options.items():
        found = mi.find(mistral[option])
        assert found is not None and found.role == role and found.status_on() == "active"


def test_deprecated_model_warns_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[providers."{OPENAI}"]\nmodel = "gpt-realtime"\n')
    cfg = load_config(path)
    assert cfg.from_file
    (line,) = cfg.warnings
    assert "gpt-realtime" in line and "2027-01-20" in line and "gpt-realtime-2.1" in line
    assert main(["--config", str(path), "config", "check"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("voicetui: warning:") and "deprecated" in err[0]


def test_retired_model_is_refused_naming_the_replacement(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[providers."{OPENAI}"]\nmodel = "gpt-4o-realtime-preview"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and "(line 2)" in message
    assert "gpt-4o-realtime-preview" in message and "shut down" in message
    assert "'gpt-realtime-1.5'" in message


def test_lifecycle_follows_the_calendar() -> None:
    oa = catalog_for(OPENAI)
    assert oa is not None
    model = oa.find("gpt-realtime")
    assert model is not None
    assert model.status_on(dt.date(2027, 1, 19)) == "deprecated"
    assert model.status_on(dt.date(2027, 1, 20)) == "retired"
    # the replacement chain (preview -> gpt-realtime-mini -> 2.1-mini) skips deprecated steps
    assert oa.replacement_for("gpt-4o-mini-realtime-preview") == "gpt-realtime-2.1-mini"
    assert oa.replacement_for("gpt-realtime-2.1") is None
    usable = [m.id for m in oa.usable("realtime")]
    assert usable[0] == "gpt-realtime-2.1" and "gpt-4o-realtime-preview" not in usable


def test_docs_models_md_is_current_and_cites_every_model() -> None:
    text = (ROOT / "docs" / "models.md").read_text()
    generated = text.split(GENERATED_MARK, 1)[1].strip()
    assert generated == markdown_table(all_catalogs()).strip(), (
        "docs/models.md is stale: regenerate its tables with python -m voicetui.providers.catalog"
    )
    for catalog in all_catalogs():
        for model in catalog.models:
            row = next(ln for ln in text.splitlines() if ln.startswith(f"| `{model.id}`"))
            source = row.rstrip(" |").rsplit("|", 1)[1]
            assert "http" in source or "SDK" in source, model.id
