"""params.yaml's schema: both scales validate, YAML floats are numbers, and every bad value is one line
naming the file and the key, exit 2, before anything is deleted or written (through `unitgrad params check`
and `unitgrad train`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from fixtures.params import project_params
from fixtures.tiny_cifar import tiny_cifar, tiny_source

from unitgrad import cli, optim, params_docs
from unitgrad.config import load_params, read_yaml, view
from unitgrad.errors import UnitgradError
from unitgrad.schema import METHODS
from unitgrad.train import data as train_data

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [
    "train",
    "--study",
    "main",
    "--dataset",
    "cifar10",
    "--model",
    "cifar_resnet8",
    "--optimizer",
    "sgd",
    "--seed",
    "0",
]
OUTPUTS = ("model.pt", "labels.npz", "run.json", "checkpoint.pt")
BAD = [  # (edit of the YAML text's last match: train comes last, the error after "error: <file>: ")
    (("lr: 0.1", "lr: fast"), "train.lr: input should be a valid number, got 'fast'"),
    (("momentum: 0.9", "momentum: lots"), "train.momentum: input should be a valid number, got 'lots'"),
    (("lr: 0.1", "lr: -0.1"), "train.lr: input should be greater than 0, got -0.1"),
    (("epochs: 1", "epochs: 1\n  epoch: 1"), "train.epoch: unknown key: did you mean train.epochs?"),
    (("bn_update: first_pass", "bn_update: second"), "train.bn_update: input should be 'first_pass' or 'both_passes'"),
    (("  sam:\n", "  sma:\n"), "optim.sma: unknown method 'sma': did you mean 'sam'?"),
    # Values no check stopped before: infinities and NaN, a seed twice or beyond numpy's, a rule matching no run.
    (("lr: 0.1", "lr: .inf"), "train.lr: input should be a finite number, got inf"),
    (("weight_decay: 0.0005", "weight_decay: .inf"), "train.weight_decay: input should be a finite number, got inf"),
    (("    rho: 1.0", "    rho: .inf"), "optim.pugd.rho: input should be a finite number, got inf"),
    (("  - -1.5\n", "  - .nan\n"), "toy.start.0: input should be a finite number, got nan"),
    (("seeds:\n    - 0\n", "seeds:\n    - 0\n    - 0\n"), "studies.sam_table4.seeds: lists 0 twice: keep one"),
    (
        ("seeds:\n    - 0\n", "seeds:\n    - 4294967296\n"),
        "studies.sam_table4.seeds.0: input should be less than 4294967296, got 4294967296",
    ),
    (
        ("    when: []", "    when:\n    - {optimizer: pgud, set: {}}"),
        "studies.sam_table4.when.0.optimizer: 'pgud' is not in this study's optimizers ['sgd', 'sam', 'asam', "
        "'pugd'], so the rule matches no run: fix it or remove the rule",
    ),
    (
        ("    when: []", "    when: []\n    bogus: 1"),
        "studies.sam_table4.bogus: unknown key: allowed: source, datasets,",
    ),
]


def _keys(node, prefix=""):
    # a study's `set` differs by scale: the paper states its source's protocol, the smoke scale shrinks it
    per_scale = prefix.startswith(("data.sources.", "optim.sam.rho", "optim.asam.rho")) or re.fullmatch(
        r"studies\.\w+\.set\.", prefix
    )
    if not isinstance(node, dict) or per_scale:
        return {prefix}
    return set().union(*(_keys(v, f"{prefix}{k}.") for k, v in node.items())) if node else {prefix}


def test_paper_params_have_the_same_keys_as_smoke_params_and_both_validate():
    smoke, paper = read_yaml(ROOT / "params.yaml"), read_yaml(ROOT / "params.paper.yaml")
    assert _keys(smoke) == _keys(paper)
    assert (load_params(ROOT / "params.yaml").scale, load_params(ROOT / "params.paper.yaml").scale) == (
        "smoke",
        "paper",
    )


def test_schema_methods_are_the_optimizers_with_their_hyperparameters():
    assert set(METHODS) == set(optim.OPTIMIZERS)
    assert {name: model.hyperparameters for name, model in METHODS.items()} == {
        name: own for name, (_, own) in optim.OPTIMIZERS.items()
    }


def test_yaml_floats_without_a_dot_are_numbers(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("a: 1e-3\nb: 5E4\nc: -2.5e-3\nd: '1e-3'\ne: 3\nf: 1.0\n")
    assert read_yaml(path) == {"a": 0.001, "b": 50000.0, "c": -0.0025, "d": "1e-3", "e": 3, "f": 1.0}
    assert [type(v) for v in read_yaml(path).values()] == [float, float, float, str, int, float]


def test_a_view_holds_only_the_declared_keys():
    params = view(load_params(ROOT / "params.yaml"), ["train.lr", "optim.sam", "data.sources.cifar10"])
    assert params.train.lr == 0.1 and params.optim["sam"].rho == {"cifar10": 0.05, "cifar100": 0.1}
    assert params.data.sources == {"cifar10": ["official", "../shared/data/cifar10-jpeg.tar.gz"]}
    for read in (lambda: params.train.epochs, lambda: params.evaluate, lambda: params.optim.base):
        with pytest.raises(AttributeError):
            read()
    with pytest.raises(KeyError):
        params.optim["pugd"]


def test_a_source_may_be_a_list_of_candidates(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(project_params(data={"sources": {"cifar10": ["official", "a.tar.gz"]}})))
    assert load_params(path).data.sources["cifar10"] == ["official", "a.tar.gz"]
    path.write_text(yaml.safe_dump(project_params(data={"sources": {"cifar10": []}})))
    with pytest.raises(UnitgradError, match=r"other.yaml: data.sources.cifar10: .*at least 1 item"):
        load_params(path)


@pytest.mark.parametrize("text", ["[1, 2", "- a\n- b\n"])
def test_bad_params_file_is_a_one_line_error(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(UnitgradError) as err:
        load_params(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_missing_params_file(tmp_path):
    with pytest.raises(UnitgradError, match=r"nope\.yaml not found"):
        load_params(tmp_path / "nope.yaml")


def test_params_check_prints_the_plan_of_each_scale(capsys):
    assert cli.main(["params", "check"]) == 0  # params.yaml in the current directory (the project root)
    out = capsys.readouterr().out
    assert out.startswith("params.yaml: valid (smoke scale)")
    assert " train_main                10  cifar_resnet8 on cifar10, noise 0 %; epochs: sgd 3, sam 3," in out
    assert (
        " train_sam_table1           3  cifar_resnet8 on cifar10, noise 0 %; epochs: sgd 1, sgd_2x 2, sam 1; "
        "batch 256" in out
    )  # the study's overrides, resolved per run
    assert " evaluate_sam_table4        4  " in out and "device (train.device auto): " in out
    assert cli.main(["params", "check", str(ROOT / "params.paper.yaml")]) == 0
    assert "params.paper.yaml: valid (paper scale)" in capsys.readouterr().out


def _edit_last(text, old, new):
    head, sep, tail = text.rpartition(old)
    assert sep, old
    return head + new + tail


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny project: params (6 images/class, one epoch) as `other.yaml`, a finished run's outputs."""
    monkeypatch.setattr(train_data, "load_cifar", tiny_cifar)
    monkeypatch.setattr(train_data, "source_of", tiny_source)
    torch.set_num_threads(1)
    params = project_params(data={"loader": {**project_params()["data"]["loader"], "train_per_class": 6}})
    params["train"].update(epochs=1, batch_size=16, warmup_epochs=0, device="cpu", monitor_per_class=None)
    text = yaml.safe_dump(params)
    path = tmp_path / "other.yaml"
    path.write_text(text)
    argv = [*TRAIN, "--out", str(tmp_path / "runs"), "--params", str(path)]
    assert cli.main(argv) == 0
    out = tmp_path / "runs" / "main" / "cifar10" / "cifar_resnet8" / "sgd" / "noise0" / "seed0" / "train"
    return path, text, argv, out


@pytest.mark.parametrize(("edit", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_params_are_one_line_naming_file_and_key_and_touch_no_output(tiny, capsys, edit, message):
    path, text, argv, out = tiny
    path.write_text(_edit_last(text, *edit))
    before = {name: (out / name).read_bytes() for name in OUTPUTS}
    capsys.readouterr()
    for command in (["params", "check", str(path)], argv):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: {message}") and err.count("\n") == 1, err
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == before


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("epochs: 1", "epochs: 1\n  epochs: 2"),
            "is not valid YAML (key 'epochs' appears twice in one mapping: keep one",
        ),
        (
            ("- cifar_resnet8\n", "- cifar_resnet9\n"),
            ": studies.sam_table4.models: 'cifar_resnet9' is not a timm model",
        ),
    ],
)
def test_params_check_stops_a_repeated_key_and_an_unknown_model_and_keeps_its_stamp(tiny, capsys, edit, message):
    """dvc.yaml's check stage: a key written twice (YAML keeps the last) or a study model timm does not know (it
    would fail hours later in `train`) is one line, exit 2, and the stamp of the last valid check stays as it was."""
    path, text, _, _ = tiny
    stamp = path.parent / "params.ok"
    assert cli.main(["params", "check", str(path), "--stamp", str(stamp)]) == 0
    before = stamp.read_bytes()
    path.write_text(_edit_last(text, *edit))
    capsys.readouterr()
    assert cli.main(["params", "check", str(path), "--stamp", str(stamp)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and message in err and err.count("\n") == 1, err
    assert stamp.read_bytes() == before and [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_a_learning_rate_written_1e_3_trains(tiny, capsys):
    path, text, argv, out = tiny
    path.write_text(_edit_last(text, "  lr: 0.1", "  lr: 1e-3"))
    assert cli.main(["params", "check", str(path)]) == 0
    assert cli.main(argv) == 0
    assert json.loads((out / "run.json").read_text())["config"]["optimizer_kwargs"]["lr"] == 0.001


def test_readme_configuration_is_the_schema_reference(capsys):
    readme = (ROOT / "README.md").read_text()
    assert params_docs.reference() in readme  # regenerate: unitgrad params docs
    assert cli.main(["params", "docs"]) == 0 and capsys.readouterr().out == params_docs.reference() + "\n"
    documented = set(re.findall(r"^\| `([^`]+)` \|", params_docs.reference(), flags=re.MULTILINE))
    assert {"train.lr", "data.sources", "optim.sam.rho", "optim.<name>.epochs_factor", "toy.pugd_rho"} <= documented
    assert not any("root" in key for key in documented)
