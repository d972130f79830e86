"""The documentation matches the code."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_READ = re.compile(r"""env_(?:str|bool|int|list|secret)\(\s*["']([A-Z0-9_]+)["']""")


def test_every_environment_variable_of_the_settings_is_documented():
    names = set(ENV_READ.findall((ROOT / "coprssh" / "settings.py").read_text()))
    assert len(names) > 20  # the pattern still finds the reads
    documented = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(name for name in names if f"`{name}`" not in documented)
    assert missing == []


def test_the_readme_names_the_run_and_test_commands():
    readme = (ROOT / "README.md").read_text()
    assert "bin/run" in readme
    assert "bin/test" in readme
    assert (ROOT / "bin" / "run").stat().st_mode & 0o111
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bin/test" in ci
