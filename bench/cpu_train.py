"""Training throughput of the real `Trainer` on this CPU: wall-clock images/s and the share of the FLOP limit.

    python bench/cpu_train.py [--params params.laptop.yaml] [--threads 1] [--epochs 2] [--out results/bench]

For each setting (fp32, bf16 autocast, either with channels_last, and bf16 + channels_last + torch.compile)
and each optimizer (sgd, pugd), one `Trainer` is built from the params file's first study run (its model,
batch, subset, augmentation) and trains whole epochs of `data/<dataset>` after one warm-up epoch (which pays
compile time; reported apart). The settings are interleaved epoch by epoch so that every ratio comes from
one run under the same load, and each figure is the fastest epoch. FLOPs per image are counted by
torch's FlopCounterMode on one forward and backward (two of each for two-pass methods); the limit is
cores x clock x FLOPs per cycle (Zen 4: 2 x 256-bit FMA pipes, 32 fp32 or 64 bf16 FLOPs per cycle per core).
Writes <out>/cpu_train.md and cpu_train.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # measure this checkout's unitgrad, whatever is installed

import torch
from torch.utils.flop_counter import FlopCounterMode

from unitgrad import distributed, markdown
from unitgrad.config import load_params
from unitgrad.io import write_json, write_text
from unitgrad.provenance import cpu_model
from unitgrad.run_config import RunConfig
from unitgrad.studies import selected_runs
from unitgrad.train.data import load_data
from unitgrad.train.fit import Trainer

SETTINGS = {  # name: (train.amp, train.channels_last, train.compile)
    "fp32": ("none", False, False),
    "fp32 + channels_last": ("none", True, False),
    "bf16": ("bf16", False, False),
    "bf16 + channels_last": ("bf16", True, False),
    "bf16 + channels_last + compile": ("bf16", True, True),
}
FLOPS_PER_CYCLE = {"none": 32, "bf16": 64}  # per core, Zen 4 (AVX-512 on 2 x 256-bit pipes; VDPBF16PS)


def clock_ghz() -> float:
    """The cores' highest clock from sysfs or /proc/cpuinfo (a VM may hide the boost clock: then it is a floor)."""
    freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if freq.is_file():
        return int(freq.read_text()) / 1e6
    mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines() if "MHz" in line]
    return max(mhz) / 1e3


def flops_per_image(trainer: Trainer, x: torch.Tensor, y: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.step(x, y)
    return counter.get_total_flops() / len(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.laptop.yaml")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per setting (after one warm-up)")
    parser.add_argument("--optimizers", nargs="+", default=["sgd", "pugd"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    run = selected_runs(params)[0]
    trainers, flops, warmup = {}, {}, {}
    for optimizer in args.optimizers:
        for setting in args.settings:
            amp, channels_last, compile_ = SETTINGS[setting]
            cfg = RunConfig.for_run(params, dataclasses.replace(run, optimizer=optimizer), args.params)
            setting_keys = {"amp": amp, "channels_last": channels_last, "compile": compile_}
            cfg = dataclasses.replace(cfg, train=cfg.train.model_copy(update=setting_keys))
            trainer = Trainer(cfg, load_data(cfg), torch.device("cpu"), distributed.current())
            x, y = next(iter(trainer.train_loader))
            flops[optimizer, setting] = flops_per_image(trainer, x, y) if not compile_ else None
            start = time.perf_counter()
            trainer.run_epoch(0, lambda: None)  # warm-up: allocator, oneDNN primitives, compilation
            warmup[optimizer, setting] = time.perf_counter() - start
            trainers[optimizer, setting] = trainer
    images = {key: t.steps * t.cfg.train.batch_size for key, t in trainers.items()}
    best = dict.fromkeys(trainers, float("inf"))
    for epoch in range(1, args.epochs + 1):
        for key, trainer in trainers.items():  # interleaved: one epoch of each setting in turn
            start = time.perf_counter()
            trainer.run_epoch(epoch, lambda: None)
            best[key] = min(best[key], time.perf_counter() - start)
    ghz, cores = clock_ghz(), args.threads
    rows, record = [], []
    for (optimizer, setting), seconds in best.items():
        amp = SETTINGS[setting][0]
        rate = images[optimizer, setting] / seconds
        per_image = flops[optimizer, setting] or flops[optimizer, setting.replace(" + compile", "")]
        share = per_image * rate / (cores * ghz * 1e9 * FLOPS_PER_CYCLE[amp])
        sgd = images["sgd", setting] / best["sgd", setting] if ("sgd", setting) in best else None
        fp32 = images[optimizer, "fp32"] / best[optimizer, "fp32"] if (optimizer, "fp32") in best else None
        rows.append(
            [
                optimizer,
                setting,
                f"{rate:,.0f}",
                f"{rate / fp32:.2f}x" if fp32 else "-",
                f"{sgd / rate:.2f}" if sgd else "-",
                f"{per_image / 1e6:.1f}",
                f"{100 * share:.1f} %",
                f"{warmup[optimizer, setting]:.1f}",
            ]
        )
        record.append(
            {
                "optimizer": optimizer,
                "setting": setting,
                "images_per_s": rate,
                "mflops_per_image": per_image / 1e6,
                "flop_limit_share": share,
                "warmup_epoch_s": warmup[optimizer, setting],
            }
        )
    header = ["optimizer", "setting", "img/s", "vs fp32", "SGD/this time", "MFLOP/img", "of FLOP limit", "warm-up s"]
    machine = f"{cpu_model()}, {os.cpu_count()} cores, {ghz:.2f} GHz, torch {torch.__version__}, {cores} thread(s)"
    cfg = next(iter(trainers.values())).cfg
    what = f"{cfg.model}, batch {cfg.train.batch_size}, {images[next(iter(images))]} images/epoch, {args.params}"
    date = datetime.date.today().isoformat()
    text = "\n".join(
        [
            f"# Training throughput of the real Trainer on CPU ({date})",
            "",
            f"Machine: {machine}.",
            f"Run: {what}.",
            f"Fastest of {args.epochs} interleaved epochs after a warm-up epoch; wall clock.",
            "",
            *markdown.table(header, rows),
            "",
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "cpu_train.md", text)
    write_json(args.out / "cpu_train.json", {"date": date, "machine": machine, "run": what, "rows": record})
    print(text)


if __name__ == "__main__":
    main()
