"""`unitgrad train`: one run (dataset × model × optimizer × seed × label noise) into `<run dir>/train/`.

The CLI selects the run; every hyper-parameter comes from params.yaml (train.*, optim.*, model.*,
data.loader.*, data.root, noise.kind). `--noise` is a percent, like noise.rates and the `noise<pct>`
directory; `RunConfig.noise` is the fraction. Library use: `train_run(RunConfig.from_params(...), out_dir)`.

Choices worth knowing:
- The class-balanced training subset (and the monitored test subset) is drawn with `data.loader.subset_seed`,
  not the run seed, so runs that differ in seed or optimizer see the same images and paired comparisons differ only by initialisation, data order
  and, with label noise, which labels flip (drawn with the run seed). Test labels never change.
- `sgd_2x` (any `<method>_<k>x` name) trains `<method>` for `train.epochs × optim.<name>.epochs_factor`.
- The LR follows a linear warmup over `train.warmup_epochs` (fractions allowed) then a cosine to 0, per step.
- Two-pass methods (SAM, ASAM, PUGD): gradient at w, `first_step`, a second forward/backward (BatchNorm
  running statistics untouched when `train.bn_update` is first_pass), `second_step`. The logged
  `grad_norm` is the epoch mean of the first-pass gradient's global norm (under DDP, two-pass methods
  average each replica's unsynchronised norm).
- Resume: a checkpoint (weights, optimizer, scheduler, RNG states, metric history) is written atomically
  after every epoch and reused when its config hash matches; a killed run resumes from the last finished
  epoch and ends bit-identical on CPU. DVCLive's files are rebuilt from the checkpoint's history on every
  start, so a resume neither duplicates nor loses rows, even when `dvc repro` deleted them.
- A non-finite loss or weight is detected once per epoch (no per-step host sync) and stops the run with
  UnitgradError before that epoch is checkpointed; no model.pt is written.
- DDP (`torchrun --nproc_per_node N -m unitgrad train …`): train.batch_size is the global batch; each
  rank takes its 1/N slice of every global batch of the shared (seed, epoch) shuffle, so the data order
  equals the single-process run's. Requires batch_size % N == 0. Rank 0 writes every file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import random
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from dvclive import Live
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from unitgrad import distributed
from unitgrad.config import get, load_params
from unitgrad.data import CIFAR_MEAN, CIFAR_STD, DeviceLoader, balanced_subset, load_cifar, noisy_labels
from unitgrad.errors import UnitgradError
from unitgrad.io import atomic_path, write_json
from unitgrad.models import create_model
from unitgrad.optim import bn_update_disabled, create_optimizer, first_pass_no_sync, is_two_pass
from unitgrad.provenance import provenance, utc_now

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1  # bump when the checkpoint layout changes: older checkpoints then start fresh
_REPEAT = re.compile(r"^(?P<method>.+)_\d+x$")  # sgd_2x -> sgd


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run, resolved from params.yaml and the CLI selection.

    `epochs` already includes an `epochs_factor` (sgd_2x); `optimizer_kwargs` holds the base optimizer's
    settings and the method's own (rho resolved for the dataset, eta).
    """

    dataset: str
    model: str
    optimizer: str
    seed: int
    noise: float
    noise_kind: str
    data_root: str
    train_per_class: int | None
    subset_seed: int
    crop_padding: int
    flip: bool
    cutout: int
    cifar_stem: bool
    drop_rate: float
    method: str
    base: str
    optimizer_kwargs: dict[str, Any]
    epochs: int
    batch_size: int
    warmup_epochs: float
    label_smoothing: float
    no_weight_decay_bn_bias: bool
    bn_update: str
    device: str
    amp: str
    channels_last: bool
    compile: bool
    eval_every: int
    monitor_per_class: int | None

    @classmethod
    def from_params(
        cls, params: dict[str, Any], *, dataset: str, model: str, optimizer: str, seed: int, noise: float
    ) -> RunConfig:
        """The run `optimizer` × `seed` × `noise` on `dataset`/`model`, with every setting from `params`."""
        optim = get(params, "optim")
        names = [name for name in optim if name != "base"]
        if optimizer not in names:
            raise UnitgradError(
                f"unknown optimizer '{optimizer}': choose one of {', '.join(names)} (optim.* in params.yaml)"
            )
        entries = get(params, f"optim.{optimizer}") or {}
        if not isinstance(entries, dict):
            raise UnitgradError(f"optim.{optimizer} must be a mapping (e.g. {{rho: 0.05}} or {{}}), got {entries!r}")
        entries = dict(entries)
        factor = entries.pop("epochs_factor", 1)
        repeat = _REPEAT.match(optimizer)
        method = repeat["method"] if repeat else optimizer
        for key, value in entries.items():
            if isinstance(value, dict):  # per-dataset value, e.g. rho: {cifar10: 0.05, cifar100: 0.1}
                if dataset not in value:
                    raise UnitgradError(f"optim.{optimizer}.{key} has no value for '{dataset}': add {dataset}: <value>")
                entries[key] = value[dataset]
        base = get(params, "optim.base")
        kwargs = {"lr": get(params, "train.lr"), "weight_decay": get(params, "train.weight_decay")}
        if base == "sgd":  # momentum and Nesterov are SGD's; AdamW takes its betas from optim.<name>
            kwargs.update(momentum=get(params, "train.momentum"), nesterov=get(params, "train.nesterov"))
        config = cls(
            dataset=dataset,
            model=model,
            optimizer=optimizer,
            seed=seed,
            noise=float(noise),
            noise_kind=get(params, "noise.kind") if noise > 0 else None,  # clean runs do not depend on it
            data_root=str(get(params, "data.root")),
            train_per_class=get(params, "data.loader.train_per_class"),
            subset_seed=get(params, "data.loader.subset_seed"),
            crop_padding=get(params, "data.loader.crop_padding"),
            flip=get(params, "data.loader.flip"),
            cutout=get(params, "data.loader.cutout"),
            cifar_stem=get(params, "model.cifar_stem"),
            drop_rate=get(params, "model.drop_rate"),
            method=method,
            base=base,
            optimizer_kwargs={**kwargs, **entries},
            epochs=_scaled_epochs(get(params, "train.epochs"), factor, optimizer),
            batch_size=get(params, "train.batch_size"),
            warmup_epochs=get(params, "train.warmup_epochs"),
            label_smoothing=get(params, "train.label_smoothing"),
            no_weight_decay_bn_bias=get(params, "train.no_weight_decay_bn_bias"),
            bn_update=get(params, "train.bn_update"),
            device=get(params, "train.device"),
            amp=get(params, "train.amp"),
            channels_last=get(params, "train.channels_last"),
            compile=get(params, "train.compile"),
            eval_every=get(params, "train.eval_every"),
            monitor_per_class=get(params, "train.monitor_per_class"),
        )
        config.validate()
        return config

    def validate(self) -> None:
        """Raise UnitgradError naming the params.yaml key of the first invalid setting."""
        choices = {
            "train.bn_update": (self.bn_update, ("first_pass", "both_passes")),
            "train.amp": (self.amp, ("bf16", "none")),
            "train.device": (self.device, ("auto", "cpu", "cuda")),
        }
        if self.noise > 0:
            choices["noise.kind"] = (self.noise_kind, ("symmetric", "asymmetric"))
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise UnitgradError(f"{key} is {value!r}: choose one of {', '.join(allowed)}")
        integers = {
            "train.epochs": self.epochs,
            "train.batch_size": self.batch_size,
            "train.eval_every": self.eval_every,
            "data.loader.train_per_class": 1 if self.train_per_class is None else self.train_per_class,
            "train.monitor_per_class": 1 if self.monitor_per_class is None else self.monitor_per_class,
        }
        for key, value in integers.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UnitgradError(f"{key} must be an integer >= 1, got {value!r}")
        if isinstance(self.subset_seed, bool) or not isinstance(self.subset_seed, int) or self.subset_seed < 0:
            raise UnitgradError(f"data.loader.subset_seed must be an integer >= 0, got {self.subset_seed!r}")
        if not (isinstance(self.warmup_epochs, (int, float)) and 0 <= self.warmup_epochs <= self.epochs):
            raise UnitgradError(f"train.warmup_epochs must lie in [0, train.epochs], got {self.warmup_epochs!r}")
        if not 0.0 <= self.noise <= 1.0:
            raise UnitgradError(
                f"label-noise rate {self.noise} must lie in [0, 1]: fix --noise (percent) or noise.rates"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """sha256 of the config's canonical JSON, less `data_root` (where the data lives is not what it is).

        A checkpoint is reused only under the same hash.
        """
        identity = {k: v for k, v in self.to_dict().items() if k != "data_root"}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _scaled_epochs(epochs: Any, factor: Any, optimizer: str) -> int:
    scaled = epochs * factor if isinstance(epochs, int) and isinstance(factor, (int, float)) else None
    if scaled is None or scaled != int(scaled):
        raise UnitgradError(
            f"train.epochs ({epochs!r}) × optim.{optimizer}.epochs_factor ({factor!r}) "
            "must be a whole number of epochs"
        )
    return int(scaled)


def run_dir(root: str | Path, dataset: str, model: str, optimizer: str, noise: float, seed: int) -> Path:
    """`root/<dataset>/<model>/<optimizer>/noise<pct>/seed<seed>` with pct = round(100 × noise)."""
    return Path(root) / dataset / model / optimizer / f"noise{round(100 * noise)}" / f"seed{seed}"


def resolve_device(name: str, index: int = 0) -> torch.device:
    """`train.device` (auto | cpu | cuda) as a torch device; cuda uses device `index` (torchrun's local rank)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UnitgradError("train.device is cuda but no CUDA device is available: set train.device: auto")
        return torch.device("cuda", index)
    if name != "cpu":
        raise UnitgradError(f"train.device is {name!r}: choose one of auto, cpu, cuda")
    return torch.device("cpu")


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR factor at optimizer step `step` (0-based): linear ramp to 1 over `warmup_steps`, then cosine to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: nn.Module, no_weight_decay_bn_bias: bool) -> list[dict[str, Any]]:
    """One group of trainable parameters, or two when BatchNorm weights and biases (1-D tensors) skip decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not no_weight_decay_bn_bias:
        return [{"params": params}]
    return [
        {"params": [p for p in params if p.ndim > 1]},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]


@dataclasses.dataclass
class _Data:
    train_x: np.ndarray
    train_y: np.ndarray  # the labels trained on (noisy when noise > 0)
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    train_indices: np.ndarray
    clean_y: np.ndarray


def _load_data(cfg: RunConfig) -> _Data:
    x_tr, y_tr, x_te, y_te, classes = load_cifar(cfg.dataset, cfg.data_root)
    indices = (
        np.arange(len(y_tr), dtype=np.int64)
        if cfg.train_per_class is None
        else balanced_subset(y_tr, cfg.train_per_class, seed=cfg.subset_seed)
    )
    clean = y_tr[indices].astype(np.int64)
    labels = clean
    if cfg.noise > 0:
        labels = noisy_labels(clean, len(classes), cfg.noise, kind=cfg.noise_kind, seed=cfg.seed)
    if cfg.monitor_per_class is not None:  # the learning curves' test set; `unitgrad evaluate` scores all of it
        if cfg.monitor_per_class > np.bincount(y_te).min():
            raise UnitgradError(
                f"train.monitor_per_class is {cfg.monitor_per_class}, more than the test set has per class: "
                "lower it or set null"
            )
        monitored = balanced_subset(y_te, cfg.monitor_per_class, seed=cfg.subset_seed)
        x_te, y_te = x_te[monitored], y_te[monitored]
    return _Data(x_tr[indices], labels, x_te, y_te, len(classes), indices, clean)


@contextlib.contextmanager
def _determinism(device: torch.device) -> Iterator[None]:
    """Deterministic kernels on CPU (bit-identical resume); cuDNN autotuning on CUDA (speed over bits)."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also every CUDA device


def _rng_states(device: torch.device) -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],  # plain types: loadable with weights_only
        "python": random.getstate(),
    }


def _set_rng_states(states: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and states["cuda"] is not None:
        torch.cuda.set_rng_state(states["cuda"], device)
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(states["python"])


def _read_checkpoint(path: Path, config_hash: str, log) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint means the same thing: start over
        log(f"checkpoint {path} is unreadable ({exc.__class__.__name__}): starting fresh")
        return None
    if checkpoint.get("format") != CHECKPOINT_FORMAT or checkpoint.get("config_hash") != config_hash:
        log(f"checkpoint {path} was made with another config: starting fresh")
        return None
    return checkpoint


class _FileLive(Live):
    """DVCLive as a file logger only: metrics.json and plots/metrics/*.tsv, nothing asked of DVC or git.

    The stage runs inside `dvc repro`, which tracks these files; DVCLive's own repository integration is
    not needed, and dvclive 3.49 raises on a git repository without commits (treeverse/dvclive#522).
    """

    def _init_dvc(self) -> None:
        pass


def _live(out_dir: Path, history: list[dict[str, float]]) -> Live:
    """A DVCLive logger whose files hold exactly the epochs in `history` (replayed), ready for the next."""
    live = _FileLive(dir=str(out_dir / "dvclive"), resume=False, dvcyaml=None, save_dvc_exp=False, report=None)
    for record in history:
        _log_epoch(live, record)
    return live


def _log_epoch(live: Live, record: dict[str, float]) -> None:
    live.step = int(record["epoch"])
    for name, value in record.items():
        live.log_metric(name, value, plot=name != "epoch")
    live.next_step()


def _final_metrics(history: list[dict[str, float]]) -> dict[str, Any]:
    """The latest value of every metric, nested at '/' like DVCLive's metrics.json."""
    latest: dict[str, Any] = {}
    for record in history:
        for name, value in record.items():
            node = latest
            *parents, leaf = name.split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    return latest


class _Progress:
    """A tqdm bar on a terminal; one plain line per epoch otherwise (CI, DVC logs). Silent off rank 0."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str) -> None:
        self.enabled = enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update()

    def log(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Trainer:
    """One process's model, optimizer, LR schedule and loaders for a run; `run_epoch` trains and evaluates."""

    def __init__(self, cfg: RunConfig, data: _Data, device: torch.device, proc: distributed.Process) -> None:
        self.cfg, self.device, self.world_size = cfg, device, proc.world_size
        on_cuda = device.type == "cuda"
        channels_last = cfg.channels_last and on_cuda
        net = create_model(cfg.model, data.num_classes, cifar_stem=cfg.cifar_stem, drop_rate=cfg.drop_rate)
        self.net = net.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self.ddp = (
            DistributedDataParallel(self.net, device_ids=[device.index] if on_cuda else None)
            if proc.world_size > 1
            else self.net
        )
        self.model = torch.compile(self.ddp) if cfg.compile else self.ddp
        groups = param_groups(self.net, cfg.no_weight_decay_bn_bias)
        self.optimizer = create_optimizer(cfg.method, groups, base=cfg.base, **cfg.optimizer_kwargs)
        self.two_pass = is_two_pass(self.optimizer)
        self.autocast = functools.partial(
            torch.autocast, device.type, dtype=torch.bfloat16, enabled=on_cuda and cfg.amp == "bf16"
        )
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

        mean, std = CIFAR_MEAN[cfg.dataset], CIFAR_STD[cfg.dataset]
        self.train_loader = DeviceLoader(
            data.train_x, data.train_y, cfg.batch_size, device, mean, std, train=True, seed=cfg.seed,
            crop_padding=cfg.crop_padding, flip=cfg.flip, cutout=cfg.cutout, drop_last=True,
            channels_last=channels_last,
        )  # fmt: skip
        rank_shard = slice(proc.rank, None, proc.world_size)
        self.test_loader = DeviceLoader(
            data.test_x[rank_shard], data.test_y[rank_shard], cfg.batch_size, device, mean, std, train=False,
            drop_last=False, channels_last=channels_last,
        )  # fmt: skip
        self.steps = len(self.train_loader)
        if self.steps == 0:
            raise UnitgradError(
                f"{len(data.train_y)} training images make no batch of {cfg.batch_size}: lower train.batch_size"
            )
        local_batch = cfg.batch_size // proc.world_size
        self.batch_shard = slice(proc.rank * local_batch, (proc.rank + 1) * local_batch)
        schedule = functools.partial(
            warmup_cosine, warmup_steps=round(cfg.warmup_epochs * self.steps), total_steps=cfg.epochs * self.steps
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_states(self.device),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        _set_rng_states(state["rng"], self.device)

    def run_epoch(self, epoch: int, on_step) -> dict[str, float]:
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
        if (epoch + 1) % self.cfg.eval_every == 0 or epoch + 1 == self.cfg.epochs:
            test_loss, test_correct, test_count = distributed.all_reduce(self._evaluate()).tolist()
            record.update({"test/loss": test_loss / test_count, "test/acc": test_correct / test_count})
        record["sec_per_epoch"] = time.perf_counter() - start
        return record

    def _train(self, epoch: int, on_step) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
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
            loss, logits, grad_norm = self._step(x, y)
            self.scheduler.step()
            correct = (logits.argmax(1) == y).sum()
            sums += torch.stack([loss.double() * len(y), correct.double(), sums.new_tensor(len(y)), grad_norm.double()])
            first_non_finite = ~torch.isfinite(loss) & (bad_step == self.steps)
            bad_step = torch.where(first_non_finite, step, bad_step)
            bad_loss = torch.where(first_non_finite, loss, bad_loss)
            on_step()
        return sums, bad_step, bad_loss, lr

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer step on (x, y): (loss at w, logits at w, global norm of the gradient at w)."""
        self.optimizer.zero_grad(set_to_none=True)
        with first_pass_no_sync(self.ddp) if self.two_pass else contextlib.nullcontext():
            with self.autocast():
                logits = self.model(x)
                loss = self.loss_fn(logits, y)
            loss.backward()
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if self.two_pass:
            bn_frozen = bn_update_disabled(self.net) if self.cfg.bn_update == "first_pass" else contextlib.nullcontext()

            def closure() -> torch.Tensor:
                with bn_frozen, self.autocast():
                    perturbed_loss = self.loss_fn(self.model(x), y)
                perturbed_loss.backward()
                return perturbed_loss

            self.optimizer.step(closure)
        else:
            self.optimizer.step()
        return loss.detach().float(), logits.detach(), grad_norm

    def _evaluate(self) -> torch.Tensor:
        """[summed cross-entropy, correct, count] over this process's test shard (on the device)."""
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        self.net.eval()
        with torch.no_grad():
            for x, y in self.test_loader:
                with self.autocast():
                    logits = self.net(x)
                loss = F.cross_entropy(logits.float(), y, reduction="sum")
                sums += torch.stack([loss.double(), (logits.argmax(1) == y).sum().double(), sums.new_tensor(len(y))])
        self.net.train()
        return sums

    def _divergence(self, epoch: int, first_bad: int, bad_loss: float) -> str:
        if first_bad < self.steps:
            value = bad_loss if not math.isfinite(bad_loss) else "nan/inf"  # another rank's loss diverged
            what = f"loss became {value} at epoch {epoch + 1}/{self.cfg.epochs} step {first_bad + 1}/{self.steps}"
        else:
            what = f"weights became nan/inf at epoch {epoch + 1}/{self.cfg.epochs}"
        kept = f"; {CHECKPOINT} keeps epoch {epoch}" if epoch else ""
        return f"{what}: lower train.lr (now {self.cfg.optimizer_kwargs['lr']}) or raise train.warmup_epochs{kept}"


def train_run(cfg: RunConfig, out_dir: str | Path) -> dict[str, Any]:
    """Train the run `cfg` and write model.pt, labels.npz, run.json and dvclive/ into `out_dir`.

    Returns the final metrics (as in dvclive/metrics.json). Resumes from `out_dir/checkpoint.pt` when its
    config hash matches. Under an initialised process group, trains data-parallel; rank 0 writes.
    """
    started, start_time = utc_now(), time.perf_counter()
    out_dir = Path(out_dir)
    proc = distributed.current()
    device = resolve_device(cfg.device, proc.local_rank)
    if cfg.batch_size % proc.world_size:
        raise UnitgradError(
            f"train.batch_size {cfg.batch_size} is not divisible by the {proc.world_size} processes: change either"
        )
    say = functools.partial(print, flush=True) if proc.is_main else lambda *_: None
    if proc.is_main:
        for name in ("model.pt", "labels.npz", "run.json"):  # never leave outputs of an older run beside a new one
            (out_dir / name).unlink(missing_ok=True)
    with _determinism(device):
        data = _load_data(cfg)
        _seed_everything(cfg.seed)
        trainer = _Trainer(cfg, data, device, proc)
        checkpoint_path = out_dir / CHECKPOINT
        # The data order and the BN batches depend on the number of processes: part of the identity.
        config_hash = hashlib.sha256(f"{cfg.hash()} world_size={proc.world_size}".encode()).hexdigest()
        checkpoint = _read_checkpoint(checkpoint_path, config_hash, say)
        first_epoch, history, elapsed_before = 0, [], 0.0
        if checkpoint is not None:
            trainer.load_state_dict(checkpoint)
            first_epoch, history, elapsed_before = checkpoint["epoch"], checkpoint["history"], checkpoint["elapsed_s"]
            say(f"resuming from {checkpoint_path} after epoch {first_epoch}/{cfg.epochs}")
        live = _live(out_dir, history) if proc.is_main else None

        steps = trainer.steps
        progress = _Progress(proc.is_main, cfg.epochs * steps, first_epoch * steps, f"{cfg.optimizer} seed {cfg.seed}")
        try:
            for epoch in range(first_epoch, cfg.epochs):
                record = trainer.run_epoch(epoch, progress.step)
                history.append(record)
                if proc.is_main:
                    elapsed = elapsed_before + time.perf_counter() - start_time
                    state = {"format": CHECKPOINT_FORMAT, "config_hash": config_hash, "epoch": epoch + 1,
                             "history": history, "elapsed_s": elapsed, **trainer.state_dict()}  # fmt: skip
                    with atomic_path(checkpoint_path) as tmp:
                        torch.save(state, tmp)
                    _log_epoch(live, record)
                progress.log(_epoch_line(record, cfg.epochs))
        finally:
            progress.close()

        if proc.is_main:
            wall_time_s = elapsed_before + time.perf_counter() - start_time
            _write_outputs(
                out_dir, cfg, trainer.net, data, live, device, started, wall_time_s, first_epoch, proc.world_size
            )
    return _final_metrics(history)


def _epoch_line(record: dict[str, float], epochs: int) -> str:
    test = f" test_loss {record['test/loss']:.4f} test_acc {record['test/acc']:.4f}" if "test/acc" in record else ""
    return (
        f"epoch {record['epoch'] + 1}/{epochs} train_loss {record['train/loss']:.4f} "
        f"train_acc {record['train/acc']:.4f}{test} lr {record['lr']:.4g} "
        f"grad_norm {record['grad_norm']:.4g} {record['sec_per_epoch']:.1f}s"
    )


def _write_outputs(out_dir, cfg, net, data, live, device, started, wall_time_s, resumed_from, world_size) -> None:
    with atomic_path(out_dir / "labels.npz") as tmp, tmp.open("wb") as handle:
        np.savez(
            handle, train_indices=data.train_indices, noisy_labels=data.train_y, flip_mask=data.train_y != data.clean_y
        )
    model_state = {name: tensor.detach().cpu() for name, tensor in net.state_dict().items()}
    saved = {
        "model": model_state,
        "model_name": cfg.model,
        "num_classes": data.num_classes,
        "cifar_stem": cfg.cifar_stem,
        "dataset": cfg.dataset,
    }
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save(saved, tmp)
    live.end()
    record = provenance(
        cfg.to_dict(), device, started, utc_now(), round(wall_time_s, 3),
        resumed_from_epoch=resumed_from, world_size=world_size,
    )  # fmt: skip
    write_json(out_dir / "run.json", record)


def main(argv: list[str] | None = None) -> int:
    """`unitgrad train --dataset D --model M --optimizer O --seed S [--noise PCT] [--out DIR] [--params FILE]`."""
    parser = argparse.ArgumentParser(
        prog="unitgrad train",
        description="Train one run; every hyper-parameter comes from params.yaml. Writes "
        "<out>/<dataset>/<model>/<optimizer>/noise<pct>/seed<seed>/train/. Multi-GPU: "
        "torchrun --nproc_per_node N -m unitgrad train ...",
    )
    parser.add_argument("--dataset", required=True, help="cifar10 or cifar100")
    parser.add_argument("--model", required=True, help="a timm model name, e.g. cifar_resnet8")
    parser.add_argument("--optimizer", required=True, help="a name under optim.* in params.yaml, e.g. pugd")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument(
        "--noise", type=int, default=0, metavar="PCT", help="percent of training labels flipped, as in noise.rates"
    )
    parser.add_argument("--out", default="results/runs", help="root of the run directories (default: %(default)s)")
    parser.add_argument("--params", default="params.yaml", help="the settings file (default: %(default)s)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    run = {"dataset": args.dataset, "model": args.model, "optimizer": args.optimizer, "seed": args.seed}
    cfg = RunConfig.from_params(params, **run, noise=args.noise / 100)
    out_dir = run_dir(args.out, cfg.dataset, cfg.model, cfg.optimizer, cfg.noise, cfg.seed) / "train"
    with distributed.session(resolve_device(cfg.device, distributed.local_rank())) as proc:
        train_run(cfg, out_dir)
    if proc.is_main:
        print(f"wrote {out_dir}", flush=True)
    return 0
