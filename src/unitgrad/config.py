"""Read and validate params.yaml, the single source of configuration for every stage.

`load_params(path, reads)` validates the whole file against `unitgrad.schema.Params` before anything
runs and returns a view holding only the dotted keys `reads` (what the command declares it reads, and
dvc.yaml declares for its stage). Every problem is one UnitgradError line naming the file and the key.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from unitgrad.errors import UnitgradError
from unitgrad.schema import METHODS, Optim, Params, method_of

DATA_ROOT = Path("data")  # prepared caches: data/<dataset>/, data/<dataset>-c/ (dvc.yaml's outputs)
# Written by dvc.yaml's `check` stage (`unitgrad params check --stamp`) when params are valid; every other stage
# depends on it, so DVC stops at a bad params file before it removes any stage's outputs. Its text never
# changes: a valid edit makes out of date only the stages that read the edited keys.
PARAMS_STAMP = Path("results/params.ok")


class _Loader(yaml.SafeLoader):
    """YAML 1.2 floats: PyYAML's 1.1 resolver reads 1e-3 and 5e4 (no dot, unsigned exponent) as strings.
    A key written twice in one mapping is an error: PyYAML would keep the last one without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in one mapping: keep one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in the YAML file `path` (floats as numbers); UnitgradError if missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise UnitgradError(f"{path} not found: run from the project root or pass --params PATH")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as exc:
        raise UnitgradError(f"{path} is not valid YAML ({' '.join(str(exc).split())}): fix the file") from exc
    if not isinstance(data, dict):
        raise UnitgradError(f"{path} must hold a mapping at the top level")
    return data


def parse_params(data: dict[str, Any], source: str | Path = "params.yaml") -> Params:
    """`data` validated as Params; the first problem as one UnitgradError line naming `source` and the key."""
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        alternatives: dict[tuple, list[tuple[tuple, dict[str, Any]]]] = {}  # a union reports each alternative
        for error in exc.errors():
            field, loc = _key_path(data, error)
            alternatives.setdefault(field, []).append((loc, error))
        # Of a union's alternatives, the one that got past the type check (or got deepest) says most; an
        # unknown key first: a typo also makes the key it meant missing, and the unknown one has the hint.
        errors = [
            min(found, key=lambda item: (item[1]["type"].endswith("_type"), -len(item[0])))
            for found in alternatives.values()
        ]
        errors.sort(key=lambda item: item[1]["type"] != "extra_forbidden")
        (loc, first), more = errors[0], len(errors) - 1
        tail = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
        raise UnitgradError(f"{source}: {_describe(loc, first)}{tail}") from None


def load_params(path: str | Path = "params.yaml", reads: Iterable[str] | None = None) -> Params:
    """The validated params in `path`; with `reads`, a view holding only those dotted keys (see `view`)."""
    params = parse_params(read_yaml(path), path)
    return params if reads is None else view(params, reads)


def view(params: Params, keys: Iterable[str]) -> Params:
    """A view of `params` holding just the dotted `keys` (sections or keys): reading anything else raises
    AttributeError. Each command reads its params through the view of the keys it declares, so the
    declaration that dvc.yaml is tested against is the one the code is held to."""
    tree: dict[str, Any] = {}
    for key in keys:
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if node is True:
                break
        else:
            node[leaf] = True
    return _restricted(params, tree)


def _restricted(model: BaseModel, tree: dict[str, Any] | bool) -> Any:
    if tree is True:
        return model
    if isinstance(model, dict):  # e.g. data.sources.<dataset>: only the entries asked for, when present
        return {name: _restricted(model[name], subtree) for name, subtree in tree.items() if name in model}
    values = {}
    for name, subtree in tree.items():
        value = model[name] if isinstance(model, Optim) and name != "base" else getattr(model, name)
        values[name] = _restricted(value, subtree)
    return type(model).model_construct(**values)


def _key_path(data: Any, error: dict[str, Any]) -> tuple[tuple[str | int, ...], tuple[str | int, ...]]:
    """(the key whose value failed, the full location) as keys of the file, pydantic's union-member tags
    (int, list[str], ...) dropped: the alternatives of one union share the first."""
    path: list[str | int] = []
    field: tuple[str | int, ...] | None = None
    node = data
    for position, part in enumerate(error["loc"]):
        if (isinstance(node, dict) and part in node) or (isinstance(node, list) and isinstance(part, int)):
            path.append(part)
            node = node[part]
        elif error["type"] == "missing" and position == len(error["loc"]) - 1:
            path.append(part)
        elif field is None:
            field = tuple(path)
    return (tuple(path) if field is None else field), tuple(path)


def _describe(loc: tuple[str | int, ...], error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        parent = ".".join(str(part) for part in loc[:-1])
        hint = (
            f"did you mean {parent + '.' if parent else ''}{close[0]}?" if close else f"allowed: {', '.join(allowed)}"
        )
        return f"{key}: unknown key: {hint}"
    if kind == "missing":
        return f"{key}: missing: add it (see README, Configuration)"
    if kind == "params":
        return f"{key}: {error['msg']}"
    return f"{key}: {error['msg'][0].lower()}{error['msg'][1:]}, got {error['input']!r}"


def allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    """The keys the schema allows in the mapping at `loc` (e.g. ("train",) -> epochs, batch_size, ...;
    ("studies", "main") and ("studies", "main", "when", 0) through the dict and the list to their sections)."""
    model: Any = Params
    for part in loc:
        if model is Optim and part != "base":
            model = METHODS.get(method_of(str(part)))
        elif isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(part)
            model = _section(field.annotation) if field is not None else None
        else:  # a name under a dict of sections, or an index into a list of them
            model = _section(typing.get_args(model)[-1]) if typing.get_origin(model) in (dict, list) else None
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _section(annotation: Any) -> Any:
    """`annotation` without Annotated's metadata (dict[str, Study] stays a dict, Study a section)."""
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation
