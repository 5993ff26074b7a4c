"""`evaluate_run` / `unitgrad evaluate` on a tiny prepared dataset and corruption set in tmp_path."""

import json

import numpy as np
import pytest
import torch
from fixtures.params import project_params, write_params
from timm.models import register_model
from torch import nn

from unitgrad.cli import main as cli_main
from unitgrad.data import CIFAR10_CLASSES, CIFAR_MEAN, CIFAR_STD, CORRUPTIONS
from unitgrad.errors import UnitgradError
from unitgrad.evaluate import evaluate_run, main
from unitgrad.models import create_model

PER_CLASS = 2
ORACLE = "unitgrad_test_pixel_oracle"
CONFIG = {"dataset": "cifar10", "model": "cifar_resnet8", "optimizer": "pugd", "noise": 0.0, "seed": 1}


def class_images(labels: np.ndarray) -> np.ndarray:
    """uint8 NHWC images whose every pixel encodes the class: value 20·c + 10."""
    return np.broadcast_to((20 * labels + 10).astype(np.uint8)[:, None, None, None], (len(labels), 32, 32, 3)).copy()


class PixelOracle(nn.Module):
    """Classifies by the mean normalised red value: nearest of the per-class centres (a buffer)."""

    def __init__(self, num_classes: int = 10, **_):
        super().__init__()
        self.register_buffer("centres", torch.zeros(num_classes))
        self.sharpness = nn.Parameter(torch.tensor(100.0))

    def forward(self, x):
        red = x[:, 0].mean((1, 2))
        return -self.sharpness * (red[:, None] - self.centres) ** 2


@register_model
def unitgrad_test_pixel_oracle(pretrained=False, **kwargs):
    return PixelOracle(kwargs.get("num_classes", 10))


def write_dataset(root, corrupt_wrong_from_severity=3):
    """root/cifar10 and root/cifar10-c in the data module's cache layout; corrupted images of
    severity ≥ `corrupt_wrong_from_severity` show the next class, so the oracle gets them wrong."""
    cache = root / "cifar10"
    cache.mkdir(parents=True)
    labels = np.repeat(np.arange(10), PER_CLASS).astype(np.int64)
    for split in ("train", "test"):
        np.save(cache / f"{split}_x.npy", class_images(labels))
        np.save(cache / f"{split}_y.npy", labels)
    (cache / "classes.json").write_text(json.dumps(list(CIFAR10_CLASSES)))
    corrupt_dir = root / "cifar10-c"
    corrupt_dir.mkdir()
    shown = [labels if s < corrupt_wrong_from_severity else (labels + 1) % 10 for s in range(1, 6)]
    for name in CORRUPTIONS:
        np.save(corrupt_dir / f"{name}.npy", np.concatenate([class_images(y) for y in shown]))
    np.save(corrupt_dir / "labels.npy", np.tile(labels, 5))
    return root


SUBSET = np.arange(0, 20, 2)  # the run trained on the even training images (one per class) ...
MONITOR = np.array([1, 3])  # ... monitored on two odd ones; the pool's training part is the other 8
FLIPPED = np.array([True, True, True] + [False] * 7)  # three of its labels flipped to the next class


def write_run(run_dir, model, model_name, cifar_stem=True, config=CONFIG, best=None):
    """A trained run's files; model_best.pt holds `best` (default: `model`) from epoch 3 on the holdout."""
    train = run_dir / "train"
    train.mkdir(parents=True)
    saved = {"model_name": model_name, "num_classes": 10, "cifar_stem": cifar_stem, "dataset": "cifar10"}
    torch.save({"model": model.state_dict(), **saved}, train / "model.pt")
    best_record = {"epoch": 3, "monitor_acc": 0.5, "monitor": "holdout"}
    torch.save({"model": (best or model).state_dict(), **saved, **best_record}, train / "model_best.pt")
    true = SUBSET // PER_CLASS
    noisy = np.where(FLIPPED, (true + 1) % 10, true)
    np.savez(train / "labels.npz", train_indices=SUBSET, noisy_labels=noisy, flip_mask=FLIPPED, monitor_indices=MONITOR)
    (train / "run.json").write_text(json.dumps({"config": config, "git_commit": "abc"}))
    return run_dir


def oracle() -> PixelOracle:
    model = PixelOracle(10)
    pixel = (20 * torch.arange(10) + 10) / 255
    model.centres.copy_((pixel - CIFAR_MEAN["cifar10"][0]) / CIFAR_STD["cifar10"][0])
    return model


@pytest.fixture
def data_root(tmp_path):
    return write_dataset(tmp_path / "data")


def test_perfect_model_scores_one_and_corruptions_are_per_severity(tmp_path, data_root):
    run = write_run(tmp_path / "run", oracle(), "unitgrad_test_pixel_oracle", cifar_stem=False)
    result = evaluate_run(run, data_root, batch_size=7, ece_bins=15, corruptions=True)
    assert result["clean"]["acc"] == 1.0
    assert result["clean"]["per_class_acc"] == dict.fromkeys(CIFAR10_CLASSES, 1.0)
    assert set(result["corruption"]) == set(CORRUPTIONS)
    assert all(cells == {"1": 1.0, "2": 1.0, "3": 0.0, "4": 0.0, "5": 0.0} for cells in result["corruption"].values())
    assert result["mca"] == result["mca_all"] == pytest.approx(0.4)
    assert json.loads((run / "eval.json").read_text()) == result


def wrong_oracle() -> PixelOracle:
    """Predicts the next class of every image: wrong everywhere, and right on every flipped label."""
    model = oracle()
    model.centres.copy_(model.centres.roll(1))
    return model


def test_memorisation_counts_predicted_trained_labels_apart_for_flipped_and_unflipped(tmp_path, data_root):
    fits_truth = evaluate_run(write_run(tmp_path / "a", oracle(), ORACLE, False), data_root, 7, 15, False)
    assert fits_truth["fit"] == {"flipped": 0.0, "unflipped": 1.0, "n_flipped": 3, "n_unflipped": 7}
    fits_noise = evaluate_run(write_run(tmp_path / "b", wrong_oracle(), ORACLE, False), data_root, 7, 15, False)
    assert fits_noise["fit"] == {"flipped": 1.0, "unflipped": 0.0, "n_flipped": 3, "n_unflipped": 7}


def test_pool_scores_the_test_set_and_the_training_images_the_run_never_saw(tmp_path, data_root):
    result = evaluate_run(
        write_run(tmp_path / "run", oracle(), ORACLE, False), data_root, 7, 15, False, train_pool=True
    )
    assert result["pool"] == {"acc": 1.0, "n": 28, "test_acc": 1.0, "n_test": 20, "train_acc": 1.0, "n_train": 8}
    assert evaluate_run(tmp_path / "run", data_root, 7, 15, False)["pool"] is None


def test_best_epoch_model_is_scored_on_the_test_set(tmp_path, data_root):
    run = write_run(tmp_path / "run", oracle(), ORACLE, False, best=wrong_oracle())
    result = evaluate_run(run, data_root, 7, 15, False)
    assert result["clean"]["acc"] == 1.0
    assert result["best_epoch"] == {"epoch": 3, "picked_on": "holdout", "monitor_acc": 0.5, "test_acc": 0.0}


def test_schema_and_consistency_with_a_random_network(tmp_path, data_root):
    torch.manual_seed(0)
    model = create_model("cifar_resnet8", 10)
    run = write_run(tmp_path / "run", model, "cifar_resnet8")
    result = evaluate_run(run, data_root, batch_size=8, ece_bins=15, corruptions=False)
    assert set(result) == {"run", "clean", "fit", "pool", "best_epoch", "corruption", "mca", "mca_all"}
    assert result["run"] == CONFIG
    assert set(result["clean"]) == {"acc", "loss", "ece", "per_class_acc"}
    assert list(result["clean"]["per_class_acc"]) == list(CIFAR10_CLASSES)
    assert result["corruption"] == {} and result["mca"] is None and result["mca_all"] is None
    # The loaded weights, not a fresh network: same logits as the saved model in eval mode.
    x = (
        torch.from_numpy(class_images(np.arange(10))).permute(0, 3, 1, 2).float() / 255
        - torch.tensor(CIFAR_MEAN["cifar10"]).view(1, 3, 1, 1)
    ) / torch.tensor(CIFAR_STD["cifar10"]).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = (model.eval()(x).argmax(1) == torch.arange(10)).double().mean().item()
    assert result["clean"]["acc"] == pytest.approx(expected)
    assert 0.0 <= result["clean"]["ece"] <= 1.0 and result["clean"]["loss"] > 0


def test_missing_model_names_the_fix_and_writes_nothing(tmp_path, data_root):
    run = write_run(tmp_path / "run", oracle(), "unitgrad_test_pixel_oracle", cifar_stem=False)
    (run / "train" / "model.pt").unlink()
    with pytest.raises(UnitgradError, match=r"model.pt not found: .*unitgrad train.*dvc repro"):
        evaluate_run(run, data_root, batch_size=8, ece_bins=15, corruptions=False)
    assert not (run / "eval.json").exists()


def test_unreadable_model_file_is_a_clear_error(tmp_path, data_root):
    run = write_run(tmp_path / "run", oracle(), "unitgrad_test_pixel_oracle", cifar_stem=False)
    (run / "train" / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UnitgradError, match="is damaged or not a torch file"):
        evaluate_run(run, data_root, batch_size=8, ece_bins=15, corruptions=False)


def test_unknown_device_names_the_fix(tmp_path, data_root):
    run = write_run(tmp_path / "run", oracle(), "unitgrad_test_pixel_oracle", cifar_stem=False)
    with pytest.raises(UnitgradError, match="choose one of auto, cpu, cuda"):
        evaluate_run(run, data_root, batch_size=8, ece_bins=15, corruptions=False, device="tpu")


def test_missing_corruption_set_names_the_fix(tmp_path, data_root):
    run = write_run(tmp_path / "run", oracle(), "unitgrad_test_pixel_oracle", cifar_stem=False)
    (data_root / "cifar10-c" / "labels.npy").unlink()
    with pytest.raises(UnitgradError, match="unitgrad corrupt cifar10"):
        evaluate_run(run, data_root, batch_size=8, ece_bins=15, corruptions=True)
    assert not (run / "eval.json").exists()


def test_cli_scores_corruptions_when_the_runs_study_says_so(tmp_path, data_root, capsys, monkeypatch):
    """The study comes from the run directory (results/runs/<study>/...); studies.<study>.corruptions decides."""
    run = write_run(tmp_path / "runs/main/cifar10/cifar_resnet8/pugd/noise0/seed1", oracle(), ORACLE, False)
    monkeypatch.chdir(data_root.parent)  # the CLI reads data/ in the current directory, as dvc.yaml says
    studies = project_params()["studies"]
    for corruptions in (False, True):
        studies["main"]["corruptions"] = corruptions
        params = write_params(
            tmp_path / "params.yaml", train={"device": "cpu"}, evaluate={"batch_size": 6}, studies=studies
        )
        assert main([str(run), "--params", str(params)]) == 0
        saved = json.loads((run / "eval.json").read_text())
        assert saved["clean"]["acc"] == 1.0 and bool(saved["corruption"]) == corruptions
        assert (saved["mca"] is None) != corruptions
    assert "clean acc 1.0000" in capsys.readouterr().out
    (run / "train" / "model.pt").unlink()
    assert cli_main(["evaluate", str(run), "--params", str(params)]) == 2
    assert "unitgrad train" in capsys.readouterr().err


def test_mca_averages_the_15_standard_corruptions_and_mca_all_all_19():
    from unitgrad.evaluate import _mean_accuracy

    corruption = {name: dict.fromkeys("12345", 1.0 if i < 15 else 0.0) for i, name in enumerate(CORRUPTIONS)}
    assert _mean_accuracy(corruption, CORRUPTIONS[:15]) == 1.0
    assert _mean_accuracy(corruption, CORRUPTIONS) == pytest.approx(15 / 19)
