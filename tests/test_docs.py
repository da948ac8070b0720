"""The README is a front door and docs/ the reference (issue 19): the README stays short,
its links lead to pages and headings that exist, and every page is in the site's nav.
`mkdocs build --strict` (in .ci/run) checks the links inside docs/."""

import re
import unicodedata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"

# [text](target): a Markdown link, not an image's nor one inside inline code.
LINK = re.compile(r"(?<![!`])\[[^\]]*\]\(([^)\s]+)\)")


def nav_pages(entries: object) -> list[str]:
    """The pages mkdocs.yml's nav lists, at any depth."""
    if isinstance(entries, str):
        return [entries]
    if isinstance(entries, list):
        return [page for entry in entries for page in nav_pages(entry)]
    if isinstance(entries, dict):
        return [page for value in entries.values() for page in nav_pages(value)]
    return []


def outside_code(text: str) -> str:
    """The text without its fenced code blocks (a `# comment` there is no heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def anchors(page: Path) -> set[str]:
    """Each heading's anchor, as GitHub and MkDocs' toc both make it."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", outside_code(page.read_text("utf-8")), re.M):
        text = unicodedata.normalize("NFKD", heading.replace("`", ""))
        text = re.sub(r"[^\w\s-]", "", text.encode("ascii", "ignore").decode()).strip().lower()
        found.add(re.sub(r"[-\s]+", "-", text))
    return found


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = nav_pages(config["nav"])
    assert len(listed) == len(set(listed)), listed
    assert sorted(listed) == sorted(p.name for p in DOCS.glob("*.md"))


def test_the_readme_is_at_most_350_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 350, len(lines)


def test_every_page_has_one_title() -> None:
    for page in sorted(DOCS.glob("*.md")):
        titles = re.findall(r"^# .+$", outside_code(page.read_text("utf-8")), re.M)
        assert len(titles) == 1, (page.name, titles)
        assert page.read_text(encoding="utf-8").startswith(titles[0]), page.name


def test_the_readme_links_lead_to_pages_and_headings_that_exist() -> None:
    targets = LINK.findall(outside_code(README.read_text(encoding="utf-8")))
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert {t.split("#")[0] for t in local if t.startswith("docs/")} == {
        f"docs/{p.name}" for p in DOCS.glob("*.md")
    }, "the README links every page"
    for target in local:
        path, _, anchor = target.partition("#")
        file = ROOT / path if path else README
        assert file.exists(), target
        if anchor:
            assert anchor in anchors(file), target
