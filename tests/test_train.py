"""Training loop: every optimizer end to end on a tiny synthetic CIFAR, resume, NaN, provenance, bad params."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures.tiny_cifar import tiny_cifar, tiny_source

from unitgrad import cli, distributed
from unitgrad.config import parse_params
from unitgrad.errors import UnitgradError
from unitgrad.models import create_model
from unitgrad.optim import reference, train_step
from unitgrad.provenance import git_state
from unitgrad.run_config import RunConfig
from unitgrad.runs import RunId
from unitgrad.train import data as train_data
from unitgrad.train import fit
from unitgrad.train.run import train_run
from unitgrad.train.schedule import param_groups, warmup_cosine

ROOT = Path(__file__).resolve().parents[1]
RUN = {"dataset": "cifar10", "model": "cifar_resnet8", "seed": 0, "noise": 0.0}


@pytest.fixture
def params(monkeypatch):
    """The project's params.yaml at a tiny scale: 6 images/class, 3 steps of 16 per epoch."""
    monkeypatch.setattr(train_data, "load_cifar", tiny_cifar)
    monkeypatch.setattr(train_data, "source_of", tiny_source)
    torch.set_num_threads(1)
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["data"]["loader"]["train_per_class"] = 6
    p["train"]["monitor_per_class"] = None
    p["train"].update(epochs=1, batch_size=16, warmup_epochs=0.5, device="cpu")
    return p


def train_argv(tmp_path, params_file, optimizer="sgd", *options):
    """`unitgrad train` of seed 0 (unless `options` say otherwise) into tmp_path/runs, with `params_file`."""
    run = [*f"--study main --dataset cifar10 --model cifar_resnet8 --optimizer {optimizer} --seed 0".split(), *options]
    return ["train", *run, "--out", str(tmp_path / "runs"), "--params", str(params_file)]


def config(params, optimizer="sgd", **run):
    return RunConfig.from_params(parse_params(params), optimizer=optimizer, **{**RUN, **run})


def load_model(path):
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = create_model(saved["model_name"], saved["num_classes"], cifar_stem=saved["cifar_stem"])
    model.load_state_dict(saved["model"])
    return saved


def tsv_steps(out, name):
    lines = (out / "dvclive" / "plots" / "metrics" / f"{name}.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["step", name.split("/")[-1]]
    return [int(line.split("\t")[0]) for line in lines[1:]]


@pytest.mark.parametrize("optimizer", ["sgd", "sgd_2x", "sam", "asam", "pugd", "ugd"])
def test_every_optimizer_trains_and_writes_its_outputs(params, tmp_path, optimizer):
    cfg = config(params, optimizer, noise=0.5)
    out = tmp_path / "train"
    metrics = train_run(cfg, out)

    epochs = 2 if optimizer == "sgd_2x" else 1
    assert cfg.epochs == epochs and cfg.method == optimizer.removesuffix("_2x")
    assert set(metrics) >= {"train", "test", "lr", "grad_norm", "sec_per_epoch", "epoch"}
    assert metrics["epoch"] == epochs - 1 and 0.0 <= metrics["test"]["acc"] <= 1.0
    assert all(math.isfinite(metrics[k]["loss"]) for k in ("train", "test")) and metrics["grad_norm"] > 0
    on_disk = json.loads((out / "dvclive" / "metrics.json").read_text())
    assert on_disk["test"] == metrics["test"] and on_disk["step"] == epochs - 1
    for name in ("train/loss", "train/acc", "test/loss", "test/acc", "lr", "grad_norm", "sec_per_epoch"):
        assert tsv_steps(out, name) == list(range(epochs))

    saved = load_model(out / "model.pt")
    assert (saved["model_name"], saved["num_classes"], saved["dataset"]) == ("cifar_resnet8", 10, "cifar10")
    labels = np.load(out / "labels.npz")
    clean = tiny_cifar("cifar10", None)[1][labels["train_indices"]]
    assert len(labels["train_indices"]) == 60 and np.bincount(clean).tolist() == [6] * 10
    assert labels["flip_mask"].sum() == 30  # symmetric noise flips exactly round(0.5 × 60) labels
    np.testing.assert_array_equal(labels["flip_mask"], labels["noisy_labels"] != clean)
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["optimizer"] == optimizer and run["config"]["epochs"] == epochs


@pytest.mark.parametrize("optimizer", ["sgd", "sam", "asam", "pugd", "ugd"])
def test_the_trainer_steps_with_the_named_optimizer(params, optimizer):
    """The Trainer's first step equals the reference loop of the named method on a copy of its network, with the
    LR, weight decay and momentum of each of its param groups; and differs from plain SGD's step (float64)."""
    params["train"]["amp"] = "none"
    cfg = config(params, optimizer)
    trainer = fit.Trainer(cfg, train_data.load_data(cfg), torch.device("cpu"), distributed.current())
    x, y = next(iter(trainer.train_loader))
    x, start = x.double(), copy.deepcopy(trainer.net.double())  # the optimizer keeps the converted parameters
    index = {id(p): i for i, p in enumerate(trainer.net.parameters())}
    steps = {}
    for name in {optimizer, "sgd"}:
        net = copy.deepcopy(start)
        params_of = list(net.parameters())
        groups = [
            {"params": [params_of[index[id(p)]] for p in g["params"]], "lr": g["lr"], "weight_decay": g["weight_decay"]}
            for g in trainer.optimizer.param_groups
        ]
        own = {k: v for k, v in cfg.optimizer_kwargs.items() if k in ("rho", "eta")}
        sgd = {"momentum": cfg.train.momentum, "nesterov": cfg.train.nesterov}
        opt = (
            torch.optim.SGD(groups, **sgd)
            if name == "sgd"
            else reference.OPTIMIZERS[name](groups, torch.optim.SGD, **own, **sgd)
        )
        train_step(opt, net, trainer.loss_fn, x, y)
        steps[name] = list(net.parameters())
    trainer.step(x, y)
    for got, want in zip(trainer.net.parameters(), steps[optimizer]):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    moved = lambda ps: torch.cat([(a - b).flatten() for a, b in zip(ps, start.parameters())])
    if optimizer != "sgd":  # the updates differ by far more than the tolerance
        assert (moved(steps[optimizer]) - moved(steps["sgd"])).abs().max() > 1e-6


def test_sam_family_resolves_rho_per_dataset_and_sgd_2x_doubles_epochs(params):
    params["train"]["epochs"] = 3
    assert config(params, "sam").optimizer_kwargs["rho"] == 0.05
    assert config(params, "sam", dataset="cifar100").optimizer_kwargs["rho"] == 0.10
    asam = config(params, "asam")
    assert (asam.optimizer_kwargs["rho"], asam.optimizer_kwargs["eta"]) == (0.5, 0.01)
    sgd_2x = config(params, "sgd_2x")
    assert (sgd_2x.method, sgd_2x.epochs, "epochs_factor" in sgd_2x.optimizer_kwargs) == ("sgd", 6, False)
    assert config(params, "pugd").hash() != config(params, "pugd", seed=1).hash()


def test_config_hash_ignores_what_cannot_change_the_result(params):
    clean, noisy = config(params), config(params, noise=0.4)
    assert config(params, noise_kind="asymmetric").hash() == clean.hash() and clean.noise_kind is None
    assert dataclasses.replace(clean, data_root="/elsewhere").hash() == clean.hash()
    assert config(params, noise=0.4, noise_kind="asymmetric").hash() != noisy.hash()


def test_warmup_cosine_schedule_and_param_groups():
    factors = [warmup_cosine(s, warmup_steps=2, total_steps=6) for s in range(6)]
    assert factors[:3] == [0.5, 1.0, 1.0] and factors[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 4)))
    assert all(a >= b for a, b in itertools.pairwise(factors[1:]))
    model = create_model("cifar_resnet8", 10)
    decay, no_decay = param_groups(model, no_weight_decay_bn_bias=True)
    assert no_decay["weight_decay"] == 0.0 and all(p.ndim <= 1 for _, p in no_decay["params"])
    assert next(name for name, _ in decay["params"]) == next(iter(dict(model.named_parameters())))  # for ASAM's rule
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert len(param_groups(model, no_weight_decay_bn_bias=False)) == 1


def test_run_id_layout_round_trips():
    run = RunId("sam_table4", "cifar10", "cifar_resnet8", "pugd", 40, 1)
    assert run.to_path() == Path("results/runs/sam_table4/cifar10/cifar_resnet8/pugd/noise40/seed1")
    assert RunId.from_path(run.to_path("elsewhere") / "") == run and run.noise_rate == 0.4
    for bad in ("results/runs/main/cifar10/cifar_resnet8/pugd/noise0.4/seed1", "main/cifar10/pugd/noise40/seed1"):
        assert not RunId.is_run_dir(bad)
        with pytest.raises(UnitgradError, match="is not a run directory"):
            RunId.from_path(bad)


class Killed(Exception):
    pass


def killing_loader(after_batches):
    """A DeviceLoader whose training iteration dies after `after_batches` batches in total (a mid-epoch kill)."""
    served = [0]

    class Loader(fit.DeviceLoader):
        def __iter__(self):
            for batch in super().__iter__():
                if self.train and served[0] == after_batches:
                    raise Killed
                served[0] += self.train
                yield batch

    return Loader


def test_resume_after_a_mid_epoch_kill_is_bit_identical(params, tmp_path, monkeypatch, capsys):
    params["train"]["epochs"] = 3
    cfg = config(params, "pugd", noise=0.2)
    expected = train_run(cfg, tmp_path / "straight")

    with monkeypatch.context() as patch:
        patch.setattr(fit, "DeviceLoader", killing_loader(after_batches=4))  # epoch 2 of 3, second step
        with pytest.raises(Killed):
            train_run(cfg, tmp_path / "resumed")
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (tmp_path / "resumed" / "model.pt").exists()
    got = train_run(cfg, tmp_path / "resumed")
    assert "resuming from" in capsys.readouterr().out

    for name in ("train", "test"):
        assert got[name] == expected[name]
    want_weights = load_model(tmp_path / "straight" / "model.pt")["model"]
    got_weights = load_model(tmp_path / "resumed" / "model.pt")["model"]
    assert all(torch.equal(got_weights[k], want_weights[k]) for k in want_weights)
    want_best, got_best = (
        load_model(tmp_path / "straight" / "model_best.pt"),
        load_model(tmp_path / "resumed" / "model_best.pt"),
    )
    accs = [
        float(line.split("\t")[1])
        for line in (tmp_path / "straight/dvclive/plots/metrics/test/acc.tsv").read_text().splitlines()[1:]
    ]
    assert want_best["epoch"] == got_best["epoch"] == 1 + int(np.argmax(accs)) and want_best["monitor_acc"] == max(accs)
    assert all(torch.equal(got_best["model"][k], want_best["model"][k]) for k in want_best["model"])
    for name in ("train/loss", "test/acc", "lr"):
        assert tsv_steps(tmp_path / "resumed", name) == [0, 1, 2]  # one row per epoch, none duplicated
    assert json.loads((tmp_path / "resumed" / "run.json").read_text())["resumed_from_epoch"] == 1


def test_resume_rebuilds_deleted_dvclive_files_and_other_configs_start_fresh(params, tmp_path, capsys):
    params["train"]["epochs"] = 2
    out = tmp_path / "train"
    train_run(config(params), out)
    before = (out / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").read_text()
    for stale in (out / "dvclive", out / "model.pt"):  # as `dvc repro` does with non-persistent outputs
        subprocess.run(["rm", "-r", str(stale)], check=True)
    train_run(config(params), out)
    assert (out / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").read_text() == before
    assert (out / "model.pt").is_file()

    params["train"]["lr"] = 0.05
    train_run(config(params), out)
    assert "another config: starting fresh" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["config"]["optimizer_kwargs"]["lr"] == 0.05


def test_nan_loss_stops_with_one_line_error_and_keeps_last_good_checkpoint(params, tmp_path, monkeypatch):
    params["train"]["epochs"] = 2

    class PoisonedLoader(fit.DeviceLoader):
        def __iter__(self):
            for x, y in super().__iter__():
                yield (x * torch.nan if self.train and self.epoch == 1 else x), y

    monkeypatch.setattr(fit, "DeviceLoader", PoisonedLoader)
    out = tmp_path / "train"
    with pytest.raises(UnitgradError, match=r"^loss became nan at epoch 2/2 step 1/3: lower train.lr") as info:
        train_run(config(params, "sam"), out)
    assert "\n" not in str(info.value)
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and all(torch.isfinite(v).all() for v in checkpoint["model"].values())
    assert not (out / "model.pt").exists() and not (out / "run.json").exists()
    assert tsv_steps(out, "train/loss") == [0]


def test_huge_learning_rate_fails_cleanly_through_the_cli(params, tmp_path, capsys):
    params["train"].update(lr=1e30, warmup_epochs=0)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    argv = train_argv(tmp_path, params_file)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "became" in err and "lower train.lr" in err and "\n" not in err
    assert not list((tmp_path / "runs").rglob("model.pt"))


def test_cli_writes_the_run_directory_with_provenance(params, tmp_path, capsys, monkeypatch):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # a fresh project: git, no commit yet
    monkeypatch.chdir(tmp_path)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    argv = train_argv(tmp_path, params_file, "ugd", "--seed", "3", "--noise", "20")
    assert cli.main(argv) == 0
    out = tmp_path / "runs" / "main" / "cifar10" / "cifar_resnet8" / "ugd" / "noise20" / "seed3" / "train"
    with pytest.raises(SystemExit, match="2"):  # a rate where a percent belongs is refused, not read as 0.2 %
        cli.main([arg if arg != "20" else "0.2" for arg in argv])
    written = ["checkpoint.pt", "dvclive", "labels.npz", "model.pt", "model_best.pt", "run.json"]
    assert sorted(p.name for p in out.iterdir()) == written
    run = json.loads((out / "run.json").read_text())
    assert {"git_commit", "git_dirty", "packages", "device", "python", "wall_time_s", "started", "finished"} <= set(run)
    assert set(run["packages"]) >= {"torch", "timm", "numpy", "unitgrad", "dvc"} and run["packages"]["torch"]
    assert run["device"].startswith("cpu") and run["wall_time_s"] > 0 and run["started"] <= run["finished"]
    assert run["data_source"] == {"source": "tiny_cifar (tests)", "md5": None}  # which candidate was prepared
    assert {k: run["config"][k] for k in RUN} == {**RUN, "seed": 3, "noise": 0.2}
    assert "epoch 1/1 train_loss" in capsys.readouterr().out  # plain progress lines off a terminal
    assert not (tmp_path / ".dvc").exists()  # DVCLive only writes its files


def test_git_state_reports_commit_and_dirty_tracked_files(tmp_path):
    assert git_state(tmp_path) == (None, None)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "a.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    commit, dirty = git_state(tmp_path)
    assert len(commit) == 40 and dirty is False
    (tmp_path / "untracked.txt").write_text("results are not code\n")
    assert git_state(tmp_path)[1] is False
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_state(tmp_path) == (commit, True)


@pytest.mark.parametrize(
    "edit, optimizer, message",
    [
        (lambda p: None, "adam", r"params.yaml: optim.adam: no such entry for --optimizer adam: did you mean 'asam'"),
        (lambda p: None, "lion", r"params.yaml: optim.lion: no such entry .*: choose one of asam, pugd, sam, sgd"),
        (lambda p: p["train"].pop("lr"), "sgd", r"params.yaml: train.lr: missing"),
        (lambda p: p["optim"]["sam"].update(rho={"cifar100": 0.1}), "sam", r"optim.sam.rho: has no value for 'cifar1"),
        (lambda p: p["train"].update(bn_update="second"), "sgd", r"train.bn_update: input should be 'first_pass' or"),
        (lambda p: p["train"].update(epochs=0), "sgd", r"train.epochs: input should be greater than or equal to 1"),
        (lambda p: p["data"]["loader"].update(subset_seed=-1), "sgd", r"data.loader.subset_seed: input should be "),
        (lambda p: p["optim"]["sgd"].update(rho=0.1), "sgd", r"optim.sgd.rho: unknown key: allowed: epochs_factor"),
        (lambda p: None, "sgd --noise 120", r"--noise 120: a percent of flipped labels must lie in 0\.\.100"),
    ],
)
def test_bad_params_fail_with_one_line_and_exit_2(params, tmp_path, capsys, edit, optimizer, message):
    params = copy.deepcopy(params)
    edit(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    argv = train_argv(tmp_path, tmp_path / "params.yaml", *optimizer.split())
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not list(tmp_path.rglob("model.pt"))


def test_learning_curves_monitor_a_balanced_test_subset(params, tmp_path):
    params["train"]["monitor_per_class"] = 2
    data = train_data.load_data(config(params))
    assert np.bincount(data.monitor_y).tolist() == [2] * 10
    params["train"]["monitor_per_class"] = 5  # the tiny test set has 4 per class
    monitor = r"^train\.monitor_per_class is 5, more than the test set has per class \(4\)"
    with pytest.raises(UnitgradError, match=monitor):
        train_data.load_data(config(params))
    params["data"]["loader"]["train_per_class"] = 9  # and the training set 8
    with pytest.raises(UnitgradError, match=r"^data\.loader\.train_per_class is 9, more than the training set has"):
        train_data.load_data(config(params))


def test_holdout_monitor_takes_true_labels_of_training_images_the_subset_leaves_out(params):
    params["data"]["loader"]["train_per_class"] = 5  # of the tiny training set's 8 per class
    params["train"].update(monitor="holdout", monitor_per_class=2)
    data = train_data.load_data(config(params, noise=0.5))
    x_train, y_train, *_ = tiny_cifar("cifar10", None)
    assert not set(data.monitor_indices) & set(data.train_indices)
    assert np.bincount(data.monitor_y).tolist() == [2] * 10
    assert np.array_equal(data.monitor_y, y_train[data.monitor_indices])  # clean, though the run's labels are noisy
    assert np.array_equal(data.monitor_x, x_train[data.monitor_indices])
    params["train"]["monitor_per_class"] = 4  # only 3 per class are left out
    with pytest.raises(UnitgradError, match=r"^train\.monitor_per_class is 4, more than the left-out training set"):
        train_data.load_data(config(params))


def test_training_subset_depends_on_subset_seed_not_on_the_run_seed(params):
    indices = lambda **run: train_data.load_data(config(params, **run)).train_indices
    assert np.array_equal(indices(seed=0), indices(seed=1))
    params["data"]["loader"]["subset_seed"] = 1
    changed = indices(seed=0)
    params["data"]["loader"]["subset_seed"] = 0
    assert not np.array_equal(changed, indices(seed=0))


def test_a_diverging_run_fails_at_one_step_per_epoch_and_writes_no_model(params, tmp_path, capsys):
    params["train"].update(lr=1e6, warmup_epochs=0, batch_size=60, epochs=2)  # 60 images: one step per epoch
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    argv = train_argv(tmp_path, params_file)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    became = r"error: (test loss|weights|loss) became \S+ .*epoch 1/2.*: lower train.lr \(now 1000000.0\).*\n"
    assert re.fullmatch(became, err), err
    out = tmp_path / "runs" / RunId("main", "cifar10", "cifar_resnet8", "sgd", 0, 0).relative() / "train"
    assert not (out / "model.pt").exists() and not (out / "run.json").exists() and not (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("blocker", ["read-only run directory", "checkpoint.pt is a dir", "model.pt is a dir"])
def test_unwritable_outputs_fail_with_the_path_before_anything_is_deleted(params, tmp_path, capsys, blocker):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    argv = train_argv(tmp_path, params_file)
    out = tmp_path / "runs" / RunId("main", "cifar10", "cifar_resnet8", "sgd", 0, 0).relative() / "train"
    out.mkdir(parents=True)
    (out / "labels.npz").write_bytes(b"earlier output")
    if blocker == "read-only run directory":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        out.chmod(0o555)
        culprit = out
    else:
        culprit = out / blocker.split()[0]
        culprit.mkdir()
    try:
        assert cli.main(argv) == 2
        assert (out / "labels.npz").read_bytes() == b"earlier output"
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err
    assert err.startswith(f"error: {culprit} ") and err.count("\n") == 1, err
