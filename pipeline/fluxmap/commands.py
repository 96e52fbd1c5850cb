"""The runners of the ``fluxmap`` subcommands (``cmd_*``) and their helpers: read the config, hold
the workdir's lock, start the cluster, call the stages. :mod:`fluxmap.cli` builds the parser that
dispatches to them and turns errors into one line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

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
    workers = getattr(args, "workers", None)
    if workers is not None:
        if workers < 1:
            raise ValueError(f"--workers {workers}: expected at least one worker")
        cfg = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, n_workers=workers))
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
            if cfg.model.inversion is not None:
                from fluxmap.stages.inversion import inversion_stage

                inversion_stage(cfg, tables)
        if predict:
            from fluxmap.stages.annual import annual_stage

            written = predict_stage(cfg)
            report_stage(cfg, written)
            annual = annual_stage(cfg)
            demo = _demo_products(cfg)
            if cfg.evaluate.products or demo:
                from fluxmap.stages.evaluate import evaluate_stage

                evaluate_stage(cfg, demo)
            from fluxmap.stages.project import project_stage
            from fluxmap.stages.variability import variability_stage

            variability_stage(cfg, written)
            project_stage(cfg, written)
            if cfg.model.inversion is not None:
                from fluxmap.stages.inversion import inversion_report_section

                inversion_report_section(cfg)
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
        "figures; summary.md), predict/ (fluxmap.zarr, totals, maps, report.md; annual/: the annual targets' maps and tables), "
        "evaluate/ (gridded products against the sites: scores.csv, taylor.png, report.md) when products were evaluated, "
        "variability/ (regional and site annual anomalies) with two years or more, "
        "project/ (the maps under a delta-changed climate: fluxmap.zarr, totals.csv, report.md) when projected"
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


def _product_arg(text: str) -> dict[str, Any]:
    """``LABEL=PATH:NAME=VAR[,NAME=VAR]`` (``NAME=-VAR``: the variable with its sign turned) as an
    ``evaluate.products`` entry."""
    label, eq, rest = text.partition("=")
    path, colon, pairs = rest.rpartition(":")
    if not (label and eq and colon and path and pairs):
        raise ValueError(f"--product {text!r}: expected LABEL=PATH:NAME=VAR[,NAME=VAR], e.g. m=model.nc:rh=rh")
    variables, signs = {}, {}
    for pair in pairs.split(","):
        name, _, var = pair.partition("=")
        if not name or not var:
            raise ValueError(f"--product {text!r}: {pair!r} is not NAME=VAR")
        if var.startswith("-"):
            var, signs[name] = var[1:], -1.0
        variables[name] = var
    return {"label": label, "path": path, "variables": variables, "signs": signs}


def _demo_products(cfg) -> tuple:
    """The demo world's three ecosystem models with known faults, when the run has the demo world
    and ``evaluate.demo_products``."""
    root = Path(cfg.workdir) / "demo-world"
    if cfg.demo is None or not cfg.evaluate.demo_products or not (root / "world.json").is_file():
        return ()
    from fluxmap.demo.ecosystem_models import ecosystem_models

    return ecosystem_models(root)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fluxmap.config_evaluate import product_from_mapping
    from fluxmap.io.lock import workdir_lock
    from fluxmap.stages.evaluate import evaluate_stage

    cfg = _run_config(args.config, args.workdir, args)
    extra = tuple(product_from_mapping(_product_arg(t), f"--product {t!r}") for t in args.product)
    cfg = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, products=cfg.evaluate.products + extra))
    with workdir_lock(cfg.workdir):
        if evaluate_stage(cfg, _demo_products(cfg)) is None:
            raise ValueError("nothing to evaluate: no products (evaluate.products in the config, or --product)")
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
