"""`unitgrad evaluate RUN_DIR`: clean and corruption metrics of one trained run, into RUN_DIR/eval.json.

Clean test set: accuracy, loss (NLL), expected calibration error, per-class accuracy. With
corruptions: accuracy on every corruption × severity of data/<dataset>-c; mCA is their mean over the
15 standard corruptions (as in Hendrycks & Dietterich), mca_all over all 19.
"""

from __future__ import annotations

import argparse
import functools
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unitgrad import metrics
from unitgrad.config import DATA_ROOT, load_params
from unitgrad.data import CIFAR_MEAN, CIFAR_STD, CORRUPTIONS, DeviceLoader, load_cifar, load_corruptions
from unitgrad.data.corruptions import SEVERITIES, STANDARD
from unitgrad.device import autocast, resolve_device, uses_channels_last
from unitgrad.errors import UnitgradError
from unitgrad.io import write_json
from unitgrad.models import create_model
from unitgrad.runs import RunId

_RUN_KEYS = ("dataset", "model", "optimizer", "noise", "seed")


def evaluate_run(
    run_dir: str | Path,
    data_root: str | Path,
    batch_size: int,
    ece_bins: int,
    corruptions: bool,
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
    channels_last = uses_channels_last(torch_device, channels_last)
    model = _load_model(run_dir / "train" / "model.pt", torch_device, channels_last)
    dataset = run["dataset"]
    layout = {"dataset": dataset, "batch_size": batch_size, "amp": amp, "channels_last": channels_last}
    predict = functools.partial(_predict, model, **layout)
    _, _, test_x, test_y, classes = load_cifar(dataset, data_root)

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
    result = {
        "run": run,
        "clean": clean,
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


def _load_model(model_pt: Path, device: torch.device, channels_last: bool) -> torch.nn.Module:
    if not model_pt.is_file():
        raise UnitgradError(f"{model_pt} not found: train the run first (`unitgrad train` or `dvc repro`)")
    try:
        saved = torch.load(model_pt, map_location="cpu", weights_only=True)
        model = create_model(saved["model_name"], saved["num_classes"], cifar_stem=saved["cifar_stem"])
        model.load_state_dict(saved["model"])
    except (RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError) as exc:
        raise UnitgradError(
            f"{model_pt} is not a unitgrad model file ({exc.__class__.__name__}): rerun `unitgrad train`"
        ) from exc
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return model.to(device, memory_format=memory_format).eval()


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
    )  # fmt: skip - the normalisation and the layout read as one line each
    with torch.inference_mode(), autocast(device, amp)():
        logits = torch.cat([model(x).float() for x, _ in loader])
    return logits.cpu()


def reads(corruptions: bool) -> tuple[str, ...]:
    """The params keys `unitgrad evaluate` reads (without --no-corruptions: evaluate.corruptions too)."""
    keys = ("evaluate.batch_size", "evaluate.ece_bins", "train.device", "train.amp", "train.channels_last")
    return (*keys, "evaluate.corruptions") if corruptions else keys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="unitgrad evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help=f"the run directory, results/runs/{RunId.LAYOUT}")
    parser.add_argument(
        "--no-corruptions", action="store_true", help="skip the corruption set (overrides evaluate.corruptions)"
    )
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    args = parser.parse_args(argv)
    params = load_params(args.params, reads(corruptions=not args.no_corruptions))
    result = evaluate_run(
        args.run_dir,
        data_root=DATA_ROOT,
        batch_size=params.evaluate.batch_size,
        ece_bins=params.evaluate.ece_bins,
        corruptions=not args.no_corruptions and params.evaluate.corruptions,
        device=params.train.device,
        amp=params.train.amp,
        channels_last=params.train.channels_last,
    )
    mca = "" if result["mca"] is None else f", mCA {result['mca']:.4f}"
    print(f"{args.run_dir}: clean acc {result['clean']['acc']:.4f}, ECE {result['clean']['ece']:.4f}{mca}")
    return 0
