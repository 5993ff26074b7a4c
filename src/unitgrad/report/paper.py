"""`unitgrad paper`: build paper/main.pdf from paper/main.tex with latexmk, or say how to install TeX.

The build runs in a temporary output directory, so a failed run leaves the previous PDF (or none)
and no by-products; the LaTeX log of the last attempt is kept as paper/main.log for diagnosis.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from unitgrad.errors import UnitgradError

INSTALL_HINT = (
    "latexmk not found: install TeX (Debian/Ubuntu: apt-get install --no-install-recommends latexmk "
    "texlive-latex-recommended texlive-fonts-recommended texlive-latex-extra) and rerun `unitgrad paper`"
)


def _first_error(log: str) -> str:
    """The first LaTeX error line ('! …') of a log, or a generic pointer to the log."""
    for line in log.splitlines():
        if line.startswith("!"):
            return line[1:].strip()
    return "see the log"


def build(paper_dir: Path, latexmk: str | None = None) -> Path:
    """Compile `paper_dir/main.tex` into `paper_dir/main.pdf`; return the PDF path."""
    latexmk = latexmk or shutil.which("latexmk")
    if latexmk is None:
        raise UnitgradError(INSTALL_HINT)
    source = paper_dir / "main.tex"
    if not source.is_file():
        raise UnitgradError(f"{source} not found: restore it from git (`git checkout -- {source}`)")
    missing = [t for t in ("setup", "main", "claims") if not (paper_dir / "tables" / f"{t}.tex").is_file()]
    if missing:
        raise UnitgradError(f"{paper_dir}/tables/{missing[0]}.tex not found: run `dvc repro` (report stages) first")
    with tempfile.TemporaryDirectory(prefix=".latex.", dir=paper_dir) as out:
        command = [latexmk, "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
                   f"-outdir={Path(out).resolve()}", "main.tex"]
        result = subprocess.run(command, cwd=paper_dir, capture_output=True, text=True, errors="replace", check=False)
        log_path = Path(out) / "main.log"
        if log_path.is_file():
            shutil.copyfile(log_path, paper_dir / "main.log")
        pdf = Path(out) / "main.pdf"
        if result.returncode != 0 or not pdf.is_file():
            log = log_path.read_text(errors="replace") if log_path.is_file() else result.stdout + result.stderr
            raise UnitgradError(f"LaTeX failed on {source}: {_first_error(log)} (full log: {paper_dir}/main.log)")
        os.replace(pdf, paper_dir / "main.pdf")
    return paper_dir / "main.pdf"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="unitgrad paper", description=__doc__)
    parser.add_argument("--paper-dir", type=Path, default=Path("paper"))
    args = parser.parse_args(argv)
    print(build(args.paper_dir))
    return 0
