"""copr-builder, the script the service installs on every SSH builder (standard library only)."""

from pathlib import Path

SCRIPT = Path(__file__).with_name("copr-builder")
