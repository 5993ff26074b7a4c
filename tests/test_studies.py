"""Studies: the runs each selects and the settings each run trains with (its `set`, then matching `when` rules)."""

import pytest
import yaml
from fixtures.params import project_params

from unitgrad import cli
from unitgrad.config import load_params, parse_params
from unitgrad.errors import UnitgradError
from unitgrad.run_config import RunConfig
from unitgrad.runs import RunId
from unitgrad.studies import resolve, selected_runs

NOISE = {
    "source": "SAM Table 4",
    "datasets": ["cifar10"],
    "models": ["cifar_resnet8"],
    "optimizers": ["sgd", "sam"],
    "noise": [40, 80],
    "noise_kind": "symmetric",
    "seeds": [0, 1],
    "corruptions": False,
    "set": {"train.epochs": 2, "optim.sam.rho": 0.1},
    "when": [{"noise": 80, "set": {"optim.sam.rho": 0.05}}, {"optimizer": "sam", "set": {"optim.sam.m": 32}}],
}


def _params(study=NOISE, **sections):
    params = project_params(**sections)
    params["studies"] = {"noise": study}
    params["report"].update(main_study="noise", noise_study="noise")
    return params


def test_a_study_selects_its_product_in_params_order():
    runs = selected_runs(parse_params(_params()))
    assert len(runs) == 1 * 1 * 2 * 2 * 2
    assert runs[0] == RunId("noise", "cifar10", "cifar_resnet8", "sgd", 40, 0)
    assert runs[-1] == RunId("noise", "cifar10", "cifar_resnet8", "sam", 80, 1)


def test_set_then_the_matching_rules_in_order():
    params = parse_params(_params())
    sam40 = RunConfig.for_run(params, RunId("noise", "cifar10", "cifar_resnet8", "sam", 40, 0))
    sam80 = RunConfig.for_run(params, RunId("noise", "cifar10", "cifar_resnet8", "sam", 80, 0))
    sgd80 = RunConfig.for_run(params, RunId("noise", "cifar10", "cifar_resnet8", "sgd", 80, 0))
    assert (sam40.optimizer_kwargs["rho"], sam40.m, sam40.epochs) == (0.1, 32, 2)
    assert (sam80.optimizer_kwargs["rho"], sam80.m, sam80.noise, sam80.noise_kind) == (0.05, 32, 0.8, "symmetric")
    assert sgd80.m is None and "rho" not in sgd80.optimizer_kwargs and sgd80.epochs == 2
    assert params.train.epochs != 2  # the overrides change the run's settings, not the params
    unchanged = {**NOISE, "set": {}, "when": []}
    assert resolve(parse_params(_params(unchanged)), RunId("noise", "cifar10", "cifar_resnet8", "sgd", 40, 0)) == (
        parse_params(_params(unchanged))
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train.epoch": 3}, "studies.noise: cannot set 'train.epoch': params.yaml has no such key"),
        ({"scale": "paper"}, "studies.noise: cannot set 'scale': a study sets only train.*, model.*, data.loader.*"),
        ({"train.batch_size": 0}, "train.batch_size: input should be greater than or equal to 1, got 0"),
        ({"optim.sam.m": 48}, "optim.sam.m: 48 does not divide train.batch_size (128)"),
    ],
)
def test_a_bad_override_is_one_line_naming_the_study_and_key(tmp_path, capsys, overrides, message):
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(_params({**NOISE, "set": overrides, "when": []})))
    with pytest.raises(UnitgradError) as err:
        for run in selected_runs(load_params(path)):
            RunConfig.for_run(load_params(path), run, path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    assert cli.main(["params", "check", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_study_on_the_command_line_names_the_known_ones(tmp_path, capsys):
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(_params()))
    argv = [
        "train",
        "--study",
        "nose",
        "--dataset",
        "cifar10",
        "--model",
        "cifar_resnet8",
        "--optimizer",
        "sgd",
        "--seed",
        "0",
        "--params",
        str(path),
        "--out",
        str(tmp_path / "runs"),
    ]
    assert cli.main(argv) == 2
    assert "studies.nose: no such study (known: noise)" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
