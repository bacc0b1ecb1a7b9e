"""Every command answers --help; user errors are one line with exit status 2; list works."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from mribench.cli import COMMANDS, cli, main


@pytest.mark.parametrize("command", [[], *[[name] for name in COMMANDS],
                                     ["data", "audit"], ["split", "make"]])
def test_help(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_help_does_not_import_torch():
    code = ("import sys; from mribench.cli import main; sys.argv=['bench','--help'];\n"
            "try:\n    main()\nexcept SystemExit: pass\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")


def _run_main(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code, capsys.readouterr()


def test_unknown_method_is_one_line(capsys):
    code, out = _run_main(["run", "--method", "nope", "--dataset", "synthetic[n=20]"], capsys)
    assert code == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown method 'nope'")


def test_missing_data_folder_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code, out = _run_main(["run", "--method", "all", "--dataset", "br35h",
                           "--data-dir", str(missing)], capsys)
    assert code == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "nowhere" in lines[0]
    assert "Traceback" not in out.err


def test_list_shows_every_method_and_dataset():
    from mribench.api import registry

    result = CliRunner().invoke(cli, ["list", "--format", "names"])
    assert result.exit_code == 0
    names = result.output.split()
    assert set(registry.methods()) <= set(names)
    assert {"unet", "glcm-knn", "two-pathway-cnn", "ocsvm-immune"} <= set(names)
    assert {"br35h", "synthetic", "folder"} <= set(names)


def test_data_audit_marks_a_manifest_made_for_other_data():
    """The committed synthetic manifest names 400 ids; a 40-image data set lacks most of them."""
    result = CliRunner().invoke(cli, ["data", "audit", "synthetic[n=40]"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines()
               if line.startswith("synthetic-stratified"))
    assert "not for these data: 360 ids missing" in row
