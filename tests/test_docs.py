"""The documentation stays attached to the code: every ``docs/<page>.md#anchor`` that the code or a config
cites, and every relative link between the Markdown pages, leads to an existing file and heading; the generated
config reference and the ``make docs-numbers`` blocks are in place."""

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
    for root, pattern in (("ramda", "*.py"), ("tests", "*.py"), ("scripts", "*.py"), ("configs", "*.yaml")):
        for path in sorted((REPO / root).rglob(pattern)):
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


def _script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_numbers_blocks_exist() -> None:
    """Every block `make docs-numbers` rewrites is present once in its file (else it would stop there)."""
    dn = _script("docs_numbers")
    for name, (page, _) in dn.BLOCKS.items():
        dn.replace_block((REPO / page).read_text(encoding="utf-8"), name, "x")


def test_docs_numbers_replaces_only_its_block() -> None:
    dn = _script("docs_numbers")
    text = "a\n<!-- docs-numbers:one -->\nold\n<!-- /docs-numbers:one -->\nb\n<!-- docs-numbers:two -->\nkeep\n<!-- /docs-numbers:two -->\n"
    new = dn.replace_block(text, "one", "new 1\nnew 2\n")
    assert new == text.replace("old\n", "new 1\nnew 2\n")
    with pytest.raises(ValueError, match="docs-numbers:three"):
        dn.replace_block(text, "three", "x")


def test_config_reference_is_current() -> None:
    """docs/config-reference.md is what the generator makes of today's config dataclasses."""
    gen = _script("gen_config_reference")
    text, _ = gen.render()
    current = gen.OUT.read_text(encoding="utf-8")
    assert current == text, f"docs/config-reference.md is stale; regenerate it with `{gen.COMMAND}`"


def test_config_reference_reads_attribute_docstrings() -> None:
    """A field's meaning is the string below it, inherited unless overridden; nested dataclasses recurse."""
    gen = _script("gen_config_reference")
    from dataclasses import dataclass, field

    @dataclass
    class Inner:
        depth: int = 3
        """How deep | how far."""

    @dataclass
    class Base:
        lr: float = 0.1
        """η."""
        plain: int = 0

    @dataclass
    class Child(Base):
        lr: float = 0.5
        inner: Inner = field(default_factory=Inner)
        """Nested."""

    missing: list[str] = []
    rows = gen.rows(Child, {"lr": 0.5, "plain": 0, "inner": {"depth": 3}}, "x.", missing)
    assert rows == [
        "| `x.lr` | `0.5` | η. |",
        "| `x.plain` | `0` |  |",
        "| `x.inner.*` | | Nested. |",
        "| `x.inner.depth` | `3` | How deep \\| how far. |",
    ]
    assert missing == [f"{Base.__module__}.{Base.__qualname__}.plain"]


def test_docs_numbers_rewrites_each_block_with_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main() writes every block it reran (with the machine line) and copies its files; a block whose command
    fails leaves its block untouched."""
    dn = _script("docs_numbers")
    page = tmp_path / "page.md"
    page.write_text(
        "top\n<!-- docs-numbers:ok -->\nold\n<!-- /docs-numbers:ok -->\n"
        "<!-- docs-numbers:bad -->\nkept\n<!-- /docs-numbers:bad -->\n"
    )
    (tmp_path / "figures").mkdir()

    def ok(tmp: Path, header: str):
        (tmp / "fig.png").write_bytes(b"png")
        return f"{header}: 42\n", {tmp / "fig.png": tmp_path / "figures" / "fig.png"}

    def bad(tmp: Path, header: str):
        raise SystemExit("error: `false` failed with exit status 1; docs unchanged")

    monkeypatch.setattr(dn, "REPO", tmp_path)
    monkeypatch.setattr(dn, "BLOCKS", {"ok": ("page.md", ok), "bad": ("page.md", bad)})
    monkeypatch.setattr(dn, "machine", lambda: "the machine")
    with pytest.raises(SystemExit, match="failed"):
        dn.main([])
    text = page.read_text()
    assert "the machine: 42\n<!-- /docs-numbers:ok -->" in text and "old" not in text
    assert "<!-- docs-numbers:bad -->\nkept\n" in text
    assert (tmp_path / "figures" / "fig.png").read_bytes() == b"png"
