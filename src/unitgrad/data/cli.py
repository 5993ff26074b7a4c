"""`unitgrad prepare <dataset>` and `unitgrad corrupt <dataset>`: the DVC stages that build the data."""

from __future__ import annotations

import argparse
import time

from unitgrad.config import get, load_params
from unitgrad.data.cifar import CLASSES, prepare, source_of
from unitgrad.data.cifar_c import prepare_corruptions


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("dataset", choices=sorted(CLASSES), help="which dataset's data.* settings to build")
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    return parser


def prepare_main(argv: list[str]) -> int:
    """Build data.root/<dataset>/ from data.sources.<dataset> (relative paths: from the current directory)."""
    args = _parser("unitgrad prepare", "build the uint8 CIFAR cache from a source").parse_args(argv)
    params = load_params(args.params)
    start = time.perf_counter()
    out = prepare(args.dataset, get(params, f"data.sources.{args.dataset}"), get(params, "data.root"))
    used = source_of(args.dataset, get(params, "data.root"))
    print(f"prepared {out} from {used['source']} (md5 {used['md5']}) in {time.perf_counter() - start:.1f} s")
    return 0


def corrupt_main(argv: list[str]) -> int:
    """Build data.root/<dataset>-c/ as data.corruptions.{source, n_images, seed} say."""
    args = _parser("unitgrad corrupt", "build the CIFAR-C corruption set").parse_args(argv)
    params = load_params(args.params)
    start = time.perf_counter()
    out = prepare_corruptions(
        args.dataset,
        get(params, "data.corruptions.source"),
        get(params, "data.root"),
        int(get(params, "data.corruptions.n_images")),
        int(get(params, "data.corruptions.seed")),
    )
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0
