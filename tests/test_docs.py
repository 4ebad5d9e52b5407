"""The documentation cannot drift from the code: the code blocks marked runnable in README.md and docs/ run as a user
runs them (a Python block in a fresh interpreter, an experiment file through `squeezer search`), every page is in
the site's navigation, and README.md stays an overview."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

SQUEEZER = Path(sys.executable).parent / "squeezer"
MARKED = re.compile(r"<!-- run: (python|experiment) -->\n```\w*\n(.*?)\n```", re.S)
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def runnable() -> list[pytest.param]:
    blocks = [(page, kind, code) for page in PAGES for kind, code in MARKED.findall(page.read_text())]
    return [pytest.param(kind, code, id=f"{page.name}-{kind}-{i}") for i, (page, kind, code) in enumerate(blocks)]


def test_the_readme_marks_its_examples_runnable() -> None:
    kinds = [p.values[0] for p in runnable() if p.id.startswith("README.md")]
    assert sorted(kinds) == ["experiment", "python"]


@pytest.mark.parametrize(("kind", "code"), runnable())
def test_a_runnable_block_runs_as_written(kind: str, code: str, tmp_path: Path) -> None:
    env = {**os.environ, "SQUEEZER_CACHE": str(tmp_path / "cache"), "SQUEEZER_PROGRESS": "plain"}
    if kind == "python":
        (tmp_path / "example.py").write_text(code)
        command = [sys.executable, "example.py"]
    else:
        experiment = yaml.safe_load(code)
        (tmp_path / "experiment.yaml").write_text(code)
        command = [str(SQUEEZER), "search", "experiment.yaml", "--trials", str(min(4, experiment["search"]["trials"]))]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    if kind == "experiment":
        assert "search space:" in done.stdout and "Pareto front" in done.stdout


def test_every_page_is_in_the_sites_navigation() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())

    def pages(entries: list) -> set[str]:  # the nav's groups (tutorials, how-to, reference, explanation) walked
        found = set()
        for entry in entries:
            value = next(iter(entry.values()))
            found |= pages(value) if isinstance(value, list) else {value}
        return found

    assert pages(config["nav"]) == {p.name for p in (REPO / "docs").glob("*.md")}
    assert [next(iter(e)) for e in config["nav"]] == ["Home", "Tutorials", "How-to guides", "Reference", "Explanation"]


def test_the_readme_is_an_overview() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for page in re.findall(r"\]\(docs/([\w-]+\.md)", readme):
        assert (REPO / "docs" / page).is_file(), page


def test_the_sites_home_is_the_readme_itself() -> None:
    """One source: the home page includes README.md (links rewritten by mkdocs-include-markdown-plugin) instead of a
    hand copy that drifts."""
    assert '{% include-markdown "../README.md" %}' in (REPO / "docs" / "index.md").read_text()
