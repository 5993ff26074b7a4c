"""GPU speed check: step time, images/s, two-pass / SGD, optimizer-work share, peak memory and
host-device sync freedom of SGD, SAM and PUGD on cifar_resnet18 and cifar_wrn28_10 (bf16 autocast,
channels_last, batch 128 and 512), then one short training epoch on synthetic data.

    bash bench/gpu_check.sh [--device cuda|cpu]       # the wrapper sets PYTHONPATH and $OUT

Writes <out>/gpu.md and <out>/gpu.json after every measurement, so a run cut short by its time
budget still leaves what it measured. `--device cpu` is a dry run of the same code at tiny sizes.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import math
import platform
import sys
import time
import traceback
from pathlib import Path

import torch
from harness import (
    OptimizerWork,
    check_loop_reference,
    format_reference_check,
    make_optimizer,
    synchronize,
)

from unitgrad.optim import train_step

METHODS = ("sgd", "sam", "pugd")
# issue 6's GPU targets: the first two for WRN-28-10, the loop speed-up and sync freedom for every row
TARGET_MODEL = "cifar_wrn28_10"
TARGET_TWO_PASS_OVER_SGD = 2.05
TARGET_OPTIMIZER_SHARE = 0.025
TARGET_SPEEDUP_VS_LOOP = 3.0


@dataclasses.dataclass(frozen=True)
class Sizes:
    models: tuple[str, ...]
    batches: tuple[int, ...]
    warmup: int
    steps: int
    repeats: int
    work_repeats: int
    epoch_model: str
    epoch_images: int
    epoch_batch: int
    fp16_steps: int
    # measured last, at the paper's batch size only, to complete the GPU-hours estimate
    estimate_models: tuple[str, ...]
    estimate_batch: int


GPU = Sizes(
    models=("cifar_resnet18", "cifar_wrn28_10"),
    batches=(128, 512),
    warmup=3,
    steps=10,
    repeats=5,
    work_repeats=5,
    epoch_model="cifar_resnet18",
    epoch_images=25_600,
    epoch_batch=512,
    fp16_steps=30,
    estimate_models=("cifar_pyramidnet110_a270", "cifar_resnet32"),
    estimate_batch=128,
)
CPU_DRY_RUN = dataclasses.replace(
    GPU,
    models=("cifar_resnet8",),
    batches=(8, 16),
    warmup=1,
    steps=2,
    repeats=2,
    work_repeats=2,
    epoch_model="cifar_resnet8",
    epoch_images=64,
    epoch_batch=16,
    fp16_steps=3,
    estimate_models=("cifar_resnet20",),
    estimate_batch=8,
)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--budget-s", type=float, default=260.0, help="stop starting new measurements after this many seconds"
    )
    return parser.parse_args(argv)


def make_step(method: str, model, device):
    """`step(x, y) -> loss`: one full training step of `method` under bf16 autocast."""
    opt = make_optimizer("unitgrad", method, list(model.parameters()))
    autocast = functools.partial(torch.autocast, device.type, dtype=torch.bfloat16)

    def step(x, y):
        return train_step(opt, model, torch.nn.functional.cross_entropy, x, y, autocast=autocast)[0]

    return step


def time_steps(step, device, steps: int) -> float:
    """Seconds per step over `steps` back-to-back steps (queue kept full)."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def check_no_sync(step, device) -> str:
    """ "ok" when a whole step runs under sync debug mode "error", else the first line of the error."""
    if device.type != "cuda":
        return "n/a (cpu)"
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
        verdict = "ok"
    except RuntimeError as exc:
        verdict = "SYNC: " + str(exc).splitlines()[0]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    synchronize(device)  # outside the check: waiting for the queued step is not a sync inside it
    return verdict


def measure_group(model_name: str, batch: int, sizes: Sizes, device) -> list[dict]:
    """One row per method for one model and batch size; the methods' repeats are interleaved, so every
    ratio between them comes from the same stretch of time (the host's speed drifts between minutes)."""
    from unitgrad.models import create_model

    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    steps, rows, shapes = {}, {}, None
    for method in METHODS:
        torch.manual_seed(0)
        before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        model = create_model(model_name, num_classes=10).to(device, memory_format=torch.channels_last)
        shapes = [p.shape for p in model.parameters()]
        steps[method] = functools.partial(make_step(method, model, device), x, y)
        for _ in range(sizes.warmup):
            steps[method]()
        rows[method] = {"model": model_name, "batch": batch, "method": method}
        if device.type == "cuda":  # this method's own footprint: model, optimizer state, activations
            rows[method]["peak_memory_gib"] = (torch.cuda.max_memory_allocated(device) - before) / 2**30
    best = dict.fromkeys(METHODS, math.inf)
    for _ in range(sizes.repeats):
        for method in METHODS:
            best[method] = min(best[method], time_steps(steps[method], device, sizes.steps))
    for method in METHODS:
        rows[method].update(step_s=best[method], images_per_s=batch / best[method])
        rows[method]["sync"] = check_no_sync(steps[method], device)
    del steps
    for method in METHODS:
        if method != "sgd":
            rows[method].update(optimizer_work(method, shapes, rows[method]["step_s"], sizes, device))
    return list(rows.values())


def optimizer_work(method: str, shapes, step_s: float, sizes: Sizes, device) -> dict:
    """unitgrad's first_step + second_step against both loop baselines, repeats interleaved; shares of `step_s`."""
    implementations = ("unitgrad", "loop", "lean_loop")
    benches = {impl: OptimizerWork(impl, method, shapes, device, torch.float32) for impl in implementations}
    times = {impl: [] for impl in implementations}
    for repeat in range(sizes.work_repeats + 1):  # the first step allocates state: warm-up
        for impl, bench in benches.items():
            seconds = sum(bench.step_seconds())
            if repeat:
                times[impl].append(seconds)
    work = {impl: min(t) for impl, t in times.items()}
    row = {
        "optimizer_work_s": work["unitgrad"],
        "optimizer_share": work["unitgrad"] / step_s,
        "loop_work_s": work["loop"],
        "optimizer_speedup_vs_loop": work["loop"] / work["unitgrad"],
        "lean_loop_work_s": work["lean_loop"],
        "optimizer_speedup_vs_lean_loop": work["lean_loop"] / work["unitgrad"],
    }
    if device.type == "cuda":
        device_times = [benches["unitgrad"].device_seconds() for _ in range(sizes.work_repeats)]
        device_work = min((sum(t) for t in device_times if t is not None), default=None)
        if device_work is not None:
            row.update(optimizer_device_s=device_work, optimizer_device_share=device_work / step_s)
    return row


def fp16_check(sizes: Sizes, device) -> dict:
    """PUGD and SAM under fp16 autocast with GradScaler: a fixed batch is fitted with finite losses, and an
    inf injected into either pass skips the whole step (weights unchanged, scale halved)."""
    from unitgrad.models import create_model
    from unitgrad.optim import create_optimizer

    x = torch.randn(sizes.epoch_batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (sizes.epoch_batch,), device=device)
    out = {}
    for method in ("pugd", "sam"):
        torch.manual_seed(0)
        model = create_model(sizes.epoch_model, num_classes=10).to(device, memory_format=torch.channels_last)
        opt = create_optimizer(method, list(model.parameters()), base="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4)
        scaler = torch.amp.GradScaler(device.type, init_scale=2.0**12)
        autocast = functools.partial(torch.autocast, device.type, dtype=torch.float16)

        def step(inject=None):
            passes = iter(("first", "second"))

            def loss_fn(logits, y):  # an infinite loss in the pass `inject` names: that pass overflows
                loss = torch.nn.functional.cross_entropy(logits, y)
                return loss * torch.inf if next(passes) == inject else loss

            loss = train_step(opt, model, loss_fn, x, y, autocast=autocast, scaler=scaler)[0]
            scaler.update()
            return loss

        losses = torch.stack([step() for _ in range(sizes.fp16_steps)]).float().cpu()
        skipped = {}
        for where in ("first", "second"):
            before = [p.detach().clone() for p in model.parameters()]
            scale = scaler.get_scale()
            step(inject=where)
            unchanged = all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
            skipped[where] = unchanged and scaler.get_scale() == scale / 2
        out[method] = {
            "first_loss": losses[0].item(),
            "last_loss": losses[-1].item(),
            "finite": bool(torch.isfinite(losses).all()),
            "overflow_skips_step": skipped,
        }
    return out


def training_epoch(sizes: Sizes, device) -> dict:
    """One epoch of PUGD on synthetic uint8 images through DeviceLoader: wall time and final loss."""
    import numpy as np

    from unitgrad.data import CIFAR_MEAN, CIFAR_STD, DeviceLoader
    from unitgrad.models import create_model

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (sizes.epoch_images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, sizes.epoch_images).astype(np.int64)
    loader = DeviceLoader(
        images,
        labels,
        sizes.epoch_batch,
        device,
        CIFAR_MEAN["cifar10"],
        CIFAR_STD["cifar10"],
        train=True,
        seed=0,
        crop_padding=4,
        flip=True,
        channels_last=True,
    )
    model = create_model(sizes.epoch_model, num_classes=10).to(device, memory_format=torch.channels_last)
    step = make_step("pugd", model, device)
    loader.set_epoch(0)
    xb, yb = next(iter(loader))
    step(xb, yb)  # warm-up (cudnn autotuning) outside the timed epoch
    loader.set_epoch(1)
    losses = []
    synchronize(device)
    start = time.perf_counter()
    for xb, yb in loader:
        losses.append(step(xb, yb).detach())
    synchronize(device)
    seconds = time.perf_counter() - start
    history = torch.stack(losses).float().cpu()
    images = len(losses) * sizes.epoch_batch
    return {
        "model": sizes.epoch_model,
        "optimizer": "pugd",
        "batch": sizes.epoch_batch,
        "images": images,
        "epoch_s": seconds,
        "images_per_s": images / seconds,
        "first_loss": history[0].item(),
        "last_loss": history[-1].item(),
        "finite": bool(torch.isfinite(history).all()),
    }


def device_info(device) -> dict:
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        info.update(
            name=torch.cuda.get_device_name(device), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version()
        )
    else:
        info["name"] = platform.processor() or "cpu"
    return info


def two_pass_ratios(rows: list[dict]) -> list[dict]:
    sgd = {(r["model"], r["batch"]): r["step_s"] for r in rows if r["method"] == "sgd"}
    return [
        {
            "model": r["model"],
            "batch": r["batch"],
            "method": r["method"],
            "ratio": r["step_s"] / sgd[(r["model"], r["batch"])],
        }
        for r in rows
        if r["method"] != "sgd" and (r["model"], r["batch"]) in sgd
    ]


def sizes_model(result: dict) -> str:
    sizes = result["sizes"]
    return f"{sizes['epoch_model']}, batch {sizes['epoch_batch']}, {sizes['fp16_steps']} steps"


def verdicts(result: dict) -> list[str]:
    """One line per target with the measured values and whether each meets it."""
    mark = lambda ok: "met" if ok else "NOT met"
    target_rows = [r for r in result["rows"] if r["model"] == TARGET_MODEL and "optimizer_work_s" in r]
    ratios = [r for r in result["two_pass_over_sgd"] if r["model"] == TARGET_MODEL]
    work_rows = [r for r in result["rows"] if "optimizer_work_s" in r]
    lines = []
    if ratios:
        lines.append(
            f"two-pass ≤ {TARGET_TWO_PASS_OVER_SGD}× SGD ({TARGET_MODEL}): "
            + ", ".join(
                f"{r['method']} b{r['batch']} {r['ratio']:.3f} {mark(r['ratio'] <= TARGET_TWO_PASS_OVER_SGD)}"
                for r in ratios
            )
        )
    shared = [r for r in target_rows if "optimizer_device_share" in r]
    if shared:
        lines.append(
            f"GPU-only optimizer work ≤ {TARGET_OPTIMIZER_SHARE:.1%} of the step ({TARGET_MODEL}): "
            + ", ".join(
                f"{r['method']} b{r['batch']} {r['optimizer_device_share']:.1%} "
                f"{mark(r['optimizer_device_share'] <= TARGET_OPTIMIZER_SHARE)}"
                for r in shared
            )
        )
    if work_rows:
        slowest = min(work_rows, key=lambda r: r["optimizer_speedup_vs_loop"])
        lines.append(
            f"optimizer work ≥ {TARGET_SPEEDUP_VS_LOOP:g}× faster than the loop, every row: lowest "
            f"{slowest['optimizer_speedup_vs_loop']:.1f}× ({slowest['model']} b{slowest['batch']} "
            f"{slowest['method']}) {mark(slowest['optimizer_speedup_vs_loop'] >= TARGET_SPEEDUP_VS_LOOP)}"
        )
    checked = [r for r in result["rows"] if not r["sync"].startswith("n/a")]
    synced = [f"{r['model']} b{r['batch']} {r['method']}" for r in checked if r["sync"] != "ok"]
    if checked:
        lines.append(
            f"no host-device sync inside a step ({len(checked)} rows): "
            + (mark(True) if not synced else f"NOT met: {', '.join(synced)}")
        )
    return lines


def render(result: dict) -> str:
    info = result["device"]
    lines = [
        f"# unitgrad GPU check: {info['name']}",
        "",
        f"{info['date']}; torch {info['torch']}"
        + (f", CUDA {info['cuda']}, cuDNN {info['cudnn']}" if "cuda" in info else "")
        + f"; sizes: {result['sizes']['name']}. bf16 autocast, channels_last, SGD base "
        "(momentum 0.9, wd 5e-4); times are the best of several repeats, the methods' repeats interleaved. "
        "Reproduce: `bash bench/gpu_check.sh`.",
        "",
        (
            "| model | batch | method | step ms | images/s | × SGD | opt work ms | share | GPU-only ms | share "
            "| loop work ms | vs loop | vs lean loop | peak GiB | sync |"
        ),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    ratio = {(r["model"], r["batch"], r["method"]): r["ratio"] for r in result["two_pass_over_sgd"]}
    for r in result["rows"]:
        key = (r["model"], r["batch"], r["method"])
        gpu_only = (
            f"{r['optimizer_device_s'] * 1e3:.2f} | {r['optimizer_device_share']:.1%}"
            if "optimizer_device_s" in r
            else "– | –"
        )
        work = (
            f"{r['optimizer_work_s'] * 1e3:.2f} | {r['optimizer_share']:.1%} | {gpu_only} | "
            f"{r['loop_work_s'] * 1e3:.2f} | {r['optimizer_speedup_vs_loop']:.1f}× | "
            f"{r['optimizer_speedup_vs_lean_loop']:.1f}×"
            if "optimizer_work_s" in r
            else "– | – | – | – | – | – | –"
        )
        peak = f"{r['peak_memory_gib']:.2f}" if "peak_memory_gib" in r else "–"
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['method']} | {r['step_s'] * 1e3:.1f} | "
            f"{r['images_per_s']:,.0f} | {ratio.get(key, 1.0):.3f} | {work} | {peak} | {r['sync']} |"
        )
    if "epoch" in result:
        e = result["epoch"]
        lines += [
            "",
            (
                f"One training epoch, {e['optimizer']} on {e['model']}, {e['images']} synthetic images "
                f"through DeviceLoader, batch {e['batch']}: {e['epoch_s']:.2f} s ({e['images_per_s']:,.0f} "
                f"images/s), loss {e['first_loss']:.3f} → {e['last_loss']:.3f}, finite: {e['finite']}."
            ),
        ]
    if "fp16" in result:
        lines += [
            "",
            f"fp16 autocast + GradScaler, {sizes_model(result)} on one fixed batch: "
            + "; ".join(
                f"{m} loss {r['first_loss']:.3f} → {r['last_loss']:.3f} (finite: {r['finite']}), an inf in the "
                f"first / second pass skips the step: {r['overflow_skips_step']['first']} / "
                f"{r['overflow_skips_step']['second']}"
                for m, r in result["fp16"].items()
            )
            + ".",
        ]
    if "loop_reference_check" in result:
        lines += [
            "",
            "Baselines (unitgrad.optim.reference, bench/lean_loop.py) against unitgrad.optim on this device, "
            "float64, max |Δw| after 3 steps: "
            + format_reference_check(result["loop_reference_check"])
            + ". Loop: written like the papers' reference code (a fresh e per parameter, w restored by subtracting "
            "it); lean loop: buffers allocated once, ops in place.",
        ]
    lines += [
        "",
        (
            "Optimizer work = first_step + second_step (perturb, restore, normalise, fused SGD step) with gradients "
            "pre-filled. *opt work*: wall time of the two calls alone, host Python and kernel launches included; "
            "*GPU-only*: the same kernels timed by CUDA events while a sleep kernel keeps the queue full, which is "
            "what they add to a step whose host runs ahead of the GPU. Shares are of this row's step time. The "
            "loops' times are wall times like *opt work*."
        ),
    ]
    lines += ["", "Targets (issue 6, GPU), this run:", ""] + [f"- {line}" for line in verdicts(result)]
    lines += ["", "Paper-scale GPU-hours per study from these step times: `python bench/paper_hours.py --gpu gpu.json`"]
    if result["errors"]:
        lines += ["", "## Errors", ""] + [f"- {e}" for e in result["errors"]]
    if result["skipped"]:
        lines += ["", "Skipped (time budget): " + ", ".join(result["skipped"])]
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path) -> None:
    """Both files, rewritten whole after each measurement (rename, so never half-written)."""
    out.mkdir(parents=True, exist_ok=True)
    result["two_pass_over_sgd"] = two_pass_ratios(result["rows"])
    for name, text in (("gpu.json", json.dumps(result, indent=2) + "\n"), ("gpu.md", render(result))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device visible: run on the lent GPU, or dry-run with --device cpu", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    sizes = GPU if device.type == "cuda" else CPU_DRY_RUN
    torch.backends.cudnn.benchmark = True
    deadline = time.monotonic() + args.budget_s
    result = {
        "device": device_info(device),
        "sizes": {"name": "gpu" if sizes is GPU else "cpu dry run", **dataclasses.asdict(sizes)},
        "rows": [],
        "errors": [],
        "skipped": [],
    }
    try:  # the update on this device must be the reference's, or its timings mean nothing
        result["loop_reference_check"] = check_loop_reference(device)
    except Exception as exc:
        result["errors"].append(f"loop reference check: {type(exc).__name__}: {exc}")
        traceback.print_exc()
    plan = [(m, b) for m in sizes.models for b in sizes.batches]
    plan += ["training epoch", "fp16 check"]
    plan += [(m, sizes.estimate_batch) for m in sizes.estimate_models]
    for item in plan:
        label = item if isinstance(item, str) else "{}/b{}".format(*item)
        if time.monotonic() > deadline:
            result["skipped"].append(label)
            continue
        try:
            if item == "training epoch":
                result["epoch"] = training_epoch(sizes, device)
            elif item == "fp16 check":
                result["fp16"] = fp16_check(sizes, device)
            else:
                result["rows"] += measure_group(*item, sizes, device)
        except Exception as exc:
            result["errors"].append(f"{label}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            traceback.print_exc()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        write(result, args.out)
        print(label, "done", flush=True)
    write(result, args.out)
    print((args.out / "gpu.md").read_text())
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
