"""Checksums, cache keys and ``provenance.json``: what every stage records about its inputs,
settings and outputs, and how a rerun decides that a stage's outputs are still current.

Trust comes from data, not notes: a stage is reused only when its key (settings plus the
checksums of the inputs it actually reads) matches *and* every output file it recorded
still has the SHA-256 it had when written. A stage removes its ``provenance.json`` before
it writes anything and writes it last, atomically, so a stage killed half-way leaves
nothing a later run trusts; every output is written to a temporary name and renamed
(:func:`atomic_path`), so no reader ever sees half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from fluxmap._version import __version__

__all__ = [
    "atomic_path",
    "begin_stage",
    "cache_key",
    "data_fingerprint",
    "frame_sha256",
    "git_revision",
    "is_cached",
    "recorded_outputs",
    "sha256",
    "stage_outputs",
    "versions",
    "write_json",
    "write_provenance",
    "write_table",
    "write_text",
]

PROVENANCE = "provenance.json"

CONTENT_LIMIT = 16 * 2**30
"""Largest local data (bytes, per fingerprint) hashed by content; above it files are identified by
path, size and modification time (said so in the fingerprint), as hashing terabytes on every
run would cost more than the run."""

_HASHES: dict[tuple[str, int, int, int], str] = {}
"""SHA-256 of files already read in this process, by (path, size, mtime_ns, inode)."""


def sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (remembered for the process while the file is unchanged)."""
    st = os.stat(path)
    memo = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if memo in _HASHES:
        return _HASHES[memo]
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    _HASHES[memo] = h.hexdigest()
    return _HASHES[memo]


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file())


def data_fingerprint(path: str | Path, *, content_limit: int = CONTENT_LIMIT) -> str:
    """A checksum of a file or a folder (a Zarr store) made from what it holds.

    Every file's SHA-256 with its path inside the folder, when the total is at most
    ``content_limit`` bytes; above it, path, size and modification time of every file
    (prefixed ``stat:``). A damaged, replaced, added or removed chunk changes it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no data at {path}")
    files = _files(path)
    total = sum(p.stat().st_size for p in files)
    h = hashlib.sha256()
    by_content = total <= content_limit
    for p in files:
        rel = p.relative_to(path).as_posix() if p != path else p.name
        if by_content:
            h.update(f"{rel}\0{sha256(p)}\n".encode())
        else:
            st = p.stat()
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return ("" if by_content else "stat:") + h.hexdigest()


def frame_sha256(df: pd.DataFrame) -> str:
    """SHA-256 of a table's content: column names, dtypes, index and every value (pandas' row hashes)."""
    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes())
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


# --- atomic writes ------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers that read it still know the
    format) that replaces ``path`` in one rename when the block ends without error.

    Works for files and folders (a Zarr store: the old folder is removed just before the
    rename; a crash in between leaves no store, never a mixed one). On error the temporary
    is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.partial{path.suffix}")
    try:
        yield tmp
        if tmp.is_dir():
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            os.replace(tmp, path)
        elif tmp.exists():
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:
            raise FileNotFoundError(f"nothing was written for {path}")
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any, **kw: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, default=str, **kw))


def write_table(df: pd.DataFrame, path: str | Path, **kw: Any) -> None:
    """Write a table atomically as Parquet or CSV (by ``path``'s suffix); ``kw`` go to pandas."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, **kw)
        elif path.suffix == ".csv":
            df.to_csv(tmp, **kw)
        else:
            raise ValueError(f"{path}: write_table writes .parquet or .csv")


# --- a stage's record ---------------------------------------------------------------------------


def stage_outputs(out: Path) -> list[str]:
    """The files a stage folder holds, relative to it: every regular file except the provenance
    itself, temporaries, and files inside Zarr stores (those carry their own keys)."""
    names = []
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out)
        if not p.is_file() or rel.as_posix() == PROVENANCE or ".partial" in p.name:
            continue
        if any(part.endswith(".zarr") for part in rel.parts[:-1]):
            continue
        names.append(rel.as_posix())
    return names


def begin_stage(out: Path) -> None:
    """Mark a stage as being rewritten: its record goes first, so a kill leaves nothing trusted."""
    out.mkdir(parents=True, exist_ok=True)
    (out / PROVENANCE).unlink(missing_ok=True)


def recorded_outputs(out: Path) -> dict[str, str]:
    """The output checksums a stage's provenance recorded ({} without one)."""
    prov = out / PROVENANCE
    if not prov.is_file():
        return {}
    try:
        return dict(json.loads(prov.read_text()).get("outputs", {}))
    except (ValueError, OSError):
        return {}


def is_cached(out: Path, key: str, files: list[str]) -> bool:
    """Whether ``out`` holds a complete, unchanged result for ``key``.

    True only when ``provenance.json`` carries ``key``, names every one of ``files`` among
    its outputs, and every output it recorded still has its recorded SHA-256.
    """
    prov = out / PROVENANCE
    try:
        record = json.loads(prov.read_text()) if prov.is_file() else {}
    except (ValueError, OSError):
        return False
    outputs = record.get("outputs") or {}
    if record.get("cache_key") != key or not set(files) <= set(outputs):
        return False
    return all((out / name).is_file() and sha256(out / name) == digest for name, digest in outputs.items())


def write_provenance(out: Path, key: str, **content: Any) -> None:
    """``out/provenance.json``, written last and atomically: the key, the time, the versions, the
    SHA-256 of every output file (:func:`stage_outputs`) and whatever the stage records."""
    outputs = {name: sha256(out / name) for name in stage_outputs(out)}
    write_json(
        out / PROVENANCE,
        {
            "cache_key": key,
            "created": pd.Timestamp.now(tz="UTC").isoformat(),
            "versions": versions(),
            "outputs": outputs,
            **content,
        },
        indent=1,
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
