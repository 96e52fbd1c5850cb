"""Strong scaling of the prediction stage: the same grid predicted and written by 1 and by N
worker processes (one thread each), models trained once. The workers are a LocalCluster on
loopback by default; ``--cluster slurm|pbs|kubernetes`` takes them from that cluster instead,
with the rest of the ``cluster:`` block of ``--config`` (queue, account, memory, python, image,
interface, TLS files, volume claim): one single-threaded worker per batch job or pod, N jobs or
pods for N workers. Remote workers need ``--workdir`` on storage they share with this process (for
Kubernetes under the volume's ``mount_path``).

Efficiency(N) = T(1) / (N * T(N)); 1.0 is perfect. Worker processes are started and have imported
the pipeline before the clock starts; everything else in ``fluxmap.stages.predict.predict_stage`` (ERA5 8-day means,
zone map, prediction, Zarr write) is timed. Each worker count runs ``--repeats`` times (default 3),
the counts' order alternating between rounds (1, 2; 2, 1; 1, 2), and its time is the median: no
count always runs first. Prints one JSON line.

    python benchmarks/bench_scaling.py                    # 1 and 2 workers, Europe at 0.1 deg
    python benchmarks/bench_scaling.py --workers 1,2,4,8  # on a bigger machine
    python benchmarks/bench_scaling.py --cluster slurm --config run.yaml --workdir /scratch/$USER \
        --workers 1,4,16,64 --resolution 0.05   # from a login node
    python benchmarks/bench_scaling.py --tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from fluxmap.cluster import check_shared_workdir, client_for
from fluxmap.config import ClusterConfig, load_yaml, run_config_from_mapping
from fluxmap.stages.predict import predict_stage
from fluxmap.testing import europe_demo_config, import_prediction_modules, tiny_trainable_config, trained_world


def cluster_with(cluster: ClusterConfig, n: int) -> ClusterConfig:
    """``cluster`` resized to ``n`` single-threaded workers: a LocalCluster of n processes, or n
    batch jobs or pods of one worker (one core) each."""
    if cluster.kind == "local":
        return dataclasses.replace(cluster, n_workers=n, threads_per_worker=1)
    if cluster.kind in ("slurm", "pbs", "kubernetes"):
        return dataclasses.replace(cluster, n_workers=n, threads_per_worker=1, cores=1)
    raise ValueError(
        f"cluster kind {cluster.kind!r}: scaling needs a cluster this benchmark sizes itself "
        "(local, slurm, pbs or kubernetes); an existing scheduler's workers are fixed"
    )


def run(
    workers: tuple[int, ...] = (1, 2),
    tiny: bool = False,
    resolution: float = 0.1,
    workdir: str | None = None,
    cluster: ClusterConfig | None = None,
    wait_s: float = 120,
    repeats: int | None = None,
):
    """``wait_s``: how long to wait for each set of workers to start (batch queues may need more).
    ``repeats`` (default 3, tiny 1) rounds over the worker counts, alternating their order (1, 2, then
    2, 1, ...) so no count always runs first or on a warmer machine; each count's time is the median."""
    repeats = repeats or (1 if tiny else 3)
    cluster = cluster or ClusterConfig(kind="local")
    sized = {n: cluster_with(cluster, n) for n in workers}  # refuses an unsizable kind before any work
    demo = tiny_trainable_config(space_chunk=16) if tiny else europe_demo_config(resolution)
    samples: dict[int, list[float]] = {n: [] for n in workers}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        check_shared_workdir(cluster, tmp)  # before the world is trained
        cfg, _ = trained_world(tmp, demo, n_estimators=40 if tiny else 200)
        out = Path(cfg.workdir) / "predict"
        for r in range(repeats):
            for n in workers if r % 2 == 0 else workers[::-1]:
                shutil.rmtree(out, ignore_errors=True)
                with client_for(sized[n]) as client:
                    client.wait_for_workers(n, timeout=wait_s)
                    client.run(import_prediction_modules)
                    t0 = time.perf_counter()
                    written = predict_stage(cfg, log=lambda m: None)
                    samples[n].append(time.perf_counter() - t0)
    times = {n: float(statistics.median(v)) for n, v in samples.items()}
    base = min(workers)
    return {
        "benchmark": "strong_scaling",
        "tiny": tiny,
        "cluster": cluster.kind,
        "grid_cells": int(written["land_fraction"].size),
        "land_cell_periods": written["cells"],
        "seconds": {str(n): round(t, 2) for n, t in times.items()},
        "samples_s": {str(n): [round(t, 2) for t in v] for n, v in samples.items()},
        "repeats": repeats,
        "speedup": {str(n): round(times[base] / t, 3) for n, t in times.items()},
        "efficiency": {str(n): round(times[base] * base / (t * n), 3) for n, t in times.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    p.add_argument("--resolution", type=float, default=0.1)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--cluster", choices=["local", "slurm", "pbs", "kubernetes"], default="local")
    p.add_argument("--config", help="run YAML whose cluster: block sets up --cluster (queue, memory, python, ...)")
    p.add_argument("--workdir", help="folder for the benchmark world (shared storage for remote workers)")
    p.add_argument("--wait", type=float, default=120, help="seconds to wait for the workers to start (default 120)")
    p.add_argument("--repeats", type=int, default=3, help="rounds over the worker counts, alternating order")
    a = p.parse_args()
    workers = tuple(int(v) for v in a.workers.split(","))
    base = run_config_from_mapping(load_yaml(a.config), where=a.config).cluster if a.config else ClusterConfig()
    cluster = dataclasses.replace(base, kind=a.cluster)
    print(
        json.dumps(
            run(
                workers,
                tiny=a.tiny,
                resolution=a.resolution,
                workdir=a.workdir,
                cluster=cluster,
                wait_s=a.wait,
                repeats=a.repeats,
            )
        )
    )


if __name__ == "__main__":
    main()
