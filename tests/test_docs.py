"""The documentation stays attached to the code: every ``docs/<page>.md#anchor`` the code cites and every
relative link between the Markdown pages leads to an existing file and heading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CITATION = re.compile(r"(docs/[\w/.-]+\.md)#([\w-]+)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ +(.+)$", text, flags=re.M)}


def markdown_pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def test_slug_matches_github() -> None:
    assert slug("The paper's settings") == "the-papers-settings"
    assert slug("Stop rules") == "stop-rules"


def test_code_citations_resolve() -> None:
    cited = []
    for root in ("ramda", "tests", "scripts"):
        for path in sorted((REPO / root).rglob("*.py")):
            for m in CITATION.finditer(path.read_text(encoding="utf-8")):
                cited.append((path.relative_to(REPO), m.group(1), m.group(2)))
    assert cited, "no docs/*.md#anchor citation found in the code"
    for where, page, anchor in cited:
        target = REPO / page
        assert target.is_file(), f"{where} cites {page}, which does not exist"
        assert anchor in anchors(target), f"{where} cites {page}#{anchor}: no such heading"


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        assert dest.exists(), f"{page.relative_to(REPO)} links to {target}: no such file"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.relative_to(REPO)} links to {target}: no such heading"


def _docs_numbers():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_numbers", REPO / "scripts" / "docs_numbers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_numbers_blocks_exist() -> None:
    """Every block `make docs-numbers` rewrites is present once in its file (else it would stop there)."""
    dn = _docs_numbers()
    for name, (page, _) in dn.BLOCKS.items():
        dn.replace_block((REPO / page).read_text(encoding="utf-8"), name, "x")


def test_docs_numbers_replaces_only_its_block() -> None:
    dn = _docs_numbers()
    text = "a\n<!-- docs-numbers:one -->\nold\n<!-- /docs-numbers:one -->\nb\n<!-- docs-numbers:two -->\nkeep\n<!-- /docs-numbers:two -->\n"
    new = dn.replace_block(text, "one", "new 1\nnew 2\n")
    assert new == text.replace("old\n", "new 1\nnew 2\n")
    with pytest.raises(ValueError, match="docs-numbers:three"):
        dn.replace_block(text, "three", "x")
