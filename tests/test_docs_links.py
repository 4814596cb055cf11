"""The README and docs/ as a reader follows them: every relative link and image points to a file that exists,
every `#anchor` to a heading of that page, every docs page is reachable from the README, and the README
stays a short guide (the detail lives in docs/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 320

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def prose(markdown: str) -> str:
    """The text a reader sees as text: fenced blocks and inline code removed (links there are not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", markdown))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", markdown)):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def broken_links(page: Path) -> list[str]:
    """Each relative link of `page` whose file or anchor does not exist, as 'target: why'."""
    text = page.read_text()
    problems = []
    for target in LINK.findall(prose(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ... are not checked here
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            problems.append(f"{target}: no file {shown(dest)}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            problems.append(f"{target}: no heading with anchor #{anchor} in {shown(dest)}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(page):
    assert not broken_links(page), broken_links(page)


def test_the_checker_finds_broken_links(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## Speed in the browser (measured here)\n")
    page.write_text("[ok](other.md#speed-in-the-browser-measured-here) [gone](missing.md) "
                    "[bad anchor](other.md#nowhere) ![img](pic.png) `[in code](nope.md)` [web](https://example.org)\n"
                    "```\n[in a block](nope.md)\n```\n")
    found = broken_links(page)
    assert len(found) == 3 and {f.split(":")[0] for f in found} == {"missing.md", "other.md#nowhere", "pic.png"}


def test_slug_matches_github():
    assert slug("`make demo`") == "make-demo"
    assert slug("Phones (`android`, `ios`)") == "phones-android-ios"
    assert slug("Measured: fuzzing, kills, memory") == "measured-fuzzing-kills-memory"
    assert anchors("## A\n## A\n") == {"a", "a-1"}


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in LINK.findall(prose((ROOT / "README.md").read_text()))}
    orphans = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link to: {orphans}"


def test_readme_is_a_short_guide():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to a docs/ page (limit {README_MAX_LINES})"
