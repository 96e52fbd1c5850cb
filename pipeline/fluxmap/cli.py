"""The ``fluxmap`` command: a thin orchestrator over the stages (no science here)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fluxmap._version import __version__
from fluxmap.commands import (
    DEMO_ROOT,
    cmd_catalog,
    cmd_cluster,
    cmd_config,
    cmd_demo,
    cmd_evaluate,
    cmd_export,
    cmd_extract,
    cmd_mirror,
    cmd_models,
    cmd_predict,
    cmd_run,
    cmd_score,
    cmd_sites,
)

EPILOG = """\
The pipeline: sites (observations in g C m-2 d-1, rejected rows quarantined) -> extract
(predictors at the sites, 8-day and annual training tables) -> models (environmental zones,
predictor selection, zone and unified models validated on held-out sites, uncertainty)
-> predict (maps as CF Zarr, totals, figures, report). `fluxmap run` runs them all; a
stage's command runs the pipeline up to it. Stages whose inputs have not changed are reused.

  fluxmap run                      the embedded demo world, end to end
  fluxmap run --config my.yaml     your data (examples/*.yaml; `fluxmap config` lists every key)
  fluxmap export --format netcdf   the maps as CF-1.10 netCDF (GDAL < 3.9, Panoply, CDO, NCO)
  fluxmap evaluate --product m=model.nc:rh=rh   a model's output against the sites (ILAMB-style)
  fluxmap catalog demo             the demo world's catalog as lazy cubes (after `fluxmap run`)
"""


def _cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cluster",
        choices=["threads", "local", "address", "slurm", "pbs", "kubernetes"],
        help="where the Dask work runs (default: the config's, else local)",
    )
    p.add_argument("--scheduler", metavar="ADDRESS", help="connect to an existing scheduler (tcp:// or tls://)")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="workers of the cluster (local: processes; slurm, pbs: jobs; kubernetes: pods); the models stage's "
        "folds, searches and ensemble members and the predict stage's blocks run on them",
    )


_COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": (
        "score gridded flux products (ecosystem models, FLUXCOM-style maps) against the sites, ILAMB-style",
        "Open each product (NetCDF or Zarr; CMIP/TRENDY or FLUXCOM conventions: kg m-2 s-1 or g C m-2 d-1, "
        "calendars noleap, 360_day, proleptic_gregorian, monthly, 8-day or annual steps, longitudes 0..360 or "
        "-180..180), sample it at every site observation's grid cell over the observation's own period, and "
        "score it beside fluxmap's nested predictions: n, r, RMSE, bias, centred RMSE, SD ratio and ILAMB's "
        "bias, RMSE, spatial-distribution and overall scores, overall and per IGBP class and zone. Where "
        "fluxmap has mapped the variable, set each product beside the map: global totals against the map's "
        "ensemble band, totals per IGBP class, AR = SR - HR and HR/SR, latitudinal profiles and difference "
        "maps; a summary goes into the maps' report.md. A one-year climatology (climatology: true, or a CF "
        "climatology attribute) is compared over the same days of every year. Writes evaluate/scores.csv, "
        "samples_<target>.parquet, taylor.png, totals.csv, totals_by_biome.csv, partition.csv, the figures and "
        "report.md, all or nothing. Products come from the config's evaluate.products and --product; with the "
        "demo world, also its three ecosystem models with known faults. Run after the models stage, and after "
        "the maps for the comparison with them (fluxmap run does it).",
    ),
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
        "cluster, metadata, evaluate, demo) and key at its default, each preceded by what it means. Save it, keep what "
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


def _add_evaluate(sub: Any) -> None:
    """``fluxmap evaluate``: products against the sites."""
    v = _parser(sub, "evaluate")
    v.add_argument(
        "--product", action="append", default=[], metavar="LABEL=PATH:NAME=VAR[,NAME=VAR]",
        help="a product to score, e.g. cable=cable_rh.nc:rh=rh,sr=rs (fluxmap's name = the file's "
        "variable; a sign: nee=-nbp); repeatable, beside the config's evaluate.products",
    )  # fmt: skip
    _stage_args(v, cmd_evaluate, config="the run's YAML (its workdir holds the observations and models)")


def _add_config(sub: Any) -> None:
    """``fluxmap config``: the configuration reference."""
    _parser(sub, "config").set_defaults(func=cmd_config)


def _add_export(sub: Any) -> None:
    """``fluxmap export``: the maps as netCDF."""
    e = _parser(sub, "export")
    e.add_argument(
        "--format", default="netcdf", choices=["netcdf", "ilamb"],
        help="netcdf: CF-1.10 files per flux and year; ilamb: each 8-day and annual map and its site observations "
        "as ILAMB reference data (export/ilamb/<var>/); default: %(default)s",
    )  # fmt: skip
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
        _add_evaluate,
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
