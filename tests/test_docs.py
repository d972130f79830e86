"""The documentation matches the code."""

from __future__ import annotations

import argparse
import functools
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

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


# --- the sample blocks (docs/samples/) -------------------------------------------------


def _samples_module(name: str) -> ModuleType:
    """A module of docs/samples/, which is a folder of scripts, not a package."""
    path = ROOT / "docs" / "samples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_samples_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


blocks = _samples_module("blocks")


def test_every_marked_sample_is_well_formed_and_regenerate_knows_each_one():
    marked = blocks.marked_names(ROOT)
    assert len(marked) > 20  # the docs still mark their samples
    assert marked == blocks.SAMPLES


def test_regenerate_makes_every_sample_and_only_those():
    source = (ROOT / "docs" / "samples" / "regenerate.py").read_text()
    made = set(re.findall(r"""self\.sample\(\s*["']([a-z0-9-]+)["']""", source))
    assert made == set(blocks.SAMPLES)


SAMPLE_DOC = """Text.

<!-- sample: one -->
```sh
$ old command
old output
```
<!-- /sample -->

- In a list:

  <!-- sample: two -->
  ```
  old
  ```
  <!-- /sample -->
"""


def test_rewrite_replaces_only_what_is_between_the_fences():
    new = blocks.rewrite(SAMPLE_DOC, {"one": "$ new command\nnew output\n", "two": "new\n\nlines"})

    assert new == SAMPLE_DOC.replace("$ old command\nold output", "$ new command\nnew output").replace(
        "  old\n", "  new\n\n  lines\n"
    )
    assert [block.name for block in blocks.find_blocks(new)] == ["one", "two"]


@pytest.mark.parametrize(
    ("broken", "complaint"),
    [
        (SAMPLE_DOC.replace("<!-- /sample -->\n\n-", "\n-"), "must end with"),
        (SAMPLE_DOC.replace("```sh\n", "\n"), "must be followed by a ``` block"),
        (SAMPLE_DOC.replace("  ```\n  <!-- /sample -->", "  <!-- /sample -->"), "has a marker inside"),
        (SAMPLE_DOC.replace("  <!-- sample: two -->\n  ```", "  <!-- sample: two -->\n```"), "followed by"),
        (SAMPLE_DOC.replace("sample: two", "sample: one"), "more than once"),
        (SAMPLE_DOC.replace("sample: two", "sample: Two_"), "lower-case-with-dashes"),
        (SAMPLE_DOC + "<!--sample: three-->\n", "out of place"),
        (SAMPLE_DOC.replace("```sh\n$ old command\nold output\n```\n", "```sh\n$ old command\n"), "inside"),
        (SAMPLE_DOC + "<!-- sample: three -->\n```\nno end\n", "not closed"),
    ],
)
def test_a_malformed_sample_block_is_refused(broken, complaint):
    with pytest.raises(blocks.BlockError, match=re.escape(complaint)):
        blocks.find_blocks(broken, "doc.md")


def test_a_sample_the_script_does_not_know_fails_the_check(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# x\n")
    (tmp_path / "docs" / "guide.md").write_text(SAMPLE_DOC)

    assert blocks.marked_names(tmp_path) == {"one": "docs/guide.md", "two": "docs/guide.md"}
    assert blocks.marked_names(tmp_path) != blocks.SAMPLES


# --- command-line flags and environment variables named in the docs ----------------------

DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
TOKEN = re.compile(r"[^\s|;&()<>`'\"]+")
# Other programs the docs show, and exactly the flags the docs give them.
EXTERNAL_FLAGS: dict[str, set[str]] = {
    "apt-get": set(),
    "copr-cli": {
        "--after-build-id",
        "--background",
        "--bootstrap",
        "--chroot",
        "--clone-url",
        "--commit",
        "--config",
        "--description",
        "--dest",
        "--enable-net",
        "--exclude-chroot",
        "--isolation",
        "--nowait",
        "--repo",
        "--spec",
        "--subdir",
        "--timeout",
        "--with-build-id",
    },
    "createdb": set(),
    "curl": {"--data-urlencode"},
    "dnf": set(),
    "firewall-cmd": {"--permanent", "--add-port"},
    "git": set(),
    "grep": set(),
    "gunicorn": {
        "--access-logfile",
        "--bind",
        "--forwarded-allow-ips",
        "--no-control-socket",
        "--timeout",
        "--workers",
    },
    "mock": {"--rebuild"},
    "mypy": set(),
    "nft": set(),
    "pgrep": set(),
    "pip": set(),
    "pkill": set(),
    "pre-commit": {"--all-files"},
    "pytest": set(),
    "python3": {"--no-ensure-ascii"},
    "rpmbuild": {"--rebuild", "--nodeps", "--define"},
    "ruff": {"--check", "--fix"},
    "scp": set(),
    "sftp": set(),
    "ssh": set(),
    "ssh-keygen": set(),
    "ssh-keyscan": set(),
    "sshd": set(),
    "systemctl": {"--now"},
    "userdel": set(),
    "wget": set(),
    "xargs": set(),
}
# The project's own commands run as a path; their flags are those their source spells out.
SCRIPT_FOLDERS = ("bin/", "bench/", "docs/samples/", ".ci/")
# bin/test hands its arguments to pytest.
SCRIPT_IS = {"bin/test": "pytest"}
# Upper-case names in the docs that are placeholders, not variables.
NOT_VARIABLES = {
    "NAME_FILE",  # "`NAME_FILE`": any secret variable's name with _FILE appended
    "THE_KEY",  # "~/.ssh/THE_KEY": a key file's name
}


def _parser_options(parser: argparse.ArgumentParser) -> dict[str | None, set[str]]:
    """The option strings of a parser (under None) and of each of its subcommands (by name)."""
    options: dict[str | None, set[str]] = {None: set()}
    for action in parser._actions:
        options[None].update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                options[name] = {s for a in sub._actions for s in a.option_strings}
    return options


@functools.cache
def _coprssh_options() -> dict[str | None, set[str]]:
    from coprssh_cli.main import build_parser

    options = _parser_options(build_parser())
    top = options[None]
    return {name: flags | top for name, flags in options.items()}


@functools.cache
def _copr_builder_options() -> dict[str | None, set[str]]:
    from builders.copr_builder.tool.cli import parser

    return _parser_options(parser())


Command = tuple[str, str | None]  # ("coprssh", "build"), ("manage.py", "gateway"), ("external", "ssh")…


@dataclass(frozen=True)
class Use:
    """A flag as the docs use it, the commands it may go with (none found: empty), and where."""

    flag: str
    commands: tuple[Command, ...]
    where: str


@dataclass(frozen=True)
class Segment:
    """A logical code line (`code`) or an inline code span of a paragraph, to look for flags in."""

    text: str
    line: int
    paragraph: int
    code: bool


def _segments(text: str) -> list[Segment]:
    """The code lines and inline code spans of a document, outside its samples (real runs).

    A code line ending with a backslash goes on on the next one; its prompt (`$ `, `# `) is dropped.
    """
    segments: list[Segment] = []
    in_code = in_sample = False
    pending = ""
    paragraph = 0
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if stripped.startswith("<!-- sample:"):
            in_sample = True
        elif stripped == "<!-- /sample -->":
            in_sample = False
        elif stripped.startswith("```"):
            in_code = not in_code
        elif in_sample:
            continue
        elif in_code:
            pending += stripped.removesuffix("\\") + " "
            if not stripped.endswith("\\"):
                paragraph += 1
                segments.append(Segment(re.sub(r"^[$#] ", "", pending.strip()), number, paragraph, True))
                pending = ""
        elif not stripped or stripped.startswith(("- ", "* ", "#", "|")) or re.match(r"\d+\. ", stripped):
            paragraph += 1  # a blank line, a list item, a heading or a table row starts anew
        if not in_code and not in_sample:
            segments.extend(
                Segment(span, number, paragraph, False) for span in re.findall(r"`([^`]+)`", line)
            )
    return segments


def _mentions(segment: Segment, django_commands: set[str]) -> list[tuple[int, Command]]:
    """The commands a segment names, each with the index of the token where it starts."""
    cli = _coprssh_options()
    builder = _copr_builder_options()
    tokens = TOKEN.findall(segment.text)
    found: list[tuple[int, Command]] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        base = token.rsplit("/", 1)[-1]
        path = token.removeprefix("./")
        command: Command | None = None
        if base == "coprssh":
            command = ("coprssh", following if following in cli else None)
        elif base == "manage.py":
            command = ("manage.py", following if following in django_commands else None)
        elif base == "copr-builder":
            command = ("copr-builder", following if following in builder else None)
        elif index == 0 and token in django_commands:
            command = ("manage.py", token)  # `check --deploy`, `makemigrations --check`
        elif base in EXTERNAL_FLAGS:
            command = ("external", base)
        elif path.startswith(SCRIPT_FOLDERS) and (ROOT / path).is_file():
            command = ("script", path)
        if command is not None:
            found.append((index, command))
            index += (
                1 if command[1] is not None and command[0] != "script" and command[0] != "external" else 0
            )
        index += 1
    return found


def flag_uses(text: str, where: str, django_commands: set[str]) -> list[Use]:
    """Every `--flag` in the code lines and code spans of a document, with its commands.

    A flag goes with the last command named before it in its code line or span. A code line that
    names none goes with the last command named before it in the document; a span in prose that
    names none (`--key FILE`) with that one or any command its paragraph names.
    """
    segments = _segments(text)
    mentions = [_mentions(segment, django_commands) for segment in segments]
    in_paragraph: dict[int, list[Command]] = {}
    for segment, named in zip(segments, mentions, strict=True):
        if not segment.code:
            in_paragraph.setdefault(segment.paragraph, []).extend(command for _, command in named)
    uses = []
    last: Command | None = None
    for segment, named in zip(segments, mentions, strict=True):
        for index, token in enumerate(TOKEN.findall(segment.text)):
            if not token.startswith(("--", "[--")):
                continue
            before = [command for start, command in named if start < index]
            if before:
                commands: tuple[Command, ...] = (before[-1],)
            else:
                nearby = in_paragraph.get(segment.paragraph, []) if not segment.code else []
                commands = tuple(dict.fromkeys([*nearby, *([last] if last else [])]))
            uses.extend(Use(flag, commands, f"{where}:{segment.line}") for flag in FLAG.findall(token))
        if named:
            last = named[-1][1]
    return uses


@functools.cache
def _takes(command: Command) -> set[str]:
    """The flags a command takes."""
    from django.core.management import get_commands, load_command_class

    kind, name = command
    if kind == "coprssh":
        return _coprssh_options()[name]
    if kind == "copr-builder":
        return _copr_builder_options()[name]
    if kind == "manage.py":
        if name is None:
            return set()
        parser = load_command_class(get_commands()[name], name).create_parser("manage.py", name)
        return {option for action in parser._actions for option in action.option_strings}
    assert name is not None
    if kind == "script" and name in SCRIPT_IS:
        return EXTERNAL_FLAGS[SCRIPT_IS[name]]
    if kind == "script":
        return set(FLAG.findall((ROOT / name).read_text()))
    return EXTERNAL_FLAGS[name]


def flag_problems(uses: list[Use], django_commands: set[str]) -> list[str]:
    """What is wrong with each use: no command found, or none of its commands takes the flag."""
    problems = []
    for use in uses:
        if not any(use.flag in _takes(command) for command in use.commands):
            named = " or ".join(" ".join(filter(None, command)) for command in use.commands) or "no command"
            problems.append(f"{use.where}: {named} has no {use.flag}")
    return problems


def _django_commands() -> set[str]:
    from django.core.management import get_commands

    return set(get_commands())


def test_every_flag_in_the_docs_exists_in_its_command():
    commands = _django_commands()
    uses = [
        use
        for path in DOC_FILES
        for use in flag_uses(path.read_text(), str(path.relative_to(ROOT)), commands)
    ]
    assert len(uses) > 70  # the docs are still read
    assert {command for use in uses for command in use.commands} >= {
        ("coprssh", "build"),
        ("coprssh", "ssh"),
        ("manage.py", "gateway"),
        ("copr-builder", "prolong"),
        ("external", "copr-cli"),
    }
    assert flag_problems(uses, commands) == []


def test_a_made_up_flag_is_caught_whatever_command_it_follows():
    commands = _django_commands()
    text = (
        "Run `coprssh build PROJECT FILE --no-such-flag`, or `manage.py gateway --check`.\n"
        "\n"
        "```\n"
        "$ coprssh resubmit 2 \\\n"
        "    --ssh --made-up\n"
        "# copr-builder prolong --hours 2 --forever\n"
        "```\n"
        "\n"
        "Then `--also-made-up`.\n"
        "\n"
        "Use `copr-cli build --nowait --imagined`; `check --deploy --oops`.\n"
        "\n"
        "`bin/run --invented` and `bin/test --pytest-does-not-know`.\n"
        "\n"
        "Give `--key FILE` to `coprssh resubmit`, not `--keys FILE`.\n"
    )

    problems = flag_problems(flag_uses(text, "doc.md", commands), commands)

    assert problems == [
        "doc.md:1: coprssh build has no --no-such-flag",
        "doc.md:5: coprssh resubmit has no --made-up",
        "doc.md:6: copr-builder prolong has no --forever",
        "doc.md:9: copr-builder prolong has no --also-made-up",
        "doc.md:11: external copr-cli has no --imagined",
        "doc.md:11: manage.py check has no --oops",
        "doc.md:13: script bin/run has no --invented",
        "doc.md:13: script bin/test has no --pytest-does-not-know",
        "doc.md:15: coprssh resubmit has no --keys",
    ]


VARIABLE = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
# Where the service, its scripts and its client read their environment.
CODE = [
    *(ROOT / "bin").iterdir(),
    ROOT / ".ci" / "run",
    *(
        path
        for folder in ("coprssh", "builders", "builds", "keys", "copr_api", "cli", "bench")
        for path in (ROOT / folder).rglob("*.py")
    ),
    # The test suite's own switches (COPRSSH_CHROMIUM, COPRSSH_BROWSER_ON_POSTGRES…).
    *(ROOT / "tests").rglob("conftest.py"),
]
SECRET_READ = re.compile(r"""env_secret\(\s*["']([A-Z0-9_]+)["']""")


def variables_named(text: str) -> set[str]:
    """The environment variables a document names: upper-case names with an underscore, and the
    first column of its variable tables (`DEBUG`, `PYTHON`), outside the samples."""
    names = set()
    for segment in _segments(text):
        names.update(VARIABLE.findall(segment.text))
    names.update(re.findall(r"^\| `([A-Z][A-Z0-9_]*)`", text, flags=re.MULTILINE))
    return names - NOT_VARIABLES


def unread_variables(names: set[str], code: list[Path]) -> set[str]:
    """The names that no code reads: not a string in Python, nor a variable in a shell script."""
    sources = [path.read_text() for path in code if path.is_file()]
    # env_secret("NAME") reads NAME_FILE too, by a name it composes.
    secret_files = {f"{name}_FILE" for source in sources for name in SECRET_READ.findall(source)}
    return {
        name
        for name in names
        if name not in secret_files
        and not any(re.search(rf"""["']{name}["']|\$\{{?{name}\b|\b{name}=""", source) for source in sources)
    }


def test_every_environment_variable_the_docs_name_is_read_by_the_code():
    names = set().union(*(variables_named(path.read_text()) for path in DOC_FILES))
    assert {"DEBUG", "PYTHON", "SECRET_KEY", "COPRSSH_CONFIG", "TEST_DATABASES"} <= names

    assert unread_variables(names, CODE) == set()


def test_a_made_up_variable_is_caught():
    names = variables_named("Set `COPRSSH_NO_SUCH_SETTING=1`.\n\n| `IMAGINED` | 1 | no |\n")

    assert names == {"COPRSSH_NO_SUCH_SETTING", "IMAGINED"}
    assert unread_variables(names | {"COPRSSH_DATA_DIR", "TEST_DATABASES"}, CODE) == names


def test_a_misspelt_flag_or_variable_in_a_real_document_is_caught():
    commands = _django_commands()
    guide = (ROOT / "docs" / "user-guide.md").read_text()
    assert "`--via-gateway`" in guide
    assert "`COPRSSH_TOKEN`" in guide

    misspelt = guide.replace("`--via-gateway`", "`--via-gatway`").replace(
        "`COPRSSH_TOKEN`", "`COPRSSH_TOKENS`"
    )

    problems = flag_problems(flag_uses(misspelt, "user-guide.md", commands), commands)
    assert problems
    assert all(problem.endswith("has no --via-gatway") for problem in problems)
    assert unread_variables(variables_named(misspelt), CODE) == {"COPRSSH_TOKENS"}


def test_the_operators_guide_names_every_admin_action_by_its_label():
    labels = {
        label
        for path in ROOT.glob("*/admin*.py")
        for label in re.findall(r"""@admin\.action\(\s*description=["']([^"']+)["']""", path.read_text())
    }
    assert "Resume now" in labels  # the pattern still finds the actions
    # Bold text may wrap over lines.
    guide = " ".join((ROOT / "docs" / "operators.md").read_text().split())

    assert sorted(label for label in labels if f"**{label}**" not in guide) == []


def test_the_samples_normalizer_makes_a_run_read_the_same_as_another():
    from datetime import UTC, datetime

    normalize = _samples_module("normalize")

    def run(start: datetime, port: int, account: str, fingerprint: str) -> str:
        text = (
            f"[{start:%Y-%m-%d %H:%M}:07 UTC] kept until {start.replace(hour=start.hour + 1):%Y-%m-%d %H:%M} UTC\n"
            f"ssh -J coprssh-gw@127.0.0.1:{port + 1} -p {port} {account}@127.0.0.1 ({fingerprint})\n"
            f'"expires_at": "{start:%Y-%m-%d}T{start.hour + 1:02d}:{start.minute:02d}:07.123456Z"\n'
        )
        normalizer = normalize.Normalizer(start=start, literals={}, gateway_port=port + 1)
        normalizer.add_port(port)
        return normalizer(text)

    first = run(datetime(2026, 3, 1, 8, 15, 0, tzinfo=UTC), 41000, "csb-0123456789ab", "SHA256:" + "a" * 43)
    second = run(datetime(2026, 7, 9, 17, 42, 0, tzinfo=UTC), 52000, "csb-ba9876543210", "SHA256:" + "b" * 43)

    assert first == second
    assert first.startswith("[2026-12-04 10:00:00 UTC] kept until 2026-12-04 11:00 UTC\n")
    assert "-J coprssh-gw@127.0.0.1:2222 -p 45713 " in first
    assert '"expires_at": "2026-12-04T11:00:00Z"' in first
