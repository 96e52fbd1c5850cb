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
    for cmd in ("run", "demo", "catalog", "sites", "extract", "models", "predict", "cluster", "export", "config"):
        assert cmd in out
    assert "so far" not in out  # help for users, not the project's history


@pytest.mark.parametrize("cmd", ["run", "demo", "catalog", "sites", "extract", "models", "predict", "export"])
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


def test_help_imports_nothing_heavy():
    """``fluxmap --help`` answers at once: importing the CLI (and ``fluxmap``) loads none of the
    numerical stack, which costs seconds."""
    code = (
        "import sys, fluxmap, fluxmap.cli; fluxmap.cli.build_parser().format_help(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'pandas', 'xarray', 'dask', 'zarr', "
        "'xgboost', 'sklearn', 'matplotlib', 'yaml'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    import fluxmap

    assert fluxmap.RunConfig.__name__ == "RunConfig" and "read_srdb" in dir(fluxmap)  # the API, on first use


def test_config_reference_documents_every_key_and_reads_back(capsys):
    import dataclasses

    from fluxmap.config import RunConfig, run_config_from_mapping

    assert main(["config"]) == 0
    text = capsys.readouterr().out
    assert run_config_from_mapping(yaml.safe_load(text)) == RunConfig()  # every default, as the parser reads it
    default = RunConfig()
    for block in ("sites", "extract", "model", "predict", "cluster", "metadata", "demo"):
        for f in dataclasses.fields(getattr(default, block)):
            assert f"\n  {f.name}:" in text, (block, f.name)
    assert "# Smallest number of sites a zone may hold." in text  # each key's documentation above it


def test_demo_run_and_catalog_agree_on_the_world(capsys):
    from fluxmap.config import RunConfig

    parser = build_parser()
    root = f"{RunConfig().workdir}/demo-world"  # where fluxmap run keeps it
    assert parser.parse_args(["demo"]).root == root and parser.parse_args(["catalog", "demo"]).root == root
    doc = yaml.safe_load(open(__import__("fluxmap.io.catalog", fromlist=["x"]).builtin_catalog("demo")))
    assert doc["user_parameters"]["DEMO_ROOT"]["default"] == root


def test_a_missing_optional_dependency_names_its_extra(monkeypatch):
    from fluxmap.cluster import _jobqueue_cluster
    from fluxmap.config import ClusterConfig

    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'fluxmap\[hpc\]'"):
        _jobqueue_cluster(ClusterConfig(kind="slurm"))
    monkeypatch.setitem(sys.modules, "pystac_client", None)
    from fluxmap.io.catalog import open_stac

    with pytest.raises(ModuleNotFoundError, match=r"pip install 'fluxmap\[cloud\]'"):
        open_stac("https://example.invalid/stac", "x", ["a"], [0, 0, 1, 1], "2020", {})


def test_progress_lines_count_and_estimate_what_is_left():
    import dask.array as da

    from fluxmap.io.progress import Progress, dask_progress

    lines: list[str] = []
    with Progress(4, "folds", lines.append, quiet=0) as bar:
        for i in range(1, 5):
            bar(i)
    silent: list[str] = []
    with Progress(4, "fast", silent.append) as bar:  # over in well under QUIET_SECONDS: nothing said
        for i in range(1, 5):
            bar(i)
    assert silent == []
    assert lines[0].startswith("  folds: 1/4 (25%), ") and "left" in lines[0] and "left" not in lines[-1]
    assert lines[-1].startswith("  folds: 4/4 (100%)")
    tasks: list[str] = []
    with dask_progress("sum", tasks.append, quiet=0):
        da.ones((100, 100), chunks=10).sum().compute(scheduler="threads")
    assert tasks and tasks[-1].startswith("  sum: ") and "tasks (100%)" in tasks[-1]
    done = [int(t.split(":")[1].split("/")[0]) for t in tasks]
    assert done == sorted(done) and len(tasks) <= 10


def test_progress_of_a_computation_on_a_distributed_cluster():
    """On a distributed cluster the progress comes from the scheduler's count of tasks still to run."""
    import time

    import dask
    from distributed import Client

    from fluxmap.io.progress import dask_progress

    def slow(i):
        time.sleep(0.02)
        return i

    lines: list[str] = []
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None):
        with dask_progress("slow tasks", lines.append, every=0.05, quiet=0):
            assert sum(dask.compute(*[dask.delayed(slow)(i) for i in range(200)])) == sum(range(200))
    assert lines and all(line.startswith("  slow tasks: ") and " tasks (" in line for line in lines)
    done = [int(line.split(":")[1].split("/")[0]) for line in lines]
    assert done == sorted(done) and "about" in lines[0]  # counts rise; an ETA while tasks remain
