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
import json
import math
import platform
import sys
import time
import traceback
from pathlib import Path

import torch
from harness import OptimizerWork, make_optimizer, run_two_pass_step, synchronize

METHODS = ("sgd", "sam", "pugd")
PAPER_PARAMS = Path(__file__).resolve().parents[1] / "params.paper.yaml"
TARGETS = {"two_pass_over_sgd_wrn28_10": 2.05, "optimizer_share": 0.025, "optimizer_speedup_vs_loop": 3.0}


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


GPU = Sizes(("cifar_resnet18", "cifar_wrn28_10"), (128, 512), 3, 10, 3, 5, "cifar_resnet18", 25_600, 512)
CPU_DRY_RUN = Sizes(("cifar_resnet8",), (8, 16), 1, 2, 2, 2, "cifar_resnet8", 64, 16)


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
    from unitgrad.optim import bn_update_disabled

    def loss_fn(m, x, y):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return torch.nn.functional.cross_entropy(m(x), y)

    if method == "sgd":
        opt = make_optimizer("unitgrad", "sgd", list(model.parameters()))

        def step(x, y):
            opt.zero_grad()
            loss = loss_fn(model, x, y)
            loss.backward()
            opt.step()
            return loss
    else:
        opt = make_optimizer("unitgrad", method, list(model.parameters()))

        def step(x, y):
            return run_two_pass_step(model, opt, lambda m: loss_fn(m, x, y), bn_update_disabled)

    return step


def time_steps(step, device, steps: int, repeats: int) -> float:
    """Seconds per step: the best over `repeats` runs of `steps` back-to-back steps (queue kept full)."""
    best = math.inf
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def check_no_sync(step, device) -> str:
    """ "ok" when a whole step runs under sync debug mode "error", else the first line of the error."""
    if device.type != "cuda":
        return "n/a (cpu)"
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
        synchronize(device)
        return "ok"
    except RuntimeError as exc:
        return "SYNC: " + str(exc).splitlines()[0]
    finally:
        torch.cuda.set_sync_debug_mode(0)


def measure_config(model_name: str, batch: int, method: str, sizes: Sizes, device) -> dict:
    from unitgrad.models import create_model

    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10).to(device, memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train_step = make_step(method, model, device)

    def step():
        return train_step(x, y)

    for _ in range(sizes.warmup):
        step()
    step_s = time_steps(step, device, sizes.steps, sizes.repeats)
    row = {
        "model": model_name,
        "batch": batch,
        "method": method,
        "step_s": step_s,
        "images_per_s": batch / step_s,
        "sync": check_no_sync(step, device),
    }
    if device.type == "cuda":
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    if method != "sgd":
        shapes = [p.shape for p in model.parameters()]
        del model, step, train_step
        work = {}
        for impl in ("unitgrad", "loop"):
            bench = OptimizerWork(impl, method, shapes, device, torch.float32)
            times = [sum(bench.step_seconds()) for _ in range(sizes.work_repeats + 1)][1:]
            work[impl] = min(times)
            del bench
        row.update(
            optimizer_work_s=work["unitgrad"],
            loop_work_s=work["loop"],
            optimizer_share=work["unitgrad"] / step_s,
            optimizer_speedup_vs_loop=work["loop"] / work["unitgrad"],
        )
    return row


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


def paper_scale_hours(rows: list[dict], params_path: Path) -> dict:
    """GPU-hours of the paper-scale main grid per measured model, from the step times at its batch size.

    Per model: datasets x seeds x sum over optimizers of epochs x steps per epoch x step time, with
    the epochs (and sgd_2x's epochs_factor) from params.paper.yaml. One-pass methods (sgd, sgd_2x,
    ugd) take SGD's step time; ASAM takes SAM's (same work). Evaluation is not counted.
    """
    import yaml

    params = yaml.safe_load(params_path.read_text())
    train, grid = params["train"], params["grid"]
    steps_per_epoch = 50_000 // train["batch_size"]  # CIFAR training set, full (train_per_class: null)
    step_of = {"sgd": "sgd", "ugd": "sgd", "sam": "sam", "asam": "sam", "pugd": "pugd"}
    hours = {}
    for model_name in grid["models"]:
        times = {
            r["method"]: r["step_s"] for r in rows if r["model"] == model_name and r["batch"] == train["batch_size"]
        }
        total = 0.0
        for opt in grid["optimizers"]:
            base = opt.partition("_")[0]  # sgd_2x -> sgd
            epochs = train["epochs"] * (params["optim"].get(opt, {}) or {}).get("epochs_factor", 1)
            if step_of.get(base) not in times:
                total = None
                break
            total += epochs * steps_per_epoch * times[step_of[base]]
        if total is not None:
            hours[model_name] = total * len(grid["datasets"]) * len(grid["seeds"]) / 3600
    return hours


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


def render(result: dict) -> str:
    info = result["device"]
    lines = [
        f"# unitgrad GPU check: {info['name']}",
        "",
        f"{info['date']}; torch {info['torch']}"
        + (f", CUDA {info['cuda']}, cuDNN {info['cudnn']}" if "cuda" in info else "")
        + f"; sizes: {result['sizes']['name']}. bf16 autocast, channels_last, SGD base "
        "(momentum 0.9, wd 5e-4); times are the best of several repeats. "
        "Reproduce: `bash bench/gpu_check.sh`.",
        "",
        (
            "| model | batch | method | step ms | images/s | × SGD | opt work ms | share | loop work ms "
            "| vs loop | peak GiB | sync |"
        ),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    ratio = {(r["model"], r["batch"], r["method"]): r["ratio"] for r in result["two_pass_over_sgd"]}
    for r in result["rows"]:
        key = (r["model"], r["batch"], r["method"])
        work = (
            f"{r['optimizer_work_s'] * 1e3:.2f} | {r['optimizer_share']:.1%} | {r['loop_work_s'] * 1e3:.2f} "
            f"| {r['optimizer_speedup_vs_loop']:.1f}×"
            if "optimizer_work_s" in r
            else "– | – | – | –"
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
    lines += [
        "",
        (
            "Targets (issue 6, GPU): two-pass ≤ 2.05× SGD for WRN-28-10; optimizer work ≤ 2.5 % of the "
            "step and ≥ 3× faster than the per-parameter loop; no host-device sync inside a step."
        ),
    ]
    if result.get("paper_scale_gpu_hours"):
        lines += [
            "",
            "Paper-scale main grid from these step times (params.paper.yaml: datasets x seeds x optimizers "
            "x epochs, batch size as there; ASAM timed as SAM, UGD and sgd_2x as SGD; evaluation not counted): "
            + "; ".join(f"{m_} ≈ {h:,.0f} GPU-hours" for m_, h in result["paper_scale_gpu_hours"].items())
            + ". Models not measured here are not included.",
        ]
    if result["errors"]:
        lines += ["", "## Errors", ""] + [f"- {e}" for e in result["errors"]]
    if result["skipped"]:
        lines += ["", "Skipped (time budget): " + ", ".join(result["skipped"])]
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path) -> None:
    """Both files, rewritten whole after each measurement (rename, so never half-written)."""
    out.mkdir(parents=True, exist_ok=True)
    result["two_pass_over_sgd"] = two_pass_ratios(result["rows"])
    result["paper_scale_gpu_hours"] = paper_scale_hours(result["rows"], PAPER_PARAMS)
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
    plan = [(m, b, meth) for m in sizes.models for b in sizes.batches for meth in METHODS]
    for model_name, batch, method in plan:
        label = f"{model_name}/b{batch}/{method}"
        if time.monotonic() > deadline:
            result["skipped"].append(label)
            continue
        try:
            result["rows"].append(measure_config(model_name, batch, method, sizes, device))
        except Exception as exc:  # noqa: BLE001  (keep measuring the others; the error goes in the report)
            result["errors"].append(f"{label}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            traceback.print_exc()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        write(result, args.out)
        print(label, "done", flush=True)
    if time.monotonic() > deadline:
        result["skipped"].append("training epoch")
    else:
        try:
            result["epoch"] = training_epoch(sizes, device)
        except Exception as exc:  # noqa: BLE001  (the error goes in the report)
            result["errors"].append(f"training epoch: {type(exc).__name__}: {exc}")
            traceback.print_exc()
    write(result, args.out)
    print((args.out / "gpu.md").read_text())
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
