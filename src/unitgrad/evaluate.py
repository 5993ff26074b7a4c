"""`unitgrad evaluate RUN_DIR`: clean and corruption metrics of one trained run, into RUN_DIR/eval.json.

Clean test set: accuracy, loss (NLL), expected calibration error, per-class accuracy. With
corruptions: accuracy on every corruption × severity of data/<dataset>-c; mCA is their mean over the
15 standard corruptions (as in Hendrycks & Dietterich), mca_all over all 19.
Memorisation: the share of the training subset whose trained label the model predicts, apart for flipped
and unflipped labels. With `evaluate.train_pool`, the held-out pool: the test set and the training images
the run never saw (neither its subset nor its monitor set), scored apart and together; i.i.d. held-out
images, so the pool's accuracy has a smaller sampling error than the test set's alone. The best epoch
(model_best.pt, picked on the monitor set) is scored on the test set.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unitgrad import metrics
from unitgrad.config import DATA_ROOT, load_params
from unitgrad.data import CIFAR_MEAN, CIFAR_STD, CORRUPTIONS, DeviceLoader, load_cifar, load_corruptions
from unitgrad.data.corruptions import SEVERITIES, STANDARD
from unitgrad.device import autocast, resolve_device
from unitgrad.errors import UnitgradError
from unitgrad.io import load_torch, write_json
from unitgrad.models import create_model
from unitgrad.runs import RunId
from unitgrad.schema import Params

_RUN_KEYS = ("dataset", "model", "optimizer", "noise", "seed")


def evaluate_run(
    run_dir: str | Path,
    data_root: str | Path,
    batch_size: int,
    ece_bins: int,
    corruptions: bool,
    train_pool: bool = False,
    device: str = "auto",
    amp: str = "none",
    channels_last: bool = False,
) -> dict[str, Any]:
    """The evaluation of the run in `run_dir` (also written atomically to `run_dir/eval.json`).

    Reads `train/model.pt` and `train/run.json`; `corruptions` adds all of `CORRUPTIONS` from
    `data_root/<dataset>-c`; "mca" is the mean over the 15 standard corruptions × 5 severities,
    "mca_all" over all 19. Accuracies are fractions; "corruption" is {} and both means None without.
    `device`, `amp` and `channels_last` are train.*'s: bf16 autocast and channels_last apply on CUDA only.
    """
    run_dir = Path(run_dir)
    run = _run_identity(run_dir / "train" / "run.json")
    torch_device = resolve_device(device)
    model, _ = _load_model(run_dir / "train" / "model.pt", torch_device, channels_last)
    dataset = run["dataset"]
    layout = {"dataset": dataset, "batch_size": batch_size, "amp": amp, "channels_last": channels_last}
    predict = functools.partial(_predict, model, **layout)
    train_x, train_y, test_x, test_y, classes = load_cifar(dataset, data_root)

    logits = predict(test_x, test_y)
    labels = torch.from_numpy(test_y)
    per_class = metrics.per_class_accuracy(logits, labels, len(classes))
    clean = {
        "acc": metrics.accuracy(logits, labels),
        "loss": metrics.nll(logits, labels),
        "ece": metrics.expected_calibration_error(logits, labels, ece_bins),
        "per_class_acc": {name: None if np.isnan(acc) else acc for name, acc in zip(classes, per_class)},
    }
    corruption: dict[str, dict[str, float]] = {}
    if corruptions:
        for name in CORRUPTIONS:
            images, corrupt_y = load_corruptions(dataset, data_root, name)
            correct = predict(images, corrupt_y).argmax(1) == torch.from_numpy(corrupt_y)
            # Severity-major: the first fifth of the rows is severity 1, and so on.
            by_severity = correct.double().reshape(len(SEVERITIES), -1).mean(1).tolist()
            corruption[name] = {str(s): acc for s, acc in zip(SEVERITIES, by_severity)}
    labels_npz = _labels(run_dir / "train" / "labels.npz")
    subset = labels_npz["train_indices"]
    fitted = predict(train_x[subset], train_y[subset]).argmax(1) == torch.from_numpy(labels_npz["noisy_labels"])
    flipped = torch.from_numpy(labels_npz["flip_mask"])
    memorised = {
        "flipped": _share(fitted[flipped]),  # flipped labels the model predicts (memorised noise)
        "unflipped": _share(fitted[~flipped]),
        "n_flipped": int(flipped.sum()),
        "n_unflipped": int((~flipped).sum()),
    }
    pool = None
    if train_pool:
        unseen = np.setdiff1d(np.arange(len(train_y)), np.concatenate([subset, labels_npz["monitor_indices"]]))
        held_out = float((predict(train_x[unseen], train_y[unseen]).argmax(1).numpy() == train_y[unseen]).mean())
        n_test, n_train = len(test_y), len(unseen)
        pool = {
            "acc": (clean["acc"] * n_test + held_out * n_train) / (n_test + n_train),
            "n": n_test + n_train,
            "test_acc": clean["acc"],
            "n_test": n_test,
            "train_acc": held_out,
            "n_train": n_train,
        }
    best_model, saved = _load_model(run_dir / "train" / "model_best.pt", torch_device, channels_last)
    best = {
        "epoch": saved["epoch"],
        "picked_on": saved["monitor"],
        "monitor_acc": saved["monitor_acc"],
        "test_acc": metrics.accuracy(_predict(best_model, test_x, test_y, **layout), labels),
    }
    result = {
        "run": run,
        "clean": clean,
        "fit": memorised,
        "pool": pool,
        "best_epoch": best,
        "corruption": corruption,
        "mca": _mean_accuracy(corruption, STANDARD),
        "mca_all": _mean_accuracy(corruption, CORRUPTIONS),
    }
    write_json(run_dir / "eval.json", result)
    return result


def _mean_accuracy(corruption: dict[str, dict[str, float]], names: tuple[str, ...]) -> float | None:
    cells = [acc for name in names if name in corruption for acc in corruption[name].values()]
    return float(np.mean(cells)) if cells else None


def _run_identity(run_json: Path) -> dict[str, Any]:
    if not run_json.is_file():
        raise UnitgradError(f"{run_json} not found: train the run first (`unitgrad train` or `dvc repro`)")
    try:
        config = json.loads(run_json.read_text())["config"]
        return {key: config[key] for key in _RUN_KEYS}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UnitgradError(f"{run_json} lacks config.{{{','.join(_RUN_KEYS)}}}: rerun `unitgrad train`") from exc


def _share(hits: torch.Tensor) -> float | None:
    return float(hits.double().mean()) if len(hits) else None


def _labels(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the run's labels.npz (train_indices, noisy_labels, flip_mask, monitor_indices)."""
    names = ("train_indices", "noisy_labels", "flip_mask", "monitor_indices")
    try:
        with np.load(path) as saved:
            return {name: saved[name] for name in names}
    except (OSError, KeyError, ValueError) as exc:
        raise UnitgradError(
            f"{path} is missing or unreadable ({exc.__class__.__name__}): rerun `unitgrad train`"
        ) from exc


def _load_model(model_pt: Path, device: torch.device, channels_last: bool) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model saved in `model_pt`, in eval mode on `device`, and the whole saved record."""
    saved = load_torch(model_pt, "train the run (again): `unitgrad train` or `dvc repro`")
    try:
        model = create_model(saved["model_name"], saved["num_classes"], cifar_stem=saved["cifar_stem"])
        model.load_state_dict(saved["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise UnitgradError(
            f"{model_pt} is not a unitgrad model file ({exc.__class__.__name__}): rerun `unitgrad train`"
        ) from exc
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return model.to(device, memory_format=memory_format).eval(), saved


def _predict(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    dataset: str,
    batch_size: int,
    amp: str,
    channels_last: bool,
) -> torch.Tensor:
    """float32 logits (on the CPU) of `model` for uint8 NHWC `images`, normalised as in training."""
    device = next(model.parameters()).device
    loader = DeviceLoader(
        images,
        labels,
        batch_size,
        device,
        CIFAR_MEAN[dataset],
        CIFAR_STD[dataset],
        train=False,
        drop_last=False,
        channels_last=channels_last,
    )
    with torch.inference_mode(), autocast(device, amp)():
        logits = torch.cat([model(x).float() for x, _ in loader])
    return logits.cpu()


def reads(study: str) -> tuple[str, ...]:
    """The params keys `unitgrad evaluate` reads for a run of `study`."""
    return ("evaluate", "train.device", "train.amp", "train.channels_last", f"studies.{study}.corruptions")


def _settings(params: Params, study: str) -> dict[str, Any]:
    """The settings `evaluate_run` takes from params for a run of `study`."""
    return {
        "batch_size": params.evaluate.batch_size,
        "ece_bins": params.evaluate.ece_bins,
        "corruptions": params.studies[study].corruptions,
        "train_pool": params.evaluate.train_pool,
        "device": params.train.device,
        "amp": params.train.amp,
        "channels_last": params.train.channels_last,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="unitgrad evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help=f"the run directory, results/runs/{RunId.LAYOUT}")
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    args = parser.parse_args(argv)
    study = RunId.from_path(args.run_dir).study
    params = load_params(args.params, reads(study))
    if study not in params.studies:
        raise UnitgradError(f"{args.params}: studies.{study}: no such study for {args.run_dir}: add it or fix the path")
    result = evaluate_run(args.run_dir, data_root=DATA_ROOT, **_settings(params, study))
    if _settings(load_params(args.params, reads(study)), study) != _settings(params, study):
        raise UnitgradError(
            f"{args.params} changed while {args.run_dir} was evaluated: its eval.json holds the old settings, so the "
            "command fails and DVC does not record it; rerun it"
        )
    mca = "" if result["mca"] is None else f", mCA {result['mca']:.4f}"
    print(f"{args.run_dir}: clean acc {result['clean']['acc']:.4f}, ECE {result['clean']['ece']:.4f}{mca}")
    return 0
