"""The README's commands are the ones CI runs; its protocols table is the one the claims check uses."""

from pathlib import Path

from unitgrad.report.references import protocols_markdown

ROOT = Path(__file__).resolve().parents[1]


def _commands(text):
    return [line for line in text.splitlines() if line.startswith("python3 -m venv")]


def test_ci_runs_the_readme_test_command_verbatim():
    readme = _commands((ROOT / "README.md").read_text())
    ci = _commands((ROOT / ".ci" / "run").read_text())
    assert len(readme) == 2 and readme[0].endswith("dvc repro") and readme[1].endswith("pytest -q")
    assert ci == [readme[1]]


def test_readme_protocols_table_is_the_rendered_one():
    readme, table = (ROOT / "README.md").read_text(), protocols_markdown()
    assert readme.count(table) == 1  # paste the output of unitgrad.report.references.protocols_markdown()
    section = readme.split("## Studies and protocols\n", 1)[1].split("\n## ", 1)[0]
    assert table in section
