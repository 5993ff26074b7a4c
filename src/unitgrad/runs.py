"""RunId: the identity of one run and the one place that knows the run-directory layout.

    results/runs/<study>/<dataset>/<model>/<optimizer>/noise<pct>/seed<k>/   train/ (unitgrad train), eval.json

`noise` is the percent of training labels flipped (the `noise<pct>` folder and `studies.*.noise`); the
training code uses the fraction `noise / 100`. dvc.yaml writes the same layout with `${item.*}` values
(tested against `RunId.LAYOUT`).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from unitgrad.errors import UnitgradError

RUNS_ROOT = Path("results/runs")


@dataclasses.dataclass(frozen=True, order=True)
class RunId:
    study: str
    dataset: str
    model: str
    optimizer: str
    noise: int  # percent
    seed: int

    LAYOUT = "{study}/{dataset}/{model}/{optimizer}/noise{noise}/seed{seed}"  # the one statement of the layout
    DEPTH = LAYOUT.count("/") + 1
    INTEGERS = ("noise", "seed")

    @property
    def noise_rate(self) -> float:
        """The fraction of training labels flipped."""
        return self.noise / 100

    def relative(self) -> Path:
        return Path(self.LAYOUT.format(**dataclasses.asdict(self)))

    def to_path(self, root: str | Path = RUNS_ROOT) -> Path:
        """`root/<study>/<dataset>/<model>/<optimizer>/noise<pct>/seed<k>`."""
        return Path(root) / self.relative()

    @classmethod
    def from_path(cls, path: str | Path) -> RunId:
        """The run whose directory is `path` (its last DEPTH components); UnitgradError if not a run directory."""
        parts = Path(path).parts[-cls.DEPTH :]
        match = _PATTERN.match("/".join(parts))
        if match is None:
            raise UnitgradError(f"{path} is not a run directory ({cls.LAYOUT} under {RUNS_ROOT}): fix the path")
        fields = match.groupdict()
        return cls(**{name: int(v) if name in cls.INTEGERS else v for name, v in fields.items()})

    @classmethod
    def is_run_dir(cls, path: str | Path) -> bool:
        return _PATTERN.match("/".join(Path(path).parts[-cls.DEPTH :])) is not None

    @classmethod
    def glob(cls) -> str:
        """The glob matching every run directory under a root."""
        return cls.LAYOUT.format(**{field.name: "*" for field in dataclasses.fields(cls)})


def _layout_pattern() -> re.Pattern[str]:
    """RunId.LAYOUT as a regex with one named group per field (digits for the integer fields)."""

    def group(match: re.Match[str]) -> str:
        kind = r"\d+" if match[1] in RunId.INTEGERS else "[^/]+"
        return f"(?P<{match[1]}>{kind})"

    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", group, re.escape(RunId.LAYOUT)) + "$")


_PATTERN = _layout_pattern()
