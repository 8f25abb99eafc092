"""The docs match the tree: relative links point to existing files, and docs/layout.md names every module.

Links are read from README.md and docs/*.md, outside code blocks and code spans; a link's ``#anchor`` is
checked against the headings of the page it points to (GitHub's slugs). docs/layout.md must mention every
``src/*.py`` entry point and every ``src/stnlab/**/*.py`` module by its path, and every such path it mentions
outside its "Coming with the next merge" section must exist.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LAYOUT = ROOT / "docs" / "layout.md"
UPCOMING = "Coming with the next merge"

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SOURCE_PATH = re.compile(r"src/[\w/]+\.py")


def prose(text: str) -> str:
    """``text`` without fenced code blocks and code spans (a ``'key=[a,b]'`` there is not a link)."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, code marks and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*$", prose(page.read_text()), flags=re.MULTILINE)
    return {slug(h) for h in headings}


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page.read_text())) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def section_without(text: str, heading: str) -> str:
    """``text`` less the section under ``## heading`` (up to the next heading of that level or above)."""
    return re.sub(rf"^## {re.escape(heading)}\s*$.*?(?=^#{{1,2}} |\Z)", "", text, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path)).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {'; '.join(broken)}"


def test_the_pages_link_each_other():
    readme = {t.partition("#")[0] for t in relative_links(ROOT / "README.md")}
    missing = [f"docs/{p.name}" for p in PAGES[1:] if f"docs/{p.name}" not in readme]
    assert not missing, f"README.md's 'Where to read next' does not link {', '.join(missing)}"


def test_layout_names_every_module():
    modules = sorted(
        p.relative_to(ROOT).as_posix() for p in [*(ROOT / "src").glob("*.py"), *(ROOT / "src" / "stnlab").rglob("*.py")]
    )
    named = set(SOURCE_PATH.findall(LAYOUT.read_text()))
    missing = [m for m in modules if m not in named]
    assert not missing, f"docs/layout.md does not describe {', '.join(missing)}: add one line each"


def test_layout_names_no_missing_module():
    named = set(SOURCE_PATH.findall(section_without(LAYOUT.read_text(), UPCOMING)))
    stale = sorted(p for p in named if not (ROOT / p).is_file())
    assert not stale, f"docs/layout.md describes {', '.join(stale)}, which do not exist: remove or rename them"


def test_helpers_read_markdown_as_github_does(tmp_path):
    assert slug("Resuming a killed run") == "resuming-a-killed-run"
    assert slug("Uploading: `make sync`") == "uploading-make-sync"
    assert slug("On the W&B dashboard") == "on-the-wb-dashboard"
    page = tmp_path / "p.md"
    page.write_text("# A\n\n[x](b.md#c) `[y](nope.md)`\n\n```\n[z](nope.md)\n```\n[w](https://x.org/a.md)\n")
    assert relative_links(page) == ["b.md#c"]
    text = "# T\n## Coming with the next merge\n- src/new.py\n## After\nsrc/old.py\n"
    assert SOURCE_PATH.findall(section_without(text, UPCOMING)) == ["src/old.py"]
