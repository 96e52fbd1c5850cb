"""Hostile catalogs: every one refused at load with a message naming the place, and nothing run.

Each case starts from a valid catalog (one Zarr store beside it) and changes one thing.
A module that writes a marker file when imported lies on ``sys.path`` and beside the
catalog (``helpers.py``), the working folder is the catalog's, and a secret sits in the
environment; after each refusal the marker must be absent and the secret unprinted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from fluxmap.io.catalog import CatalogError, load_catalog

SECRET = "s3cr3t-value-7f3a"

_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("imported")
def run(*a, **k):
    Path({marker!r}).write_text("called")
class Reader:
    pass
"""


def _base() -> dict:
    return {
        "version": 2,
        "aliases": {},
        "metadata": {"description": "a tiny ERA5-like store"},
        "user_parameters": {"ROOT": {"default": ".", "description": "data folder", "dtype": "object"}},
        "data": {
            "s": {
                "datatype": "intake.readers.datatypes:Zarr",
                "kwargs": {"url": "{ROOT}/e.zarr", "root": "", "storage_options": None},
                "metadata": {},
                "user_parameters": {},
            }
        },
        "entries": {
            "era5": {
                "reader": "intake.readers.readers:XArrayDatasetReader",
                "output_instance": "xarray:Dataset",
                "kwargs": {"args": ["{data(s)}"], "engine": "zarr", "consolidated": False, "chunks": {}},
                "metadata": {"description": "ERA5-like", "fluxmap": {"product": "ERA5", "step_hours": 24}},
                "user_parameters": {},
            }
        },
    }


@pytest.fixture
def lair(tmp_path, monkeypatch):
    """A folder with a valid catalog, its store, booby-trapped modules and a secret in the environment."""
    marker = tmp_path / "MARKER"
    for name in ("helpers", "fluxmap_probe_mod"):
        (tmp_path / f"{name}.py").write_text(_MODULE.format(marker=str(marker)))
    xr.Dataset(
        {
            "2m_temperature": (("time", "latitude", "longitude"), np.full((2, 2, 2), 280.0, "f4"), {"units": "K"}),
            "total_precipitation": (("time", "latitude", "longitude"), np.full((2, 2, 2), 1e-3, "f4"), {"units": "m"}),
        },
        coords={
            "time": np.array(["2020-01-01", "2020-01-02"], "datetime64[ns]"),
            "latitude": [1.0, 0.0],
            "longitude": [0.0, 1.0],
        },
    ).to_zarr(tmp_path / "e.zarr", zarr_format=3, consolidated=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLUXMAP_SECRET", SECRET)
    return tmp_path, marker


def _set(path: str, value):
    def mutate(d: dict) -> None:
        *parents, last = path.split("/")
        node = d
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value

    return mutate


def _write(folder: Path, doc: dict, name: str = "cat.yaml") -> Path:
    p = folder / name
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


E = "entries/era5"
D = "data/s"

HOSTILE_DOCS = {
    # class or function references, anywhere
    "reader from a module on sys.path": (_set(f"{E}/reader", "fluxmap_probe_mod:Reader"), "names reader"),
    "reader from a module beside the catalog": (_set(f"{E}/reader", "helpers:Reader"), "names reader"),
    "dotted reader": (_set(f"{E}/reader", "helpers.Reader"), "names reader"),
    "datatype from a module": (_set(f"{D}/datatype", "helpers:Data"), "datatype 'helpers:Data'"),
    "reference in free metadata": (_set("metadata/loader", "fluxmap_probe_mod:run"), "reference to Python code"),
    "dotted reference in metadata": (_set("metadata/hook", "helpers.run"), "reference to Python code"),
    "reference as a mapping key": (_set("metadata/helpers:run", 1), "reference to Python code"),
    "reference in an entry's metadata": (
        _set(f"{E}/metadata/fluxmap/crs", "fluxmap_probe_mod:run"),
        "reference to Python code",
    ),
    "output_instance elsewhere": (_set(f"{E}/output_instance", "helpers:Reader"), "output_instance"),
    # code templates, braced and unbraced
    "func template in url": (_set(f"{D}/kwargs/url", "{func(fluxmap_probe_mod:run)}"), "code template"),
    "import template in a description": (_set("metadata/description", "{import(helpers)}"), "code template"),
    "unbraced import call": (_set(f"{E}/kwargs/engine", "import(helpers)"), "code template"),
    "unbraced func call in metadata": (_set("metadata/x", "func(helpers:run)"), "code template"),
    "pickle64 template": (_set(f"{E}/metadata/x", "{pickle64(gASVAAAAAAAAAAB9lC4=)}"), "code template"),
    "eval call": (_set("metadata/x", "eval('1')"), "code template"),
    "jinja-style template": (_set("metadata/x", "{{ HOME }}"), "braces are allowed only"),
    "jinja-style call": (_set("metadata/x", '{{ env("HOME") }}'), "code template"),
    "other braces": (_set(f"{E}/metadata/description", "see {x}"), "braces are allowed only"),
    "data template in a url": (_set(f"{D}/kwargs/url", "{data(s)}"), "code template"),
    "two data arguments": (_set(f"{E}/kwargs/args", ["{data(s)}", "{data(s)}"]), "code template"),
    # environment expansion
    "env template in url": (_set(f"{D}/kwargs/url", "https://example.org/{env(FLUXMAP_SECRET)}"), "code template"),
    "client_env template": (_set(f"{D}/kwargs/url", "{client_env(FLUXMAP_SECRET)}"), "code template"),
    "shell-style variable": (_set(f"{D}/kwargs/url", "https://example.org/$FLUXMAP_SECRET"), "environment expansion"),
    "braced shell variable": (
        _set(f"{D}/kwargs/url", "https://example.org/${FLUXMAP_SECRET}"),
        "environment expansion",
    ),
    "command substitution": (_set("metadata/x", "$(touch MARKER)"), "environment expansion"),
    "param default expands env": (_set("user_parameters/ROOT/default", "${FLUXMAP_SECRET}"), "environment expansion"),
    "home expansion": (_set(f"{D}/kwargs/url", "~/.ssh/id_rsa"), "home-folder expansion"),
    # path traversal and addresses
    "absolute path elsewhere": (_set(f"{D}/kwargs/url", "/etc/passwd"), "outside the catalog's folder"),
    "relative escape": (_set(f"{D}/kwargs/url", "../../e.zarr"), "outside the catalog's folder"),
    "escape through a default parameter": (_set(f"{D}/kwargs/url", "{ROOT}/../e.zarr"), "pass ROOT explicitly"),
    "file url elsewhere": (_set(f"{D}/kwargs/url", "file:///etc/passwd"), "outside the catalog's folder"),
    "chained fsspec url": (_set(f"{D}/kwargs/url", "simplecache::https://example.org/x.zarr"), "chained"),
    "unknown protocol": (_set(f"{D}/kwargs/url", "ftp://example.org/x.zarr"), "protocol 'ftp'"),
    "memory filesystem": (_set(f"{D}/kwargs/url", "memory://x.zarr"), "protocol 'memory'"),
    # keys fluxmap does not know (each a way to reach code or options we do not vet)
    "backend kwargs": (_set(f"{E}/kwargs/backend_kwargs", {"x": 1}), "unknown key"),
    "storage option that takes code": (_set(f"{D}/kwargs/storage_options", {"client_kwargs": {"a": 1}}), "unknown key"),
    "intake v1 driver": (_set(f"{E}/driver", "xarray"), "unknown key"),
    "intake v1 driver class": (_set(f"{E}/driver", "fluxmap_probe_mod.Reader"), "reference to Python code"),
    "top-level plugins": (_set("plugins", {"source": [{"module": "helpers"}]}), "unknown key"),
    "reference as a url": (_set(f"{D}/kwargs/url", "helpers:run"), "reference to Python code"),
    "data kwargs func": (_set(f"{D}/kwargs/func", "helpers:run"), "reference to Python code"),
    "aliases": (_set("aliases", {"x": "era5"}), "aliases are not supported"),
    "engine not allowed": (_set(f"{E}/kwargs/engine", "pydap"), "not one of"),
    "entry parameters": (_set(f"{E}/user_parameters", {"P": {"default": 1}}), "top level"),
    "string chunk size": (_set(f"{E}/kwargs/chunks", {"time": "10"}), "chunk size"),
    "undeclared parameter in url": (_set(f"{D}/kwargs/url", "{NOPE}/e.zarr"), "not a declared user parameter"),
    "version 1": (_set("version", 1), "version is 1"),
}

HOSTILE_TEXT = {
    "python object tag": (
        "version: 2\nmetadata: !!python/object/apply:os.system ['touch MARKER']\n",
        "YAML tag !!python/object/apply:os.system refused",
    ),
    "python name tag": ("version: 2\nmetadata: !!python/name:helpers.run\n", "YAML tag"),
    "python module tag": ("version: 2\nmetadata: !!python/module:helpers\n", "YAML tag"),
    "local tag": ("version: 2\nmetadata: !Ref helpers.run\n", "YAML tag !Ref"),
    "binary tag": ("version: 2\nmetadata: !!binary aGVsbG8=\n", "YAML tag"),
    "set tag": ("version: 2\nmetadata: !!set {a, b}\n", "YAML tag"),
    "alias bomb": (
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
        + "version: 2\n",
        "values once YAML aliases are expanded",
    ),
    "self-referencing alias": ("version: 2\nmetadata: &m {x: *m}\n", "nested too deeply|alias|not valid YAML"),
    "a date value": ("version: 2\nmetadata: {when: 2020-01-01}\n", "not plain"),
    "not a mapping": ("- a\n- b\n", "not a YAML mapping"),
    "broken YAML": ("version: 2\nentries: {a: [\n", "not valid YAML"),
}


def _refused(path: Path, marker: Path, message: str, **params) -> str:
    with pytest.raises(CatalogError, match=message) as err:
        load_catalog(path, **params)
    text = str(err.value)
    assert str(path) in text, "the message names the catalog file"
    assert not marker.exists(), f"code ran: {marker.read_text()}"
    assert SECRET not in text
    return text


def test_the_base_catalog_is_accepted_and_opens(lair):
    folder, marker = lair
    cat = load_catalog(_write(folder, _base()))
    assert float(cat.open("era5").tp.mean()) == pytest.approx(1.0)
    assert not marker.exists()


@pytest.mark.parametrize("case", sorted(HOSTILE_DOCS))
def test_hostile_catalog_is_refused_and_runs_nothing(lair, case):
    folder, marker = lair
    mutate, message = HOSTILE_DOCS[case]
    doc = _base()
    mutate(doc)
    _refused(_write(folder, doc), marker, message)


@pytest.mark.parametrize("case", sorted(HOSTILE_TEXT))
def test_hostile_yaml_text_is_refused_and_runs_nothing(lair, case):
    folder, marker = lair
    text, message = HOSTILE_TEXT[case]
    path = folder / "cat.yaml"
    path.write_text(text)
    _refused(path, marker, message)


def test_paths_stay_inside_the_explicit_root(lair, tmp_path_factory, monkeypatch):
    folder, marker = lair
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "e.zarr").symlink_to(folder / "e.zarr")
    doc = _base()
    # Passed explicitly, a root outside the catalog's folder is the user's choice ...
    assert load_catalog(_write(folder, doc), ROOT=str(elsewhere)).source("era5").local == (folder / "e.zarr").resolve()
    # A relative root passed explicitly is relative to the working folder, as on a command line.
    monkeypatch.chdir(elsewhere.parent)
    assert load_catalog(folder / "cat.yaml", ROOT=elsewhere.name).source("era5").url == str(elsewhere / "e.zarr")
    # ... but a template may not climb out of it, and a link inside the folder may not lead out of it.
    _set(f"{D}/kwargs/url", "{ROOT}/../../etc/passwd")(doc)
    _refused(
        _write(folder, doc),
        marker,
        "outside the catalog's folder .* and the explicitly passed ROOT",
        ROOT=str(elsewhere),
    )
    (elsewhere / "real.zarr").mkdir()
    (folder / "link.zarr").symlink_to(elsewhere / "real.zarr")
    doc = _base()
    _set(f"{D}/kwargs/url", "link.zarr")(doc)
    _refused(_write(folder, doc), marker, "outside the catalog's folder")


def test_parameter_values_are_literal(lair):
    folder, marker = lair
    path = _write(folder, _base())
    _refused(path, marker, "values are literal", ROOT="{env(FLUXMAP_SECRET)}")
    _refused(path, marker, "values are literal", ROOT="$FLUXMAP_SECRET")
    _refused(path, marker, "unknown user parameter", NOPE="x")


def test_cli_refuses_a_hostile_catalog_in_one_line_and_runs_nothing(lair):
    folder, marker = lair
    doc = _base()
    _set(f"{E}/reader", "helpers:Reader")(doc)
    _set("metadata/x", "{env(FLUXMAP_SECRET)}")(doc)
    path = _write(folder, doc)
    env = {**os.environ, "PYTHONPATH": str(folder) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-m", "fluxmap.cli", "catalog", str(path)], cwd=folder, env=env, capture_output=True, text=True
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "catalogs must not run code" in lines[0], lines
    assert str(path) in lines[0] and SECRET not in out.stderr + out.stdout
    assert not marker.exists()
