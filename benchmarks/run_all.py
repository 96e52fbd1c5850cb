"""Run the benchmark suite and write a Markdown table of its figures against the targets.

Each benchmark runs in its own process (so one's memory or worker pool cannot colour the
next) with its default, full-size arguments, or with ``--tiny`` the small ones the test suite
uses. The JSON lines are kept next to the table.

    python benchmarks/run_all.py                       # full size: ~15 min on 2 cores
    python benchmarks/run_all.py --tiny --out /tmp/bench.md
    python benchmarks/run_all.py --only bench_scaling,bench_memory
    python benchmarks/run_all.py --only bench_inversion
    python benchmarks/run_all.py --data ../shared/data  # adds the frontier on real FLUXNET NEE
    python benchmarks/run_all.py --render results.jsonl   # table from earlier JSON lines
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name (the script, with "@..." for a second configuration): (full-size arguments, tiny arguments)
SUITE: dict[str, tuple[list[str], list[str]]] = {
    "bench_extract": ([], ["--sites", "20", "--res", "2.0", "--chunks", "23,30,30"]),
    "bench_predict": ([], ["--tiny"]),
    "bench_predict@0.05deg": (["--resolution", "0.05"], ["--tiny"]),
    "bench_scaling": ([], ["--tiny"]),
    "bench_models": ([], ["--tiny"]),
    "bench_cost": ([], ["--tiny"]),
    "bench_memory": ([], ["--tiny"]),
    "bench_write": ([], ["--shape", "4,20,40", "--chunks", "2,10,20"]),
    "bench_graph500": ([], ["--resolution", "0.05", "--block", "600"]),
    "bench_inversion": ([], ["--tiny", "--seeds", "2"]),
}


def _row(figure: str, value: float | int | str, target: str = "", ok: bool | None = None) -> dict:
    return {"figure": figure, "value": value, "target": target, "met": "" if ok is None else ("yes" if ok else "no")}


def _scaling(result: dict, stage: str) -> list[dict]:
    """The seconds at each worker count and the efficiency at the largest, against 0.85."""
    n = max(result["efficiency"], key=int)
    return [
        _row(
            f"{stage}strong scaling 1 -> {n} workers: seconds", " -> ".join(str(s) for s in result["seconds"].values())
        ),
        _row(
            f"{stage}strong scaling efficiency at {n} workers",
            result["efficiency"][n],
            ">= 0.85",
            result["efficiency"][n] >= 0.85,
        ),  # fmt: skip
    ]


def figures(result: dict) -> list[dict]:
    """The figures of one benchmark's JSON result, with the target where the issue sets one."""
    kind = result.get("benchmark")
    if kind == "extract_vs_naive_loop":
        chunk_mb = 4 * result["chunks"][0] * result["chunks"][1] * result["chunks"][2] / 1e6
        name = f"extraction vs per-site loop ({result['sites']} sites, {chunk_mb:.1f} MB chunks)"
        return [_row(name, result["ratio"], ">= 100", result["ratio"] >= 100)]
    if kind == "inversion_sparse_operator":
        return [
            _row(f"inversion: sparse estimate's RMS error / RMS regional flux, K = {r['k']} per region "
                 f"({result['regions']} regions x {result['months']} months)", r["relative_rmse"])
            for r in result["by_k"]
        ]  # fmt: skip
    if kind == "predict_throughput":
        grid = "x".join(str(v) for v in result["grid"])
        return [
            _row(f"kernel pixel-predictions /s/core ({grid} grid)", result["kernel_per_core_per_s"]),
            _row("end-to-end predict stage pixel-predictions /s/core", result["end_to_end_per_core_per_s"]),
            _row(
                "end-to-end / kernel",
                result["end_to_end_over_kernel"],
                ">= 0.8",
                result["end_to_end_over_kernel"] >= 0.8,
            ),
            _row(
                f"  of which prediction + Zarr write alone / kernel (phases, s: {result['phases_s']})",
                result["predict_and_write_over_kernel"],
            ),
            _row(
                f"  counting also the zone map's {result['zone_map_s']} s (made by the models stage)",
                result["end_to_end_with_zone_map_over_kernel"],
            ),
        ]
    if kind == "model_frontier":
        real = "FLUXNET" in result["data"]  # issue 27's goals are set on the real NEE
        return [
            _row(
                f"frontier choice, {result['data']} {result['target']}: {result['chosen']} (nested R2 of the choice "
                f"{result['nested_r2_unified']}; best configuration {result['best_configuration']} "
                f"{result['r2_best_configuration']}): predictions /s/core over the earlier default's",
                result["speedup_over_earlier_default"],
                ">= 10" if real else "",
                result["speedup_over_earlier_default"] >= 10 if real else None,
            ),
            _row(
                f"  outer-fold R2 of the chosen configuration ({result['r2_chosen_configuration']}) minus the "
                "best configuration's",
                round(result["r2_chosen_configuration"] - result["r2_best_configuration"], 4),
                ">= 0" if real else "",
                result["r2_chosen_configuration"] >= result["r2_best_configuration"] if real else None,
            ),
        ]
    if kind == "models_strong_scaling":
        return _scaling(result, "models stage ")
    if kind == "global_500m_year_cost":
        rows = []
        for size in ("earlier_default", "frontier", "frontier_on_real_nee"):
            if size not in result:
                continue
            r = result[size]
            rows.append(
                _row(
                    f"global 500 m, core-hours per target and 8-day period, {size.replace('_', ' ')} ({r['model']}; "
                    f"{r['core_s_per_million_cell_periods']} core-s per M cell-periods; "
                    f"{r['core_h_per_target_year_global_500m']} core-h per target-year)",
                    r["core_h_per_target_period_global_500m"],
                    "" if size == "earlier_default" else "< 0.5",
                    None if size == "earlier_default" else r["goal_met"],
                )
            )
        return rows
    if kind == "strong_scaling":
        return _scaling(result, "")
    if kind == "worker_memory":
        c, f = result["coarse"], result["fine"]
        # Judged on the growth above the worker's imported-pipeline baseline: the baseline (libraries,
        # ~300 MB) is the same at every grid size and would dilute a growth in the total.
        grow = {k: round(d["peak_mb"] - d["baseline_mb"], 1) for k, d in (("coarse", c), ("fine", f))}
        return [
            _row(
                f"worker memory above the imported baseline, grid x{result['cells_ratio']} "
                f"({grow['coarse']} -> {grow['fine']} MB)",
                result["above_baseline_ratio"],
                "<= 1.2",
                result["above_baseline_ratio"] <= 1.2,
            ),
            _row(f"  total peak ({c['peak_mb']} -> {f['peak_mb']} MB), ratio", result["peak_ratio"]),
            *(
                [
                    _row(
                        f"  most land cells in one block ({c['max_land_cells_per_block']} -> "
                        f"{f['max_land_cells_per_block']}), ratio",
                        result["max_land_cells_per_block_ratio"],
                    )
                ]
                if "max_land_cells_per_block_ratio" in result
                else []
            ),
            *(
                [
                    _row(
                        "  growth above the baseline per land cell of the fullest block, ratio",
                        result["above_baseline_per_land_cell_ratio"],
                    )
                ]  # fmt: skip
                if "above_baseline_per_land_cell_ratio" in result
                else []
            ),
        ]
    if kind == "zarr_write":
        return [
            _row(
                f"Zarr write fluxmap / raw zarr ({result['fluxmap_mb_s']} vs {result['raw_zarr_mb_s']} MB/s)",
                result["fluxmap_over_raw"],
            ),
        ]
    if kind == "graph_500m_one_year":
        cells = "x".join(str(v) for v in result["cells"])
        return [
            _row(f"global graph ({cells} cells, {result['blocks']} blocks): build s", result["build_s"]),
            _row("  tasks", result["tasks"]),
            _row("  peak Python memory MB", result["peak_python_mb"]),
            _row(f"  write graph cut into {result['regions']} region tasks: s", result["region_graphs_s"]),
            _row("  submitted to the scheduler MB", result["submitted_mb"]),
        ]
    return [_row(f"{kind} (unknown benchmark)", json.dumps(result))]


def render(results: list[dict], *, title: str = "fluxmap benchmarks") -> str:
    machine = next((r["machine"] for r in results if "machine" in r), {})
    lines = [
        f"# {title}",
        "",
        f"Machine: {machine.get('cpus', '?')} CPUs, Python {machine.get('python', '?')}, "
        f"{machine.get('platform', platform.platform())}.",
        "",
        "| figure | value | target | met |",
        "|---|---|---|---|",
    ]
    for r in results:
        for row in figures(r):
            lines.append(f"| {row['figure']} | {row['value']} | {row['target']} | {row['met']} |")
    lines += ["", "Raw results (one JSON line per benchmark run):", "", "```json"]
    lines += [json.dumps(r) for r in results]
    lines += ["```", ""]
    return "\n".join(lines)


def run_one(name: str, args: list[str]) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, str(HERE / f"{name.split('@')[0]}.py"), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="the small sizes the test suite uses")
    p.add_argument("--only", help="comma-separated benchmark names")
    p.add_argument("--out", default="benchmark-results.md", help="Markdown file (JSON lines go next to it)")
    p.add_argument("--render", metavar="JSONL", help="only render a table from an earlier JSON lines file")
    p.add_argument(
        "--data",
        metavar="DIR",
        help="the shared real data (../shared/data): adds the frontier on the real FLUXNET monthly NEE",
    )
    a = p.parse_args()
    suite = dict(SUITE)
    if a.data:
        fluxnet = ["--fluxnet", a.data, "--skip-scaling"]
        suite["bench_models@fluxnet"] = (fluxnet, [*fluxnet, "--tiny"])
    out = Path(a.out)
    if a.render:
        results = [json.loads(line) for line in Path(a.render).read_text().splitlines() if line.strip()]
    else:
        names = a.only.split(",") if a.only else list(suite)
        unknown = sorted(set(names) - set(suite))
        if unknown:
            p.error(f"unknown benchmark(s) {unknown}; known: {sorted(suite)} (bench_models@fluxnet comes with --data)")
        results = []
        for name in names:
            t0 = time.perf_counter()
            results += run_one(name, suite[name][1] if a.tiny else suite[name][0])
            print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        out.with_suffix(".jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    out.write_text(render(results, title="fluxmap benchmarks (tiny)" if a.tiny else "fluxmap benchmarks"))
    print(out)


if __name__ == "__main__":
    main()
