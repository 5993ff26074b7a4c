"""The committed laptop-scale snapshot (results/laptop/) parses, and its claims follow from its runs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from unitgrad.config import load_params
from unitgrad.report import aggregate, verdict
from unitgrad.studies import selected_runs

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "results" / "laptop"
PARAMS = load_params(ROOT / "params.laptop.yaml")
pytestmark = pytest.mark.skipif(not (SNAPSHOT / "runs.csv").is_file(), reason="no laptop snapshot committed yet")


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return pd.read_csv(SNAPSHOT / "runs.csv")


def test_every_selected_run_has_its_records(runs):
    selected = selected_runs(PARAMS)
    assert len(runs[aggregate.ID_COLUMNS].drop_duplicates()) == len(selected) == 27
    for run in selected:
        record = json.loads((run.to_path(SNAPSHOT / "runs") / "train" / "run.json").read_text())
        evaluation = json.loads((run.to_path(SNAPSHOT / "runs") / "eval.json").read_text())
        assert (record["config"]["optimizer"], record["config"]["seed"]) == (run.optimizer, run.seed)
        assert record["config"]["epochs"] == 150 and record["config"]["train_per_class"] == 200
        row = runs[(runs["study"] == run.study) & (runs["optimizer"] == run.optimizer) & (runs["seed"] == run.seed)]
        assert row.set_index("metric").at["pool_acc", "value"] == pytest.approx(evaluation["pool"]["acc"])


def test_summary_follows_from_the_runs(runs):
    got = pd.read_csv(SNAPSHOT / "summary.csv")
    want = aggregate.summarize(runs)
    keys = [*aggregate.CONFIG_COLUMNS, "metric"]
    merged = got.merge(want, on=keys, suffixes=("", "_recomputed"))
    assert len(merged) == len(got) == len(want)
    for column in ("mean", "ci95", "n"):
        assert merged[column].to_numpy() == pytest.approx(merged[f"{column}_recomputed"].to_numpy(), nan_ok=True)


def test_verdict_follows_from_the_runs(runs):
    report = PARAMS.report
    studies = {"noise": report.noise_study, "clean": report.main_study}
    recomputed = verdict.laptop_verdict(runs, studies, report.memorisation_gate, report.noninferiority_margin_pp)
    committed = pd.read_csv(SNAPSHOT / "verdict.csv", dtype=str, keep_default_na=False)
    assert committed.to_numpy().tolist() == recomputed.astype(str).to_numpy().tolist()
    claims = (SNAPSHOT / "claims.md").read_text()
    assert all(f"| {row.verdict} |" in claims for row in recomputed.itertuples())


def test_readme_opens_its_results_with_the_snapshot_verdict():
    from unitgrad.snapshot import readme_block

    assert readme_block(SNAPSHOT) in (ROOT / "README.md").read_text()  # regenerate: see results/laptop/README.md
