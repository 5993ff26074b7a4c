"""The README's commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(text):
    return [line for line in text.splitlines() if line.startswith("python3 -m venv")]


def test_ci_runs_the_readme_test_command_verbatim():
    readme = _commands((ROOT / "README.md").read_text())
    ci = _commands((ROOT / ".ci" / "run").read_text())
    assert len(readme) == 2 and readme[0].endswith("dvc repro") and readme[1].endswith("pytest -q")
    assert ci == [readme[1]]
