"""`convlens --help` and `--version` stay instant: nothing heavy is imported up front.

Timing is measured, never asserted (this machine is shared); what is asserted is the
cause of a slow start: importing ``convlens.cli`` must not import matplotlib (over a
second) or torch, and the light parser must not import NumPy either.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from convlens.cli import COMMANDS, build_parser, main


def modules_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_importing_the_cli_pulls_in_neither_matplotlib_nor_torch():
    loaded = modules_after("import convlens.cli")
    assert "matplotlib" not in loaded
    assert "torch" not in loaded
    assert "numpy" not in loaded


def test_help_and_version_import_no_numpy():
    code = (
        "import contextlib, io\n"
        "from convlens.cli import main\n"
        "for flag in ('--help', '--version'):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main([flag])"
    )
    loaded = modules_after(code)
    assert not {"numpy", "matplotlib", "torch"} & loaded


def test_training_package_defers_matplotlib_to_the_plots():
    loaded = modules_after("import convlens.train")
    assert "matplotlib" not in loaded


def test_light_and_full_parsers_list_the_same_commands(capsys):
    light, full = build_parser(commands_only=True), build_parser()
    assert light.format_help() == full.format_help()
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert capsys.readouterr().out.startswith(f"usage: convlens {name}")


def test_the_cli_spells_the_shipped_models_name_as_the_package_does():
    from convlens import cli, models

    assert cli.PRETRAINED == models.PRETRAINED
