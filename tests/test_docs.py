"""The documentation matches the code."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_READ = re.compile(r"""env_(?:str|bool|int|list|choice|secret)\(\s*["']([A-Z0-9_]+)["']""")


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


def test_ci_make_check_and_pre_commit_run_the_checks_the_readme_names():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    pre_commit = (ROOT / ".pre-commit-config.yaml").read_text()
    for check in ("ruff check", "ruff format", "mypy", "manage.py check", "makemigrations --check"):
        assert f"`{check}" in readme, check
        assert check in ci, check
        assert check in makefile, check
        assert check in pre_commit, check
    # The checks run before the tests, which take minutes.
    assert ci.index("mypy .") < ci.index("bin/test")
    assert "wget" in ci
    assert "`wget`" in readme
