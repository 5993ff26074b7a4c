"""`train_run(cfg, out_dir)`: one run from data to model.pt, resumable, with DVCLive metrics and provenance.

Resume: the checkpoint written after every epoch is reused when its config hash matches; a killed run
resumes from the last finished epoch and ends bit-identical on CPU. DVCLive's files are rebuilt from the
checkpoint's history on every start, so a resume neither duplicates nor loses rows.
DDP (`torchrun --nproc_per_node N -m unitgrad train …`): train.batch_size is the global batch; each rank
takes its 1/N slice of every global batch of the shared (seed, epoch) shuffle, so the data order equals the
single-process run's. Requires batch_size % N == 0. Rank 0 writes every file.
"""

from __future__ import annotations

import functools
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dvclive import Live

from unitgrad import distributed
from unitgrad.device import resolve_amp, resolve_device
from unitgrad.errors import UnitgradError
from unitgrad.io import atomic_path, check_writable, write_json, write_torch
from unitgrad.provenance import provenance, utc_now
from unitgrad.run_config import RunConfig
from unitgrad.train.data import TrainData, load_data
from unitgrad.train.fit import Trainer
from unitgrad.train.logs import Progress, epoch_line, final_metrics, live_logger, log_epoch
from unitgrad.train.state import CHECKPOINT, determinism, read_checkpoint, seed_everything, write_checkpoint

OUTPUTS = (
    "model.pt",
    "model_best.pt",
    "labels.npz",
    "run.json",
)  # written at the end; CHECKPOINT and dvclive/ as it trains


def train_run(cfg: RunConfig, out_dir: str | Path) -> dict[str, Any]:
    """Train the run `cfg` and write model.pt, labels.npz, run.json and dvclive/ into `out_dir`.

    Returns the final metrics (as in dvclive/metrics.json). Resumes from `out_dir/checkpoint.pt` when its
    config hash matches. Under an initialised process group, trains data-parallel; rank 0 writes.
    """
    started, start_time = utc_now(), time.perf_counter()
    out_dir = Path(out_dir)
    proc = distributed.current()
    device = resolve_device(cfg.train.device, proc.local_rank)
    batch = cfg.train.batch_size
    if batch % proc.world_size:
        raise UnitgradError(
            f"train.batch_size {batch} is not divisible by the {proc.world_size} processes: change either"
        )
    say = functools.partial(print, flush=True) if proc.is_main else lambda *_: None
    if proc.is_main:
        check_writable(out_dir, files=(*OUTPUTS, CHECKPOINT), dirs=("dvclive",))  # before anything is deleted
    with determinism(device):
        data = load_data(cfg)
        seed_everything(cfg.seed)
        trainer = Trainer(cfg, data, device, proc)
        if proc.is_main:  # only now that data and model are good: never leave an older run's outputs beside a new one
            for name in OUTPUTS:
                (out_dir / name).unlink(missing_ok=True)
        checkpoint_path = out_dir / CHECKPOINT
        # The data order and the BN batches depend on the number of processes: part of the identity.
        config_hash = hashlib.sha256(f"{cfg.hash()} world_size={proc.world_size}".encode()).hexdigest()
        checkpoint = read_checkpoint(checkpoint_path, config_hash, say)
        first_epoch, history, elapsed_before = 0, [], 0.0
        if checkpoint is not None:
            trainer.load_state_dict(checkpoint)
            first_epoch, history, elapsed_before = checkpoint["epoch"], checkpoint["history"], checkpoint["elapsed_s"]
            say(f"resuming from {checkpoint_path} after epoch {first_epoch}/{cfg.epochs}")
        live = live_logger(out_dir, history) if proc.is_main else None

        steps = trainer.steps
        progress = Progress(proc.is_main, cfg.epochs * steps, first_epoch * steps, f"{cfg.optimizer} seed {cfg.seed}")
        try:
            for epoch in range(first_epoch, cfg.epochs):
                record = trainer.run_epoch(epoch, progress.step)
                history.append(record)
                if proc.is_main:
                    elapsed = elapsed_before + time.perf_counter() - start_time
                    write_checkpoint(checkpoint_path, config_hash, epoch + 1, history, elapsed, trainer.state_dict())
                    log_epoch(live, record)
                progress.log(epoch_line(record, cfg.epochs))
        finally:
            progress.close()

        if proc.is_main:
            wall_time_s = elapsed_before + time.perf_counter() - start_time
            _write_outputs(
                out_dir, cfg, trainer, data, live, device, started, wall_time_s, first_epoch, proc.world_size
            )
    return final_metrics(history)


def _write_outputs(
    out_dir: Path,
    cfg: RunConfig,
    trainer: Trainer,
    data: TrainData,
    live: Live,
    device: torch.device,
    started: str,
    wall_time_s: float,
    resumed_from: int,
    world_size: int,
) -> None:
    with atomic_path(out_dir / "labels.npz") as tmp, tmp.open("wb") as handle:
        np.savez(
            handle,
            train_indices=data.train_indices,
            noisy_labels=data.train_y,
            flip_mask=data.train_y != data.clean_y,
            monitor_indices=data.monitor_indices,
        )
    best = trainer.best
    for name, weights, extra in (
        ("model.pt", trainer.net.state_dict(), {}),
        (
            "model_best.pt",
            best["model"],
            {"epoch": best["epoch"], "monitor_acc": best["acc"], "monitor": cfg.train.monitor},
        ),
    ):
        saved = {
            "model": {key: tensor.detach().cpu() for key, tensor in weights.items()},
            "model_name": cfg.model,
            "num_classes": data.num_classes,
            "cifar_stem": cfg.net.cifar_stem,
            "dataset": cfg.dataset,
            **extra,
        }
        write_torch(out_dir / name, saved)
    live.end()
    record = provenance(
        cfg.to_dict(),
        device,
        started,
        utc_now(),
        round(wall_time_s, 3),
        resumed_from_epoch=resumed_from,
        world_size=world_size,
        amp=resolve_amp(device, cfg.train.amp),  # what train.amp meant on this device
        torch_threads=torch.get_num_threads(),
        data_source=data.source,
    )
    write_json(out_dir / "run.json", record)
