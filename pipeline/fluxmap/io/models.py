"""Model files: fitted models in non-executable formats with a metadata file, the zoning as JSON,
and the checksummed reference to a target's model folder that prediction tasks carry.

Formats: XGBoost models as UBJSON (``.ubj``, XGBoost's own format); scikit-learn and
quantile-forest models with skops (``.skops``), loaded only with the exact types
fluxmap writes. Pickle, joblib and unknown files are refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fluxmap.io.provenance import atomic_path, sha256, write_json
from fluxmap.science.applicability import Applicability
from fluxmap.science.predict import ModelSet, compose
from fluxmap.science.train import FittedModel
from fluxmap.science.zones import ZoneModel

__all__ = [
    "MAPPING",
    "ComposedFiles",
    "ModelFiles",
    "load_mapping",
    "load_applicability",
    "load_model",
    "load_model_set",
    "load_zones",
    "save_applicability",
    "save_model",
    "save_zones",
]


def save_zones(model: ZoneModel, path: str | Path) -> None:
    """Write the zoning as JSON (plain numbers; safe to share, nothing executable)."""
    write_json(path, model.to_dict(), indent=1)


def load_zones(path: str | Path) -> ZoneModel:
    """Read a zoning written by :func:`save_zones`."""
    return ZoneModel.from_dict(json.loads(Path(path).read_text()))


_REFUSED = {".pkl", ".pickle", ".joblib", ".sav", ".dill", ".pt", ".npy"}


def save_model(model: FittedModel, stem: str | Path) -> Path:
    """Write the model (``stem.ubj`` or ``stem.skops``) and ``stem.json`` metadata; return the model path."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if model.kind == "xgboost":
        path = stem.with_suffix(".ubj")
        booster = model.estimator.get_booster()
        booster.feature_names = list(model.features)  # the model itself knows its inputs
        with atomic_path(path) as tmp:
            booster.save_model(str(tmp))
    else:
        import skops.io as sio

        path = stem.with_suffix(".skops")
        with atomic_path(path) as tmp:
            sio.dump(model.estimator, tmp)
    meta = {
        **model.metadata,
        "kind": model.kind,
        "features": model.features,
        "file": path.name,
        "sha256": sha256(path),
    }
    write_json(stem.with_suffix(".json"), meta, indent=1)
    return path


def load_model(path: str | Path) -> FittedModel:
    """Load a model written by :func:`save_model`; refuses pickles and unknown formats."""
    path = Path(path)
    if path.suffix in _REFUSED:
        raise ValueError(
            f"{path}: refusing to load a {path.suffix} file: pickle-based formats can run code. "
            "fluxmap reads only XGBoost .ubj/.json models and .skops files it wrote"
        )
    if path.suffix not in (".ubj", ".skops"):
        raise ValueError(f"{path}: unknown model format {path.suffix!r} (expected .ubj or .skops)")
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: metadata file {meta_path.name} missing")
    meta = json.loads(meta_path.read_text())
    # Checked before any native library sees the bytes: a truncated or replaced file is refused, not parsed.
    if "sha256" not in meta:
        raise ValueError(
            f"{path}: {meta_path.name} has no checksum (written by an older fluxmap); rerun the models stage"
        )
    if sha256(path) != meta["sha256"]:
        raise ValueError(
            f"{path}: its SHA-256 differs from the one in {meta_path.name}: the file is damaged, truncated or was "
            "replaced; refusing to load it (rerun the models stage)"
        )
    if path.suffix == ".ubj":
        import xgboost as xgb

        est = xgb.XGBRegressor()
        est.load_model(str(path))
        names = est.get_booster().feature_names
        if names is not None and list(names) != list(meta["features"]):
            raise ValueError(f"{path}: the model was trained on {names}, its metadata says {meta['features']}")
        return FittedModel("xgboost", est, meta["features"], meta)
    import skops.io as sio

    unknown = sio.get_untrusted_types(file=path)
    allowed = {
        "quantile_forest._quantile_forest.RandomForestQuantileRegressor",
        "quantile_forest._quantile_forest_fast.QuantileForest",
        "sklearn.ensemble._forest.RandomForestRegressor",
        "sklearn.tree._classes.DecisionTreeRegressor",
        "sklearn.tree._tree.Tree",
        "builtins.dict",
        "numpy.dtype",
    }
    bad = [t for t in unknown if t not in allowed]
    if bad:
        raise ValueError(f"{path}: holds types fluxmap does not write: {bad}; refusing to load")
    est = sio.load(path, trusted=unknown)
    if getattr(est, "n_features_in_", len(meta["features"])) != len(meta["features"]):
        raise ValueError(
            f"{path}: the model takes {est.n_features_in_} predictors, its metadata names {len(meta['features'])}"
        )
    return FittedModel(meta["kind"], est, meta["features"], meta)


MODEL_SUFFIXES = (".ubj", ".skops")
"""The model files fluxmap writes: XGBoost UBJSON, forests as skops."""


def model_files(folder: str | Path, pattern: str) -> list[Path]:
    """The model files (any family) in ``folder`` whose names match ``pattern`` (e.g. ``model_zone_*``),
    sorted; two families under one name (a stale model of another run) is an error."""
    found = sorted(p for p in Path(folder).glob(pattern) if p.suffix in MODEL_SUFFIXES)
    stems = [p.stem for p in found]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise ValueError(
            f"{folder}: models {twice} exist in more than one format ({', '.join(MODEL_SUFFIXES)}): files of an "
            "earlier run with another model family; rerun the models stage"
        )
    return found


def _model_paths(folder: Path, *, ensemble: bool) -> tuple[list[Path], Path, list[Path]]:
    zones = model_files(folder, "model_zone_*")
    members = model_files(folder, "ensemble_*") if ensemble else []
    unified = model_files(folder, "model_unified.*")
    if not unified:
        raise FileNotFoundError(f"{folder}: no model_unified.ubj or .skops (run the model stage first)")
    return zones, unified[0], members


def _single_threaded(path: Path) -> FittedModel:
    # Blocks are the unit of parallelism (one per worker thread): a model that starts its own
    # threads on top would oversubscribe the cores.
    m = load_model(path)
    if m.kind == "xgboost":
        m.estimator.get_booster().set_param({"nthread": 1})
    elif hasattr(m.estimator, "n_jobs"):
        m.estimator.n_jobs = 1
    return m


def load_model_set(
    target: str, folder: str | Path, *, ensemble: bool, unified_map: bool = False, member_maps: bool = False
) -> ModelSet:
    """A target's zone models (``model_zone_<k>.ubj``), unified model and ensemble members."""
    zones, unified, members = _model_paths(Path(folder), ensemble=ensemble)
    return ModelSet(
        target=target,
        zone_models={int(p.stem.split("_")[-1]): _single_threaded(p) for p in zones},
        unified=_single_threaded(unified),
        ensemble=[_single_threaded(p) for p in members],
        unified_map=unified_map,
        member_maps=member_maps,
        masked_zones=frozenset(masked_zones(folder)),
        applicability=load_applicability(folder),
    )


APPLICABILITY = "applicability.npz"
"""Per target folder: the unified model's area of applicability (plain arrays, read without pickle)."""


def save_applicability(folder: str | Path, aoa: Applicability) -> None:
    """Write ``applicability.npz`` (numpy arrays only) atomically."""
    with atomic_path(Path(folder) / APPLICABILITY) as tmp:
        savez: Any = np.savez  # numpy's stub types **arrays like its keyword options
        with tmp.open("wb") as f:
            savez(f, **aoa.to_arrays())


def load_applicability(folder: str | Path) -> Applicability | None:
    """The area of applicability of a target folder, or None when it has none."""
    path = Path(folder) / APPLICABILITY
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as a:
        return Applicability.from_arrays({k: a[k] for k in a.files})


ZONES_WITHOUT_MODEL = "zones_without_model.json"
"""The models stage's note, per target folder, of the zones without a model of their own."""


def save_zones_without_model(folder: str | Path, info: dict[str, Any]) -> None:
    """Write the note (``zones``, ``physical_sites``, ``min_zone_sites``, ``mapped_with``)."""
    write_json(Path(folder) / ZONES_WITHOUT_MODEL, info)


def load_zones_without_model(folder: str | Path) -> dict[str, Any] | None:
    """The note :func:`save_zones_without_model` wrote, or None when the folder has none."""
    path = Path(folder) / ZONES_WITHOUT_MODEL
    return json.loads(path.read_text()) if path.is_file() else None


def masked_zones(folder: str | Path) -> list[int]:
    """The zones the model stage left unmapped (its note says ``mapped_with: mask``); empty when
    they are mapped with the unified model or there is no note."""
    info = load_zones_without_model(folder)
    return [int(z) for z in info["zones"]] if info and info.get("mapped_with") == "mask" else []


def _digest(folder: Path, *, ensemble: bool) -> str:
    zones, unified, members = _model_paths(folder, ensemble=ensemble)
    h = hashlib.sha256()
    for note in (folder / ZONES_WITHOUT_MODEL, folder / APPLICABILITY):
        if note.is_file():
            h.update(note.name.encode())
            h.update(note.read_bytes())
    for p in [*zones, unified, *members]:
        for f in (p, p.with_suffix(".json")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ModelFiles:
    """Where a target's models are, and the checksum of their files.

    Prediction tasks carry this (a few hundred bytes) instead of the models; each
    worker process loads the models from the (shared) model folder once and keeps
    them. Nothing lives only in a worker's memory, so a worker that dies is
    replaced and its blocks recomputed from files, and a model file changed after
    the graph was built is refused instead of silently mixed in.
    """

    target: str
    folder: str
    ensemble: bool
    digest: str
    unified_map: bool = False
    member_maps: bool = False

    @classmethod
    def of(
        cls, target: str, folder: str | Path, *, ensemble: bool, unified_map: bool = False, member_maps: bool = False
    ) -> ModelFiles:
        folder = Path(folder).resolve()
        return cls(target, str(folder), ensemble, _digest(folder, ensemble=ensemble), unified_map, member_maps)

    def load(self) -> ModelSet:
        return _load_once(self)


@functools.lru_cache(maxsize=16)
def _load_once(ref: ModelFiles) -> ModelSet:
    folder = Path(ref.folder)
    if _digest(folder, ensemble=ref.ensemble) != ref.digest:
        raise RuntimeError(
            f"{folder}: the model files changed after the prediction graph was built; rerun the predict stage"
        )
    return load_model_set(
        ref.target, folder, ensemble=ref.ensemble, unified_map=ref.unified_map, member_maps=ref.member_maps
    )


@dataclass(frozen=True)
class ComposedFiles:
    """A target mapped as its denominator's models times a ratio's (HR = SR x HR/SR): the two
    model folders' :class:`ModelFiles`, composed by :func:`fluxmap.science.predict.compose` on load."""

    target: str
    den: ModelFiles
    ratio: ModelFiles

    def load(self) -> ModelSet:
        return compose(self.target, self.den.load(), self.ratio.load())


MAPPING = "mapping.json"
"""Per numerator folder of a modelled ratio: how the models stage chose to map it (``mapped_as``:
``ratio`` or ``independent``, ``denominator`` and ``ratio`` targets, ``why``)."""


def load_mapping(folder: str | Path) -> dict[str, Any] | None:
    """The models stage's mapping note of a target folder, or None when it has none."""
    path = Path(folder) / MAPPING
    return json.loads(path.read_text()) if path.is_file() else None
