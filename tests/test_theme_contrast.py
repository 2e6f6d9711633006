"""Every bundled theme reads well: each text role against each background it is drawn on
has a WCAG contrast of at least 4.5:1 (AA), computed from the colours Textual generates."""

from __future__ import annotations

import pytest
from textual.color import Color

from voicetui.tui.themes import bundled_themes_dir, load_themes

AA = 4.5
# Text roles the stylesheets colour text with, and the backgrounds they sit on.
TEXT_ROLES = (
    "foreground",
    "text-muted",
    "primary",
    "secondary",
    "accent",
    "success",
    "warning",
    "error",
)
BACKGROUNDS = ("background", "surface")
FOOTER = (
    ("footer-key-foreground", "footer-background"),
    ("footer-foreground", "footer-background"),
)


def _luminance(color: Color) -> float:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(color.r) + 0.7152 * channel(color.g) + 0.0722 * channel(color.b)


def resolve(value: str, background: Color) -> Color:
    """A generated colour; ``auto N%`` is Textual's automatic text colour for ``background``."""
    if value.startswith("auto"):
        percent = value.split()[1].rstrip("%") if " " in value else "100"
        return background.get_contrast_text(float(percent) / 100)
    return Color.parse(value)


def contrast(text: Color, background: Color) -> float:
    """WCAG 2 contrast ratio of ``text`` (alpha blended onto ``background``)."""
    shown = background + text  # Textual blends by the text colour's alpha
    lighter, darker = sorted((_luminance(shown), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_contrast_formula_matches_wcag_reference_values() -> None:
    assert contrast(Color(0, 0, 0), Color(255, 255, 255)) == pytest.approx(21.0)
    assert contrast(Color(119, 119, 119), Color(255, 255, 255)) == pytest.approx(4.48, abs=0.01)


THEMES = load_themes(bundled_themes_dir()).themes


def test_every_bundled_theme_is_checked() -> None:
    assert {t.name for t in THEMES} >= {"voicetui-dusk", "voicetui-paper", "voicetui-phosphor"}


@pytest.mark.parametrize("theme", THEMES, ids=[t.name for t in THEMES])
def test_every_text_role_meets_aa_on_every_background(theme: object) -> None:
    from textual.theme import Theme

    assert isinstance(theme, Theme)
    variables = theme.to_color_system().generate()
    variables.update(theme.variables)
    pairs = [(role, bg) for bg in BACKGROUNDS for role in TEXT_ROLES] + list(FOOTER)
    failing = []
    for role, bg in pairs:
        back = Color.parse(variables[bg])
        ratio = contrast(resolve(variables[role], back), back)
        if ratio < AA:
            failing.append(f"{role} on {bg}: {ratio:.2f}:1")
    assert not failing, f"{theme.name}: " + ", ".join(failing)
