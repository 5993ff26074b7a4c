"""DVC's side of a grid run: bring upstream up to date, remove outputs as DVC would, run a command, commit.

Commands run outside DVC's repo lock (that is what lets many run at once); everything that touches dvc.lock,
the cache or outputs runs inside one hold of it, waiting for the lock rather than failing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from unitgrad.errors import UnitgradError
from unitgrad.grid import fate
from unitgrad.io import write_json

# The grid uses DVC internals that its public API lacks: `Repo(_wait_for_lock=True)`, `lock_repo`, a stage's
# `remove_outs`/`save`/`commit` and `dump_stages` (commit a batch under one lock with one rewrite of dvc.lock,
# refusing runs whose dependencies changed). They are tested with these DVC versions (pyproject.toml pins the same).
DVC_TESTED = ">=3.67.1,<3.68"


def check_dvc_version() -> None:
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet

    installed = version("dvc")
    if installed not in SpecifierSet(DVC_TESTED):
        raise UnitgradError(
            f"unitgrad grid is tested with dvc{DVC_TESTED} (it uses DVC internals) but dvc {installed} is installed: "
            f"pip install 'dvc{DVC_TESTED}'"
        )


def open_repo(root: str | Path):
    """DVC's repo at `root`, whose lock waits for other DVC processes instead of failing after a few seconds."""
    from dvc.exceptions import NotDvcRepoError

    check_dvc_version()
    from dvc.repo import Repo

    try:
        return Repo(str(root), _wait_for_lock=True)
    except NotDvcRepoError as exc:
        raise UnitgradError(f"{root} is not a DVC repository: run `unitgrad grid` in the project's root") from exc


def locked(repo):
    """The repo lock as a context manager (re-entrant within this process, like DVC's own API calls)."""
    from dvc.repo import lock_repo

    return lock_repo(repo)


def stages_by_name(repo) -> dict:
    return {s.name: s for s in repo.index.stages}


def reproduce(repo, targets: tuple[str, ...] | None) -> None:
    """`dvc repro` of the stages named `targets` (with their own upstream), or of the whole pipeline if None."""
    from dvc.exceptions import DvcException

    try:
        named = stages_by_name(repo)
        repo.reproduce([named[t].addressing for t in targets] if targets is not None else None)
    except DvcException as exc:
        raise UnitgradError(f"dvc repro {' '.join(targets or [])} failed: {exc}; fix it and rerun") from exc


def dep_hashes(stage) -> dict:
    """Each dependency's hash as DVC computes it (params: their values), keyed by its path in dvc.yaml, in the
    JSON form a record stores (so a hash read back from a record compares equal)."""
    return json.loads(json.dumps({str(dep.def_path): dep.get_hash().to_dict() for dep in stage.deps}))


def prepare(repo, names: list[str]) -> dict[str, dict]:
    """Remove each stage's outputs as `dvc repro` does (persist ones kept, e.g. checkpoints) and return, per stage,
    the hashes of its dependencies, which must still hold when the run is committed. One hold of the lock and one
    read of the pipeline for all of them."""
    with locked(repo):
        by_name = stages_by_name(repo)
        hashes = {}
        for name in names:
            by_name[name].remove_outs(ignore_remove=False, force=False)
            hashes[name] = dep_hashes(by_name[name])
        return hashes


def execute(root: str, name: str, cmd: tuple[str, ...], deps: dict, env: dict, attempt: int) -> dict:
    """Run the stage's command(s) in `root` with DVC's stage environment; output to its log; write its record.

    Plain subprocess work (no DVC import) so that it runs as is in a Ray worker or a SLURM task.
    """
    from unitgrad.grid.plan import LOG_DIR

    log, record = Path(root) / LOG_DIR / f"{name}.log", Path(root) / LOG_DIR / f"{name}.json"
    log.parent.mkdir(parents=True, exist_ok=True)
    run_env = {**os.environ, **env, "DVC_ROOT": str(root), "DVC_STAGE": name}
    shell = os.environ.get("SHELL") or "/bin/sh"  # like DVC: the user's shell
    started, returncode = time.time(), 0
    with log.open("a") as out:
        out.write(
            f"# unitgrad grid: {name}, attempt {attempt}, CUDA_VISIBLE_DEVICES="
            f"{run_env.get('CUDA_VISIBLE_DEVICES', '')}\n"
        )
        out.flush()
        for line in cmd:
            returncode = fate.popen(
                [shell, "-c", line],
                cwd=root,
                env=run_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            ).wait()
            if returncode:
                break
    result = {
        "stage": name,
        "returncode": returncode,
        "attempt": attempt,
        "deps": deps,
        "started": started,
        "seconds": time.time() - started,
        "log": str(log.relative_to(root)),
        "last_line": last_line(log),
    }
    write_json(record, result)
    return result


def exit_code(returncode: int) -> str:
    """A command's exit code as a reader wants it: -15 is "-15 (SIGTERM)", the signal that killed it."""
    return f"{returncode} ({signal.Signals(-returncode).name})" if returncode < 0 else str(returncode)


def last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.exists() else []
    return lines[-1] if lines else ""


def commit(repo, results: list[dict]) -> tuple[list[str], dict[str, str]]:
    """Commit each succeeded run (what `dvc commit --force` does) in one hold of the lock; refuse failed runs and runs
    whose dependencies changed while they ran. Returns the committed stage names and {stage: why refused}."""
    refused, to_dump = {}, []
    with locked(repo):
        by_name = stages_by_name(repo)
        # its own scm context, as `dvc commit` has: a later failing `dvc repro` in this process must not revert
        # the .gitignore entries this commit writes
        with repo.scm_context(quiet=True):
            for result in results:
                name = result["stage"]
                if result["returncode"] != 0:
                    refused[name] = f"exit code {exit_code(result['returncode'])} after {result['attempt']} attempts"
                    continue
                now = dep_hashes(by_name[name])
                changed = sorted(path for path in now if now[path] != result["deps"].get(path))
                if changed:
                    refused[name] = f"dependencies changed while it ran: {', '.join(changed)}"
                    continue
                by_name[name].save()  # the steps of DVC's repo.commit, on the stages the index already read
                by_name[name].commit()
                to_dump.append(by_name[name])
            # One rewrite of dvc.lock per file for the whole batch, as repo.commit does for its targets: DVC
            # parses and dumps the whole lock file each time, seconds per call once it holds hundreds of stages.
            for path in dict.fromkeys(stage.dvcfile.path for stage in to_dump):
                batch = [stage for stage in to_dump if stage.dvcfile.path == path]
                batch[0].dvcfile.dump_stages(batch, update_pipeline=False)
    return [stage.name for stage in to_dump], refused


@dataclasses.dataclass(frozen=True)
class Failure:
    """A run that was not committed: why, its log's last line and the log's path (relative to the repo)."""

    stage: str
    reason: str
    last_line: str
    log: str

    @classmethod
    def of(cls, root: str | Path, name: str, reason: str) -> Failure:
        from unitgrad.grid.plan import LOG_DIR

        log = LOG_DIR / f"{name}.log"
        return cls(name, reason, last_line(Path(root) / log), str(log))


def read_records(root: str | Path, names: list[str]) -> list[dict]:
    """The records the runs of these stages left (missing ones skipped: never dispatched or still running)."""
    from unitgrad.grid.plan import LOG_DIR

    paths = [Path(root) / LOG_DIR / f"{name}.json" for name in names]
    return [json.loads(p.read_text()) for p in paths if p.exists()]
