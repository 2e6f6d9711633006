"""voicetui: a terminal voice console for live conversations with AI voice models."""

__version__ = "0.1.0"
