"""`unitgrad prepare <dataset>` and `unitgrad corrupt <dataset>`: the DVC stages that build the data."""

from __future__ import annotations

import argparse
import time

from unitgrad.config import DATA_ROOT, load_params
from unitgrad.data.cifar import CLASSES, prepare, source_of
from unitgrad.data.cifar_c import prepare_corruptions
from unitgrad.errors import UnitgradError


def prepare_reads(dataset: str) -> tuple[str, ...]:
    return (f"data.sources.{dataset}", "data.images_per_class")


CORRUPT_READS = ("data.corruptions",)


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("dataset", choices=sorted(CLASSES), help="which dataset's data.* settings to build")
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    return parser


def prepare_main(argv: list[str]) -> int:
    """Build data/<dataset>/ from data.sources.<dataset> (relative paths: from the current directory)."""
    args = _parser("unitgrad prepare", "build the uint8 CIFAR cache from a source").parse_args(argv)
    data = load_params(args.params, prepare_reads(args.dataset)).data
    sources, sizes = data.sources, data.images_per_class
    if args.dataset not in sources:
        raise UnitgradError(f"{args.params}: data.sources.{args.dataset}: missing: add {args.dataset}: official")
    start = time.perf_counter()
    out = prepare(args.dataset, sources[args.dataset], DATA_ROOT, None if sizes is None else sizes.model_dump())
    used = source_of(args.dataset, DATA_ROOT)
    print(f"prepared {out} from {used['source']} (md5 {used['md5']}) in {time.perf_counter() - start:.1f} s")
    return 0


def corrupt_main(argv: list[str]) -> int:
    """Build data/<dataset>-c/ as data.corruptions.{source, n_images, seed} say."""
    args = _parser("unitgrad corrupt", "build the CIFAR-C corruption set").parse_args(argv)
    corruptions = load_params(args.params, CORRUPT_READS).data.corruptions
    start = time.perf_counter()
    out = prepare_corruptions(args.dataset, corruptions.source, DATA_ROOT, corruptions.n_images, corruptions.seed)
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0
