"""Read `params.yaml`, the single source of configuration for every stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from unitgrad.errors import UnitgradError

_MISSING = object()


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UnitgradError(f"{path} not found: run from the project root or pass --params PATH")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UnitgradError(f"{path} is not valid YAML ({exc.__class__.__name__}): fix the file") from exc
    if not isinstance(params, dict):
        raise UnitgradError(f"{path} must hold a mapping at the top level")
    return params


def get(params: dict[str, Any], dotted: str, default: Any = _MISSING) -> Any:
    """`get(p, "train.lr")`; a missing key without a default is an error naming the key."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is _MISSING:
                raise UnitgradError(f"params.yaml has no '{dotted}': add it (see README, 'Configuration')")
            return default
        node = node[part]
    return node
