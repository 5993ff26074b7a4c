"""params.paper.yaml runs every published row it can under that row's protocol: each protocol field of
references.py equals the field recorded from the resolved run config, with enough seeds for a verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from unitgrad.config import load_params
from unitgrad.report.aggregate import protocol
from unitgrad.report.references import DIRECTIONAL, FULL_TRAIN_SIZE, PUBLISHED
from unitgrad.run_config import RunConfig
from unitgrad.studies import selected_runs

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.paper.yaml")


def _recorded(run):
    """The protocol fields results/runs.csv would record for `run` once trained at this config."""
    cfg = RunConfig.for_run(PARAMS, run).to_dict()
    per_class = cfg["train_per_class"]
    size = FULL_TRAIN_SIZE[cfg["dataset"]] if per_class is None else per_class * (100 if "100" in run.dataset else 10)
    return {**protocol(cfg), "model": cfg["model"], "epochs": cfg["epochs"], "train_size": size}


RUNS = {run: _recorded(run) for run in selected_runs(PARAMS)}
ROWS = [
    (number, optimizer, fields)
    for number in PUBLISHED
    if number.study and number.model
    for optimizer, fields in number.protocols.items()
]


@pytest.mark.parametrize(("number", "optimizer", "fields"), ROWS, ids=[f"{n.claim} [{o}]" for n, o, _ in ROWS])
def test_every_runnable_published_row_has_its_protocol(number, optimizer, fields):
    runs = [
        run
        for run in RUNS
        if (run.study, run.dataset, run.optimizer, run.model, run.noise)
        == (number.study, number.dataset, optimizer, fields["model"], round(100 * number.noise))
    ]
    assert len(runs) >= PARAMS.report.min_seeds_for_verdict
    for run in runs:
        assert {key: RUNS[run][key] for key in fields} == pytest.approx(dict(fields)), run


@pytest.mark.parametrize("claim", DIRECTIONAL, ids=[c.key for c in DIRECTIONAL])
def test_every_directional_claim_compares_runs_of_its_protocol(claim):
    for name in (claim.optimizer, claim.reference):
        runs = [
            run for run in RUNS if run.study == claim.study and run.optimizer == name and (run.noise > 0) == claim.noisy
        ]
        assert {run.seed for run in runs} and len({run.seed for run in runs}) >= PARAMS.report.min_seeds_for_verdict
        for run in runs:
            expected = {**claim.protocol, "epochs": 200, "train_size": FULL_TRAIN_SIZE[run.dataset]}
            if name == claim.reference:
                expected.update(claim.reference_protocol.get(run.noise / 100, {}))
            assert {key: RUNS[run][key] for key in expected} == pytest.approx(expected), run


def test_rows_the_artifact_cannot_match_say_why():
    unmatched = [number for number in PUBLISHED if not (number.study and number.model)]
    assert unmatched and all(number.note for number in unmatched)
