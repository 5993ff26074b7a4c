"""Atomic outputs and the CLI's error contract."""

import argparse
import importlib
import importlib.metadata
import os
import shutil
import subprocess
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


def test_version_prints_the_installed_version(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"unitgrad {importlib.metadata.version('unitgrad')}" and out.split()[1][0].isdigit()
    installed = shutil.which("unitgrad", path=os.path.dirname(sys.executable))
    if installed:  # the console script, as a user calls it
        result = subprocess.run([installed, "--version"], capture_output=True, text=True, check=False)
        assert result.returncode == 0 and result.stdout.startswith("unitgrad ")


class _Parsed(Exception):
    """Stops a command right after argparse has been set up, carrying its parser."""


@pytest.mark.parametrize("command", ["prepare", "corrupt", "evaluate", "report", "paper", "toy"])
def test_every_option_of_every_command_has_help(command, monkeypatch):
    def capture(parser, args=None, namespace=None):
        raise _Parsed(parser)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    module_name, func_name = cli.COMMANDS[command][0].split(":")
    with pytest.raises(_Parsed) as parsed:
        getattr(importlib.import_module(module_name), func_name)([])
    parser = parsed.value.args[0]
    undocumented = [action.dest for action in parser._actions if not action.help]
    assert undocumented == [], f"unitgrad {command}: options without help text: {undocumented}"


def test_report_commands_start_without_torch_timm_or_dvclive():
    # Each report stage is its own process: importing torch, timm and DVCLive would cost it ~6 s on 2 cores.
    probe = (
        "import sys, unitgrad.report.cli, unitgrad.report.selection; "
        "print(sorted({'torch', 'timm', 'dvclive'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
