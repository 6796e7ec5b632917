"""The results pages' generated tables: every printout ``scripts/save_results.py`` kept is included by a
page, every include has its printout, and each printout names the command that made it, which exists."""

from __future__ import annotations

import re
import shlex

from tests.conftest import ROOT

DOCS = ROOT / "docs"
SAVED = DOCS / "results" / "saved"
INCLUDE = re.compile(r"^```\{include\} (\S+)$", re.M)


def includes() -> dict:
    found = {}
    for page in DOCS.rglob("*.md"):
        if "_build" in page.parts or SAVED in page.parents:
            continue
        for target in INCLUDE.findall(page.read_text(encoding="utf-8")):
            path = (page.parent / target).resolve()
            if SAVED in path.parents:
                found.setdefault(path, []).append(page)
    return found


def test_every_saved_printout_is_on_a_page_and_every_include_exists():
    found, saved = includes(), {p.resolve() for p in SAVED.glob("*.md")}
    assert saved, "no saved printouts"
    assert sorted(map(str, saved - set(found))) == [], "saved printouts no page includes"
    assert sorted(str(p) for p in set(found) - saved) == [], "includes of printouts that do not exist"


def test_each_printout_says_how_it_was_made():
    for path in SAVED.glob("*.md"):
        text = path.read_text(encoding="utf-8")
        head = re.match(r"<!-- written by scripts/save_results.py.*-->\nMeasured (\d{4}-\d\d-\d\d) at commit `[0-9a-f]+"
                        r"[^`]*` on .+ \(\d+ CPUs\):\n\n```text\n(.+)\n```\n\n", text)
        assert head, f"{path.name}: not a save_results.py printout"
        command = shlex.split(head.group(2))
        assert command[0] == "python", path.name
        assert (ROOT / command[1]).is_file() if command[1] != "-m" else command[2].startswith("attnapps."), path.name
        assert text[head.end():].strip(), f"{path.name}: an empty printout"
