"""The training loop: `train_run(cfg, out_dir)` fits one run; `Trainer.step` is one optimizer step.

The step is `unitgrad.optim.train_step`: for two-pass methods (SAM, ASAM, PUGD) README's example, per chunk of
`optim.<name>.m` images (m-sharpness), BatchNorm running statistics untouched in the second pass when
`train.bn_update` is first_pass. The logged `grad_norm` is the epoch mean of the first-pass
gradient's global norm (under DDP, two-pass methods average each replica's unsynchronised norm).
A non-finite loss or weight is detected once per epoch (no per-step host sync), and a non-finite monitor loss
when it is evaluated: either stops the run with UnitgradError before that epoch is checkpointed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from unitgrad import distributed
from unitgrad.data import CIFAR_MEAN, CIFAR_STD, DeviceLoader
from unitgrad.device import autocast
from unitgrad.errors import UnitgradError
from unitgrad.models import create_model
from unitgrad.optim import create_optimizer, train_step
from unitgrad.run_config import RunConfig
from unitgrad.train.data import TrainData
from unitgrad.train.schedule import lr_scheduler, param_groups
from unitgrad.train.state import CHECKPOINT, rng_states, set_rng_states


class Trainer:
    """One process's model, optimizer, LR schedule and loaders for a run; `run_epoch` trains and evaluates."""

    def __init__(self, cfg: RunConfig, data: TrainData, device: torch.device, proc: distributed.Process) -> None:
        self.cfg, self.device, self.world_size = cfg, device, proc.world_size
        channels_last = cfg.train.channels_last
        net = create_model(cfg.model, data.num_classes, cifar_stem=cfg.net.cifar_stem, drop_rate=cfg.net.drop_rate)
        self.net = net.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        device_ids = [device.index] if device.type == "cuda" else None
        ddp = DistributedDataParallel(self.net, device_ids=device_ids) if proc.world_size > 1 else self.net
        self.model = torch.compile(ddp) if cfg.train.compile else ddp
        groups = param_groups(self.net, cfg.train.no_weight_decay_bn_bias)
        self.optimizer = create_optimizer(cfg.method, groups, base=cfg.base, **cfg.optimizer_kwargs)
        self.autocast = autocast(device, cfg.train.amp)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)

        normalise = {"mean": CIFAR_MEAN[cfg.dataset], "std": CIFAR_STD[cfg.dataset], "channels_last": channels_last}
        augment = {"crop_padding": cfg.loader.crop_padding, "flip": cfg.loader.flip, "cutout": cfg.loader.cutout}
        self.train_loader = DeviceLoader(
            data.train_x,
            data.train_y,
            cfg.train.batch_size,
            device,
            train=True,
            seed=cfg.seed,
            drop_last=True,
            **normalise,
            **augment,
        )
        shard = slice(proc.rank, None, proc.world_size)
        self.monitor_loader = DeviceLoader(
            data.monitor_x[shard],
            data.monitor_y[shard],
            cfg.train.batch_size,
            device,
            train=False,
            drop_last=False,
            **normalise,
        )
        # The weights of the epoch with the best monitored accuracy (model_best.pt; evaluate scores them).
        self.best: dict[str, Any] = {"epoch": 0, "acc": -1.0, "model": None}
        self.steps = len(self.train_loader)
        if self.steps == 0:
            raise UnitgradError(
                f"{len(data.train_y)} training images make no batch of {cfg.train.batch_size}: lower train.batch_size"
            )
        local_batch = cfg.train.batch_size // proc.world_size
        self.batch_shard = slice(proc.rank * local_batch, (proc.rank + 1) * local_batch)
        self.scheduler = lr_scheduler(
            self.optimizer, cfg.train.warmup_epochs, cfg.epochs, self.steps, cfg.train.lr_update
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_states(self.device),
            "best": self.best,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_states(state["rng"], self.device)
        self.best = state["best"]

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer step on (x, y): (loss at w, logits at w, global norm of the gradient at w)."""
        first_pass_only = self.cfg.train.bn_update == "first_pass"
        return train_step(
            self.optimizer,
            self.model,
            self.loss_fn,
            x,
            y,
            m=self.cfg.m,
            bn_first_pass_only=first_pass_only,
            autocast=self.autocast,
        )

    def run_epoch(self, epoch: int, on_step: Callable[[], None]) -> dict[str, float]:
        """Train epoch `epoch`, evaluate if due: the epoch's metrics. UnitgradError on a non-finite loss."""
        start = time.perf_counter()
        sums, bad_step, bad_loss, lr = self._train(epoch, on_step)
        distributed.all_reduce(sums)
        distributed.all_reduce(bad_step, op="min")
        weights_finite = torch.isfinite(torch.stack(torch._foreach_norm(list(self.net.parameters())))).all()
        first_bad = int(bad_step)  # the epoch's one host sync
        if first_bad < self.steps or not bool(weights_finite):
            raise UnitgradError(self._divergence(epoch, first_bad, float(bad_loss)))
        loss_sum, correct, count, grad_norm_sum = sums.tolist()
        record = {
            "epoch": epoch,
            "train/loss": loss_sum / count,
            "train/acc": correct / count,
            "lr": lr,
            "grad_norm": grad_norm_sum / (self.steps * self.world_size),
        }
        distributed.broadcast_buffers(self.net)
        if (epoch + 1) % self.cfg.train.eval_every == 0 or epoch + 1 == self.cfg.epochs:
            loss, correct, count = distributed.all_reduce(self._evaluate()).tolist()
            name = self.cfg.train.monitor  # test, or holdout: the metrics are named for the images they score
            if not math.isfinite(loss):  # finite weights can still overflow the logits
                raise UnitgradError(self._divergence(epoch, self.steps, loss, what=f"{name} loss"))
            record.update({f"{name}/loss": loss / count, f"{name}/acc": correct / count})
            if correct / count > self.best["acc"]:
                weights = {key: value.detach().clone() for key, value in self.net.state_dict().items()}
                self.best = {"epoch": epoch + 1, "acc": correct / count, "model": weights}
        record["sec_per_epoch"] = time.perf_counter() - start
        return record

    def _train(self, epoch: int, on_step: Callable[[], None]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Sums [loss × n, correct, n, first-pass grad norm] over the epoch, the first non-finite step
        (`steps` if none) and its loss, and the LR of the last step; all on the device, never synced."""
        self.train_loader.set_epoch(epoch)
        self.model.train()
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        bad_step = torch.full((), self.steps, dtype=torch.int64, device=self.device)
        bad_loss = torch.zeros((), device=self.device)
        lr = self.optimizer.param_groups[0]["lr"]
        for step, (x, y) in enumerate(self.train_loader):
            x, y = x[self.batch_shard], y[self.batch_shard]
            lr = self.optimizer.param_groups[0]["lr"]
            loss, logits, grad_norm = self.step(x, y)
            self.scheduler.step()
            correct = (logits.argmax(1) == y).sum()
            sums += torch.stack([loss.double() * len(y), correct.double(), sums.new_tensor(len(y)), grad_norm.double()])
            first_non_finite = ~torch.isfinite(loss) & (bad_step == self.steps)
            bad_step = torch.where(first_non_finite, step, bad_step)
            bad_loss = torch.where(first_non_finite, loss, bad_loss)
            on_step()
        return sums, bad_step, bad_loss, lr

    def _evaluate(self) -> torch.Tensor:
        """[summed cross-entropy, correct, count] over this process's shard of the monitor set (on the device)."""
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        self.net.eval()
        with torch.no_grad():
            for x, y in self.monitor_loader:
                with self.autocast():
                    logits = self.net(x)
                loss = F.cross_entropy(logits.float(), y, reduction="sum")
                sums += torch.stack([loss.double(), (logits.argmax(1) == y).sum().double(), sums.new_tensor(len(y))])
        self.net.train()
        return sums

    def _divergence(self, epoch: int, first_bad: int, bad_loss: float, what: str = "loss") -> str:
        if first_bad < self.steps:
            value = bad_loss if not math.isfinite(bad_loss) else "nan/inf"  # another rank's loss diverged
            where = f"{what} became {value} at epoch {epoch + 1}/{self.cfg.epochs} step {first_bad + 1}/{self.steps}"
        elif what != "loss":
            where = f"{what} became {bad_loss} after epoch {epoch + 1}/{self.cfg.epochs}"
        else:
            where = f"weights became nan/inf at epoch {epoch + 1}/{self.cfg.epochs}"
        kept = f"; {CHECKPOINT} keeps epoch {epoch}" if epoch else ""
        return f"{where}: lower train.lr (now {self.cfg.optimizer_kwargs['lr']}) or raise train.warmup_epochs{kept}"
