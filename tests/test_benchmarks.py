"""Benchmark bodies run at tiny size so they cannot rot (no timing asserts here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_extract_tiny(tmp_path):
    result = _load("bench_extract").run(
        n_sites=20, res=2.0, years=(2020,), chunks=(23, 30, 30), workdir=str(tmp_path), repeats=1
    )
    assert result["sites"] == 20 and result["periods"] == 46
    assert result["vectorized_s"] > 0 and result["naive_loop_s"] > 0 and result["ratio"] > 0
