"""`unitgrad train --study S --dataset D --model M --optimizer O --seed K [--noise PCT] [--out DIR] [--params F]`."""

from __future__ import annotations

import argparse

from unitgrad import distributed
from unitgrad.config import load_params
from unitgrad.device import resolve_device
from unitgrad.errors import UnitgradError
from unitgrad.run_config import RunConfig
from unitgrad.runs import RUNS_ROOT, RunId
from unitgrad.schema import SEED_LIMIT, did_you_mean
from unitgrad.train.run import train_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="unitgrad train",
        description="Train one run; every hyper-parameter comes from params.yaml. Writes "
        f"<out>/{RunId.LAYOUT}/train/. Multi-GPU: torchrun --nproc_per_node N -m unitgrad train ...",
    )
    parser.add_argument("--study", required=True, help="a name under studies in params.yaml, e.g. main")
    parser.add_argument("--dataset", required=True, choices=("cifar10", "cifar100"), help="the dataset")
    parser.add_argument("--model", required=True, help="a timm model name, e.g. cifar_resnet8")
    parser.add_argument("--optimizer", required=True, help="a name under optim.* in params.yaml, e.g. pugd")
    parser.add_argument("--seed", type=int, required=True, help="the run seed (initialisation, data order)")
    parser.add_argument(
        "--noise", type=int, default=0, metavar="PCT", help="percent of training labels flipped, as in studies.*.noise"
    )
    parser.add_argument("--out", default=str(RUNS_ROOT), help="root of the run directories (default: %(default)s)")
    parser.add_argument("--params", default="params.yaml", help="the settings file (default: %(default)s)")
    args = parser.parse_args(argv)
    # The ranges studies.<name>.noise and .seeds allow (numpy takes seeds below 2**32), before anything runs.
    if not 0 <= args.noise <= 100:
        raise UnitgradError(f"--noise {args.noise}: a percent of flipped labels must lie in 0..100")
    if not 0 <= args.seed < SEED_LIMIT:
        raise UnitgradError(f"--seed {args.seed}: a run seed must lie in 0..{SEED_LIMIT - 1}")
    run = RunId(args.study, args.dataset, args.model, args.optimizer, args.noise, args.seed)
    params = load_params(args.params)
    if run.optimizer not in params.optim.names():
        raise UnitgradError(
            f"{args.params}: optim.{run.optimizer}: no such entry for --optimizer {run.optimizer}"
            f"{did_you_mean(run.optimizer, params.optim.names())}"
        )
    cfg = RunConfig.for_run(params, run, args.params)
    out_dir = run.to_path(args.out) / "train"
    with distributed.session(resolve_device(cfg.train.device, distributed.local_rank())) as proc:
        train_run(cfg, out_dir)
    if proc.is_main:
        # DVC records a stage's params as they are when its command ends: had they changed during the run,
        # dvc.lock would hold values the run never used. Failing leaves the stage unrecorded and out of date.
        if RunConfig.for_run(load_params(args.params), run, args.params) != cfg:
            raise UnitgradError(
                f"{args.params} changed while {out_dir} trained: its outputs hold the old settings, so the command "
                "fails and DVC does not record it; rerun it"
            )
        print(f"wrote {out_dir}", flush=True)
    return 0
