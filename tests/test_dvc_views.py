"""What a reviewer reads through DVC: `dvc metrics show` is one narrow row per study × configuration × optimizer
with the headline numbers, and `dvc plots show` lists the optimizer-comparison figures as offline images."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from unitgrad.report import aggregate, dvc_views

ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def _summary() -> pd.DataFrame:
    """main: sgd and pugd at seeds 0, 1 with mCA; sam_table4 (40 % noise): sgd at one seed, no corruptions."""
    rows = []
    for study, noise, optimizer, accs, mcas in [
        ("main", 0.0, "sgd", [0.50, 0.52], [0.40, 0.44]),
        ("main", 0.0, "pugd", [0.57, 0.61], [0.45, 0.47]),
        ("sam_table4", 0.4, "sgd", [0.30], None),
    ]:
        for seed, acc in enumerate(accs):
            ident = {
                "study": study,
                "dataset": "cifar10",
                "model": "cifar_resnet8",
                "optimizer": optimizer,
                "noise": noise,
                "seed": seed,
                "epochs": 3.0,
                "train_size": 100.0,
            }
            rows.append({**ident, "metric": "clean_acc", "value": acc})
            rows.append({**ident, "metric": "test_acc", "value": acc})  # not a headline number
            if mcas:
                rows.append({**ident, "metric": "mca", "value": mcas[seed]})
    return aggregate.summarize(pd.DataFrame(rows))


def test_headline_metrics_are_percent_means_per_optimizer_file():
    assert dvc_views.headline_metrics(_summary()) == {
        "main/cifar10_cifar_resnet8_noise0/pugd.json": {"acc": 59.0, "mca": 46.0, "n": 2},
        "main/cifar10_cifar_resnet8_noise0/sgd.json": {"acc": 51.0, "mca": 42.0, "n": 2},
        "sam_table4/cifar10_cifar_resnet8_noise40/sgd.json": {"acc": 30.0, "n": 1},
    }


def test_writing_replaces_an_earlier_grids_files(tmp_path):
    stale = tmp_path / "metrics/old_study/cifar10_cifar_resnet8_noise0/sam.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    dvc_views.write_headline_metrics(_summary(), tmp_path / "metrics")
    written = sorted(p.relative_to(tmp_path / "metrics").as_posix() for p in (tmp_path / "metrics").rglob("*.json"))
    assert written == sorted(dvc_views.headline_metrics(_summary()))
    assert json.loads((tmp_path / "metrics/main/cifar10_cifar_resnet8_noise0/sgd.json").read_text())["acc"] == 51.0


def _outs(stage: dict) -> set[str]:
    return {next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", []) + stage.get("metrics", [])}


def test_dvc_yaml_declares_the_metrics_and_plots_as_report_outputs():
    assert "results/metrics" in _outs(DVC_YAML["stages"]["report_aggregate"])
    figures = _outs(DVC_YAML["stages"]["report_figures"])
    plots = [p if isinstance(p, str) else next(iter(p)) for p in DVC_YAML["plots"]]
    assert plots and all(p.endswith(".png") and p in figures for p in plots)  # images: no vega, no CDN
    assert {
        "results/figures/learning_curves.png",
        "results/figures/corruption_severity.png",
        "results/figures/label_noise.png",
    } <= set(plots)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None or shutil.which("dvc") is None, reason="needs git and dvc")
def test_dvc_reads_the_metrics_and_renders_the_plots_offline(tmp_path):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(command, cwd=tmp_path, check=True)
    dvc_views.write_headline_metrics(_summary(), tmp_path / "results/metrics")
    (tmp_path / "results/figures").mkdir()
    for plot in DVC_YAML["plots"]:
        (tmp_path / plot).write_bytes(b"\x89PNG\r\n\x1a\n")  # DVC copies images; it does not decode them

    def dvc(*args: str) -> str:
        return subprocess.run(["dvc", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    (revision,) = json.loads(dvc("metrics", "show", "--json")).values()  # the workspace: the repo has no commit
    shown = revision["data"]
    assert shown["results/metrics/main/cifar10_cifar_resnet8_noise0/pugd.json"]["data"] == {
        "acc": 59.0,
        "mca": 46.0,
        "n": 2,
    }
    assert max(len(line) for line in dvc("metrics", "show").splitlines()) < 100
    dvc("plots", "show", "--out", "html")
    page = (tmp_path / "html/index.html").read_text()
    assert "cdn." not in page  # nothing to fetch: the page renders offline
    for plot in DVC_YAML["plots"]:
        image = "static/workspace_" + plot.replace("/", "_")
        assert f'<img src="{image}">' in page and (tmp_path / "html" / image).is_file()
