"""`unitgrad toy`: optimizer paths from one start on a 2-D non-convex loss surface (the paper's 2-D figure).

Writes results/figures/toy_trajectories.png (contours + one path per optimizer) and
results/toy/trajectories.csv (optimizer, step, x, y, loss). The surface has a sharp minimum next to the
start and a wide one further away. SAM, ASAM, UGD and PUGD are the real `unitgrad.optim` classes, driven
like a training loop on one 2-vector parameter (so |w| in ASAM/PUGD is per coordinate); "normalised GD"
is UGD without momentum. Deterministic (float64, no randomness); runs in seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # writes a file; no display is needed or assumed

import matplotlib.pyplot as plt
import numpy as np
import torch

from unitgrad.config import load_params
from unitgrad.io import atomic_path
from unitgrad.optim import create_optimizer, is_two_pass
from unitgrad.report import style
from unitgrad.schema import Toy

READS = ("toy",)
LINESTYLES = ["-", "--", "-", "-.", "-", ":", "-"]
SHARP_MIN, WIDE_MIN = (-1.3, 0.9), (0.9, -0.5)


def surface(w: torch.Tensor) -> torch.Tensor:
    """Loss at points w[..., 2]: a wide elongated basin, a sharp narrow well near the start, a weak bowl."""
    x, y = w[..., 0], w[..., 1]
    wide = torch.exp(-((x - WIDE_MIN[0]) ** 2 / (2 * 0.5**2) + (y - WIDE_MIN[1]) ** 2 / (2 * 1.3**2)))
    sharp = torch.exp(-((x - SHARP_MIN[0]) ** 2 + (y - SHARP_MIN[1]) ** 2) / (2 * 0.15**2))
    return 1.0 - 0.8 * wide - 0.6 * sharp + 0.05 * (x**2 + y**2)


def build_optimizer(name: str, params: list[torch.Tensor], cfg: Toy) -> torch.optim.Optimizer:
    """Optimizer `name` of toy.optimizers over `params`, with toy.*'s hyper-parameters and a base SGD."""
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.adagrad_lr)
    # foreach=False: torch's own CPU default (a loop over tensors); the fused kernel that create_optimizer
    # picks otherwise rounds differently, and the paths' digits would move.
    if name == "ngd":  # normalised GD: UGD without momentum
        return create_optimizer("ugd", params, lr=cfg.lr, foreach=False)
    own = {
        "sam": {"rho": cfg.sam_rho},
        "asam": {"rho": cfg.asam_rho, "eta": cfg.asam_eta},
        "pugd": {"rho": cfg.pugd_rho},
    }
    return create_optimizer(name, params, lr=cfg.lr, momentum=cfg.momentum, foreach=False, **own.get(name, {}))


def trajectory(name: str, cfg: Toy) -> np.ndarray:
    """Points (toy.steps + 1, 2) visited by optimizer `name` from toy.start."""
    w = torch.tensor(cfg.start, dtype=torch.float64, requires_grad=True)
    opt = build_optimizer(name, [w], cfg)
    path = [w.detach().clone()]
    for _ in range(cfg.steps):
        opt.zero_grad()
        surface(w).backward()
        if is_two_pass(opt):
            opt.step(lambda: surface(w).backward())
        else:
            opt.step()
        path.append(w.detach().clone())
    return torch.stack(path).numpy()


def write_csv(path: Path, paths: dict[str, np.ndarray]) -> None:
    lines = ["optimizer,step,x,y,loss"]
    for name, points in paths.items():
        losses = surface(torch.from_numpy(points)).numpy()
        lines += [f"{name},{i},{x:.10g},{y:.10g},{loss:.10g}" for i, ((x, y), loss) in enumerate(zip(points, losses))]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def plot(path: Path, paths: dict[str, np.ndarray], start: list[float]) -> None:
    style.use()
    every = np.concatenate(list(paths.values()))
    lo = np.minimum(every.min(0), [-2.0, -2.0]) - 0.2
    hi = np.maximum(every.max(0), [2.0, 2.0]) + 0.2
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    grid = surface(torch.from_numpy(np.stack([gx, gy], -1))).numpy()

    fig, ax = plt.subplots(figsize=(7.0, 6.0))
    filled = ax.contourf(gx, gy, grid, levels=30, cmap="Greys_r", alpha=0.55)
    ax.contour(gx, gy, grid, levels=30, colors="white", linewidths=0.3, alpha=0.6)
    fig.colorbar(filled, ax=ax, label="loss")
    ax.grid(False)  # the contours are the grid
    for (name, points), linestyle in zip(paths.items(), LINESTYLES):
        colour = style.colour(name)
        ax.plot(points[:, 0], points[:, 1], linestyle, color=colour, lw=1.8, label=style.label(name))
        ax.plot(*points[-1], "o", color=colour, ms=6, mec="white", mew=0.8)
    ax.plot(*start, "*", color="black", ms=14, mec="white", label="start")
    labels = ((SHARP_MIN, "sharp well", (-62, -16)), (WIDE_MIN, "wide basin", (6, -14)))
    for centre, text, offset in labels:
        ax.plot(*centre, "x", color="black", ms=7)
        ax.annotate(text, centre, xytext=offset, textcoords="offset points", fontsize=8)
    ax.set(
        xlabel="$w_1$",
        ylabel="$w_2$",
        title="Optimizer paths on a 2-D non-convex loss (dot = final point)",
    )
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unitgrad toy", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="configuration file (reads toy.*)")
    parser.add_argument(
        "--out-dir",
        default="results",
        help="writes figures/ and toy/ under this directory",
    )
    args = parser.parse_args(argv)
    cfg = load_params(args.params, READS).toy
    paths = {name: trajectory(name, cfg) for name in cfg.optimizers}
    out = Path(args.out_dir)
    write_csv(out / "toy" / "trajectories.csv", paths)
    plot(out / "figures" / "toy_trajectories.png", paths, cfg.start)
    finals = ", ".join(f"{n} ({p[-1, 0]:+.2f}, {p[-1, 1]:+.2f})" for n, p in paths.items())
    print(f"toy: {cfg.steps} steps from {tuple(cfg.start)}; final points: {finals}")
    return 0
