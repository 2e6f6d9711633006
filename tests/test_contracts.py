"""The shared contracts stay import-light and serialisable."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import voicetui
from voicetui.engine.events import State, StateChanged, UserTranscript, event_to_dict, is_final


def test_events_serialise_to_json() -> None:
    ev = StateChanged(state=State.THINKING, previous=State.USER_SPEAKING, reason="turn ended")
    data = json.loads(json.dumps(event_to_dict(ev)))
    assert data["type"] == "StateChanged"
    assert data["state"] == "thinking"
    assert is_final(UserTranscript(turn_id="t1", text="hi", final=True))
    assert not is_final(UserTranscript(turn_id="t1", text="h", final=False))


def test_core_modules_never_import_textual() -> None:
    code = (
        "import sys, voicetui.engine.events, voicetui.providers.base, voicetui.audio.ports, "
        "voicetui.paths; assert 'textual' not in sys.modules, 'textual imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _python_files(*roots: str) -> list[Path]:
    base = Path(voicetui.__file__).parent
    return sorted(p for root in roots for p in (base / root).rglob("*.py"))


def test_only_providers_and_specs_name_a_provider() -> None:
    """A provider is one package: nothing else names one (its spec key or env var)."""
    base = Path(voicetui.__file__).parent
    allowed = {base / "providers", base / "specs", base / "testing"}
    pattern = re.compile(r"\"ai-voice-conv\.(mistral|openai)\"|MISTRAL_API_KEY|OPENAI_API_KEY")
    offenders = [
        f"{path.relative_to(base)}: {match.group(0).strip()}"
        for path in sorted(base.rglob("*.py"))
        if not any(folder in path.parents for folder in allowed)
        for match in pattern.finditer(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, offenders


def test_the_tui_reaches_providers_only_through_the_neutral_seams() -> None:
    """The app asks the specs registry, engine/factory and the model catalogue (data), never
    ``providers.base``, the registry or a provider package."""
    offenders = [
        str(path)
        for path in _python_files("tui")
        if re.search(r"voicetui\.providers(?!\.catalog\b)\b", path.read_text(encoding="utf-8"))
    ]
    assert not offenders, offenders
