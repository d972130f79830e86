"""The docs' pictures come from the browser suite, not from an editor. Ref: #15

Every picture the docs show is in docs/images/, and every one of them has a test in tests/browser/
that takes it (bin/screenshots regenerates them all); none lies there unused.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
SHOWN = re.compile(r"!\[[^\]]*\]\((?:\.\./|)(?:docs/)?images/([a-z0-9-]+)\.png\)")
TAKEN = re.compile(r"""screenshot\(\s*["']([a-z0-9-]+)["']""")


def _docs() -> dict[Path, str]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return {page: page.read_text() for page in pages}


def shown_pictures(texts: dict[Path, str]) -> set[str]:
    return {name for text in texts.values() for name in SHOWN.findall(text)}


def taken_pictures() -> set[str]:
    return {
        name
        for test in (ROOT / "tests" / "browser").glob("test_*.py")
        for name in TAKEN.findall(test.read_text())
    }


def test_every_picture_the_docs_show_exists_and_a_browser_test_takes_it() -> None:
    shown = shown_pictures(_docs())
    assert shown, "the docs show no picture"
    assert shown <= {path.stem for path in IMAGES.glob("*.png")}
    assert shown <= taken_pictures()


def test_no_picture_lies_unused_in_docs_images() -> None:
    assert {path.stem for path in IMAGES.glob("*.png")} <= shown_pictures(_docs())


def test_the_picture_links_are_recognised_in_both_places() -> None:
    # README links docs/images/…, the pages in docs/ link images/…; a typo'd path is not a picture.
    texts = {
        Path("README.md"): "![The build](docs/images/build-failed.png)",
        Path("docs/user-guide.md"): "![Panel](images/ssh-ready.png) ![x](imgs/other.png)",
    }
    assert shown_pictures(texts) == {"build-failed", "ssh-ready"}
    assert "ssh-ready" in TAKEN.findall('screenshot("ssh-ready")')
