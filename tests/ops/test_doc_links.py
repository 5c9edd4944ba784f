"""Every relative link and image in the README and docs/ points at a file of the repository (a newcomer's first
click must not 404), and every `docs/*.md` page is reachable from the README."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _targets(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # links inside code blocks are examples
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:|#", target)]


def test_relative_links_and_images_point_at_files_of_the_repository() -> None:
    broken = []
    for page in PAGES:
        for target in _targets(page):
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists() or ROOT not in path.parents:
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / target.split("#")[0]).resolve() for target in _targets(ROOT / "README.md")}
    orphans = [page.name for page in PAGES[1:] if page.resolve() not in linked]
    assert not orphans, orphans
