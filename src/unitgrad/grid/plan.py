"""The grid's plan from DVC itself: which stages to dispatch, in dependency order, and what they need first.

Stages are selected by name patterns matched on the stage name before '@' (or the full name), so new matrix
stages named `train*`/`evaluate*` join the grid without change; order comes from DVC's graph (an edge goes from
a stage to the stage whose output it depends on).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path

import networkx as nx

from unitgrad.errors import UnitgradError

DEFAULT_PATTERNS = ("train*", "evaluate*")
LOG_DIR = Path("results") / "logs"  # git-ignored; outside every DVC out and every stage's deps


@dataclasses.dataclass(frozen=True)
class Run:
    """One stage to dispatch: its DVC name, expanded command(s), and the selected stages it waits for."""

    stage: str
    cmd: tuple[str, ...]
    after: tuple[str, ...]

    @property
    def log(self) -> Path:
        return LOG_DIR / f"{self.stage}.log"

    @property
    def record(self) -> Path:
        return LOG_DIR / f"{self.stage}.json"


@dataclasses.dataclass(frozen=True)
class Plan:
    """Runs in an order where every run follows the runs it waits for; `upstream`: stages DVC brings up first."""

    runs: tuple[Run, ...]
    upstream: tuple[str, ...]


def _matches(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name.split("@")[0], pattern)


def select(graph: nx.DiGraph, patterns: tuple[str, ...] = ()) -> list:
    """Stages of the graph whose name matches any pattern (default: `DEFAULT_PATTERNS`); a pattern the user gave
    that matches no stage is an error."""
    stages = [s for s in graph.nodes if s.cmd]
    for pattern in patterns:
        if not any(_matches(s.name, pattern) for s in stages):
            names = sorted({s.name.split("@")[0] for s in stages})
            raise UnitgradError(
                f"stage pattern '{pattern}' matches no stage of dvc.yaml: use a stage name or a glob over "
                f"{', '.join(names)} (e.g. 'train*', 'evaluate@cifar10-*')"
            )
    return [s for s in stages if any(_matches(s.name, p) for p in patterns or DEFAULT_PATTERNS)]


def _commands(stage) -> tuple[str, ...]:
    return tuple(stage.cmd) if isinstance(stage.cmd, list) else tuple(stage.cmd.splitlines())


def make_plan(repo, patterns: tuple[str, ...] = ()) -> Plan:
    """The out-of-date selected stages and their unselected ancestors (the stages DVC reproduces first).

    A selected stage runs if DVC's status says it changed, or if a stage it depends on (selected or upstream)
    will run first, since its inputs then change. Holds DVC's repo lock while it reads the status.
    """
    from dvc.repo import lock_repo

    with lock_repo(repo):
        return _make_plan(repo, patterns)


def _make_plan(repo, patterns: tuple[str, ...]) -> Plan:
    graph = repo.index.graph
    position = {s: i for i, s in enumerate(repo.index.stages)}  # dvc.yaml order
    selected = set(select(graph, patterns))
    ancestors = {s: nx.descendants(graph, s) for s in graph.nodes}
    needed = set().union(*(ancestors[s] for s in selected)) - selected
    will_run: set = set()
    level: dict = {}  # how many selected runs must finish before this one
    for stage in reversed(list(nx.topological_sort(graph))):  # dependencies first
        if not stage.cmd or stage not in selected | needed:
            continue
        if ancestors[stage] & will_run or stage.changed():
            will_run.add(stage)
            if stage in selected:
                level[stage] = max((level[a] + 1 for a in ancestors[stage] if a in level), default=0)
    ordered = sorted(level, key=lambda s: (level[s], position[s]))
    runs = tuple(Run(s.name, _commands(s), tuple(a.name for a in ordered if a in ancestors[s])) for s in ordered)
    return Plan(runs, tuple(s.name for s in sorted(needed, key=position.get) if s.cmd))


def format_plan(plan: Plan, resources: str) -> str:
    """The plan as the `--dry-run` table: upstream stages, then one line per run in dispatch order."""
    lines = [
        f"upstream (dvc repro first): {', '.join(plan.upstream) or 'none'}",
        f"{len(plan.runs)} runs, each {resources}:",
    ]
    for i, run in enumerate(plan.runs, 1):
        after = f"  [after {', '.join(run.after)}]" if run.after else ""
        lines.append(f"{i:4d}  {run.stage}: {' && '.join(run.cmd)}{after}")
    return "\n".join(lines)
