"""Damaged inputs are named, never silently absorbed (issue 23, class 5): a chunk that cannot be
decoded stops the stage with the entry, array, chunk and file; an absent chunk of the land fraction
is reported in ``suspect_blocks.csv`` instead of passing as "no land"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from fluxmap.io.catalog import CatalogError


@pytest.fixture
def world_copy(tiny_world, tmp_path):
    dst = tmp_path / "world"
    shutil.copytree(tiny_world.root, dst)
    return dst


def _config(tmp_path: Path, world: Path):
    from fluxmap.testing import small_run_config

    return small_run_config(
        tmp_path / "work", world, targets=["sr:8day"], backward_elimination=False, bootstrap_members=0, k_candidates=[2]
    )


def _truncate(array: Path, chunk: str | None = None) -> list[Path]:
    files = [p for p in array.iterdir() if p.is_file() and not p.name.startswith(".") and (chunk in (None, p.name))]
    for f in files:
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 3])
    return files


def _stages(cfg, world, log):
    from fluxmap.demo import demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.models import model_stage
    from fluxmap.stages.sites import sites_stage

    tables = extract_stage(cfg, sites_stage(cfg, demo_sources(world), log=log), log=log)
    return model_stage(cfg, tables, log=log)


def test_an_undecodable_chunk_at_the_sites_is_named_by_the_extract_stage(world_copy, tmp_path):
    from fluxmap.demo import demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.sites import sites_stage

    _truncate(world_copy / "modis" / "mod15a2h.zarr" / "Lai_500m")
    cfg = _config(tmp_path, world_copy)
    table = sites_stage(cfg, demo_sources(world_copy), log=lambda m: None)
    with pytest.raises(CatalogError) as err:
        extract_stage(cfg, table, log=lambda m: None)
    msg = str(err.value)
    assert "entry 'mod15a2h', array 'Lai_500m', chunk 0.0.0" in msg
    assert "cannot be decoded" in msg and str(world_copy / "modis" / "mod15a2h.zarr" / "Lai_500m" / "0.0.0") in msg
    assert "more damaged chunk" in msg
    assert not (tmp_path / "work" / "extract" / "provenance.json").exists()


def test_an_undecodable_chunk_in_the_map_and_an_absent_land_chunk(world_copy, tmp_path):
    from fluxmap.testing import predict_and_report

    cfg = _config(tmp_path, world_copy)
    _stages(cfg, world_copy, lambda m: None)
    lst = world_copy / "modis" / "mod11a2.zarr" / "LST_Day_1km"
    saved = {p: p.read_bytes() for p in lst.iterdir() if p.name == "1.1.1"}
    (bad,) = _truncate(lst, "1.1.1")
    with pytest.raises(
        CatalogError,
        match=r"entry 'mod11a2', array 'LST_Day_1km', chunk 1\.1\.1 \(time 23:46, lat 16:24, lon 16:32; file ",
    ):
        predict_and_report(cfg, log=lambda m: None)
    for p, data in saved.items():
        p.write_bytes(data)

    # An absent chunk of the land fraction: reported by position, its cells not predicted, the run ends.
    (world_copy / "static" / "static.zarr" / "land_fraction" / "0.1").unlink()
    log: list[str] = []
    predict_and_report(cfg, log=log.append)
    suspect = pd.read_csv(tmp_path / "work" / "predict" / "suspect_blocks.csv")
    row = suspect[suspect.target == "all"]
    assert len(row) == 1 and row.iloc[0].lat == "0:16" and row.iloc[0].lon == "16:32"
    assert "land fraction chunk 0.1 absent" in row.iloc[0].reason
    assert any("WARNING lat 0:16, lon 16:32: land fraction chunk 0.1 absent" in m for m in log), log
