"""Every reference into the docs resolves, and the repository speaks of the product only.

- Every markdown link to a file of the repository (``[text](path)``, ``[text](path#anchor)``,
  ``[text](#anchor)``) names a file that exists and, with an anchor, a heading of that file.
- Every citation of a doc section, in code or docs (``docs/x.md, "Section"``, ``[x.md](x.md), "Section"``),
  names a heading of that doc: its whole text, or the part before its colon or parenthesis.
- Every ``docs/….md`` path named in code or docs exists.
- No tracked text mentions issue numbers, sessions or the "looks" and "turns" of the work.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
from mart_testkit.repo import repository_files

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {
    ".md", ".py", ".pyi", ".sh", ".yaml", ".yml", ".toml", ".proto", ".ini", ".cfg", ".conf", ".mako",
    ".txt", ".html", ".json", ".js", ".env", ".example",
}  # fmt: skip
TEXT_NAMES = {"Dockerfile", "Containerfile", "mart", "run", ".gitignore", ".dockerignore"}
SKIPPED = (
    "uv.lock",
    "package-lock.json",
    "bench/results/",
    "protos/baseline/",
    "tests/deploy/compose-spec.json",
)

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
# docs/x.md, "Section" | [x.md](x.md), "Section" | `docs/x.md` "Section"; a section may wrap onto a comment
# line, and a comma may end the line before it.
CITATION = re.compile(
    r"(?:\[[^\]]*\]\((?P<link>[^)\s#]+\.md)\)|(?P<path>[\w./-]*\w\.md))`?\)?"
    r"(?:,[ \t]*(?:\n[ \t#/*]*)?|[ \t]+)"
    r"\"(?P<section>[\w`][^\"\n]{1,100}(?:\n[^\"\n]{0,100})?)\""
)
DOC_PATH = re.compile(r"(?<![\w./-])((?:\.\./)*docs/[\w./-]+\.md)\b")
WORK_HISTORY = re.compile(
    r"\bissue (?:\d+|#\d+)|\(issue\b|\bthe issue's\b|\bsession \d+\b|\bm\.py\b"
    r"|\b(?:previous|earlier) (?:looks|turns)\b"
    r"|\b(?:first|second|third|fourth|fifth|sixth|seventh|eighth|previous|last|this|next) (?:look|turn)\b",
    re.I,
)


@cache
def tracked_text_files() -> tuple[Path, ...]:
    files = []
    for rel in repository_files(ROOT):
        path = ROOT / rel
        if rel.startswith(SKIPPED):
            continue
        if path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES:
            files.append(path)
    return tuple(sorted(files))


def markdown_files() -> list[Path]:
    return [p for p in tracked_text_files() if p.suffix == ".md"]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markdown dropped, lower-cased, punctuation removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def plain(heading: str) -> str:
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "").strip()


@cache
def headings(path: Path) -> tuple[tuple[str, ...], frozenset[str]]:
    """A markdown file's headings (plain text) and their anchors (duplicates numbered as GitHub does)."""
    text = FENCE.sub("", path.read_text())
    titles, anchors, seen = [], set(), {}
    for match in HEADING.finditer(text):
        title = match.group(2)
        titles.append(plain(title))
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        anchors.add(base if n == 0 else f"{base}-{n}")
    return tuple(titles), frozenset(anchors)


def names_section(path: Path, section: str) -> bool:
    wanted = " ".join(section.split())
    for title in headings(path)[0]:
        if title == wanted or (title.startswith(wanted) and title[len(wanted) :][:2] in (": ", " (")):
            return True
    return False


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_scan_sees_the_docs_and_the_code() -> None:
    names = {rel(p) for p in tracked_text_files()}
    expected = {"README.md", "docs/adr/README.md", "mart_common/src/mart_common/outbox.py"}
    assert expected <= names


@pytest.mark.parametrize("doc", markdown_files(), ids=rel)
def test_markdown_links_resolve(doc: Path) -> None:
    text = INLINE_CODE.sub("", FENCE.sub("", doc.read_text()))
    broken = []
    for match in LINK.finditer(text):
        target = match.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: …
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in headings(dest)[1]:
            broken.append(f"{target}: no heading with the anchor #{anchor} in {rel(dest)}")
    assert not broken, f"{rel(doc)}: " + "; ".join(broken)


def citations() -> list[tuple[Path, int, Path, str]]:
    found = []
    for path in tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(errors="replace")
        for match in CITATION.finditer(text):
            if match.group("link"):
                target = (path.parent / match.group("link")).resolve()
            else:
                cited = match.group("path")
                if ("/" not in cited and path.suffix == ".md") or cited.startswith("../"):
                    target = (path.parent / cited).resolve()
                elif cited.startswith("docs/") or cited == "README.md":
                    target = (ROOT / cited).resolve()
                else:
                    continue  # a file name in prose, not a path we can resolve
            section = re.sub(r"\s*\n\s*(?:#|//|\*)?\s*", " ", match.group("section"))
            line = text.count("\n", 0, match.start()) + 1
            found.append((path, line, target, section))
    return found


def test_citations_of_doc_sections_resolve() -> None:
    found = citations()
    assert len(found) > 20, "the citation pattern no longer finds the citations"
    broken = [
        f'{rel(path)}:{line}: {target.name}, "{section}"'
        + (" (no such file)" if not target.exists() else " (no such heading)")
        for path, line, target, section in found
        if not target.exists() or not names_section(target, section)
    ]
    assert not broken, "citations of sections that do not exist:\n" + "\n".join(broken)


def test_paths_of_docs_named_in_code_and_docs_exist() -> None:
    missing = []
    for path in tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(errors="replace")
        for match in DOC_PATH.finditer(text):
            cited = match.group(1)
            base = path.parent if cited.startswith("../") else ROOT
            if not (base / cited).resolve().exists():
                line = text.count("\n", 0, match.start()) + 1
                missing.append(f"{rel(path)}:{line}: {cited}")
    assert not missing, "docs named that do not exist:\n" + "\n".join(missing)


def test_the_repository_speaks_of_the_product_only() -> None:
    """No issue numbers, sessions, "looks" or "turns": the history of the work lives in git."""
    offenders = []
    for path in tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if WORK_HISTORY.search(line):
                offenders.append(f"{rel(path)}:{n}: {line.strip()[:100]}")
    assert not offenders, "text about the work instead of the product:\n" + "\n".join(offenders)
