"""`unitgrad grid run --address` on a Ray cluster of two nodes on this machine (Ray's own `cluster_utils`): runs
spread over both nodes and are committed; a worker node killed mid-run has its run retried on the other node, and
the final dvc.lock equals a serial `dvc repro`'s.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from unitgrad.grid.ray_backend import configure_ray_env

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402 (after the skip)

BIN = Path(sys.executable).parent
NAMES = "abcdef"

# Each run notes the node it ran on (its raylet's PID) outside every DVC out. The worker node's first run stalls,
# to be killed with its node (its first, not a later one: on a loaded machine the head may take the other runs).
WHERE = """
    import os, pathlib, sys, time
    name, node = sys.argv[1], os.environ.get("RAY_RAYLET_PID", "serial")
    ran = pathlib.Path("ran")
    ran.mkdir(exist_ok=True)
    (ran / f"{name}.{node}").touch()
    worker = pathlib.Path("worker.pid")
    if worker.exists() and node == worker.read_text() and len(list(ran.glob(f"*.{node}"))) == 1:
        pathlib.Path("victim").write_text(f"{name} {os.getpid()}")
        time.sleep(120)
    time.sleep(1)
    pathlib.Path(f"{name}.txt").write_text(f"{name}\\n")
"""


@pytest.fixture
def two_nodes(monkeypatch):
    """A head and a worker node of 1 CPU each, so that two 1-CPU runs at once take both. Their commands run in
    dash, as where SHELL is unset: it forks `-c LINE`'s command (bash execs it), so the run is the shell's child."""
    monkeypatch.setenv("SHELL", "/bin/sh")
    configure_ray_env()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes(timeout=120)
    yield cluster, worker
    cluster.shutdown()


def _sh(cmd, cwd) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _alive(pid: str) -> bool:
    try:  # a zombie (state Z) has ended; only its parent has not reaped it yet
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _lock(repo: Path) -> dict:
    return yaml.safe_load((repo / "dvc.lock").read_text())["stages"]


@pytest.mark.slow
def test_two_nodes_share_the_grid_and_a_killed_node_s_run_is_retried(two_nodes, tmp_path, monkeypatch):
    cluster, worker = two_nodes
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    repo = tmp_path / "grid"
    repo.mkdir()
    (repo / "input.txt").write_text("x\n")
    (repo / "where.py").write_text(textwrap.dedent(WHERE))
    stages = {
        f"train_{n}": {"cmd": f"python where.py {n}", "deps": ["input.txt", "where.py"], "outs": [f"{n}.txt"]}
        for n in NAMES
    }
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    _sh(["git", "init", "-q"], repo)
    _sh(["dvc", "init", "-q"], repo)
    serial = tmp_path / "serial"
    shutil.copytree(repo, serial, symlinks=True)
    _sh(["dvc", "repro"], serial)

    started = time.monotonic()
    heads = {str(node.all_processes["raylet"][0].process.pid) for node in cluster.list_all_nodes()} - {
        str(worker.all_processes["raylet"][0].process.pid)
    }
    (repo / "worker.pid").write_text(str(worker.all_processes["raylet"][0].process.pid))
    cmd = [sys.executable, "-m", "unitgrad", "grid", "run", "--no-finish", "--gpus-per-run", "0", "--retries", "1"]
    grid = subprocess.Popen(
        [*cmd, "--address", cluster.address], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    end = time.monotonic() + 300
    while not (repo / "victim").exists():
        assert grid.poll() is None and time.monotonic() < end, "no run stalled on the worker node"
        time.sleep(0.2)
    cluster.remove_node(worker, allow_graceful=False)
    out, err = grid.communicate(timeout=300)
    print(f"two Ray nodes {time.monotonic() - started:.0f} s")
    assert grid.returncode == 0, err[-3000:]

    victim, pid = (repo / "victim").read_text().split()
    end = time.monotonic() + 10
    while _alive(pid):  # killed with its Ray worker, not left running beside the retry
        assert time.monotonic() < end, f"the killed node's run (PID {pid}) still runs"
        time.sleep(0.2)
    nodes = {path.name.split(".")[1] for path in (repo / "ran").iterdir()}
    assert nodes == heads | {(repo / "worker.pid").read_text()}  # both nodes ran runs
    assert f"retrying train_{victim}" in err and f"committed train_{victim}" in err
    assert (repo / "ran" / f"{victim}.{heads.pop()}").exists()  # its retry ran on the head
    assert json.loads(_sh(["dvc", "status", "--json"], repo)) == {}
    assert _lock(repo) == _lock(serial)
    assert "committed 6 stages" in out
