"""Theme files: TOML in the top-level ``themes/`` folder and in the user's config dir.

A theme file holds Textual theme colours (``primary``, ``background``, …), ``dark``, and an
optional ``[variables]`` table of Textual design variables. Each becomes a
:class:`textual.theme.Theme` registered with the app. A broken user file never stops the app:
it is reported and skipped.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.color import Color, ColorParseError
from textual.theme import Theme

from voicetui import paths

COLOR_KEYS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
    "success",
    "warning",
    "error",
)
DEFAULT_THEME = "voicetui-dusk"


class ThemeFileError(Exception):
    """A theme file that cannot be used; ``str()`` is one line naming the file."""


@dataclass(slots=True)
class ThemeLoad:
    """Result of scanning the theme folders."""

    themes: list[Theme] = field(default_factory=list)
    sources: dict[str, Path] = field(default_factory=dict)  # theme name -> file
    errors: list[str] = field(default_factory=list)


def bundled_themes_dir() -> Path:
    """The repository's ``themes/`` folder (next to the ``voicetui`` package)."""
    return Path(__file__).resolve().parent.parent.parent / "themes"


def user_themes_dir() -> Path:
    """Where users drop their own theme files."""
    return paths.config_dir() / "themes"


def theme_from_toml(path: Path) -> Theme:
    """Parse one theme file; raises :class:`ThemeFileError` with a one-line message."""
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ThemeFileError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ThemeFileError(f"{path}: TOML syntax error: {exc}") from None
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ThemeFileError(f"{path}: 'name' must be a non-empty string")
    if "primary" not in data:
        raise ThemeFileError(f"{path}: 'primary' colour is required")
    allowed = {*COLOR_KEYS, "name", "dark", "luminosity_spread", "text_alpha", "variables"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ThemeFileError(
            f"{path}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
        )
    colors: dict[str, str] = {}
    for key in COLOR_KEYS:
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ThemeFileError(f'{path}: {key!r} must be a colour string like "#1A1B26"')
        try:
            Color.parse(value)
        except ColorParseError:
            raise ThemeFileError(f"{path}: {key!r} = {value!r} is not a colour") from None
        colors[key] = value
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        raise ThemeFileError(f"{path}: [variables] must map names to strings")
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ThemeFileError(f"{path}: 'dark' must be true or false")
    spread = data.get("luminosity_spread", 0.15)
    alpha = data.get("text_alpha", 0.95)
    if not isinstance(spread, int | float) or not isinstance(alpha, int | float):
        raise ThemeFileError(f"{path}: luminosity_spread and text_alpha must be numbers")
    return Theme(
        name=name.strip(),
        primary=colors["primary"],
        secondary=colors.get("secondary"),
        accent=colors.get("accent"),
        foreground=colors.get("foreground"),
        background=colors.get("background"),
        surface=colors.get("surface"),
        panel=colors.get("panel"),
        boost=colors.get("boost"),
        success=colors.get("success"),
        warning=colors.get("warning"),
        error=colors.get("error"),
        dark=dark,
        luminosity_spread=float(spread),
        text_alpha=float(alpha),
        variables=dict(variables),
    )


def load_themes(*folders: Path) -> ThemeLoad:
    """Load every ``*.toml`` in ``folders`` (default: bundled, then user; later wins)."""
    result = ThemeLoad()
    for folder in folders or (bundled_themes_dir(), user_themes_dir()):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = theme_from_toml(path)
            except ThemeFileError as exc:
                result.errors.append(str(exc))
                continue
            result.themes = [t for t in result.themes if t.name != theme.name]
            result.themes.append(theme)
            result.sources[theme.name] = path
    return result
