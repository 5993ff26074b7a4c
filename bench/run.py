"""Speed benchmarks of unitgrad: optimizer work vs a per-parameter loop, two-pass / SGD step time, the
m-sharpness step (chunks of m images) vs the whole-batch step, the on-device loader vs torchvision's
DataLoader, and (full mode, or `--grid`) the default `dvc repro` per stage and `unitgrad grid run` against it.

    python bench/run.py [--quick] [--device cpu|cuda] [--out results/bench] [--threads 1] [--clock cpu|wall]

Writes <out>/<device>.md (tables + machine) and <out>/summary.json. Every time is the minimum over
several repeats (other processes only ever add time) and the implementations compared are
interleaved, repeat by repeat, so every ratio comes from one run under the same load. `--quick`
skips the pipeline and takes about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # measure this checkout's unitgrad, whatever is installed

import numpy as np
import torch
from grid_bench import bench_grid, render_pipeline
from grid_bench import render as render_grid
from harness import (
    CLOCKS,
    TWO_PASS_METHODS,
    OptimizerWork,
    base_step_seconds,
    check_loop_reference,
    format_reference_check,
    keep_freed_memory,
    make_optimizer,
    synchronize,
)
from PIL import Image
from torchvision import transforms

from unitgrad import markdown
from unitgrad.data import CIFAR_MEAN, CIFAR_STD, DeviceLoader
from unitgrad.errors import UnitgradError
from unitgrad.io import write_json, write_text
from unitgrad.models import create_model
from unitgrad.optim import train_step
from unitgrad.provenance import cpu_model

IMPLEMENTATIONS = ("unitgrad", "loop", "lean_loop")
OPTIMIZER_TARGET = 2.0  # issue 6: optimizer work >= 2x faster than the loop (ResNet-18, PUGD), CPU
LOADER_TARGET = 10.0  # issue 6: on-device loader >= 10x torchvision DataLoader, CPU


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of one benchmark run; `QUICK` and `FULL` are the two the CLI offers."""

    optimizer_models: tuple[str, ...]
    optimizer_repeats: int
    step_model: str
    step_batch: int
    step_repeats: int
    loader_images: int
    loader_batch: int
    loader_workers: int
    loader_repeats: int
    pipeline: bool
    clock: str = "cpu"  # "cpu" (process CPU time) or "wall"; the loader and pipeline are always wall time
    sharpness_m: int = 32  # m-sharpness chunk (SAM's CIFAR protocol), capped at half the step batch


QUICK = Config(("cifar_resnet18", "cifar_wrn28_10"), 10, "cifar_resnet8", 128, 20, 10_000, 128, 2, 5, False)
FULL = Config(("cifar_resnet18", "cifar_wrn28_10"), 25, "cifar_resnet8", 128, 40, 50_000, 128, 2, 5, True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, no pipeline (about a minute)")
    parser.add_argument(
        "--grid",
        action="store_true",
        help="only grid_speedup_vs_serial (with --quick: on 4 runs, a check of the path, not judged)",
    )
    parser.add_argument(
        "--keep", type=Path, help="with --grid: make the serial/ and grid/ clones under this directory and keep them"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a shared machine a descheduled second "
        "thread stalls every op, which swamps the differences measured here)",
    )
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        help="what the optimizer and step benchmarks time: this process's CPU time (default on cpu: time spent "
        "waiting for a core on a shared machine is left out) or wall time (always on cuda)",
    )
    return parser.parse_args(argv)


def machine_info(device: torch.device) -> dict:
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": _git("rev-parse", "HEAD"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _git(*args: str, repo: Path = REPO) -> str | None:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def parameter_shapes(model_name: str) -> list[torch.Size]:
    return [p.shape for p in create_model(model_name, num_classes=10).parameters()]


def optimizer_work_times(
    shapes: list[torch.Size], method: str, repeats: int, device: str, clock: str, threads: int
) -> dict:
    """(first_step, second_step) seconds of every implementation, interleaved so all see the same load, and the
    allocator setting they ran with.

    Meant for a fresh process with freed memory kept (`keep_freed_memory`): a loop that allocates its
    temporaries otherwise runs at the mercy of the heap that earlier measurements left behind (the same
    reference-code loop took 30-50 ms here depending on what ran before it in the process).
    """
    torch.set_num_threads(threads)
    allocator = keep_freed_memory()
    works = {
        impl: OptimizerWork(impl, method, shapes, device, torch.float32, CLOCKS[clock]) for impl in IMPLEMENTATIONS
    }
    times = {impl: [] for impl in works}
    for repeat in range(repeats + 1):  # the first step allocates state: warm-up
        for impl, work in works.items():
            first_and_second = work.step_seconds()
            if repeat:
                times[impl].append(first_and_second)
    return {"allocator": allocator, "times": times}


def work_summary(times: dict[str, list[tuple[float, float]]]) -> dict:
    """Each implementation's best step (the minimum over repeats of first + second) and the ratios of those."""
    best = {impl: min(map(sum, t)) for impl, t in times.items()}
    return {
        "speedup": best["loop"] / best["unitgrad"],
        "speedup_vs_lean_loop": best["lean_loop"] / best["unitgrad"],
        "unitgrad_s": best["unitgrad"],
        "loop_s": best["loop"],
        "lean_loop_s": best["lean_loop"],
        # where the time goes: the best first_step and second_step (perturb | restore + step)
        "first_second_s": {impl: [min(f for f, _ in t), min(s for _, s in t)] for impl, t in times.items()},
        "raw_first_second_s": times,
    }


def bench_optimizer_work(cfg: Config, device: torch.device) -> dict:
    """Seconds of optimizer work per step, unitgrad vs both loop baselines, each model and method in a fresh process."""
    spawn = multiprocessing.get_context("spawn")
    by_model = {}
    for model_name in cfg.optimizer_models:
        shapes = parameter_shapes(model_name)
        by_model[model_name] = {"parameters": sum(s.numel() for s in shapes)}
        for method in TWO_PASS_METHODS:
            with spawn.Pool(1) as pool:
                args = (shapes, method, cfg.optimizer_repeats, str(device), cfg.clock, torch.get_num_threads())
                measured = pool.apply(optimizer_work_times, args)
            allocator = measured["allocator"]
            by_model[model_name][method] = work_summary(measured["times"])
        # the base step by implementation: the loop reference's (torch's default loop on CPU) vs fused (unitgrad's)
        steps = cfg.optimizer_repeats + 1
        base = {
            variant: min(base_step_seconds(shapes, device, torch.float32, variant, steps, CLOCKS[cfg.clock])[1:])
            for variant in ("loop", "foreach", "fused")
        }
        by_model[model_name]["sgd_base_step_s"] = base
    headline = by_model.get("cifar_resnet18", {}).get("pugd", {})
    return {
        "allocator": allocator,
        "headline_pugd_cifar_resnet18": headline.get("speedup"),
        "headline_pugd_cifar_resnet18_vs_lean_loop": headline.get("speedup_vs_lean_loop"),
        "target": OPTIMIZER_TARGET,
        "meets_target": None if not headline else headline["speedup"] >= OPTIMIZER_TARGET,
        "by_model": by_model,
    }


def bench_msharpness(cfg: Config, device: torch.device) -> dict:
    """Training step of each two-pass method with chunks of m images (m-sharpness) over the whole-batch step."""
    from unitgrad.models import create_model

    m = min(cfg.sharpness_m, cfg.step_batch // 2)
    torch.manual_seed(0)
    base_model = create_model(cfg.step_model, num_classes=10).to(device)
    x = torch.randn(cfg.step_batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (cfg.step_batch,), device=device)
    runs = {}
    for method in TWO_PASS_METHODS:
        for chunk in (None, m):
            model = copy.deepcopy(base_model)
            runs[(method, chunk)] = (model, make_optimizer("unitgrad", method, list(model.parameters())))
    clock = CLOCKS[cfg.clock]
    times = {key: [] for key in runs}
    for repeat in range(max(1, cfg.step_repeats // 4) + 1):  # 6 runs of two passes each: fewer repeats
        for (method, chunk), (model, opt) in runs.items():
            synchronize(device)
            start = clock()
            train_step(opt, model, torch.nn.functional.cross_entropy, x, y, m=chunk)
            synchronize(device)
            if repeat:
                times[(method, chunk)].append(clock() - start)
    raw = {f"{method}_{'whole' if chunk is None else f'm{chunk}'}": t for (method, chunk), t in times.items()}
    result = {"model": cfg.step_model, "batch": cfg.step_batch, "m": m, "raw_s": raw}
    for method in TWO_PASS_METHODS:
        whole, chunked = min(times[(method, None)]), min(times[(method, m)])
        result[method] = {"whole_batch_s": whole, "chunked_s": chunked, "ratio": chunked / whole}
    return result


def bench_step_ratio(cfg: Config, device: torch.device) -> dict:
    """Full training step (forward, backward, optimizer) of each two-pass method over SGD's."""
    torch.manual_seed(0)
    base_model = create_model(cfg.step_model, num_classes=10).to(device)
    x = torch.randn(cfg.step_batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (cfg.step_batch,), device=device)
    runs = {}
    for method in ("sgd", *TWO_PASS_METHODS):
        model = copy.deepcopy(base_model)
        runs[method] = (model, make_optimizer("unitgrad", method, list(model.parameters())))
    clock = CLOCKS[cfg.clock]
    times = {method: [] for method in runs}
    for repeat in range(cfg.step_repeats + 1):
        for method, (model, opt) in runs.items():
            synchronize(device)
            start = clock()
            train_step(opt, model, torch.nn.functional.cross_entropy, x, y)
            synchronize(device)
            if repeat:
                times[method].append(clock() - start)
    sgd_s = min(times["sgd"])
    result = {"model": cfg.step_model, "batch": cfg.step_batch, "sgd_s": sgd_s, "raw_s": times}
    for method in TWO_PASS_METHODS:
        result[method] = {"ratio": min(times[method]) / sgd_s, "step_s": min(times[method])}
    return result


class _PILDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def bench_loader(cfg: Config, device: torch.device) -> dict:
    """Training-mode images/s (crop 4 + flip + normalise) on synthetic uint8 CIFAR-shaped data."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (cfg.loader_images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, cfg.loader_images).astype(np.int64)

    mean, std = CIFAR_MEAN["cifar10"], CIFAR_STD["cifar10"]
    device_loader = DeviceLoader(
        images, labels, cfg.loader_batch, device, mean, std, train=True, seed=0, crop_padding=4, flip=True
    )
    pil_transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    torch_loader = torch.utils.data.DataLoader(
        _PILDataset(images, labels, pil_transform),
        batch_size=cfg.loader_batch,
        shuffle=True,
        num_workers=cfg.loader_workers,
        drop_last=True,
        persistent_workers=cfg.loader_workers > 0,
    )

    def epoch_seconds(loader, epoch: int) -> tuple[float, int]:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        seen = 0
        synchronize(device)
        start = time.perf_counter()
        for xb, yb in loader:
            xb = xb.to(device, non_blocking=True)  # a no-op for DeviceLoader: its batches are there
            seen += len(yb)
        synchronize(device)
        return time.perf_counter() - start, seen

    times = {"device_loader": [], "torch_dataloader": []}
    seen = {}
    for epoch in range(cfg.loader_repeats + 1):  # epoch 0 starts the workers and warms caches
        for name, loader in (("device_loader", device_loader), ("torch_dataloader", torch_loader)):
            seconds, seen[name] = epoch_seconds(loader, epoch)
            if epoch:
                times[name].append(seconds)
    del torch_loader
    rate = {name: seen[name] / min(t) for name, t in times.items()}
    speedup = rate["device_loader"] / rate["torch_dataloader"]
    return {
        "speedup": speedup,
        "target": LOADER_TARGET,
        "meets_target": speedup >= LOADER_TARGET,
        "device_loader_images_per_s": rate["device_loader"],
        "torch_dataloader_images_per_s": rate["torch_dataloader"],
        "images_per_epoch": seen,
        "batch": cfg.loader_batch,
        "workers": cfg.loader_workers,
        "raw_epoch_s": times,
    }


def render_markdown(summary: dict) -> str:
    m, c = summary["machine"], summary["config"]
    lines = [
        f"# unitgrad speed on {m['device']} ({summary['mode']} run)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads)"
        + (f", GPU {m['gpu']}" if "gpu" in m else "")
        + f"; torch {m['torch']}, Python {m['python']}; {m['date']}; load average at start "
        f"{m['load_average_at_start']}, at end {m['load_average_at_end']}; commit {m['git_commit'] or 'uncommitted'}.",
        (
            "Optimizer and training-step times are this process's CPU time (`time.process_time`): on the shared "
            "machine it leaves out time spent waiting for a core, and at one thread it is the wall time of an idle "
            "machine. The loader and pipeline figures are wall time."
            if c["clock"] == "cpu"
            else "All times are wall time (`time.perf_counter`, after a device synchronise)."
        ),
        f"Every time is the minimum over repeats ({c['optimizer_repeats']} optimizer steps, {c['step_repeats']} "
        f"training steps, {c['loader_repeats']} loader epochs, each after a warm-up); every ratio is within this run. "
        "Regenerate: `python bench/run.py" + (" --quick" if summary["mode"] == "quick" else "") + "`.",
        "",
        "## Optimizer work per step vs a per-parameter loop",
        "",
        (
            "Perturb + restore + normalise + SGD base step (momentum 0.9, weight decay 5e-4), gradients "
            "pre-filled, float32. Baselines `unitgrad.optim.reference` (loop) and `bench/lean_loop.py`, both "
            "checked to agree with `unitgrad.optim` to ≤ 1e-10 in float64 before timing (max |Δw| "
            + format_reference_check(summary["loop_reference_check"])
            + "): **loop** is written like the papers' reference code (a fresh tensor for each parameter's e, "
            "w restored by subtracting it); **lean loop** is the same loop with buffers allocated once and "
            "every op in place. Both end with torch's per-parameter SGD. Each model and method is timed in a "
            f"fresh process (allocator: {summary['optimizer_speedup_vs_loop']['allocator']}), to spare the loop's "
            "allocations page faults; its time still moves between runs more than unitgrad's."
        ),
        "",
    ]
    opt = summary["optimizer_speedup_vs_loop"]
    rows = []
    for model_name, by_method in opt["by_model"].items():
        for method in TWO_PASS_METHODS:
            r = by_method[method]
            split = {
                impl: " / ".join(f"{t * 1e3:.1f}" for t in r["first_second_s"][impl]) for impl in ("unitgrad", "loop")
            }
            rows.append(
                [
                    model_name,
                    f"{by_method['parameters'] / 1e6:.1f} M",
                    method,
                    f"{r['unitgrad_s'] * 1e3:.1f}",
                    split["unitgrad"],
                    f"{r['loop_s'] * 1e3:.1f}",
                    split["loop"],
                    f"{r['speedup']:.2f}×",
                    f"{r['lean_loop_s'] * 1e3:.1f}",
                    f"{r['speedup_vs_lean_loop']:.2f}×",
                ]
            )
    header = [
        "model",
        "params",
        "method",
        "unitgrad ms",
        "first / second",
        "loop ms",
        "first / second",
        "× loop",
        "lean loop ms",
        "× lean loop",
    ]
    lines += markdown.table(header, rows, align="lrlrrrrrrr")
    lines += [
        "",
        (
            "first = `first_step` (perturb), second = `second_step` (restore, normalise, base step); each "
            "column is its own minimum."
        ),
        "",
        "torch.optim.SGD base step alone, by implementation (the loop reference ends with torch's default, a "
        "per-parameter loop on CPU; unitgrad's create_optimizer picks the fused kernel): "
        + "; ".join(
            f"{name}: loop {b['loop'] * 1e3:.1f} ms, foreach {b['foreach'] * 1e3:.1f} ms, "
            f"fused {b['fused'] * 1e3:.1f} ms"
            for name, rows in opt["by_model"].items()
            for b in [rows["sgd_base_step_s"]]
        ),
        "",
        (
            f"Headline (PUGD, cifar_resnet18): **{_fmt(opt['headline_pugd_cifar_resnet18'])}×** the loop "
            f"(target ≥ {opt['target']:g}×: {_verdict(opt['meets_target'])}); "
            f"{_fmt(opt['headline_pugd_cifar_resnet18_vs_lean_loop'])}× the lean loop: against it unitgrad "
            "gains only fewer passes over memory (fused SGD step, no extra copies), since on a CPU this "
            "work is bound by memory bandwidth."
        ),
        "",
    ]

    step = summary["two_pass_over_sgd"]
    lines += [
        f"## Full step time, two-pass / SGD ({step['model']}, batch {step['batch']}, random data)",
        "",
        "Forward + backward + optimizer; the second pass leaves BatchNorm statistics untouched as training does.",
        "",
        *markdown.table(
            ["method", "step ms", "/ SGD"],
            [["sgd", f"{step['sgd_s'] * 1e3:.1f}", "1.00"]]
            + [[m_, f"{step[m_]['step_s'] * 1e3:.1f}", f"{step[m_]['ratio']:.2f}"] for m_ in TWO_PASS_METHODS],
            align="lrr",
        ),
    ]

    ms = summary["msharpness"]
    lines += [
        "",
        f"## m-sharpness: chunks of m = {ms['m']} vs the whole batch ({ms['model']}, batch {ms['batch']})",
        "",
        (
            "`unitgrad.optim.train_step`: each chunk perturbs with its own gradient (SAM's per-accelerator "
            "protocol on one device). Same images per step, in batch/m smaller forward/backward pairs plus the "
            "perturb/restore per chunk; whether that is slower (small kernels) or faster (cache) is measured here."
        ),
        "",
        "| method | whole batch ms | m-chunked ms | chunked / whole |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {m_} | {ms[m_]['whole_batch_s'] * 1e3:.1f} | {ms[m_]['chunked_s'] * 1e3:.1f} | {ms[m_]['ratio']:.2f} |"
        for m_ in TWO_PASS_METHODS
    ]

    ld = summary["loader_speedup_vs_dataloader"]
    lines += [
        "",
        "## Loader, training mode (random crop pad 4, flip, normalise)",
        "",
        (
            f"Synthetic uint8 CIFAR-shaped images, batch {ld['batch']}. DeviceLoader runs in the main process "
            f"with {m['torch_threads']} torch thread(s) (`--threads`); torchvision: `DataLoader` with {ld['workers']} "
            "worker processes (persistent) + PIL transforms. One DeviceLoader thread against two workers is the "
            "conservative match; under load from other processes the workers also take a larger share of the cores."
        ),
        "",
        *markdown.table(
            ["loader", "images/s"],
            [
                ["unitgrad.data.DeviceLoader", f"{ld['device_loader_images_per_s']:,.0f}"],
                ["torchvision DataLoader", f"{ld['torch_dataloader_images_per_s']:,.0f}"],
            ],
            align="lr",
        ),
        "",
        f"Speedup **{ld['speedup']:.1f}×** (target ≥ {ld['target']:g}×: {_verdict(ld['meets_target'])}).",
    ]
    if "grid_speedup_vs_serial" in summary:
        lines += render_grid(summary["grid_speedup_vs_serial"])
        lines += render_pipeline(summary["grid_speedup_vs_serial"]["pipeline"])
    return "\n".join(lines) + "\n"


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _verdict(met) -> str:
    return "not measured" if met is None else ("met" if met else "NOT met")


def run(cfg: Config, device: torch.device, out: Path, mode: str) -> dict:
    """Run every benchmark of `cfg`, write <out>/<device>.md and <out>/summary.json, return the summary."""
    summary = {"mode": mode, "machine": machine_info(device), "config": dataclasses.asdict(cfg)}
    summary["loop_reference_check"] = check_loop_reference(device)
    summary["optimizer_speedup_vs_loop"] = bench_optimizer_work(cfg, device)
    summary["two_pass_over_sgd"] = bench_step_ratio(cfg, device)
    summary["msharpness"] = bench_msharpness(cfg, device)
    summary["loader_speedup_vs_dataloader"] = bench_loader(cfg, device)
    if cfg.pipeline:  # the default `dvc repro` per stage, then the grid's training and evaluation against it
        summary["grid_speedup_vs_serial"] = bench_grid(REPO, quick=False)
    summary["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json(out / "summary.json", summary)
    write_text(out / f"{device.type}.md", render_markdown(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is visible: use --device cpu", file=sys.stderr)
        return 2
    if args.threads < 1:
        print("error: --threads must be >= 1", file=sys.stderr)
        return 2
    if args.device == "cuda" and args.clock == "cpu":
        print("error: --clock cpu cannot time GPU work: use --clock wall with --device cuda", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = args.clock or ("cpu" if device.type == "cpu" else "wall")
    cfg = dataclasses.replace(QUICK if args.quick else FULL, clock=clock)
    try:
        if args.grid:
            return _grid_only(args)
        run(cfg, device, args.out, "quick" if args.quick else "full")
    except UnitgradError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((args.out / f"{device.type}.md").read_text())
    return 0


def _grid_only(args: argparse.Namespace) -> int:
    """`--grid`: only grid_speedup_vs_serial, written to <out>/grid.md and grid.json."""
    result = bench_grid(REPO, quick=args.quick, keep=args.keep)
    lines = render_grid(result)[1:] + (render_pipeline(result["pipeline"]) if result["pipeline"] else [])
    write_json(args.out / "grid.json", result)
    write_text(args.out / "grid.md", "\n".join(lines) + "\n")
    print((args.out / "grid.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
