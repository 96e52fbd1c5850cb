"""The ``fluxmap`` command: a thin orchestrator over the stages (no science here)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from fluxmap._version import __version__

EPILOG = """\
The pipeline: sites (observations in g C m-2 d-1, rejected rows quarantined) -> extract
(predictors at the sites, 8-day and annual training tables) -> models (environmental zones,
predictor selection, zone and unified models validated on held-out sites, uncertainty)
-> predict (maps as CF Zarr, totals, figures, report). `fluxmap run` runs them all; a
stage's command runs the pipeline up to it. Stages whose inputs have not changed are reused.

  fluxmap run                      the embedded demo world, end to end
  fluxmap run --config my.yaml     your data (examples/*.yaml; `fluxmap config` lists every key)
  fluxmap export --format netcdf   the maps as CF-1.10 netCDF (GDAL < 3.9, Panoply, CDO, NCO)
  fluxmap catalog demo             the demo world's catalog as lazy cubes (after `fluxmap run`)
"""


DEMO_ROOT = "fluxmap-output/demo-world"
"""Where ``fluxmap run`` (default workdir ``fluxmap-output``) keeps the demo world, and so where
``fluxmap demo`` writes it and ``fluxmap catalog demo`` looks for it by default."""


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise SystemExit(f"fluxmap: --param wants KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k] = v
    return out


def _run_config(path: str | None, workdir: str | None = None, args: argparse.Namespace | None = None):
    from fluxmap.config import RunConfig, load_yaml, run_config_from_mapping

    params = _params(getattr(args, "param", None) or [])
    if path is None:
        cfg = RunConfig()
    else:
        from fluxmap.config import substitute

        cfg = run_config_from_mapping(substitute(load_yaml(path), params, where=str(path)), where=str(path))
    if workdir is not None:
        cfg = dataclasses.replace(cfg, workdir=workdir)
    kind = getattr(args, "cluster", None)
    address = getattr(args, "scheduler", None)
    if kind or address:
        cfg = dataclasses.replace(
            cfg,
            cluster=dataclasses.replace(cfg.cluster, kind=kind or "address", address=address or cfg.cluster.address),
        )
    return cfg


def _on_cluster(cfg, func) -> None:
    """Run ``func`` with the configured cluster's client active (``threads``: no cluster)."""
    if cfg.cluster.kind == "threads":
        func()
        return
    from fluxmap.cluster import check_shared_workdir, client_for

    check_shared_workdir(cfg.cluster, cfg.workdir)
    with client_for(cfg.cluster) as client:
        print(
            f"cluster: {cfg.cluster.kind}, {len(client.scheduler_info()['workers'])} workers at "
            f"{client.scheduler.address}"
        )
        func()


def _ensure_world(root: Path, cfg, force: bool) -> Path:
    from fluxmap.demo import build_world, world_is_current

    if not force and world_is_current(root, cfg):
        print(f"demo world: up to date in {root} (seed {cfg.seed})")
        return root
    t = time.perf_counter()
    print(
        f"demo world: generating in {root} ({cfg.resolution} deg grid, years {list(cfg.years)}, "
        f"ERA5-like {cfg.era5_resolution} deg) ...",
        flush=True,
    )
    world = build_world(root, cfg, progress=True)
    print(f"demo world: {len(world.files)} files written in {time.perf_counter() - t:.1f} s")
    return root


def _summarize_catalog(catalog: str, params: dict[str, str], entries: list[str] | None) -> bool:
    from fluxmap.io.catalog import CatalogError, builtin_catalog, describe, load_catalog
    from fluxmap.testing import raise_if_dask_computes

    path = Path(catalog) if Path(catalog).suffix in (".yaml", ".yml") else builtin_catalog(catalog)
    cat = load_catalog(path, **params)
    print(cat.describe())
    failed = []
    names = entries or cat.entries
    with raise_if_dask_computes() as counter:
        for name in names:
            try:
                print(describe(cat.open(name), name=name))
            except CatalogError as e:
                failed.append(name)
                print(f"{name}: cannot open here: {e}")
    print(
        f"opened {len(names) - len(failed)} of {len(names)} entries lazily; dask computes while opening: "
        f"{counter.total_computes}"
    )
    return not failed


def cmd_demo(args: argparse.Namespace) -> int:
    from fluxmap.config import DemoConfig
    from fluxmap.io.lock import workdir_lock

    with workdir_lock(args.root):
        _ensure_world(Path(args.root), _run_config(args.config).demo or DemoConfig(), args.force)
    return 0


def cmd_mirror(args: argparse.Namespace) -> int:
    from fluxmap.demo.mirror import write_mirror

    t = time.perf_counter()
    paths = write_mirror(args.out)
    print(f"fluxmap mirror: written in {time.perf_counter() - t:.1f} s to {args.out}: " +
          ", ".join(f"{k} {v}" for k, v in paths.items()))  # fmt: skip
    return 0


def _check_catalog(path: str, params: dict[str, str], sites_file: str | None) -> int:
    """``fluxmap catalog check``: one line per entry, ``problem:`` lines for what is wrong; exit 1 if any."""
    import pandas as pd

    from fluxmap.io.catalog import builtin_catalog, load_catalog

    cat = load_catalog(Path(path) if Path(path).suffix in (".yaml", ".yml") else builtin_catalog(path), **params)
    sites = None
    if sites_file:
        sites = pd.read_parquet(sites_file) if sites_file.endswith(".parquet") else pd.read_csv(sites_file)
        missing = {"lat", "lon"} - set(sites)
        if missing:
            raise ValueError(f"{sites_file}: a sites table needs columns lat and lon; missing {sorted(missing)}")
        sites = sites.drop_duplicates([c for c in ("site", "site_id", "lat", "lon", "start", "end") if c in sites])
    problems = 0
    for line, problem in cat.check(sites):
        if problem:
            problems += 1
            print(f"problem: {problem}")
        else:
            print(f"ok: {line}")
    print(f"catalog {cat.path}: {len(cat.entries)} entries, {problems} with problems")
    return 1 if problems else 0


def cmd_catalog(args: argparse.Namespace) -> int:
    params = _params(args.param)
    if args.catalog == "check":
        if not args.target:
            raise ValueError("fluxmap catalog check CATALOG: name the catalog (built-in name or path)")
        if args.target == "demo" and "DEMO_ROOT" not in params:
            params["DEMO_ROOT"] = args.root
        return _check_catalog(args.target, params, args.sites)
    if args.catalog == "demo" and "DEMO_ROOT" not in params:
        params["DEMO_ROOT"] = args.root
    return 0 if _summarize_catalog(args.catalog, params, args.entry) else 1


def _site_stages(cfg, *, extract: bool, model: bool = False, predict: bool = False) -> None:
    from fluxmap.demo import demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.models import model_stage
    from fluxmap.stages.predict import predict_stage
    from fluxmap.stages.report import report_stage
    from fluxmap.stages.sites import sites_stage

    specs = cfg.sites.sources or demo_sources(Path(cfg.workdir) / "demo-world")
    table = sites_stage(cfg, specs)
    if extract or model or predict:
        tables = extract_stage(cfg, table)
        if model or predict:
            model_stage(cfg, tables)
        if predict:
            from fluxmap.stages.annual import annual_stage

            written = predict_stage(cfg)
            report_stage(cfg, written)
            annual = annual_stage(cfg)
            eight_day = [t for t in cfg.model.targets if t.endswith(":8day")]
            yearly = [t for t in cfg.model.targets if t.endswith(":annual")]
            if yearly and not annual and not eight_day:
                raise SystemExit(f"fluxmap: no map was written: no models for the annual targets {yearly} (see above)")
            from fluxmap.stages.predict import MODIS_GRID_ENTRIES

            maps_expected = cfg.predict.resolution or set(MODIS_GRID_ENTRIES) <= set(cfg.extract.entries)
            if eight_day and not written and maps_expected:
                raise SystemExit(
                    f"fluxmap: no map was written: no models for the 8-day targets {eight_day} (see above)"
                )


def cmd_run(args: argparse.Namespace) -> int:
    from fluxmap.cluster import check_shared_workdir
    from fluxmap.io.lock import workdir_lock

    cfg = _run_config(args.config, args.workdir, args)
    check_shared_workdir(cfg.cluster, cfg.workdir)  # before the demo world is built
    with workdir_lock(cfg.workdir):
        return _run(args, cfg)


def _run(args: argparse.Namespace, cfg) -> int:
    t = time.perf_counter()
    if cfg.demo is not None:
        from fluxmap.io.lock import workdir_lock

        root = Path(cfg.workdir) / "demo-world"
        with workdir_lock(root):
            _ensure_world(root, cfg.demo, args.force)
        if not _summarize_catalog("demo", {"DEMO_ROOT": str(root)}, None):
            return 1
    _on_cluster(cfg, lambda: _site_stages(cfg, extract=True, model=True, predict=True))
    print(
        f"fluxmap run: done in {time.perf_counter() - t:.1f} s; outputs in {cfg.workdir}/: sites/ and extract/ "
        "(Parquet tables, quarantine, provenance.json), models/ (zones, models, nested validation tables, "
        "figures; summary.md), predict/ (fluxmap.zarr, totals, maps, report.md; annual/: the annual targets' maps and tables)"
    )
    return 0


def cmd_sites(args: argparse.Namespace) -> int:
    from fluxmap.io.lock import workdir_lock

    cfg = _run_config(args.config, args.workdir, args)
    with workdir_lock(cfg.workdir):
        _on_cluster(cfg, lambda: _site_stages(cfg, extract=False))
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from fluxmap.io.lock import workdir_lock

    cfg = _run_config(args.config, args.workdir, args)
    with workdir_lock(cfg.workdir):
        _on_cluster(cfg, lambda: _site_stages(cfg, extract=True))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from fluxmap.io.lock import workdir_lock

    cfg = _run_config(args.config, args.workdir, args)
    with workdir_lock(cfg.workdir):
        _on_cluster(cfg, lambda: _site_stages(cfg, extract=True, model=True))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from fluxmap.io.lock import workdir_lock

    cfg = _run_config(args.config, args.workdir, args)
    with workdir_lock(cfg.workdir):
        _on_cluster(cfg, lambda: _site_stages(cfg, extract=True, model=True, predict=True))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from fluxmap.config import load_yaml, run_config_from_mapping
    from fluxmap.io.lock import workdir_lock
    from fluxmap.stages.score import score_stage

    cfg = _run_config(args.config, args.workdir, args)
    doc = load_yaml(args.sites)
    specs = run_config_from_mapping({"sites": doc}, where=str(args.sites)).sites.sources
    if not specs:
        raise ValueError(f"{args.sites}: no site sources (a 'sources:' list as in a run config's sites block)")
    with workdir_lock(cfg.workdir):
        score_stage(cfg, specs, Path(args.out) if args.out else Path(cfg.workdir) / "score")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from fluxmap.io.lock import workdir_lock
    from fluxmap.stages.export import export_stage

    cfg = _run_config(args.config, args.workdir, args)
    with workdir_lock(cfg.workdir):
        export_stage(cfg, fmt=args.format, out=Path(args.out) if args.out else None, variables=args.variable)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from fluxmap.configdoc import config_reference

    print(config_reference(), end="")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    import yaml

    from fluxmap.cluster import render_jobqueue_script, render_kubernetes

    cfg = dataclasses.replace(_run_config(args.config).cluster, kind=args.kind)
    if args.kind == "kubernetes":
        print(yaml.safe_dump(render_kubernetes(cfg), sort_keys=False))
        if not cfg.volume_claim:
            print(
                "fluxmap cluster: note: no cluster.volume_claim, so the worker pods mount no workdir; a run needs one "
                "(deploy/kubernetes/pvc.yaml)",
                file=sys.stderr,
            )
    else:
        print(render_jobqueue_script(cfg))
    return 0


def _cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cluster",
        choices=["threads", "local", "address", "slurm", "pbs", "kubernetes"],
        help="where the Dask work runs (default: the config's, else local)",
    )
    p.add_argument("--scheduler", metavar="ADDRESS", help="connect to an existing scheduler (tcp:// or tls://)")


_COMMANDS: dict[str, tuple[str, str]] = {
    "score": (
        "apply a finished run's models to new site records and score them",
        "Read new site records (a YAML with a 'sources:' list, as in a run config's sites block) with "
        "the run's readers, rules and catalog; predict them with the run's final zone and unified models; "
        "write score/predictions.parquet, score/scores.csv (R2, RMSE, bias overall, by ecosystem, by "
        "distance to the nearest training site, inside vs outside the area of applicability) and the "
        "quarantine. Use the same --config and --workdir as the run.",
    ),
    "export": (
        "write a finished run's maps as CF-1.10 netCDF files (one per flux and year)",
        "Export the run's map stores (predict/fluxmap.zarr, predict/annual/annual.zarr) as compressed CF-1.10 "
        "netCDF-4 files, one per mapped flux and year, each with its ensemble spread, area of applicability, "
        "flags, zones, land fraction and cell areas: for GDAL before 3.9 (which finds no CRS in Zarr), "
        "Panoply, ncview, CDO and NCO. Use the same --config and --workdir as the run.",
    ),
    "run": (
        "run every stage end to end (the embedded demo world, or your data with --config)",
        "Run the pipeline end to end. With no config it generates the embedded demo world (cached, in "
        "WORKDIR/demo-world) and opens its catalog as lazy cubes first. `fluxmap config` prints every block "
        "and key a config may hold, with its default and meaning.",
    ),
    "config": (
        "print every block and key of a run config, with defaults and meanings (YAML)",
        "Print the run configuration's reference: YAML of every block (sites, extract, model, predict, "
        "cluster, metadata, demo) and key at its default, each preceded by what it means. Save it, keep what "
        "you change, and pass it to `fluxmap run --config`.",
    ),
    "cluster": (
        "render HPC job scripts or the Kubernetes DaskCluster manifest (submits nothing)",
        "Print what fluxmap would submit: the SLURM or PBS worker job script "
        "(dask-jobqueue) or the DaskCluster resource for the Dask operator (dask-kubernetes), "
        "from the run config's cluster block.",
    ),
    "demo": (
        "generate the embedded demo world (MODIS/ERA5-like stores, sites, truth)",
        "Generate the seeded demo world: MODIS-like 8-day cubes and an "
        "ERA5-like daily cube in the real encodings, static layers with the real MCD12C1 "
        "2019 land cover, site files in SRDB/COSORE/FLUXNET formats, and the ground truth.",
    ),
    "mirror": (
        "write an offline mirror of the real sources (MODIS STAC + COGs, ARCO-ERA5 Zarr, FLUXNET files)",
        "Write a small seeded mirror of the real remote sources in their real formats: a static STAC "
        "catalog like the Planetary Computer's MODIS 6.1 collections with sinusoidal Cloud-Optimized GeoTIFFs "
        "(tiles h18v04 and h19v04, three 8-day periods of 2019), a Zarr store laid out like ARCO-ERA5, and "
        "FLUXNET2015 daily files. `fluxmap run --config examples/modis-mirror.yaml --param MIRROR=DIR` runs the "
        "cloud catalog on it; README: 'The real MODIS and ERA5 path'.",
    ),
    "catalog": (
        "check a catalog and print its entries as lazy cubes (computes nothing)",
        "Load an Intake catalog (built-in name: demo, cloud, reference; or a "
        "YAML path), check it is safe, open entries decoded to canonical variables, and "
        "print dims, chunks, units and sizes without computing anything. "
        "`fluxmap catalog check CATALOG [--sites TABLE]` validates a user catalog before anything runs: "
        "each entry opens (file present, variables mapped, units known and consistent with the file, CRS), "
        "its axes and time axis are usable, and the sites fall on its grid and inside its time axis; one "
        "'problem:' line per entry at fault, exit 1 if any.",
    ),
}
"""Per subcommand (besides the stage commands): its one-line summary and its description."""


def _parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """The subcommand ``name`` with its summary (in ``fluxmap --help``) and description."""
    summary, description = _COMMANDS[name]
    parser: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=description)
    return parser


def _stage_args(p: argparse.ArgumentParser, func: Any, *, config: str) -> None:
    """``--config``, ``--workdir`` and the cluster options of a command that runs stages."""
    p.add_argument("--config", help=config)
    p.add_argument("--workdir", help="folder for every output (default: the config's, else fluxmap-output)")
    p.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="fill ${KEY} in the config's text values (e.g. SHARED_DATA=../shared/data)",
    )  # fmt: skip
    _cluster_args(p)
    p.set_defaults(func=func)


def _add_run(sub: Any) -> None:
    """``fluxmap run``: every stage, end to end."""
    r = _parser(sub, "run")
    r.add_argument("--force", action="store_true", help="regenerate even if the cached world is current")
    _stage_args(r, cmd_run, config="run YAML: workdir, sites, extract, model, predict, cluster, metadata and demo "
                "blocks; `fluxmap config` prints every key with its default and meaning")  # fmt: skip


def _add_score(sub: Any) -> None:
    """``fluxmap score``: a finished run's models on new site records."""
    c = _parser(sub, "score")
    c.add_argument("--sites", required=True, help="YAML with a 'sources:' list of the new site files")
    c.add_argument("--out", help="output folder (default: WORKDIR/score)")
    _stage_args(c, cmd_score, config="the run's YAML (its workdir holds the finished models)")


def _add_config(sub: Any) -> None:
    """``fluxmap config``: the configuration reference."""
    _parser(sub, "config").set_defaults(func=cmd_config)


def _add_export(sub: Any) -> None:
    """``fluxmap export``: the maps as netCDF."""
    e = _parser(sub, "export")
    e.add_argument("--format", default="netcdf", choices=["netcdf"], help="file format (default: %(default)s)")
    e.add_argument("--out", help="output folder (default: WORKDIR/export)")
    e.add_argument("--variable", action="append", metavar="NAME", help="only this flux (repeatable), e.g. sr")
    e.add_argument("--config", help="the run's YAML (its workdir holds the maps)")
    e.add_argument("--workdir", help="the run's folder (default: the config's, else fluxmap-output)")
    e.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="fill ${KEY} in the config")
    e.set_defaults(func=cmd_export)


def _add_cluster(sub: Any) -> None:
    """``fluxmap cluster``: render job scripts or manifests."""
    k = _parser(sub, "cluster")
    k.add_argument("kind", choices=["slurm", "pbs", "kubernetes"])
    k.add_argument("--config", help="run YAML with a cluster: block")
    k.set_defaults(func=cmd_cluster)


def _add_demo(sub: Any) -> None:
    """``fluxmap demo``: generate the demo world."""
    d = _parser(sub, "demo")
    d.add_argument("--root", default=DEMO_ROOT, help="where to write it (default: %(default)s, where `fluxmap run` "
                   "puts it)")  # fmt: skip
    d.add_argument(
        "--config", help="run YAML whose demo: block sets DemoConfig fields (seed, resolution, bbox, years, ...)"
    )
    d.add_argument("--force", action="store_true", help="regenerate even if the world there is current")
    d.set_defaults(func=cmd_demo)


def _add_mirror(sub: Any) -> None:
    """``fluxmap mirror``: the offline mirror of the real sources."""
    m = _parser(sub, "mirror")
    m.add_argument("--out", default="fluxmap-output/mirror", help="where to write it (default: %(default)s)")
    m.set_defaults(func=cmd_mirror)


def _add_stages(sub: Any) -> None:
    """``fluxmap sites|extract|models|predict``: the pipeline up to that stage."""
    for name, func, text in (
        (
            "sites",
            cmd_sites,
            "read site observations (SRDB, COSORE, FLUXNET, CSV) into one tidy table "
            "in g C m-2 d-1, with every rejected row quarantined with its reason",
        ),
        (
            "extract",
            cmd_extract,
            "align observations to the MODIS 8-day calendar, extract predictors at the "
            "sites from the catalog (vectorized), add derived features, write the training tables",
        ),
        (
            "models",
            cmd_models,
            "fit environmental zones, select predictors, validate zone and unified models with every "
            "choice nested in folds of whole physical sites, fit the final models and uncertainty ensembles, "
            "write tables and figures",
        ),
        (
            "predict",
            cmd_predict,
            "map the fluxes over the grid into the CF Zarr store (resumable; blocks without land skipped), "
            "with totals, latitudinal profiles, maps and the report; annual targets in predict/annual/",
        ),
    ):
        sp = sub.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ". Cached: reruns with "
            "the same inputs and settings reuse the outputs.",
        )
        _stage_args(sp, func, config="run YAML (default: the embedded demo world's sites)")


def _add_catalog(sub: Any) -> None:
    """``fluxmap catalog``: check a catalog and describe its entries lazily."""
    c = _parser(sub, "catalog")
    c.add_argument(
        "catalog",
        nargs="?",
        default="demo",
        help="built-in name or path (default: %(default)s), or 'check' to validate the catalog named next",
    )
    c.add_argument("target", nargs="?", help="with 'check': the catalog to validate")
    c.add_argument(
        "--sites", help="with 'check': a CSV or Parquet table of sites (lat, lon; start, end) to test coverage"
    )
    c.add_argument("--root", default=DEMO_ROOT, help="demo world folder for the demo catalog (default: %(default)s, "
                   "where `fluxmap run` puts it)")  # fmt: skip
    c.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="catalog user parameter")
    c.add_argument("--entry", action="append", metavar="NAME", help="open only these entries")
    c.set_defaults(func=cmd_catalog)


def build_parser() -> argparse.ArgumentParser:
    """The ``fluxmap`` argument parser: one subcommand per entry point."""
    p = argparse.ArgumentParser(
        prog="fluxmap",
        description="Site carbon-flux measurements to global, gridded, validated maps.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"fluxmap {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of its one line")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_run,
        _add_config,
        _add_stages,
        _add_export,
        _add_score,
        _add_catalog,
        _add_demo,
        _add_mirror,
        _add_cluster,
    ):
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fluxmap.io.catalog import CatalogError
    from fluxmap.io.lock import WorkdirBusy
    from fluxmap.io.sites import SiteFileError  # a site file unreadable as a whole: file and line

    try:
        return int(args.func(args))
    except (
        CatalogError,
        WorkdirBusy,
        SiteFileError,
        FileNotFoundError,
        ValueError,
        KeyError,
        ModuleNotFoundError,
        PermissionError,
    ) as e:
        if args.debug:
            raise
        print(f"fluxmap {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # not a user error we know: one line, the traceback with --debug
        if args.debug:
            raise
        print(
            f"fluxmap {args.command}: unexpected error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
