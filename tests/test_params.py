"""params.yaml (smoke) and params.paper.yaml (paper) are two values of one schema."""

from pathlib import Path

import pytest
import yaml

from unitgrad.config import get, load_params
from unitgrad.errors import UnitgradError

ROOT = Path(__file__).resolve().parents[1]


def _keys(node, prefix=""):
    if not isinstance(node, dict) or prefix.startswith(("data.sources.", "optim.sam.rho", "optim.asam.rho")):
        return {prefix}
    return set().union(*(_keys(v, f"{prefix}{k}.") for k, v in node.items())) if node else {prefix}


def test_paper_params_have_the_same_keys_as_smoke_params():
    smoke = load_params(ROOT / "params.yaml")
    paper = load_params(ROOT / "params.paper.yaml")
    assert _keys(smoke) == _keys(paper)
    assert (smoke["scale"], paper["scale"]) == ("smoke", "paper")


def test_every_optimizer_in_the_grid_has_a_config_section():
    for name in ("params.yaml", "params.paper.yaml"):
        params = load_params(ROOT / name)
        for opt in params["grid"]["optimizers"] + params["noise"]["optimizers"]:
            assert opt in params["optim"], f"{name}: optim.{opt} missing"


def test_get_names_the_missing_key(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {"lr": 0.1}}))
    params = load_params(path)
    assert get(params, "train.lr") == 0.1
    assert get(params, "train.epochs", 3) == 3
    with pytest.raises(UnitgradError, match="'train.epochs'"):
        get(params, "train.epochs")


@pytest.mark.parametrize("text", ["[1, 2", "- a\n- b\n"])
def test_bad_params_file_is_a_one_line_error(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(UnitgradError) as err:
        load_params(path)
    assert "\n" not in str(err.value)


def test_missing_params_file(tmp_path):
    with pytest.raises(UnitgradError, match="not found"):
        load_params(tmp_path / "nope.yaml")
