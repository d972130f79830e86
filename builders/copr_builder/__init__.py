"""copr-builder, the tool the service installs on every SSH builder, packed into one executable file.

Its sources are the modules of `tool/` (Python standard library only; they import each other
relatively). `executable()` packs them into a zipapp with a `python3` shebang, so the builder
gets a single file to upload and install, whatever Python 3 it has.
"""

from __future__ import annotations

import functools
import io
import zipapp
from pathlib import Path, PurePath

HERE = Path(__file__).parent
INTERPRETER = "/usr/bin/env python3"


def _in_archive(path: PurePath) -> bool:
    return path.parts[0] == "tool" and "__pycache__" not in path.parts


@functools.cache
def executable() -> bytes:
    """copr-builder as one file: a shebang line, then a zip of `tool/` whose main is tool.cli.run."""
    archive = io.BytesIO()
    zipapp.create_archive(
        HERE, archive, interpreter=INTERPRETER, main="tool.cli:run", filter=_in_archive, compressed=True
    )
    return archive.getvalue()
