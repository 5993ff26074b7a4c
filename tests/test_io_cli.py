"""Atomic outputs and the CLI's error contract."""

import os
import sys
import types

import pytest

from unitgrad import cli
from unitgrad.errors import UnitgradError
from unitgrad.io import atomic_dir, atomic_path, write_json


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_on_success(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_json(target, {"a": 1})
    write_json(target, {"a": 2})
    assert target.read_text() == '{\n  "a": 2\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_atomic_dir_keeps_the_old_directory_when_the_block_fails(tmp_path):
    target = tmp_path / "cache"
    with atomic_dir(target) as tmp:
        (tmp / "x").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "x").write_text("new")
        raise RuntimeError("killed")
    assert (target / "x").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_unknown_command_exits_2(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_unitgrad_error_is_one_line_and_exit_2(monkeypatch, capsys):
    def fail(argv):
        raise UnitgradError("data/cifar10 missing: run `unitgrad prepare cifar10`")

    module = types.ModuleType("fake_command")
    module.main = fail
    monkeypatch.setitem(sys.modules, "fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "boom", ("fake_command:main", "test"))
    assert cli.main(["boom"]) == 2
    assert capsys.readouterr().err == "error: data/cifar10 missing: run `unitgrad prepare cifar10`\n"


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in cli.COMMANDS)


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    write_json(tmp_path / "a.json", {})
    with atomic_dir(tmp_path / "d"):
        pass
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~umask
