"""Where voicetui keeps its files (platformdirs; XDG on Linux).

Tests point these elsewhere by setting XDG_CONFIG_HOME / XDG_STATE_HOME / XDG_DATA_HOME /
XDG_CACHE_HOME, or VOICETUI_CONFIG for the config file alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "voicetui"


def config_file(override: str | os.PathLike[str] | None = None) -> Path:
    """The TOML config: ``--config`` beats ``VOICETUI_CONFIG`` beats the platform default."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("VOICETUI_CONFIG")
    if env:
        return Path(env).expanduser()
    return platformdirs.user_config_path(APP) / "config.toml"


def config_dir() -> Path:
    """User config dir (user themes live in ``themes/`` below it)."""
    return platformdirs.user_config_path(APP)


def state_dir() -> Path:
    """Usage counters, the cached Mistral agent id, logs."""
    return _ensure(platformdirs.user_state_path(APP))


def state_location() -> Path:
    """The state dir, without creating it (reading needs no writable disk)."""
    return platformdirs.user_state_path(APP)


def data_dir() -> Path:
    """Transcripts (JSONL per session)."""
    return _ensure(platformdirs.user_data_path(APP))


def cache_dir() -> Path:
    return _ensure(platformdirs.user_cache_path(APP))


def log_file() -> Path:
    return state_dir() / "voicetui.log"


def transcripts_dir() -> Path:
    return _ensure(data_dir() / "transcripts")


def transcripts_location() -> Path:
    """Where transcripts live, without creating it (a read-only data dir must not crash
    ``transcripts list``; the writer creates it when it first writes)."""
    return platformdirs.user_data_path(APP) / "transcripts"


def all_app_dirs() -> list[Path]:
    """Every directory the app may write to (tests grep them for leaked keys)."""
    return [
        config_file().parent,
        platformdirs.user_state_path(APP),
        platformdirs.user_data_path(APP),
        platformdirs.user_cache_path(APP),
    ]


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
