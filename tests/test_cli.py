"""The fluxmap command: help texts, the demo run, and clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from fluxmap.cli import build_parser, main


def test_help_lists_only_existing_stages(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("run", "demo", "catalog", "sites", "extract", "models", "predict", "cluster"):
        assert cmd in out


@pytest.mark.parametrize("cmd", ["run", "demo", "catalog", "sites", "extract", "models", "predict"])
def test_each_command_explains_itself(cmd, capsys):
    with pytest.raises(SystemExit):
        main([cmd, "--help"])
    out = capsys.readouterr().out
    assert len(out.splitlines()) > 5 and "--" in out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "fluxmap.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("fluxmap ")


def test_run_on_a_tiny_world_then_reuses_it(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "demo": {
                    "resolution": 2.0,
                    "bbox": [0, 40, 20, 50],
                    "years": [2019],
                    "era5_resolution": 1.0,
                    "n_srdb_sites": 6,
                    "n_cosore_sites": 2,
                    "n_fluxnet_sites": 2,
                    "n_halfhourly": 1,
                },
                "model": {
                    "targets": ["sr:annual"],
                    "k_candidates": [2],
                    "min_sites": 2,
                    "min_obs": 1,
                    "restarts": 3,
                    "params": {"n_estimators": 10},
                    "backward_elimination": False,
                    "bootstrap_members": 0,
                },
            }
        )
    )
    assert main(["run", "--workdir", str(tmp_path / "out"), "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "opened 8 of 8 entries lazily; dask computes while opening: 0" in out
    assert "lst_day" in out and "era5" in out
    assert "model sr:annual" in out and "nested R2 zone" in out and "skill of the unified model" in out
    assert main(["run", "--workdir", str(tmp_path / "out"), "--config", str(cfg)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_bad_inputs_exit_2_with_a_message(tmp_path, capsys):
    assert main(["catalog", str(tmp_path / "missing.yaml")]) == 2
    assert "catalog file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"demo": {"resolution": 1.0, "colour": "blue"}}))
    assert main(["demo", "--root", str(tmp_path / "w"), "--config", str(bad)]) == 2
    assert "unknown key(s) ['colour']" in capsys.readouterr().err


def test_user_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"workdir": str(tmp_path / "out"), "demo": None, "model": {"min_sites": "5"}}))
    assert main(["sites", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"fluxmap sites: error: {bad}: model: min_sites = '5' (str): expected an integer\n"
    from fluxmap.config import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "sites", "--config", str(bad)])
    # An error that is not a known user error: one line naming its type, the traceback under --debug.
    import fluxmap.cli as cli

    def broken(args):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(cli, "cmd_sites", broken)  # main builds its parser afresh: it binds this one
    assert main(["sites", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == "fluxmap sites: unexpected error: TypeError: unsupported operand (rerun with --debug for the traceback)\n"
    )
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["--debug", "sites", "--config", str(bad)])


def test_parser_builds():
    assert build_parser().prog == "fluxmap"
