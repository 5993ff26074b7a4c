"""What a run reports while it trains: DVCLive files (rebuilt from the history on every start) and progress."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dvclive import Live
from tqdm import tqdm


class _FileLive(Live):
    """DVCLive as a file logger only: metrics.json and plots/metrics/*.tsv, nothing asked of DVC or git.

    The stage runs inside `dvc repro`, which tracks these files; DVCLive's own repository integration is
    not needed, and dvclive 3.49 raises on a git repository without commits (treeverse/dvclive#522).
    """

    def _init_dvc(self) -> None:
        pass


def live_logger(out_dir: Path, history: list[dict[str, float]]) -> Live:
    """A DVCLive logger whose files hold exactly the epochs in `history` (replayed), ready for the next."""
    live = _FileLive(dir=str(out_dir / "dvclive"), resume=False, dvcyaml=None, save_dvc_exp=False, report=None)
    for record in history:
        log_epoch(live, record)
    return live


def log_epoch(live: Live, record: dict[str, float]) -> None:
    live.step = int(record["epoch"])
    for name, value in record.items():
        live.log_metric(name, value, plot=name != "epoch")
    live.next_step()


def final_metrics(history: list[dict[str, float]]) -> dict[str, Any]:
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


def epoch_line(record: dict[str, float], epochs: int) -> str:
    monitored = [key.split("/")[0] for key in record if key.endswith("/acc") and not key.startswith("train/")]
    test = "".join(f" {m}_loss {record[m + '/loss']:.4f} {m}_acc {record[m + '/acc']:.4f}" for m in monitored)
    return (
        f"epoch {record['epoch'] + 1}/{epochs} train_loss {record['train/loss']:.4f} "
        f"train_acc {record['train/acc']:.4f}{test} lr {record['lr']:.4g} "
        f"grad_norm {record['grad_norm']:.4g} {record['sec_per_epoch']:.1f}s"
    )


class Progress:
    """A tqdm bar on a terminal; one plain line per epoch otherwise (CI, DVC logs). Silent off rank 0."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str) -> None:
        self.enabled = enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
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
