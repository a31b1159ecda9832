"""Every relative link and every repository path the README and docs/ name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP_LEVEL = ("lerobot_pirl/", "tests/", "benchmarks/", "scripts/", "docs/", "examples/", ".ci/")
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\s]+)`")


def named_paths(page: Path) -> set[tuple[str, Path]]:
    """(as written, resolved) for each relative link target and each backticked repo path."""
    text = page.read_text()
    found = set()
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        path = target.split("#", 1)[0]
        found.add((target, (page.parent / path).resolve()))
    for code in CODE.findall(text):
        path = code.rstrip(".,:;")
        if path.startswith(TOP_LEVEL) and not any(c in path for c in "*<>{}$=") and "..." not in path:
            found.add((code, (ROOT / path.split("::", 1)[0]).resolve()))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_path_exists(page: Path) -> None:
    assert page.is_file(), f"{page} is missing"
    missing = sorted(written for written, path in named_paths(page) if not path.exists())
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_the_readme_is_a_manual_not_a_notebook() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines"
