"""docs/DESIGN.md and its citations: every `docs/DESIGN.md §N` in the repository names a section
that exists, and nothing cites the design in another form (a bare file name or a number without
§, which once pointed at a copy outside the repository)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[1]
DESIGN = ROOT / "docs" / "DESIGN.md"

#: Folders that hold nothing of the project's own: environments, caches, generated output.
SKIP_DIRS = {"runs", "node_modules", "__pycache__", "build", "dist"}
SUFFIXES = {".py", ".md", ".toml", ".txt", ".yaml", ".yml", ".cfg", ".ini", ".sh", ".pbtxt"}
NAMES = {"Dockerfile", "Makefile", ".gitignore", ".dockerignore"}

_HEADING = re.compile(r"^#{2,6} (\d+(?:\.\d+)*)\.? ", re.MULTILINE)
_SECTION = r"§\d+(?:\.\d+)*"
#: A citation: the path, then one or more sections ("§2", "§2 and §5", "§2, §4.6").
_CITATION = re.compile(rf"docs/DESIGN\.md(\s+{_SECTION}(?:(?:,|\s+and|\s+or)\s+{_SECTION})*)?")
#: Any mention of the file that is not `docs/DESIGN.md`, or `docs/DESIGN.md` followed by a bare
#: number (the old form).
_STALE = re.compile(r"(?<!docs/)\bDESIGN\.md|docs/DESIGN\.md\s+(?:section\s+)?\d")


def sections(text: str) -> list[str]:
    """The section numbers of a Markdown document's numbered headings, in order."""
    return _HEADING.findall(text)


def cited(text: str) -> list[str]:
    """The design sections a text cites, in order."""
    found = []
    for match in _CITATION.finditer(text):
        found += re.findall(r"§(\d+(?:\.\d+)*)", match.group(1) or "")
    return found


def project_files() -> Iterator[Path]:
    """Every source and documentation file of the project (what git would track)."""
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d not in SKIP_DIRS
            and not d.endswith(".egg-info")
            and here.name != "model_repository"  # its sub-folders are exported models
        )
        for name in sorted(files):
            path = here / name
            if path.suffix in SUFFIXES or name in NAMES:
                yield path


def test_parsers_on_a_sample() -> None:
    text = "## 1. One\n### 1.2 Sub\n#### 1.2.3. Deeper\n## Unnumbered\nnot ## 9. a heading\n"
    assert sections(text) == ["1", "1.2", "1.2.3"]
    sample = (
        "(docs/DESIGN.md §2 and §5), docs/DESIGN.md §2, §4.6: x; docs/DESIGN.md §6's limits;\n"
        "docs/DESIGN.md\n§7. docs/DESIGN.md alone; §8 uncited"
    )
    assert cited(sample) == ["2", "5", "2", "4.6", "6", "7"]
    stale = ["DESIGN.md 6", "(DESIGN.md section 9)", "docs/DESIGN.md 4.1", "see ../DESIGN.md"]
    assert all(_STALE.search(s) for s in stale)
    assert not _STALE.search("docs/DESIGN.md §4.1, docs/DESIGN.md")


def test_design_sections_are_unique_and_top_level_numbers_consecutive() -> None:
    numbers = sections(DESIGN.read_text(encoding="utf-8"))
    assert len(numbers) == len(set(numbers)), numbers
    top = [int(n) for n in numbers if "." not in n]
    assert top == list(range(1, len(top) + 1)), top
    for n in numbers:
        if "." in n:
            assert n.rsplit(".", 1)[0] in numbers, f"§{n} has no parent section"


def test_every_citation_names_a_section_of_the_design() -> None:
    existing = set(sections(DESIGN.read_text(encoding="utf-8")))
    citations, missing = 0, []
    for path in project_files():
        if path in (DESIGN, Path(__file__)):
            continue
        for number, line in _numbered_lines(path):
            for section in cited(line):
                citations += 1
                if section not in existing:
                    missing.append(f"{path.relative_to(ROOT)}:{number}: §{section}")
    # The code cites the design in dozens of places; none found means the walk is broken.
    assert citations >= 20, f"only {citations} citations found: is the file walk broken?"
    assert not missing, "cited sections that docs/DESIGN.md lacks:\n" + "\n".join(missing)


def test_the_design_refers_only_to_its_own_sections() -> None:
    text = DESIGN.read_text(encoding="utf-8")
    existing = set(sections(text))
    referenced = set(re.findall(r"§(\d+(?:\.\d+)*)", text))
    assert referenced <= existing, sorted(referenced - existing)


def test_nothing_cites_the_design_in_another_form() -> None:
    stale = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in project_files()
        if path not in (DESIGN, Path(__file__))
        for number, line in _numbered_lines(path)
        if _STALE.search(line)
    ]
    assert not stale, (
        "cite the design as `docs/DESIGN.md §N` (see docs/DESIGN.md's opening):\n"
        + "\n".join(stale)
    )


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of each line of a text file that mentions the design; a line that
    breaks a citation ("docs/DESIGN.md" or "§2 and" at its end) comes joined to the next."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        return
    for i, line in enumerate(lines):
        if "DESIGN.md" not in line:
            continue
        if line.rstrip().endswith(("DESIGN.md", " and", " or", ",")) and i + 1 < len(lines):
            line = f"{line} {lines[i + 1].strip()}"
        yield i + 1, line
