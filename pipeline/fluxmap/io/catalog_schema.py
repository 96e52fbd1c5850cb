"""What a fluxmap catalog file may say, checked by construction before anything is opened.

A catalog is read as text, scanned for YAML tags (refused: catalogs hold plain values
only), parsed with the safe loader, and walked against an allow-list: every key at every
level must be one fluxmap knows, every value of the type it expects. Nothing in the
file is ever handed to code that imports, evaluates or expands: readers and data types
are labels looked up in fixed tables (never imported), the only templates are
``{PARAM}`` (a declared user parameter, substituted as literal text) in ``url``,
``bbox`` and ``datetime``, and ``{data(TOKEN)}`` as an entry's one argument. Text that
looks like code anyway (other braces, ``env(``/``func(``/``import(`` calls, ``$VAR``,
``module:object`` or dotted references) is refused wherever it appears, so a hostile
file fails at load with a message naming the key.

Local paths must resolve (symbolic links followed) inside the catalog's folder or
inside a user parameter's value that the caller passed explicitly; remote addresses
must use a known protocol.

The file format stays Intake 2's (``version: 2``), so Intake can still read fluxmap's
catalogs; fluxmap itself does not use Intake to load them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CatalogError", "Source", "parse_catalog"]

MAX_BYTES = 1 << 20
"""Largest catalog file read (1 MiB); a catalog is a short list of addresses."""

XARRAY_READER = "intake.readers.readers:XArrayDatasetReader"
STAC_READER = "fluxmap.io.catalog:StacCubeReader"
READERS = frozenset({XARRAY_READER, STAC_READER})
"""Reader labels a catalog may name (each maps to a function of fluxmap's; none is imported)."""

DATATYPES = {
    "intake.readers.datatypes:Zarr": "zarr",
    "intake.readers.datatypes:NetCDF3": "netcdf",
    "intake.readers.datatypes:HDF5": "netcdf",
    "intake.readers.datatypes:TIFF": "tiff",
    "intake.readers.datatypes:CSV": "csv",
    "intake.readers.datatypes:Service": "service",
}
"""Data-type labels a catalog may name, and the kind of source each is."""

READER_TAKES = {XARRAY_READER: {"zarr", "netcdf", "tiff"}, STAC_READER: {"service"}}
"""Which kinds of source each reader opens."""

ENGINES = frozenset({"zarr", "netcdf4", "h5netcdf", "scipy", "rasterio"})
PROTOCOLS = frozenset({"file", "gs", "gcs", "s3", "https", "http", "az", "abfs"})
STORAGE_OPTIONS = {"anon": bool, "token": str, "requester_pays": bool, "endpoint_url": str}
"""fsspec storage options a catalog may set (credentials come from the environment, not the file)."""

_SCALAR = (str, int, float, bool, type(None))
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DATA_ARG = re.compile(r"\{data\(([A-Za-z_][A-Za-z0-9_]*)\)\}")
_CALL = re.compile(r"\b(?:func|import|env|client_env|pickle64|pickle|data|eval|exec|compile|getattr|__import__)\(")
_ENV = re.compile(r"\$\{?[A-Za-z_]|\$\(|%\([A-Za-z_]")
_REFERENCE = re.compile(
    r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$|^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$"
)
_TEMPLATED = frozenset({"url", "bbox", "datetime", "crs", "resolution", "platform"})
"""Keys whose values may hold ``{PARAM}``."""


class CatalogError(ValueError):
    """A catalog, entry or variable is missing, unsafe or not in the expected units."""


@dataclass(frozen=True)
class Source:
    """One entry, resolved: which reader opens what, with which options (all literal)."""

    name: str
    reader: str
    kind: str
    """``zarr``, ``netcdf``, ``tiff`` or ``service`` (see :data:`DATATYPES`)."""
    url: str
    local: Path | None
    """The resolved local path, or None for a remote address."""
    storage_options: dict[str, Any]
    group: str | None
    options: dict[str, Any]
    """Reader options (engine, chunks, ... for xarray; collection, assets, ... for STAC)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """The entry's ``metadata.fluxmap`` block."""


# --- the document's shape -----------------------------------------------------------------


def _fail(source: str, where: str, why: str) -> CatalogError:
    return CatalogError(f"{source}: {where}: {why}")


MAX_NODES = 100_000
"""Most values a catalog may hold once YAML aliases are expanded (refuses alias bombs)."""


def _is_plain(value: Any, count: list[int] | None = None) -> bool:
    count = [0] if count is None else count
    count[0] += 1
    if count[0] > MAX_NODES:
        raise CatalogError(f"more than {MAX_NODES} values once YAML aliases are expanded")
    if isinstance(value, _SCALAR):
        return True
    if isinstance(value, list):
        return all(_is_plain(v, count) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _is_plain(v, count) for k, v in value.items())
    return False  # dates, sets, bytes: the safe loader's non-plain types


def _mapping(value: Any, source: str, where: str, keys: Mapping[str, Any] | None = None) -> dict:
    """``value`` as a mapping; with ``keys``, every key must be one of them (None: any string key)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _fail(source, where, f"expected a mapping, got {type(value).__name__} {value!r:.60}")
    if keys is not None:
        unknown = sorted(str(k) for k in value if k not in keys)
        if unknown:
            raise _fail(source, where, f"unknown key(s) {unknown}; fluxmap reads only {sorted(keys)}")
    return value


def _typed(value: Any, kind: Any, source: str, where: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise _fail(source, where, f"expected {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise _fail(source, where, f"expected {' or '.join(k.__name__ for k in kinds)}, got {value!r:.60}")
    return value


def _str_list(value: Any, source: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(source, where, f"expected a list of strings, got {value!r:.60}")
    return value


def _chunks(value: Any, source: str, where: str) -> dict[str, int]:
    value = _mapping(value, source, where)
    for k, v in value.items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int) or (v < 1 and v != -1):
            raise _fail(source, f"{where}.{k}", f"a chunk size is a positive integer or -1, got {v!r}")
    return value


def _storage_options(value: Any, source: str, where: str) -> dict[str, Any]:
    value = _mapping(value, source, where, STORAGE_OPTIONS)
    for k, v in value.items():
        _typed(v, STORAGE_OPTIONS[k], source, f"{where}.{k}")
    return dict(value)


# --- text that must never appear ----------------------------------------------------------


def _refuse_tags(text: str, source: str) -> None:
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, yaml.TagToken):
                line = token.start_mark.line + 1
                raise CatalogError(
                    f"{source}: line {line}: YAML tag {token.value[0]}{token.value[1]} refused; "
                    "catalogs hold plain values only"
                )
    except yaml.YAMLError as e:
        raise CatalogError(f"{source}: not valid YAML: {e}") from e


def _walk(obj: Any, where: str):
    """Every (place, text) in the document, mapping keys included."""
    if isinstance(obj, str):
        yield where, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str):
                yield f"{where} (key)", k
            yield from _walk(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{where}[{i}]")


def _refuse_code(doc: dict, source: str) -> None:
    """Refuse any text that a template engine, shell or importer would act on."""
    for where, text in _walk(doc, "catalog"):
        key = where.rsplit(".", 1)[-1]
        label = key in ("reader", "datatype", "output_instance")
        if _CALL.search(text) and not (key == "args[0]" or where.endswith(".args[0]")):
            raise _fail(source, where, f"{text!r:.80} looks like a code template; catalogs must not run code")
        if _ENV.search(text):
            raise _fail(source, where, f"{text!r:.80} looks like environment expansion; catalogs hold literal values")
        if "{" in text or "}" in text:
            templated = key in _TEMPLATED and not _PARAM.sub("", text).count("{") and "}" not in _PARAM.sub("", text)
            data_arg = where.endswith(".args[0]") and _DATA_ARG.fullmatch(text)
            if not (templated or data_arg):
                raise _fail(
                    source,
                    where,
                    f"{text!r:.80}: braces are allowed only as {{PARAM}} in url, bbox, datetime, crs, resolution or platform and as "
                    "{data(NAME)} for an entry's argument",
                )
        path_like = key in ("url", "root", "path") and ":" not in text  # "data.zarr" is a file name
        if _REFERENCE.match(text) and not (label or path_like):
            raise _fail(
                source, where, f"{text!r:.80} looks like a reference to Python code; catalogs must not name code"
            )


# --- parameters and paths -----------------------------------------------------------------


def _user_parameters(doc: dict, source: str) -> dict[str, Any]:
    params = _mapping(doc.get("user_parameters"), source, "user_parameters")
    for name, p in params.items():
        where = f"user_parameters.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise _fail(source, where, "a parameter name is a letters-digits-underscores identifier")
        p = _mapping(p, source, where, {"default": 0, "description": 0, "dtype": 0})
        if p.get("dtype", "object") not in ("object", "str", "int", "float"):
            raise _fail(source, f"{where}.dtype", f"{p['dtype']!r} is not one of object, str, int, float")
        if "default" in p:
            _typed(p["default"], (str, int, float), source, f"{where}.default")
    return params


def _fill(text: str, values: dict[str, str], source: str, where: str) -> str:
    def one(m: re.Match) -> str:
        if m.group(1) not in values:
            raise _fail(source, where, f"{{{m.group(1)}}} is not a declared user parameter ({sorted(values)})")
        return values[m.group(1)]

    return _PARAM.sub(one, text)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _resolve_url(
    template: str, values: dict[str, str], explicit: dict[str, Path], folder: Path, source: str, where: str
) -> tuple[str, Path | None]:
    """The filled-in address and, when local, the resolved path, checked against the roots.

    A relative path passed explicitly as the parameter the address starts with is the caller's
    path (relative to the working folder), not the catalog's."""
    lead = re.match(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", template)
    if lead and lead.group(1) in explicit and "://" not in values.get(lead.group(1), ""):
        values = {**values, lead.group(1): str(explicit[lead.group(1)])}
    url = _fill(template, values, source, where)
    if "::" in url:
        raise _fail(source, where, f"chained fsspec address {url!r} refused")
    proto = url.split("://", 1)[0].lower() if "://" in url else "file"
    if proto not in PROTOCOLS:
        raise _fail(source, where, f"protocol {proto!r} of {url!r} not allowed; allowed: {sorted(PROTOCOLS)}")
    if proto != "file":
        return url, None
    raw = url.split("://", 1)[1] if "://" in url else url
    if raw.startswith("~"):
        raise _fail(source, where, f"{url!r}: home-folder expansion refused; give the path")
    used = [m.group(1) for m in _PARAM.finditer(template) if m.group(1) in explicit]
    base = Path(raw)
    path = (base if base.is_absolute() else folder / base).resolve()
    roots = [folder.resolve(), *(explicit[p] for p in used)]
    if not any(_inside(path, r) for r in roots):
        defaulted = [m.group(1) for m in _PARAM.finditer(template) if m.group(1) not in explicit]
        hint = (
            f"pass {', '.join(defaulted)} explicitly (defaults may not point outside)"
            if defaulted
            else "a catalog may not point outside its folder and the parameters passed to it"
        )
        raise _fail(
            source,
            where,
            f"{path} is outside the catalog's folder {folder.resolve()}"
            + (f" and the explicitly passed {', '.join(used)}" if used else "")
            + f"; {hint}",
        )
    return url, path


# --- the whole document -------------------------------------------------------------------

_TOP = {"version": 0, "aliases": 0, "metadata": 0, "user_parameters": 0, "data": 0, "entries": 0}
_DATA = {"datatype": 0, "kwargs": 0, "metadata": 0, "user_parameters": 0}
_DATA_KW = {"url": 0, "root": 0, "path": 0, "storage_options": 0}
_ENTRY = {"reader": 0, "output_instance": 0, "kwargs": 0, "metadata": 0, "user_parameters": 0}
_XARRAY_KW: dict[str, Any] = {
    "args": None,
    "engine": str,
    "chunks": None,
    "consolidated": bool,
    "mask_and_scale": bool,
    "decode_times": bool,
    "open_local": bool,
}
_STAC_KW: dict[str, Any] = {
    "args": None,
    "collection": str,
    "assets": None,
    "bbox": (str, list),
    "datetime": str,
    "chunks": None,
    "crs": str,
    "resolution": (int, float, str),
    "platform": str,
}
_FLUXMAP_META: dict[str, Any] = {
    "product": str,
    "variables": dict,
    "bands": list,
    "state_qa": bool,
    "crs": str,
    "step_hours": (int, float),
    "land_codes": list,
    "keep": list,
    "units": dict,
    "time": str,
    "regrid": str,
    "fill_coast": bool,
}
REGRID_METHODS = frozenset({"nearest", "bilinear", "conservative"})
"""How an entry is brought onto the prediction grid and to the sites (see fluxmap.science.regrid)."""
TIME_KINDS = frozenset({"static", "climatology", "series"})
"""What an entry's time axis is: none, 12 calendar months, or dated steps."""


def _fluxmap_meta(entry_meta: dict, products: set[str], source: str, where: str) -> dict[str, Any]:
    meta = entry_meta.get("fluxmap")
    if not isinstance(meta, dict) or "product" not in meta:
        raise _fail(source, where, "no metadata.fluxmap.product")
    _mapping(meta, source, f"{where}.fluxmap", _FLUXMAP_META)
    for k, v in meta.items():
        _typed(v, _FLUXMAP_META[k], source, f"{where}.fluxmap.{k}")
    if meta["product"] not in products:
        raise _fail(
            source, f"{where}.fluxmap.product", f"unknown product {meta['product']!r}; known: {sorted(products)}"
        )
    for k, v in (meta.get("variables") or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise _fail(source, f"{where}.fluxmap.variables", f"{k!r}: {v!r} is not a name-to-name mapping")
    for k in ("bands", "keep"):
        if k in meta:
            _str_list(meta[k], source, f"{where}.fluxmap.{k}")
    for k, v in (meta.get("units") or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise _fail(source, f"{where}.fluxmap.units", f"{k!r}: {v!r} is not a variable-to-units mapping")
    if "time" in meta and meta["time"] not in TIME_KINDS:
        raise _fail(source, f"{where}.fluxmap.time", f"{meta['time']!r} is not one of {sorted(TIME_KINDS)}")
    if "regrid" in meta and meta["regrid"] not in REGRID_METHODS:
        raise _fail(source, f"{where}.fluxmap.regrid", f"{meta['regrid']!r} is not one of {sorted(REGRID_METHODS)}")
    if "land_codes" in meta and not all(isinstance(c, int) and not isinstance(c, bool) for c in meta["land_codes"]):
        raise _fail(source, f"{where}.fluxmap.land_codes", "expected a list of integers")
    return dict(meta)


def _entry_options(reader: str, kw: dict, source: str, where: str) -> dict[str, Any]:
    allowed = _XARRAY_KW if reader == XARRAY_READER else _STAC_KW
    kw = _mapping(kw, source, f"{where}.kwargs", allowed)
    out: dict[str, Any] = {}
    for k, v in kw.items():
        w = f"{where}.kwargs.{k}"
        if k == "args":
            continue
        if k == "chunks":
            out[k] = _chunks(v, source, w)
        elif k == "assets":
            out[k] = _str_list(v, source, w)
        else:
            out[k] = _typed(v, allowed[k], source, w)
    if "engine" in out and out["engine"] not in ENGINES:
        raise _fail(source, f"{where}.kwargs.engine", f"{out['engine']!r} not one of {sorted(ENGINES)}")
    if reader == STAC_READER:
        missing = sorted({"collection", "assets", "bbox", "datetime", "chunks"} - set(out))
        if missing:
            raise _fail(source, f"{where}.kwargs", f"a STAC entry needs {missing}")
        if isinstance(out["bbox"], list) and not (
            len(out["bbox"]) == 4 and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in out["bbox"])
        ):
            raise _fail(source, f"{where}.kwargs.bbox", "expected four numbers west, south, east, north")
    return out


def parse_catalog(path: Path, products: set[str], params: Mapping[str, Any]) -> tuple[dict, dict[str, Source]]:
    """Read, check and resolve a catalog file: its document and one :class:`Source` per entry.

    ``products`` are the product names a ``metadata.fluxmap.product`` may take;
    ``params`` the user parameters the caller passes (explicit, so their values
    are roots that local paths may lie in).
    """
    source = str(path)
    if not path.is_file():
        raise CatalogError(f"catalog file not found: {path}")
    if path.stat().st_size > MAX_BYTES:
        raise CatalogError(f"{source}: {path.stat().st_size} bytes; a catalog is at most {MAX_BYTES}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CatalogError(f"{source}: not UTF-8 text ({e})") from e
    _refuse_tags(text, source)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CatalogError(f"{source}: not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise CatalogError(f"{source}: not a YAML mapping")
    try:
        plain = _is_plain(doc)
    except CatalogError as e:
        raise CatalogError(f"{source}: {e}") from None
    except RecursionError:
        raise CatalogError(f"{source}: values nested too deeply (a YAML alias refers to itself?)") from None
    if not plain:
        raise CatalogError(f"{source}: holds a value that is not plain text, number, list or mapping")
    missing = [k for k in _TOP if k not in doc]
    if missing:
        raise CatalogError(f"{source}: missing top-level key(s) {missing} of the Intake v2 format")
    _mapping(doc, source, "catalog", _TOP)
    if doc["version"] != 2:
        raise CatalogError(f"{source}: version is {doc['version']!r}, fluxmap reads Intake v2 catalogs")
    if _mapping(doc["aliases"], source, "aliases"):
        raise _fail(source, "aliases", "aliases are not supported; name entries directly")
    _mapping(doc["metadata"], source, "metadata")
    _refuse_code(doc, source)

    declared = _user_parameters(doc, source)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise CatalogError(f"{source}: unknown user parameter(s) {unknown}; the catalog declares {sorted(declared)}")
    values: dict[str, str] = {}
    for name, p in declared.items():
        value = params.get(name, (p or {}).get("default"))
        if value is None:
            continue
        value = str(value)
        if "{" in value or "}" in value or _ENV.search(value):
            raise CatalogError(f"{source}: user parameter {name}={value!r}: values are literal, without templates")
        values[name] = value
    explicit = {k: Path(str(v)).resolve() for k, v in params.items()}

    folder = path.resolve().parent
    data: dict[str, tuple[str, str, Path | None, dict, str | None]] = {}
    for tok, d in _mapping(doc["data"], source, "data").items():
        where = f"data.{tok}"
        d = _mapping(d, source, where, _DATA)
        if d.get("datatype") not in DATATYPES:
            raise _fail(source, where, f"datatype {d.get('datatype')!r}; allowed: {sorted(DATATYPES)}")
        if _mapping(d.get("user_parameters"), source, f"{where}.user_parameters"):
            raise _fail(source, f"{where}.user_parameters", "declare parameters at the catalog's top level")
        _mapping(d.get("metadata"), source, f"{where}.metadata")
        kw = _mapping(d.get("kwargs"), source, f"{where}.kwargs", _DATA_KW)
        url_t = _typed(kw.get("url"), str, source, f"{where}.kwargs.url")
        url, local = _resolve_url(url_t, values, explicit, folder, source, f"{where}.kwargs.url")
        so = _storage_options(kw.get("storage_options"), source, f"{where}.kwargs.storage_options")
        group = kw.get("root") or kw.get("path") or None
        if group is not None:
            _typed(group, str, source, f"{where}.kwargs")
        data[tok] = (DATATYPES[d["datatype"]], url, local, so, group)

    sources: dict[str, Source] = {}
    for name, raw_entry in _mapping(doc["entries"], source, "entries").items():
        where = f"entries.{name}"
        ent = _mapping(raw_entry, source, where, _ENTRY)
        reader = ent.get("reader")
        if reader not in READERS:
            raise _fail(source, where, f"names reader {reader!r}; allowed: {sorted(READERS)}")
        if ent.get("output_instance", "xarray:Dataset") != "xarray:Dataset":
            raise _fail(source, f"{where}.output_instance", "fluxmap entries return xarray:Dataset")
        if _mapping(ent.get("user_parameters"), source, f"{where}.user_parameters"):
            raise _fail(source, f"{where}.user_parameters", "declare parameters at the catalog's top level")
        kw = _mapping(ent.get("kwargs"), source, f"{where}.kwargs")
        args = kw.get("args")
        m = (
            _DATA_ARG.fullmatch(args[0])
            if isinstance(args, list) and len(args) == 1 and isinstance(args[0], str)
            else None
        )
        if m is None or m.group(1) not in data:
            raise _fail(source, f"{where}.kwargs.args", f'expected ["{{data(NAME)}}"] naming one of {sorted(data)}')
        kind, url, local, so, group = data[m.group(1)]
        if kind not in READER_TAKES[reader]:
            raise _fail(source, where, f"reader {reader} cannot open a {kind} source")
        options = _entry_options(reader, kw, source, where)
        for k in ("bbox", "datetime", "crs", "resolution", "platform"):
            if isinstance(options.get(k), str):
                options[k] = _fill(options[k], values, source, f"{where}.kwargs.{k}")
        meta = _fluxmap_meta(
            _mapping(ent.get("metadata"), source, f"{where}.metadata"), products, source, f"{where}.metadata"
        )
        sources[name] = Source(name, reader, kind, url, local, so, group, options, meta)
    return doc, sources
