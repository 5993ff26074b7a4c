"""Projected GPU-hours of every paper-scale training run, per study, from the step times in results/bench/gpu.json.

    python bench/paper_hours.py [--gpu results/bench/gpu.json] [--params params.paper.yaml]
                                [--with STUDY:MODEL ...] [--out results/bench/paper_hours.md]

A run costs epochs × (training images // batch) steps × its step time (the loader drops the last partial
batch). Step times come from the measured rows (model, batch, method): sgd_2x and ugd take SGD's time (one
pass; UGD adds a norm), asam takes SAM's (the same two passes; its |w| scaling was not timed). Between two
measured batches the time is interpolated linearly; beyond the largest it grows in proportion to the batch;
below the smallest it stays at that batch's time (an upper bound: small models are bound by kernel launches,
not by images). A model without measured times takes a measured reference model's times scaled by the
ratio of their aten op counts in one forward + backward (`PROXIES`): the measured models are launch-bound in
eager mode (ResNet-32's 0.14 GFLOPs step 1.9x slower than ResNet-18's 1.1 GFLOPs), so op counts, not FLOPs,
predict them. Not counted: per-epoch test evaluation, corruption evaluation, torch.compile (the times are
eager), and m-sharpness (m < batch runs batch/m chunked passes, not timed on a GPU: its whole-batch time
is used, a lower bound).
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unitgrad.config import load_params, parse_params
from unitgrad.run_config import RunConfig
from unitgrad.schema import Params
from unitgrad.studies import selected_runs

ROOT = Path(__file__).resolve().parents[1]

CLASSES = {"cifar10": 10, "cifar100": 100}
FULL_TRAIN = 50_000  # CIFAR-10/100 training images
TIMED_AS = {"sgd": "sgd", "ugd": "sgd", "sam": "sam", "asam": "sam", "pugd": "pugd"}
# unmeasured model -> measured model of the same kind (depth-dominated, few FLOPs) whose times it scales
PROXIES = {
    "cifar_resnet20": "cifar_resnet32",
    "cifar_resnet56": "cifar_resnet32",
    "cifar_wrn28_2": "cifar_resnet32",  # 0.43 GFLOPs: launch-bound like ResNet-32, not compute-bound like WRN-28-10
    "cifar_wrn16_8": "cifar_resnet32",
    "cifar_upanets16": "cifar_resnet32",
    "cifar_pyramidnet272_a200": "cifar_pyramidnet110_a270",
}


@dataclass(frozen=True)
class StudyHours:
    study: str
    runs: int
    epochs: tuple[int, ...]
    hours: float
    by_model: dict[str, float]


@functools.cache
def count_ops(model_name: str) -> int:
    """aten ops dispatched by one forward + backward of `model_name` (train mode, batch 2, CPU)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from unitgrad.models import create_model

    class Count(TorchDispatchMode):
        ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops += 1
            return func(*args, **(kwargs or {}))

    model = create_model(model_name, num_classes=10).train()
    with Count() as counter:
        torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])).backward()
    return counter.ops


class StepTimes:
    """Seconds per training step of (model, method, batch), measured or derived as the module docstring says."""

    def __init__(self, rows: list[dict], ops: Callable[[str], int] = count_ops):
        self.measured: dict[tuple[str, str], dict[int, float]] = {}
        for row in rows:
            self.measured.setdefault((row["model"], row["method"]), {})[row["batch"]] = row["step_s"]
        self.ops = ops
        self.used: dict[tuple[str, str, int], tuple[float, str]] = {}  # what each projection used, for the table

    def __call__(self, model: str, optimizer_method: str, batch: int) -> float:
        method = TIMED_AS[optimizer_method]
        key = (model, method, batch)
        if key not in self.used:
            if (model, method) in self.measured:
                self.used[key] = _at_batch(self.measured[(model, method)], batch)
            elif model in PROXIES and (PROXIES[model], method) in self.measured:
                reference = PROXIES[model]
                factor = self.ops(model) / self.ops(reference)
                seconds, how = _at_batch(self.measured[(reference, method)], batch)
                self.used[key] = (seconds * factor, f"proxy: {reference} ({how}) × {factor:.2f} (aten ops)")
            else:
                raise SystemExit(
                    f"no step time for {model} / {method}: measure it (bash bench/gpu_check.sh) "
                    f"or add a proxy to PROXIES in bench/paper_hours.py"
                )
        return self.used[key][0]


def _at_batch(times: dict[int, float], batch: int) -> tuple[float, str]:
    """(seconds, how) at `batch` from the times measured at other batches."""
    if batch in times:
        return times[batch], "measured"
    below, above = [b for b in times if b < batch], [b for b in times if b > batch]
    if below and above:
        lo, hi = max(below), min(above)
        return times[lo] + (times[hi] - times[lo]) * (batch - lo) / (hi - lo), f"interpolated: batch {lo} and {hi}"
    if below:
        return times[max(below)] * batch / max(below), f"batch {max(below)} × {batch}/{max(below)}"
    return times[min(above)], f"batch {min(above)}, kept for a smaller one"


def project(params: Params, step_time: StepTimes, source: str = "params.paper.yaml") -> list[StudyHours]:
    """GPU-hours of each study's selected runs, in params order."""
    result = []
    for name in params.studies:
        by_model: dict[str, float] = {}
        runs = selected_runs(params, name)
        epochs = set()
        for run in runs:
            cfg = RunConfig.for_run(params, run, source)
            images = cfg.loader.train_per_class * CLASSES[cfg.dataset] if cfg.loader.train_per_class else FULL_TRAIN
            seconds = (
                cfg.epochs * (images // cfg.train.batch_size) * step_time(cfg.model, cfg.method, cfg.train.batch_size)
            )
            by_model[cfg.model] = by_model.get(cfg.model, 0.0) + seconds / 3600
            epochs.add(cfg.epochs)
        result.append(StudyHours(name, len(runs), tuple(sorted(epochs)), sum(by_model.values()), by_model))
    return result


def with_model(params: Params, addition: str, source: str) -> tuple[str, str, Params]:
    """(study, model, `params` with MODEL added to STUDY's models) for `addition` = "STUDY:MODEL"."""
    study, _, model = addition.partition(":")
    data = params.model_dump()
    if study not in data["studies"] or not model:
        raise SystemExit(f"--with {addition}: expected STUDY:MODEL with a study of {source}")
    data["studies"][study]["models"].append(model)
    return study, model, parse_params(data, source)


def render(studies: list[StudyHours], extra: list[StudyHours], step_time: StepTimes, device: dict, source: str) -> str:
    lines = [
        f"# Projected training time of the paper scale on one {device.get('name', 'GPU')}",
        "",
        f"From `{source}` and the step times of results/bench/gpu.json ({device.get('name')}, "
        f"{device.get('date', '')[:10]}, eager, bf16, channels_last). Regenerate: `python bench/paper_hours.py"
        f"{''.join(f' --with {e.study}' for e in extra)}`. How a step time is found and what is not counted: "
        "the docstring of bench/paper_hours.py.",
        "",
        "| study | training runs | epochs | projected GPU-hours | by model |",
        "|---|---:|---|---:|---|",
    ]
    for row in studies:
        lines.append(_row(row))
    lines.append(f"| **all** | **{sum(r.runs for r in studies)}** | | **{sum(r.hours for r in studies):,.0f}** | |")
    if extra:
        lines += [
            "",
            "Not selected (add the model to the study's `models` to run it):",
            "",
            "| study + model | more training runs | epochs | more GPU-hours | by model |",
            "|---|---:|---|---:|---|",
        ]
        lines += [_row(row) for row in extra]
    lines += [
        "",
        "Step times used (ms per step; asam timed as sam, sgd_2x and ugd as sgd):",
        "",
        "| model | batch | method | ms | from |",
        "|---|---:|---|---:|---|",
    ]
    for (model, method, batch), (seconds, how) in sorted(step_time.used.items()):
        lines.append(f"| {model} | {batch} | {method} | {seconds * 1e3:.1f} | {how} |")
    lines += [
        "",
        "Not counted: per-epoch test evaluation (eval_every 1, full test set), the corruption "
        "evaluation, torch.compile (params.paper.yaml compiles; the times are eager, so likely high for "
        "the launch-bound models), and m-sharpness: sam_table1's SAM runs split each batch of 256 into 8 "
        "chunks of 32, whose cost on a GPU was not measured; their whole-batch time is used (a lower "
        'bound). The proxies ("proxy:") are estimates, not measurements; cifar_upanets16 was never timed.',
    ]
    return "\n".join(lines) + "\n"


def _row(row: StudyHours) -> str:
    models = "; ".join(f"{m} {h:,.1f}" for m, h in row.by_model.items())
    epochs = "/".join(map(str, row.epochs))
    return f"| {row.study} | {row.runs} | {epochs} | {row.hours:,.1f} | {models} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", type=Path, default=ROOT / "results/bench/gpu.json")
    parser.add_argument("--params", type=Path, default=ROOT / "params.paper.yaml")
    parser.add_argument(
        "--with",
        dest="additions",
        action="append",
        default=[],
        metavar="STUDY:MODEL",
        help="also project MODEL in STUDY (listed apart as not selected)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results/bench/paper_hours.md")
    args = parser.parse_args(argv)
    measured = json.loads(args.gpu.read_text())
    source = args.params.name
    params = load_params(args.params)
    step_time = StepTimes(measured["rows"])
    studies = project(params, step_time, source)
    extra = []
    for addition in args.additions:  # the added model's runs: its share of the enlarged study
        study, model, enlarged = with_model(params, addition, source)
        row = next(r for r in project(enlarged, step_time, source) if r.study == study)
        base = next(r for r in studies if r.study == study)
        extra.append(
            StudyHours(addition, row.runs - base.runs, row.epochs, row.by_model[model], {model: row.by_model[model]})
        )
    text = render(studies, extra, step_time, measured.get("device", {}), source)
    args.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
