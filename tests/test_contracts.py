"""The shared contracts stay import-light and serialisable."""

from __future__ import annotations

import json
import subprocess
import sys

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
