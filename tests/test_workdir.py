"""One writer per workdir, atomic outputs, and caches that trust data not notes (issue 23, classes 2-3).

Faults injected: a second run on a held workdir (and a holder killed with SIGKILL), a write that
fails half-way, a stage that crashes after writing some of its outputs under another config and is
then rerun with the first, an output file changed or removed after a complete run, a damaged chunk
in an input store, in a cached zone map and in a cached ERA5 8-day store, and a model's metadata
edited after prediction.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fluxmap.io.lock import WorkdirBusy, workdir_lock
from fluxmap.io.provenance import atomic_path, data_fingerprint, is_cached, recorded_outputs, write_table


def _hold_lock(folder: Path) -> subprocess.Popen:
    code = (
        "import sys, time\n"
        "from fluxmap.io.lock import workdir_lock\n"
        f"with workdir_lock({str(folder)!r}):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_stopped_and_a_killed_holder_frees_the_workdir(tmp_path, capsys):
    from fluxmap.cli import main

    work = tmp_path / "work"
    holder = _hold_lock(work)
    try:
        with pytest.raises(WorkdirBusy, match=rf"{work} is in use by another fluxmap run \(pid {holder.pid} on "):
            with workdir_lock(work):
                pass
        # Every writing command says so in one line, exit 2, and writes nothing.
        for cmd in (["sites"], ["extract"], ["models"], ["predict"], ["run"]):
            assert main([*cmd, "--workdir", str(work)]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "is in use by another fluxmap run" in err[0], err
        assert main(["demo", "--root", str(work)]) == 2
        assert "in use" in capsys.readouterr().err
        assert sorted(p.name for p in work.iterdir()) == [".fluxmap.lock", ".fluxmap.lock.json"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The OS released the lock with the process: no stale lock, no manual cleanup.
    with workdir_lock(work):
        assert json.loads((work / ".fluxmap.lock.json").read_text())["pid"] == os.getpid()
    assert not (work / ".fluxmap.lock.json").exists()


def test_two_demo_builds_on_one_folder_one_waits_out(tmp_path):
    """Two real processes at once: exactly one builds, the other exits 2 naming the first."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"demo": {"resolution": 2.0, "bbox": [0, 40, 20, 50], "years": [2019]}}))
    root = tmp_path / "world"
    cmd = [sys.executable, "-m", "fluxmap.cli", "demo", "--root", str(root), "--config", str(cfg)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (root / ".fluxmap.lock.json").exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    second = subprocess.run(cmd, capture_output=True, text=True)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    if second.returncode == 0:  # the first had already finished: then the second found it up to date
        assert "up to date" in second.stdout
    else:
        assert second.returncode == 2 and f"pid {first.pid}" in second.stderr, second.stderr
    assert (root / "world.json").is_file()


def test_atomic_writes_leave_the_old_file_or_nothing(tmp_path):
    target = tmp_path / "table.parquet"
    write_table(pd.DataFrame({"a": [1, 2]}), target, index=False)
    before = target.read_bytes()

    class Crash(Exception):
        pass

    with pytest.raises(Crash):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"PAR1 half a file")
            raise Crash
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]
    # A folder (a Zarr store) is swapped whole, too.
    store = tmp_path / "s.zarr"
    with atomic_path(store) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("1")
    with pytest.raises(Crash):
        with atomic_path(store) as tmp:
            tmp.mkdir()
            (tmp / "b").write_text("2")
            raise Crash
    assert [p.name for p in store.iterdir()] == ["a"]
    # The temporary keeps the suffix: writers that pick the format by suffix (XGBoost, matplotlib) still work.
    with atomic_path(tmp_path / "m.ubj") as tmp:
        assert tmp.suffix == ".ubj" and tmp.name != "m.ubj"
        tmp.write_bytes(b"x")


def _stages(cfg, world, log):
    from fluxmap.demo import demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.models import model_stage
    from fluxmap.stages.sites import sites_stage

    tables = extract_stage(cfg, sites_stage(cfg, demo_sources(world), log=log), log=log)
    return model_stage(cfg, tables, log=log)


@pytest.fixture
def world_copy(tiny_world, tmp_path):
    """The tiny world copied, so tests may damage it."""
    dst = tmp_path / "world"
    shutil.copytree(tiny_world.root, dst)
    return dst


def _config(tmp_path: Path, world: Path, **model):
    from fluxmap.testing import small_run_config

    light = {"targets": ["sr:8day"], "backward_elimination": False, "bootstrap_members": 0, "k_candidates": [2]}
    return small_run_config(tmp_path / "work", world, **{**light, **model})


def test_a_crashed_models_stage_is_not_trusted_after_the_config_is_reverted(world_copy, tmp_path, monkeypatch):
    import fluxmap.stages.models as models_stage

    cfg_a = _config(tmp_path, world_copy)
    log: list[str] = []
    _stages(cfg_a, world_copy, log.append)
    out = tmp_path / "work" / "models"
    first = recorded_outputs(out)
    assert "sr_8day/model_unified.ubj" in first and "summary.csv" in first

    # Config B crashes after writing its first model file (a kill between two writes).
    cfg_b = _config(tmp_path, world_copy, params={"n_estimators": 7})
    real_save = models_stage.save_model

    def crash_after_one(model, stem):
        real_save(model, stem)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(models_stage, "save_model", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        _stages(cfg_b, world_copy, log.append)
    monkeypatch.setattr(models_stage, "save_model", real_save)
    assert not (out / "provenance.json").exists(), "a stage being rewritten has no record"

    # Back to config A: the half-B folder must not be reused; the models are A's again.
    log.clear()
    _stages(cfg_a, world_copy, log.append)
    assert not any(line.startswith("models: cached") for line in log), log
    again = recorded_outputs(out)
    assert again["sr_8day/model_unified.json"] == first["sr_8day/model_unified.json"]
    log.clear()
    _stages(cfg_a, world_copy, log.append)
    assert any(line.startswith("models: cached") for line in log), log


@pytest.mark.parametrize("damage", ["append a byte to a model file", "remove the zones-without-model note"])
def test_a_changed_output_file_makes_its_stage_rerun(world_copy, tmp_path, damage):
    cfg = _config(tmp_path, world_copy)
    _stages(cfg, world_copy, lambda m: None)
    out = tmp_path / "work" / "models"
    key = json.loads((out / "provenance.json").read_text())["cache_key"]
    assert is_cached(out, key, ["summary.csv"])
    if damage.startswith("append"):
        with (out / "sr_8day" / "model_unified.ubj").open("ab") as f:
            f.write(b"\0")
    else:
        (out / "sr_8day" / "zones_without_model.json").unlink()
    assert not is_cached(out, key, ["summary.csv"])
    log: list[str] = []
    _stages(cfg, world_copy, log.append)
    assert not any(line.startswith("models: cached") for line in log)
    assert is_cached(out, key, ["summary.csv"])  # same inputs, same key: rebuilt, then trusted


def _damage_chunk(store: Path) -> Path:
    chunk = max((p for p in store.rglob("*") if p.is_file() and not p.name.startswith((".z", "zarr"))),
                key=lambda p: p.stat().st_size)  # fmt: skip
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    return chunk


def test_a_damaged_input_chunk_changes_the_keys_of_everything_made_from_it(world_copy, tmp_path):
    from fluxmap.stages.common import catalog_inputs

    cfg = _config(tmp_path, world_copy)
    before = catalog_inputs(cfg)
    assert before["data"]["mod09a1"] == data_fingerprint(world_copy / "modis" / "mod09a1.zarr")
    _damage_chunk(world_copy / "modis" / "mod09a1.zarr")
    after = catalog_inputs(cfg)
    assert after["data"]["mod09a1"] != before["data"]["mod09a1"]
    assert {k: v for k, v in after["data"].items() if k != "mod09a1"} == {
        k: v for k, v in before["data"].items() if k != "mod09a1"
    }
    # world.json (the generator's own note) did not change: the key no longer depends on it.
    assert "demo_world" not in after


def test_cached_stores_are_rebuilt_when_damaged_or_their_inputs_change(world_copy, tmp_path):
    import xarray as xr

    from fluxmap.io.store import stored_key
    from fluxmap.testing import predict_and_report

    cfg = _config(tmp_path, world_copy)
    _stages(cfg, world_copy, lambda m: None)
    log: list[str] = []
    first = predict_and_report(cfg, log=log.append)
    zone_map, prepared = (
        tmp_path / "work" / "models" / "zone_map.zarr",
        tmp_path / "work" / "predict" / "era5_8day.zarr",
    )
    key1 = xr.open_zarr(first["store"], consolidated=True).attrs["fluxmap_run_key"]
    assert stored_key(zone_map, key_attr="fluxmap_zone_map_key") and stored_key(prepared)

    # A damaged chunk of the cached zone map and of the ERA5 8-day store: neither is trusted again.
    _damage_chunk(zone_map)
    _damage_chunk(prepared)
    assert stored_key(zone_map, key_attr="fluxmap_zone_map_key") is None and stored_key(prepared) is None
    log.clear()
    predict_and_report(cfg, log=log.append)
    line = next(m for m in log if m.startswith("predict: 8-day sub-period sources"))
    assert "sources ready" in line and "zone map ready" in line, line

    # A model's metadata edited (not its file): the store's key changes, so the map is rewritten.
    meta_path = tmp_path / "work" / "models" / "sr_8day" / "model_unified.json"
    meta = json.loads(meta_path.read_text())
    meta["note"] = "edited"
    meta_path.write_text(json.dumps(meta))
    log.clear()
    third = predict_and_report(cfg, log=log.append)
    key3 = xr.open_zarr(third["store"], consolidated=True).attrs["fluxmap_run_key"]
    assert key3 != key1
    assert any("0 already done" in m for m in log), log
