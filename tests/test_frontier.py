"""Nested model choice on the skill-cost frontier, and the models stage on a Dask cluster (issue 27,
items 1 and 2)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fluxmap.science.comparison import Protocol, nested_cv
from fluxmap.science.frontier import Candidate, frontier_table, inner_search, one_se_choice
from fluxmap.science.train import FitSpec

CHEAP = Candidate("rf", (("max_depth", 1), ("max_features", 1.0), ("n_estimators", 5)))  # stumps: one split each
DEEP = Candidate("rf", (("max_depth", 8), ("n_estimators", 40)))


def _table(kind: str, n_sites: int = 24, per: int = 30, seed: int = 0) -> pd.DataFrame:
    """``step``: the flux steps with x1 (one split explains it); ``xor``: it depends on the signs
    of x1 and x2 together (no single split can)."""
    rng = np.random.default_rng(seed)
    site = np.repeat(np.arange(n_sites), per)
    x1, x2 = rng.normal(size=len(site)), rng.normal(size=len(site))
    signal = 2.0 * (x1 > 0) if kind == "step" else 2.0 * ((x1 > 0) ^ (x2 > 0))
    return pd.DataFrame(
        {
            "site_group": [f"P{s:02d}" for s in site],
            "site_id": [f"S{s:02d}" for s in site],
            "location": [f"L{s:02d}" for s in site],
            "x1": x1,
            "x2": x2,
            "value": signal + rng.normal(0, 0.3, len(site)),
            "ecosystem": "GRA",
        }
    )


def test_one_standard_error_rule_takes_the_fastest_configuration_within_one_se_of_the_best():
    t = pd.DataFrame(
        {
            "candidate": [0, 1, 2, 3],
            "rmse_mean": [1.00, 1.04, 1.06, 1.20],
            "rmse_se": [0.05, 0.01, 0.01, 0.01],
            "rows_per_s": [1e5, 1e6, 5e6, 9e6],
        }
    )
    assert one_se_choice(t) == 1  # 1.04 <= 1.00 + 0.05 < 1.06; 3 is fastest but not within one SE
    assert one_se_choice(t.assign(rmse_se=[0.07, 0.01, 0.01, 0.01])) == 2
    assert one_se_choice(t.assign(rmse_se=0.0)) == 0  # no slack: the best
    assert one_se_choice(t.assign(rows_per_s=1.0, rmse_se=0.5)) == 0  # equal costs: the grid's order


@pytest.mark.parametrize("kind, expect", [("step", CHEAP), ("xor", DEEP)])
def test_the_search_pays_for_a_deep_model_only_where_the_data_need_one(kind, expect):
    d = _table(kind)
    base = FitSpec(group="site_group", seed=0)
    rates = np.array([1e7, 1e5])  # the stumps are 100x cheaper
    pick, table = inner_search(d, ["x1", "x2"], (CHEAP, DEEP), rates, base=base, folds=3)
    assert (CHEAP, DEEP)[pick] == expect, table
    # Whole sites per inner fold, and the same answer from parallel fits.
    pick2, table2 = inner_search(d, ["x1", "x2"], (CHEAP, DEEP), rates, base=base, folds=3, n_jobs=2)
    assert pick2 == pick
    pd.testing.assert_frame_equal(table, table2)


def test_every_outer_fold_chooses_its_own_configuration_and_the_frontier_scores_each():
    d = _table("xor", n_sites=20, per=20)
    spec = FitSpec("xgboost", {"n_estimators": 40}, 0, 1, group="site_group", folds=4)
    p = Protocol(
        spec=spec,
        selection=FitSpec("xgboost", {"n_estimators": 15}, 0, 1, folds=3),
        backward=False,
        grid=(CHEAP, DEEP),
        search_folds=3,
    )
    zones = lambda held: pd.Series(0, index=sorted(set(d.location)))  # noqa: E731 (no zones)
    out, chosen = nested_cv(d, ["x1", "x2"], p, zones=zones)
    assert list(chosen.candidate) == [1, 1, 1, 1] and set(chosen.model) == {DEEP.label}
    # The headline (unified) predictions are the chosen configuration's in each fold.
    for f, c in zip(chosen.fold, chosen.candidate):
        rows = out.fold == f
        np.testing.assert_array_equal(out.loc[rows, "pred_unified"], out.loc[rows, f"pred_cand_{c}"])
    front = frontier_table(out, (CHEAP, DEEP), np.array([1e7, 1e5]), 1, chosen.candidate)
    assert list(front.folds_chosen) == [0, 4] and list(front.chosen) == [False, True]
    assert front.r2[1] > 0.5 > front.r2[0]  # stumps cannot learn an interaction
    assert front.on_frontier.all()  # one faster, one better: neither dominates
    dominated = frontier_table(out, (CHEAP, DEEP), np.array([1e5, 1e7]), 1, chosen.candidate)
    assert list(dominated.on_frontier) == [False, True]  # slower and worse


def test_fixed_family_when_a_config_names_one():
    from fluxmap.config import ConfigError, run_config_from_mapping

    assert run_config_from_mapping({}).model.choice == "frontier"
    assert run_config_from_mapping({"model": {"params": {"n_estimators": 9}}}).model.choice == "fixed"
    assert run_config_from_mapping({"model": {"kind": "rf"}}).model.choice == "fixed"
    grid = [{"kind": "rf", "params": {"n_estimators": 5}}, {"kind": "xgboost"}]
    m = run_config_from_mapping({"model": {"kind": "rf", "choice": "frontier", "grid": grid}}).model
    assert m.choice == "frontier" and m.grid == (("rf", (("n_estimators", 5),)), ("xgboost", ()))
    with pytest.raises(ConfigError, match=r"model: grid\[0\]"):
        run_config_from_mapping({"model": {"grid": [{"family": "rf"}]}})
    with pytest.raises(ValueError, match="unknown model kind"):
        run_config_from_mapping({"model": {"grid": [{"kind": "lightgbm"}]}})


def _models(tiny_world, workdir, grid, *, cluster: bool) -> tuple[dict, list[str]]:
    from fluxmap.demo import demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.models import model_stage
    from fluxmap.stages.sites import sites_stage
    from fluxmap.testing import small_run_config

    cfg = small_run_config(
        str(workdir), tiny_world.root, targets=["sr:8day"], k_candidates=[2], outer_folds=4, search_folds=2,
        bootstrap_members=3, backward_elimination=False, choice="frontier", grid=grid,
    )  # fmt: skip
    log: list[str] = []
    tables = extract_stage(cfg, sites_stage(cfg, demo_sources(tiny_world.root), log=log.append), log=log.append)
    if not cluster:
        model_stage(cfg, tables, log=log.append)
        return dict(cfg=cfg), log
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, Client(lc):
        model_stage(cfg, tables, log=log.append)
    return dict(cfg=cfg), log


def test_models_stage_on_a_dask_cluster_gives_the_local_results_and_maps_the_chosen_model(tiny_world, tmp_path):
    """Folds, searches and ensemble members as tasks on two worker processes: the same nested
    predictions, choices, scores and final models as the local run; the final models are the
    configuration the search chose, saved in their safe formats."""
    # 100x apart in cost, so the two runs' separately measured rates rank them the same way.
    grid = [
        {"kind": "rf", "params": {"n_estimators": 5, "max_depth": 3}},
        {"kind": "xgboost", "params": {"n_estimators": 200, "max_depth": 6}},
    ]
    _, log_local = _models(tiny_world, tmp_path / "local", grid, cluster=False)
    _, log_cluster = _models(tiny_world, tmp_path / "cluster", grid, cluster=True)
    assert any("as tasks on the cluster (2 worker threads)" in m for m in log_cluster)
    assert not any("as tasks on the cluster" in m for m in log_local)
    a, b = (tmp_path / w / "models" / "sr_8day" for w in ("local", "cluster"))
    pd.testing.assert_frame_equal(
        pd.read_parquet(a / "loso_predictions.parquet"), pd.read_parquet(b / "loso_predictions.parquet")
    )
    for name in ("outer_folds.csv", "bootstrap_scores.csv", "loso_metrics.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(a / name), pd.read_csv(b / name), obj=name)
    fa, fb = (pd.read_csv(x / "frontier.csv").drop(columns="rows_per_s_per_core") for x in (a, b))
    pd.testing.assert_frame_equal(fa, fb)
    front = pd.read_csv(a / "frontier.csv")
    assert front.rows_per_s_per_core[0] > 10 * front.rows_per_s_per_core[1]
    assert (a / "frontier.png").stat().st_size > 10_000 and (a / "model_search.csv").is_file()
    # The final models are the chosen configuration's, and both runs saved the same ones.
    pick = int(front[front.chosen].candidate.iloc[0])
    kind, params = grid[pick]["kind"], grid[pick]["params"]
    for stem in ["model_unified", *(p.stem for p in a.glob("model_zone_*.json")), "ensemble_00"]:
        meta = json.loads((a / f"{stem}.json").read_text())
        assert meta["kind"] == kind and {k: meta["params"][k] for k in params} == params, stem
        assert meta["file"].endswith(".ubj" if kind == "xgboost" else ".skops")
        assert meta["sha256"] == json.loads((b / f"{stem}.json").read_text())["sha256"], stem
    summary = pd.read_csv(tmp_path / "local" / "models" / "summary.csv").iloc[0]
    assert summary.model == front[front.chosen].label.iloc[0]
    report = (a / "report.md").read_text()
    assert "skill-cost frontier" in report and summary.model in report


def test_workers_flag_sizes_the_cluster_the_stages_run_on():
    from fluxmap.cli import build_parser
    from fluxmap.commands import _run_config

    args = build_parser().parse_args(["models", "--cluster", "slurm", "--workers", "16"])
    cfg = _run_config(None, args=args)
    assert cfg.cluster.kind == "slurm" and cfg.cluster.n_workers == 16
    assert _run_config(None, args=build_parser().parse_args(["models"])).cluster.n_workers is None
    with pytest.raises(ValueError, match="--workers 0"):
        _run_config(None, args=build_parser().parse_args(["models", "--workers", "0"]))
