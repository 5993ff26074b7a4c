"""Packing on one GPU: aggregate training throughput of k = 1, 2, 4, 8 runs sharing the device.

Each of up to 8 worker processes trains its own model on synthetic CIFAR-sized batches (bf16 autocast,
channels_last, the same step as bench/gpu_check.py), as k `unitgrad train` processes packed by
`unitgrad grid run --gpus-per-run 1/k` would. For each model, method and k, the first k workers warm up,
start together and time the same number of steps; throughput = all their images / the window from the first
start to the last end. The speed-up is that over k = 1. Training processes, not Ray itself, are measured:
Ray only starts them with CUDA_VISIBLE_DEVICES set, and its wheel is too large to bring to the GPU machine.

    python bench/gpu_packing.py --out DIR [--device cuda|cpu] [--budget-s 150]

Writes DIR/packing.json and DIR/packing.md after every measurement. `--device cpu` is a tiny dry run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

GPU_SIZES = {
    "models": ("cifar_resnet32", "cifar_resnet18", "cifar_pyramidnet110_a270"),
    "methods": ("sam", "pugd"),
    "ks": (1, 2, 4, 8),
    "batch": 128,
    "warmup": 5,
    "steps": 30,
}
CPU_SIZES = {"models": ("cifar_resnet8",), "methods": ("pugd",), "ks": (1, 2), "batch": 8, "warmup": 1, "steps": 3}


def worker(device_name: str, conn) -> None:
    """Serve (model, method, batch, warmup, steps, start_at) requests: warm up, wait for start_at, time steps."""
    import torch
    from gpu_check import make_step

    from unitgrad.models import create_model

    torch.set_num_threads(1)
    device = torch.device(device_name)
    while (request := conn.recv()) is not None:
        model_name, method, batch, warmup, steps = request
        model = create_model(model_name, num_classes=10).to(device, memory_format=torch.channels_last)
        x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (batch,), device=device)
        step = make_step(method, model, device)
        for _ in range(warmup):
            step(x, y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        conn.send("ready")
        start_at = conn.recv()
        time.sleep(max(0.0, start_at - time.time()))
        start = time.time()
        for _ in range(steps):
            step(x, y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        conn.send((start, time.time(), steps * batch))
        del model, step
        if device.type == "cuda":
            torch.cuda.empty_cache()


def measure(conns, request, k: int) -> dict:
    for conn in conns[:k]:
        conn.send(request)
    for conn in conns[:k]:
        assert conn.recv() == "ready"
    start_at = time.time() + 0.5
    for conn in conns[:k]:
        conn.send(start_at)
    spans = [conn.recv() for conn in conns[:k]]
    window = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    return {"k": k, "images_per_s": sum(n for *_, n in spans) / window, "window_s": window}


def render(result: dict) -> str:
    lines = [
        "# Packing k runs on one GPU (aggregate training throughput)",
        "",
        f"Device: {result['device']}; batch {result['sizes']['batch']}; one training process per run.",
        "",
        "| model | method | k | images/s (all k runs) | × k = 1 |",
        "|---|---|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['model']} | {row['method']} | {row['k']} | {row['images_per_s']:,.0f} | "
            f"{row['speedup_vs_k1']:.2f} |"
        )
    if result["skipped"]:
        lines += ["", f"Skipped (time budget): {', '.join(result['skipped'])}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--budget-s", type=float, default=150.0)
    args = parser.parse_args(argv)
    sizes = GPU_SIZES if args.device == "cuda" else CPU_SIZES
    deadline = time.monotonic() + args.budget_s
    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    pipes = [ctx.Pipe() for _ in range(max(sizes["ks"]))]
    procs = [ctx.Process(target=worker, args=(args.device, child), daemon=True) for _, child in pipes]
    for proc in procs:
        proc.start()
    conns = [parent for parent, _ in pipes]
    result = {"device": args.device, "sizes": sizes, "rows": [], "skipped": []}
    args.out.mkdir(parents=True, exist_ok=True)
    for model in sizes["models"]:
        for method in sizes["methods"]:
            base = None
            for k in sizes["ks"]:
                if time.monotonic() > deadline:
                    result["skipped"].append(f"{model}/{method}/k{k}")
                    continue
                request = (model, method, sizes["batch"], sizes["warmup"], sizes["steps"])
                row = {"model": model, "method": method, **measure(conns, request, k)}
                base = base or row["images_per_s"]
                row["speedup_vs_k1"] = row["images_per_s"] / base
                result["rows"].append(row)
                (args.out / "packing.json").write_text(json.dumps(result, indent=2) + "\n")
                (args.out / "packing.md").write_text(render(result))
                print(f"{model}/{method}/k{k}: {row['images_per_s']:,.0f} img/s", flush=True)
    for conn in conns:
        conn.send(None)
    for proc in procs:
        proc.join(timeout=30)
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
