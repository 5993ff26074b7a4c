"""First real evidence on one GPU: study `main` at a reduced budget, end to end, in about 5 minutes.

CIFAR-10's full training set, cifar_resnet18, sgd / sam / pugd x 3 seeds x 10 epochs (batch 256, lr 0.1:
SAM's own CIFAR batch and LR), generated corruptions; `unitgrad prepare`, `corrupt`, `train` (k processes
packed on the GPU at once), `evaluate` (k at once) and `report all`, each called as a user would, with a
params file written from params.yaml into the work folder. A reduced budget, not a paper protocol.

    bash bench/gpu_quick.sh                  # the wrapper installs carried wheels, sets PYTHONPATH, $OUT
    bash bench/gpu_quick.sh --device cpu     # dry run: 20 images per class, 1 epoch, cifar_resnet8

Writes into --out: README.md (device, date, timings, what ran), summary.csv, paired.csv, claims.md,
main.md and three figures (8 files, flat). README.md is rewritten after every phase, so a run cut short
still says how far it got.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from unitgrad.config import read_yaml

ROOT = Path(__file__).resolve().parents[1]
STUDY = "main"  # the claims check judges directional claims on the study named main: the quick runs are it
LABEL = "Reduced budget, not a paper protocol"
FIGURES = ("accuracy.png", "learning_curves.png", "corruption_severity.png")


@dataclasses.dataclass(frozen=True)
class Sizes:
    model: str
    optimizers: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int
    batch_size: int
    train_per_class: int | None  # None: the full training set
    corruption_images: int
    eval_batch: int


GPU = Sizes("cifar_resnet18", ("sgd", "sam", "pugd"), (0, 1, 2), 10, 256, None, 1000, 1000)
CPU_DRY_RUN = Sizes("cifar_resnet8", ("sgd", "sam", "pugd"), (0, 1, 2), 1, 64, 20, 20, 200)


def quick_params(base: dict, sizes: Sizes, device: str, archive: str) -> dict:
    """params.yaml's settings with one study, `main`, at `sizes`; the report shows it; data from `archive`."""
    params = copy.deepcopy(base)
    params["data"]["datasets"] = ["cifar10"]
    params["data"]["sources"] = {"cifar10": archive}
    params["data"]["corruptions"].update(source="generate", n_images=sizes.corruption_images)
    params["data"]["loader"]["train_per_class"] = sizes.train_per_class
    params["studies"] = {
        STUDY: {
            "source": f"{LABEL}: PUGD paper's directional claims at {sizes.epochs} epoch(s) (bench/gpu_quick.py)",
            "datasets": ["cifar10"],
            "models": [sizes.model],
            "optimizers": list(sizes.optimizers),
            "noise": [0],
            "noise_kind": "symmetric",
            "seeds": list(sizes.seeds),
            "corruptions": True,
            "set": {"train.epochs": sizes.epochs, "train.batch_size": sizes.batch_size},
            "when": [],
        }
    }
    params["train"].update(device=device, warmup_epochs=min(1, sizes.epochs - 1), amp="auto", channels_last=True)
    params["evaluate"].update(batch_size=sizes.eval_batch)
    params["report"].update(main_study=STUDY, noise_study=STUDY)
    return params


def device_line(device: str) -> str:
    """The GPU's name from torch and nvidia-smi (driver, memory), or the CPU's."""
    import torch

    if device == "cpu":
        return f"CPU dry run: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    smi = shutil.which("nvidia-smi")
    query = "--query-gpu=name,driver_version,memory.total"
    detail = subprocess.run([smi, query, "--format=csv,noheader"], capture_output=True, text=True).stdout if smi else ""
    return f"{torch.cuda.get_device_name(0)} (nvidia-smi: {detail.strip() or 'not found'}), torch {torch.__version__}"


class Runner:
    """Runs `unitgrad` commands in the work folder, k at once, with a log per command and timings per phase."""

    def __init__(self, work: Path, k: int):
        self.work, self.k = work, k
        (work / "logs").mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // k)),
        }  # k runs share the cores

    def parallel(self, commands: list[tuple[str, list[str]]]) -> None:
        """Every (log name, argv) command, at most k at a time. A failed command runs once more (training resumes
        from its checkpoint); a second failure stops everything with the log's path."""
        pending, running = [(name, argv, 1) for name, argv in commands], []
        while pending or running:
            while pending and len(running) < self.k:
                name, argv, attempt = pending.pop(0)
                log = self.work / "logs" / f"{name}{'' if attempt == 1 else f'.{attempt}'}.log"
                # the child keeps its own copy of the descriptor; fmt: skip keeps the launch one statement
                with log.open("w") as stdout:
                    proc = subprocess.Popen([sys.executable, "-m", "unitgrad", *argv], cwd=self.work, env=self.env,
                                            stdout=stdout, stderr=subprocess.STDOUT)  # fmt: skip
                running.append((name, argv, attempt, log, proc))
            time.sleep(0.5)
            for item in [r for r in running if r[-1].poll() is not None]:
                running.remove(item)
                name, argv, attempt, log, proc = item
                tail = log.read_text().strip().splitlines()[-1:] or [""]
                print(f"  {name}: exit {proc.returncode}: {tail[0]}", flush=True)
                if proc.returncode != 0 and attempt == 1:
                    pending.append((name, argv, 2))
                elif proc.returncode != 0:
                    for *_, other in running:
                        other.terminate()
                    raise SystemExit(f"{name} failed twice (exit {proc.returncode}); log: {log}")


def write_readme(out: Path, facts: dict, phases: list[tuple[str, float]], done: bool) -> None:
    lines = [
        f"# First GPU evidence: study `{STUDY}` at a reduced budget",
        "",
        f"**{LABEL}.** {facts['what']}",
        "",
        f"- Device: {facts['device']}",
        f"- Started: {facts['date']}",
        f"- Packing: {facts['k']} `unitgrad train` / `unitgrad evaluate` processes at once on the one device",
        f"- Produced by: `bash bench/gpu_quick.sh{facts['args']}` (bench/gpu_quick.py), unitgrad from `src/`",
        f"- Status: {'complete' if done else 'INCOMPLETE: stopped after the last phase listed'}",
        "",
        "| phase | wall s |",
        "|---|---:|",
        *[f"| {name} | {seconds:.1f} |" for name, seconds in phases],
        "",
        "Files: summary.csv and paired.csv (`unitgrad report aggregate`), claims.md (`report claims`: each "
        "directional claim lists why this budget cannot give a verdict), main.md (`report tables`), "
        f'{", ".join(FIGURES)} (`report figures`). claims.md reads "scale: smoke": at this budget the claims '
        "check judges no published number.",
        "",
        "The params file used (params.yaml with these changes):",
        "",
        "```yaml",
        facts["changes"].rstrip(),
        "```",
    ]
    (out / "README.md").write_text("\n".join(lines) + "\n")


def changes(base: dict, quick: dict) -> dict:
    """The keys of `quick` whose values differ from `base`, nested as in the file (the README's record)."""
    diff = {}
    for key, value in quick.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            if sub := changes(base[key], value):
                diff[key] = sub
        elif base.get(key) != value:
            diff[key] = value
    return diff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a tiny dry run")
    parser.add_argument("--out", type=Path, required=True, help="where the 8 result files go")
    parser.add_argument("--work", type=Path, help="data, runs and report (default: a fresh temporary folder)")
    parser.add_argument(
        "--archive",
        type=Path,
        default=ROOT / ".carry/cifar10-jpeg.tar.gz",
        help="the CIFAR-10 image-folder archive (default: %(default)s)",
    )
    parser.add_argument("-k", type=int, help="runs at once (default: every run on cuda, 2 on cpu)")
    parser.add_argument("--epochs", type=int, help="override the size's epochs")
    args = parser.parse_args(argv)
    sizes = GPU if args.device == "cuda" else CPU_DRY_RUN
    if args.epochs:
        sizes = dataclasses.replace(sizes, epochs=args.epochs)
    if not args.archive.is_file():
        raise SystemExit(f"{args.archive} not found: run bench/gpu_wheels.sh (copies the CIFAR-10 archive there)")
    runs = [(o, s) for o in sizes.optimizers for s in sizes.seeds]
    k = args.k or (len(runs) if args.device == "cuda" else 2)
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"unitgrad-gpu-quick-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)

    base = read_yaml(ROOT / "params.yaml")  # YAML 1.2 floats, as every command reads it
    quick = quick_params(base, sizes, args.device, str(args.archive.resolve()))
    (work / "params.yaml").write_text(yaml.safe_dump(quick, sort_keys=False, width=120))
    train_size = f"{sizes.train_per_class * 10:,}" if sizes.train_per_class else "all 50,000"
    shown = copy.deepcopy(quick)  # the README names the archive as given, not this machine's absolute path
    shown["data"]["sources"]["cifar10"] = os.path.relpath(args.archive.resolve(), ROOT)
    epochs = f"{sizes.epochs} epoch{'s' * (sizes.epochs != 1)}"
    given = sys.argv[1:] if argv is None else argv
    facts = {
        "what": f"CIFAR-10 ({train_size} training images), {sizes.model}, {' / '.join(sizes.optimizers)} x seeds "
        f"{', '.join(map(str, sizes.seeds))}, {epochs}, batch {sizes.batch_size}, generated corruptions on "
        f"{sizes.corruption_images} test images; published numbers need 200 epochs.",
        "device": device_line(args.device),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "k": k,
        "args": "".join(f" {a}" for a in given if a not in ("--out", str(args.out))),
        "changes": yaml.safe_dump(changes(base, shown), sort_keys=False, width=120),
    }
    runner, phases = Runner(work, k), []
    run_dirs = [f"runs/{STUDY}/cifar10/{sizes.model}/{o}/noise0/seed{s}" for o, s in runs]
    steps = [
        ("prepare + corrupt (CPU)", [("prepare", ["prepare", "cifar10"])]),
        ("", [("corrupt", ["corrupt", "cifar10"])]),
        (
            f"train {len(runs)} runs, {k} at once",
            [
                (
                    f"train-{o}-{s}",
                    [
                        "train",
                        "--study",
                        STUDY,
                        "--dataset",
                        "cifar10",
                        "--model",
                        sizes.model,
                        "--optimizer",
                        o,
                        "--seed",
                        str(s),
                        "--out",
                        "runs",
                    ],
                )
                for o, s in runs
            ],
        ),
        (
            f"evaluate {len(runs)} runs (clean + corruptions)",
            [(f"evaluate-{o}-{s}", ["evaluate", d]) for (o, s), d in zip(runs, run_dirs, strict=True)],
        ),
        (
            "report all",
            [
                (
                    "report",
                    [
                        "report",
                        "all",
                        "--runs",
                        "runs",
                        "--results",
                        "results",
                        "--figures",
                        "results/figures",
                        "--paper-tables",
                        "results/paper-tables",
                    ],
                )
            ],
        ),
    ]
    print(f"gpu_quick: {facts['device']}; work folder {work}; {len(runs)} runs, {k} at once", flush=True)
    for title, commands in steps:
        start = time.perf_counter()
        runner.parallel(commands)
        seconds = time.perf_counter() - start
        if title:
            phases.append((title, seconds))
        else:  # a continuation of the phase before
            phases[-1] = (phases[-1][0], phases[-1][1] + seconds)
        print(f"{title or 'corrupt'}: {seconds:.1f} s", flush=True)
        write_readme(args.out, facts, phases, done=False)
    results = work / "results"
    for path in (
        results / "summary.csv",
        results / "paired.csv",
        results / "claims.md",
        results / "tables/main.md",
        *(results / "figures" / name for name in FIGURES),
    ):
        shutil.copy2(path, args.out / path.name)
    phases.append(("total", sum(seconds for _, seconds in phases)))
    write_readme(args.out, facts, phases, done=True)
    print((results / "tables/main.md").read_text())
    print(f"gpu_quick: wrote {', '.join(sorted(p.name for p in args.out.iterdir()))} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
