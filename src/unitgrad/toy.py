"""`unitgrad toy`: optimizer paths from one start on a 2-D non-convex loss surface (the paper's 2-D figure).

Writes results/figures/toy_trajectories.png (contours + one path per optimizer) and
results/toy/trajectories.csv (optimizer, step, x, y, loss). The surface has a sharp minimum next to the
start and a wide one further away. SAM, ASAM, UGD and PUGD are the real `unitgrad.optim` classes, driven
like a training loop on one 2-vector parameter (so |w| in ASAM/PUGD is per coordinate); "normalised GD"
is UGD without momentum. Deterministic (float64, no randomness); runs in seconds.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unitgrad.config import get, load_params
from unitgrad.errors import UnitgradError
from unitgrad.io import atomic_path
from unitgrad.optim import ASAM, PUGD, SAM, UGD, is_two_pass

LABELS = {
    "sgd": "SGD",
    "adagrad": "Adagrad",
    "ngd": "normalised GD",
    "sam": "SAM",
    "asam": "ASAM",
    "ugd": "UGD",
    "pugd": "PUGD",
}
# Okabe-Ito: distinguishable with every common colour-vision deficiency (its yellow is replaced by black)
COLOURS = ["#E69F00", "#56B4E9", "#009E73", "#000000", "#0072B2", "#D55E00", "#CC79A7"]
SHARP_MIN, WIDE_MIN = (-1.3, 0.9), (0.9, -0.5)


def surface(w: torch.Tensor) -> torch.Tensor:
    """Loss at points w[..., 2]: a wide elongated basin, a sharp narrow well near the start, a weak bowl."""
    x, y = w[..., 0], w[..., 1]
    wide = torch.exp(
        -((x - WIDE_MIN[0]) ** 2 / (2 * 0.5**2) + (y - WIDE_MIN[1]) ** 2 / (2 * 1.3**2))
    )
    sharp = torch.exp(
        -((x - SHARP_MIN[0]) ** 2 + (y - SHARP_MIN[1]) ** 2) / (2 * 0.15**2)
    )
    return 1.0 - 0.8 * wide - 0.6 * sharp + 0.05 * (x**2 + y**2)


def build_optimizer(
    name: str, params: list[torch.Tensor], cfg: dict[str, float]
) -> torch.optim.Optimizer:
    lr, momentum = cfg["lr"], cfg["momentum"]
    sgd = torch.optim.SGD
    if name == "sgd":
        return sgd(params, lr=lr, momentum=momentum)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg["adagrad_lr"])
    if name == "ngd":
        return UGD(params, sgd, lr=lr)
    if name == "sam":
        return SAM(params, sgd, rho=cfg["sam_rho"], lr=lr, momentum=momentum)
    if name == "asam":
        return ASAM(
            params,
            sgd,
            rho=cfg["asam_rho"],
            eta=cfg["asam_eta"],
            lr=lr,
            momentum=momentum,
        )
    if name == "ugd":
        return UGD(params, sgd, lr=lr, momentum=momentum)
    if name == "pugd":
        return PUGD(params, sgd, rho=cfg["pugd_rho"], lr=lr, momentum=momentum)
    raise UnitgradError(
        f"unknown toy optimizer '{name}': choose from {', '.join(LABELS)} in toy.optimizers"
    )


def trajectory(
    name: str, start: tuple[float, float], steps: int, cfg: dict[str, float]
) -> np.ndarray:
    """Points (steps + 1, 2) visited by optimizer `name` from `start`."""
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = build_optimizer(name, [w], cfg)
    path = [w.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        surface(w).backward()
        if is_two_pass(opt):
            opt.step(lambda: surface(w).backward())
        else:
            opt.step()
        path.append(w.detach().clone())
    return torch.stack(path).numpy()


def _number(params: dict[str, Any], key: str, positive: bool = False) -> float:
    value = get(params, f"toy.{key}")
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise UnitgradError(
            f"toy.{key} must be a finite number >= 0, got {value!r}: fix params.yaml"
        )
    if positive and value == 0:
        raise UnitgradError(f"toy.{key} must be > 0: fix params.yaml")
    return float(value)


def read_config(
    params: dict[str, Any],
) -> tuple[tuple[float, float], int, list[str], dict[str, float]]:
    start = get(params, "toy.start")
    if not (
        isinstance(start, list)
        and len(start) == 2
        and all(isinstance(v, (int, float)) for v in start)
    ):
        raise UnitgradError(
            f"toy.start must be a list of two numbers [x, y], got {start!r}: fix params.yaml"
        )
    steps = get(params, "toy.steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UnitgradError(
            f"toy.steps must be an integer >= 1, got {steps!r}: fix params.yaml"
        )
    names = get(params, "toy.optimizers")
    unknown = (
        [n for n in names if n not in LABELS] if isinstance(names, list) else [names]
    )
    if unknown or not names:
        raise UnitgradError(
            f"toy.optimizers: unknown {unknown!r}; choose from {', '.join(LABELS)}"
        )
    cfg = {
        k: _number(params, k, positive=k.endswith("lr"))
        for k in ("lr", "adagrad_lr", "momentum")
    }
    cfg |= {
        k: _number(params, k) for k in ("sam_rho", "asam_rho", "asam_eta", "pugd_rho")
    }
    return (float(start[0]), float(start[1])), steps, names, cfg


def write_csv(path: Path, paths: dict[str, np.ndarray]) -> None:
    lines = ["optimizer,step,x,y,loss"]
    for name, points in paths.items():
        losses = surface(torch.from_numpy(points)).numpy()
        lines += [
            f"{name},{i},{x:.10g},{y:.10g},{loss:.10g}"
            for i, ((x, y), loss) in enumerate(zip(points, losses))
        ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def plot(path: Path, paths: dict[str, np.ndarray], start: tuple[float, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = np.concatenate(list(paths.values()))
    lo = np.minimum(every.min(0), [-2.0, -2.0]) - 0.2
    hi = np.maximum(every.max(0), [2.0, 2.0]) + 0.2
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    grid = surface(torch.from_numpy(np.stack([gx, gy], -1))).numpy()

    fig, ax = plt.subplots(figsize=(7.0, 6.0), dpi=150)
    filled = ax.contourf(gx, gy, grid, levels=30, cmap="Greys_r", alpha=0.55)
    ax.contour(gx, gy, grid, levels=30, colors="white", linewidths=0.3, alpha=0.6)
    fig.colorbar(filled, ax=ax, label="loss")
    for (name, points), colour, style in zip(
        paths.items(), COLOURS, ["-", "--", "-", "-.", "-", ":", "-"]
    ):
        ax.plot(
            points[:, 0], points[:, 1], style, color=colour, lw=1.8, label=LABELS[name]
        )
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
    parser = argparse.ArgumentParser(
        prog="unitgrad toy", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--params", default="params.yaml", help="configuration file (reads toy.*)"
    )
    parser.add_argument(
        "--out-dir",
        default="results",
        help="writes figures/ and toy/ under this directory",
    )
    args = parser.parse_args(argv)
    start, steps, names, cfg = read_config(load_params(args.params))
    paths = {name: trajectory(name, start, steps, cfg) for name in names}
    out = Path(args.out_dir)
    write_csv(out / "toy" / "trajectories.csv", paths)
    plot(out / "figures" / "toy_trajectories.png", paths, start)
    finals = ", ".join(
        f"{n} ({p[-1, 0]:+.2f}, {p[-1, 1]:+.2f})" for n, p in paths.items()
    )
    print(f"toy: {steps} steps from {start}; final points: {finals}")
    return 0
