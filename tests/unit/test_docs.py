"""docs/ stays what the code cites, and the code cites nothing outside the repository.

A citation in a comment or docstring is `docs/<page>.md, "<heading>"` on one line (or just
`docs/<page>.md`): the page must exist and have that heading. Markdown links between the README
and the pages must reach an existing page and anchor. The checks run on a throwaway tree first,
so a checker that stopped finding anything fails too.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("proxy", "tests", "bench", "backend", "k8s")
SUFFIXES = (".py", ".yaml", ".yml", ".md")

# `docs/page.md`, optionally followed by `, "Heading"`
CITATION = re.compile(r'docs/(?P<page>[\w-]+\.md)(?P<comma>,?)(?:[ \t]*"(?P<heading>[^"\n]+)")?')
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(?P<text>.+?)[ \t]*#*[ \t]*$")
# Documents of the project workspace, which a clone of the repository does not have.
OUTSIDE = re.compile(r"\bshared/|\bDESIGN\b|INGRESS_NGINX_COOKIES|compat §")
RFC_SECTION = re.compile(r"RFC \d+ (?:§[\d.]+, )*$")  # "RFC 9112 §6.1, §6.3"


def headings(page: Path) -> list[str]:
    """The headings of a Markdown page, fenced code left out."""
    found = []
    fenced = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := HEADING.match(line)):
            found.append(match["text"])
    return found


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def scanned_files(root: Path) -> list[Path]:
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    for top in SCANNED:
        files.extend(
            path
            for path in sorted((root / top).rglob("*"))
            if path.suffix in SUFFIXES and path.is_file() and "__pycache__" not in path.parts
        )
    this = Path(__file__).resolve()  # its examples are not citations
    return [path for path in files if path.is_file() and path.resolve() != this]


def citation_problems(root: Path) -> tuple[list[str], int]:
    """Every citation that names a missing page or heading, and how many headings were cited."""
    problems: list[str] = []
    cited = 0
    for path in scanned_files(root):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            where = f"{path.relative_to(root)}:{number}"
            for match in CITATION.finditer(line):
                page = root / "docs" / match["page"]
                if not page.is_file():
                    problems.append(f"{where}: docs/{match['page']} does not exist")
                elif match["heading"] is not None:
                    cited += 1
                    if match["heading"] not in headings(page):
                        problems.append(
                            f"{where}: docs/{match['page']} has no heading {match['heading']!r}"
                        )
                elif match["comma"]:
                    problems.append(f'{where}: write the heading as docs/{match["page"]}, "..."')
    return problems, cited


def link_problems(root: Path) -> list[str]:
    """Every Markdown link to a local file or anchor that does not resolve."""
    problems = []
    pages = [path for path in scanned_files(root) if path.suffix == ".md"]
    for path in pages:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for match in LINK.finditer(line):
                target = match["target"]
                if re.match(r"[a-z]+:", target):
                    continue  # https:, mailto:
                file_part, _, fragment = target.partition("#")
                linked = (path.parent / file_part).resolve() if file_part else path
                where = f"{path.relative_to(root)}:{number}"
                if not linked.exists():
                    problems.append(f"{where}: {target}: no such file")
                elif (
                    fragment
                    and linked.suffix == ".md"
                    and fragment not in {anchor(text) for text in headings(linked)}
                ):
                    problems.append(f"{where}: {target}: no such heading")
    return problems


def outside_references(root: Path) -> list[str]:
    """Lines that cite the workspace's documents, or a `§` that is not an RFC's."""
    found = []
    for path in scanned_files(root):
        if path.suffix == ".md":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            sections = [m.start() for m in re.finditer("§", line)]
            if OUTSIDE.search(line) or any(not RFC_SECTION.search(line[:s]) for s in sections):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n## Kept heading\n\n```\n# Fenced\n```\n")
    (tmp_path / "proxy").mkdir()
    (tmp_path / "proxy" / "module.py").write_text(
        '"""See docs/page.md, "Kept heading" and docs/page.md."""\n'
        '# docs/page.md, "Renamed heading"\n'
        '# docs/page.md, "Fenced"\n'
        "# docs/gone.md\n"
        "# docs/page.md, Kept heading\n"
        "# RFC 9110 §7.6.1 and RFC 9112 §6.1, §6.3 are fine, design §4 is not\n"
        "# copied from ../shared/compat\n"
    )
    (tmp_path / "README.md").write_text(
        "[a](docs/page.md#kept-heading) [b](docs/page.md#renamed-heading) [c](#nowhere)\n"
    )
    problems, cited = citation_problems(tmp_path)
    assert cited == 3
    assert problems == [
        "proxy/module.py:2: docs/page.md has no heading 'Renamed heading'",
        "proxy/module.py:3: docs/page.md has no heading 'Fenced'",
        "proxy/module.py:4: docs/gone.md does not exist",
        'proxy/module.py:5: write the heading as docs/page.md, "..."',
    ]
    assert link_problems(tmp_path) == [
        "README.md:1: docs/page.md#renamed-heading: no such heading",
        "README.md:1: #nowhere: no such heading",
    ]
    assert outside_references(tmp_path) == [
        "proxy/module.py:6: # RFC 9110 §7.6.1 and RFC 9112 §6.1, §6.3 are fine, design §4 is not",
        "proxy/module.py:7: # copied from ../shared/compat",
    ]


def test_every_page_names_its_sections_once() -> None:
    pages = sorted((ROOT / "docs").glob("*.md"))
    assert {page.name for page in pages} >= {
        "architecture.md",
        "behaviour.md",
        "ingress-nginx-compat.md",
    }
    for page in pages:
        repeated = [text for text, count in Counter(headings(page)).items() if count > 1]
        assert repeated == [], page.name


def test_every_citation_names_an_existing_page_and_heading() -> None:
    problems, cited = citation_problems(ROOT)
    assert problems == []
    assert cited >= 50  # the code cites the docs throughout; far fewer means the pattern broke


def test_every_link_between_the_pages_resolves() -> None:
    assert link_problems(ROOT) == []


def test_nothing_cites_documents_outside_the_repository() -> None:
    assert outside_references(ROOT) == []
