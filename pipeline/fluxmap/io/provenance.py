"""Checksums, cache keys and ``provenance.json``: what every stage records about its inputs,
settings and outputs, and how a rerun decides that a stage's outputs are still current."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from fluxmap._version import __version__

__all__ = ["cache_key", "is_cached", "git_revision", "sha256", "versions", "write_provenance"]


def sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of fluxmap and the libraries that decide its numbers."""
    import dask
    import numpy as np
    import xarray as xr
    import zarr

    return {
        "fluxmap": __version__,
        "xarray": xr.__version__,
        "dask": dask.__version__,
        "pandas": pd.__version__,
        "zarr": zarr.__version__,
        "numpy": np.__version__,
    }


def cache_key(settings: Any, inputs: dict[str, Any]) -> str:
    """SHA-256 of the settings and the inputs' checksums (JSON with sorted keys)."""
    blob = json.dumps({"settings": settings, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def is_cached(out: Path, key: str, files: list[str]) -> bool:
    """Whether ``out`` holds every one of ``files`` and a ``provenance.json`` with ``key``."""
    prov = out / "provenance.json"
    if not prov.is_file() or not all((out / f).is_file() for f in files):
        return False
    return json.loads(prov.read_text()).get("cache_key") == key


def write_provenance(out: Path, key: str, **content: Any) -> None:
    """``out/provenance.json``: the key, the time, the versions and whatever the stage records."""
    (out / "provenance.json").write_text(
        json.dumps(
            {"cache_key": key, "created": pd.Timestamp.now(tz="UTC").isoformat(), "versions": versions(), **content},
            indent=1,
            default=str,
        )
    )


def git_revision() -> str:
    """The git commit of the running fluxmap source, or ``unknown`` (an installed wheel)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
