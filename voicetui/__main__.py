"""``python -m voicetui``: the same as the ``voicetui`` command."""

from __future__ import annotations

import sys

try:
    from voicetui.cli import main
except KeyboardInterrupt:  # Ctrl+C while still importing
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
