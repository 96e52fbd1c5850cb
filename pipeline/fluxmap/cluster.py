"""Where the Dask work runs: a local cluster, an existing scheduler, SLURM/PBS through
dask-jobqueue, or Kubernetes through the Dask operator (dask-kubernetes).

Secure by default for remote clusters: TLS when the three TLS files are given (and
``tls://`` addresses then refuse plain clients); dashboards off unless asked for, and
local ones bound to 127.0.0.1; the Kubernetes scheduler service is ClusterIP, reachable
from outside only through ``kubectl port-forward``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from fluxmap._extras import require
from fluxmap.config import ClusterConfig

__all__ = [
    "SCHEDULER_RESOURCES",
    "WORKER_ENV",
    "check_shared_workdir",
    "client_for",
    "render_jobqueue_script",
    "render_kubernetes",
    "security",
]

WORKER_ENV: dict[str, str] = {
    "OMP_NUM_THREADS": "1",
    "MALLOC_TRIM_THRESHOLD_": str(32 * 2**20),
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
}
"""Environment of every worker process fluxmap starts (local, HPC jobs, Kubernetes pods).

One BLAS/OpenMP thread per worker thread. glibc's allocator thresholds at 32 MiB: distributed's
nannies set ``MALLOC_TRIM_THRESHOLD_=65536`` by default, and setting any trim threshold switches
off glibc's dynamic mmap threshold, so every array over 128 KiB (every chunk-sized temporary of
the decode and feature steps) is mmap'd, page-faulted in and unmapped again on each allocation.
Measured here (2 cores): elementwise numpy on a 46 x 149 x 209 block 2.5x slower in a worker than
in-process, the 8-day ERA5 means 2x slower, the predict stage 7-10 % slower. With both thresholds at
32 MiB, blocks are reused from the heap and a worker still returns freed memory above 32 MiB to the
system. Measured with ``bench_scaling.py`` and ``bench_memory.py`` (one worker, Europe at 0.1 deg):
the stage takes 13.8-14.3 s at 32 MiB, 13.7-14.1 s at 64 MiB and 15.9 s with distributed's
defaults; the peak worker memory at 4x the cells is 1.03x the coarse grid's at 32 MiB, and
1.10-1.21x at 64 MiB, where up to 64 MiB of freed heap is kept (bimodal: 455 or 499 MB).
Must be in the environment before the worker process starts (see distributed's Nanny).
"""


def security(cfg: ClusterConfig):
    """A distributed Security object when TLS files are configured, else None.

    The certificate and key (signed by the CA) serve every role: the client's connection, and
    the scheduler and workers of a cluster fluxmap starts (local, SLURM/PBS jobs, which get the
    file paths on their command line, so the files must be on storage the compute nodes see).
    """
    files = (cfg.tls_ca_file, cfg.tls_cert, cfg.tls_key)
    if not any(files):
        return None
    if not all(files):
        raise ValueError("TLS needs tls_ca_file, tls_cert and tls_key together")
    from distributed.security import Security

    roles = {
        f"tls_{role}_{part}": f
        for role in ("client", "scheduler", "worker")
        for part, f in (("cert", cfg.tls_cert), ("key", cfg.tls_key))
    }
    return Security(tls_ca_file=cfg.tls_ca_file, require_encryption=True, **roles)


def _memory_limit(cfg: ClusterConfig, n_workers: int) -> str | int:
    if cfg.memory_limit != "auto":
        return cfg.memory_limit
    import psutil

    # 80 % of RAM shared out, so workers spill to disk before the kernel kills one (no swap here).
    return int(psutil.virtual_memory().total * 0.8 / n_workers)


def _jobqueue_cluster(cfg: ClusterConfig):
    Cls: type[Any]  # SLURMCluster or PBSCluster
    if cfg.kind not in ("slurm", "pbs"):
        raise ValueError(f"not a batch-system kind: {cfg.kind!r}")
    Cls = getattr(require("dask_jobqueue", "hpc"), "SLURMCluster" if cfg.kind == "slurm" else "PBSCluster")
    import dask

    def conf(key: str):  # dask.config.get matches "-" and "_" spellings of the key
        return dask.config.get(f"jobqueue.{cfg.kind}.{key}", default=None)

    opts: dict[str, Any] = {
        "cores": cfg.cores,
        "memory": cfg.memory,
        "processes": max(1, cfg.cores // cfg.threads_per_worker),
        "walltime": cfg.walltime,
        # Added to the jobqueue configuration's, not instead of it.
        "scheduler_options": {
            **(conf("scheduler-options") or {}),
            "dashboard_address": ":8787" if cfg.dashboard else None,
        },
        # The configuration's prologue (module loads, environment activation) first; then the worker
        # environment, exported before the nanny starts: it passes it on to the workers it spawns.
        "job_script_prologue": [
            *(conf("job-script-prologue") or []),
            *(f"export {k}={v}" for k, v in WORKER_ENV.items()),
        ],
    }
    # Unset here: the jobqueue configuration's (deploy/jobqueue.yaml) values, else dask-jobqueue's.
    if cfg.python:
        opts["python"] = cfg.python
    if cfg.queue:
        opts["queue"] = cfg.queue
    if cfg.account:
        opts["account"] = cfg.account
    if cfg.interface:
        opts["interface"] = cfg.interface
    sec = security(cfg)
    if sec is not None:
        opts["security"] = sec
        opts["protocol"] = "tls://"
    return Cls, opts


def render_jobqueue_script(cfg: ClusterConfig) -> str:
    """The batch script dask-jobqueue would submit for one worker job (nothing is submitted).

    The rendering scheduler listens on 127.0.0.1 only and is closed at once.
    """
    cls, opts = _jobqueue_cluster(cfg)
    opts["scheduler_options"] = {**opts["scheduler_options"], "host": "127.0.0.1"}
    with cls(**opts) as cluster:
        return cluster.job_script()


def _k8s_quantity(size: str) -> str:
    """A memory size as dask writes it ("16GB", "3.5GiB", "512MB") as a Kubernetes quantity of the
    same number of bytes ("16G", "3584Mi", "512M"); "GB" is not a Kubernetes suffix, and "Gi" is 7 %
    more than "G"."""
    from dask.utils import parse_bytes

    n = parse_bytes(size)
    for suffix, factor in (("Gi", 2**30), ("G", 10**9), ("Mi", 2**20), ("M", 10**6)):
        if n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)


IMAGE_UID = 1000
"""The user the fluxmap image runs as (``useradd --uid 1000`` in deploy/Dockerfile)."""

SCHEDULER_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "1", "memory": "2G"},
    "limits": {"cpu": "1", "memory": "4G"},
}
"""The scheduler pod's: it runs no tasks, so it does not get a worker's CPUs and memory. What it holds
is the task graph: the whole global 500 m write is 648 region graphs of 30 tasks, 66 MB pickled
(``benchmarks/bench_graph500.py``), submitted a batch of regions at a time. Its event loop uses one
core."""


def render_kubernetes(cfg: ClusterConfig) -> dict[str, Any]:
    """The DaskCluster resource for the Dask operator: scheduler and worker pods from the fluxmap image.

    - Scheduler: ``dask scheduler`` (the ``dask-scheduler`` executable of dask-kubernetes' default
      spec is gone from distributed) behind a ClusterIP service: reachable inside the cluster or
      through ``kubectl port-forward``, never publicly. The service keeps the scheduler's HTTP port,
      which the readiness probe, ``KubeCluster`` and the operator's scale-down use; the dashboard
      pages on it are served only with ``dashboard: true``.
    - Workers: ``replicas`` pods of ``cores`` CPUs and ``memory``, one worker each (the operator
      retires workers by pod name) with ``cores`` threads and the pod's memory as its limit, the
      worker environment, and the workdir volume (``volume_claim`` at ``mount_path``).
    - Both run as the image's unprivileged user, without privilege escalation or capabilities.
    """
    make_cluster_spec = require("dask_kubernetes.operator", "kubernetes").make_cluster_spec

    memory = _k8s_quantity(cfg.memory)
    pod = {"requests": {"cpu": str(cfg.cores), "memory": memory}, "limits": {"cpu": str(cfg.cores), "memory": memory}}
    spec = make_cluster_spec(
        name="fluxmap",
        image=cfg.image,
        n_workers=cfg.n_workers or 2,
        resources=pod,
        env=WORKER_ENV,
    )
    spec["metadata"]["namespace"] = cfg.namespace
    worker_pod = spec["spec"]["worker"]["spec"]
    worker = worker_pod["containers"][0]
    worker["args"] = [
        "dask",
        "worker",
        "--name",
        "$(DASK_WORKER_NAME)",
        "--nthreads",
        str(cfg.cores),
        "--memory-limit",
        cfg.memory,
        "--no-dashboard",
    ]
    worker.pop("ports", None)
    if cfg.volume_claim:
        worker_pod["volumes"] = [{"name": "workdir", "persistentVolumeClaim": {"claimName": cfg.volume_claim}}]
        worker["volumeMounts"] = [{"name": "workdir", "mountPath": cfg.mount_path}]
    sched = spec["spec"]["scheduler"]
    scheduler = sched["spec"]["containers"][0]
    scheduler["args"] = ["dask", "scheduler", "--host", "0.0.0.0", "--dashboard" if cfg.dashboard else "--no-dashboard"]
    scheduler["resources"] = {k: dict(v) for k, v in SCHEDULER_RESOURCES.items()}
    scheduler["env"] = [{"name": "OMP_NUM_THREADS", "value": WORKER_ENV["OMP_NUM_THREADS"]}]
    sched["service"]["type"] = "ClusterIP"  # never a LoadBalancer or NodePort: nothing public
    # The image's unprivileged user (deploy/Dockerfile); fsGroup makes the workdir volume writable to it.
    sched["spec"]["securityContext"] = {"runAsNonRoot": True, "runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID}
    worker_pod["securityContext"] = {**sched["spec"]["securityContext"], "fsGroup": IMAGE_UID}
    for container in (scheduler, worker):
        container["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    return spec


_NO_VOLUME = (
    "cluster kind 'kubernetes' needs cluster.volume_claim: a ReadWriteMany PersistentVolumeClaim holding the "
    "workdir, mounted in the worker pods at cluster.mount_path (see deploy/kubernetes/pvc.yaml)"
)


def check_shared_workdir(cfg: ClusterConfig, workdir: str | os.PathLike) -> None:
    """Refuse a Kubernetes run whose workers could not see the workdir: they read the models, the
    inputs and the ERA5 means from it and write the store into it."""
    if cfg.kind != "kubernetes":
        return
    if not cfg.volume_claim:
        raise ValueError(_NO_VOLUME)
    from pathlib import Path

    mount = Path(cfg.mount_path)
    if not Path(os.path.abspath(workdir)).is_relative_to(Path(os.path.abspath(mount))):
        raise ValueError(
            f"workdir {workdir} is not inside cluster.mount_path {mount}, where the worker pods see the volume "
            f"{cfg.volume_claim}: put the workdir under {mount} (the same path for this process)"
        )


@contextlib.contextmanager
def _worker_environment() -> Iterator[None]:
    """:data:`WORKER_ENV` for the nannies started inside: as dask config, and in ``os.environ``
    (which the nanny prefers to its config, and which an earlier nanny in this process may have set
    to distributed's defaults). The nannies keep the values for restarts; the environment of this
    process is restored on exit."""
    import dask

    before = {k: os.environ.get(k) for k in WORKER_ENV}
    os.environ.update(WORKER_ENV)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": WORKER_ENV}):
            yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def client_for(cfg: ClusterConfig) -> Iterator[Any]:
    """A connected ``distributed.Client`` for the configured cluster, closed (and the cluster torn
    down, for the kinds fluxmap starts) on exit."""
    from distributed import Client

    sec = security(cfg)
    if cfg.kind == "address":
        if not cfg.address:
            raise ValueError("cluster kind 'address' needs cluster.address (tcp://host:8786)")
        if cfg.address.startswith("tls://") and sec is None:
            raise ValueError(f"{cfg.address} is a TLS scheduler: give tls_ca_file, tls_cert and tls_key")
        with Client(cfg.address, security=sec) as client:
            yield client
        return
    if cfg.kind == "local":
        from distributed import LocalCluster

        n = cfg.n_workers or max(1, (os.cpu_count() or 1) // cfg.threads_per_worker)
        with (
            _worker_environment(),
            LocalCluster(
                n_workers=n,
                threads_per_worker=cfg.threads_per_worker,
                host="127.0.0.1",
                memory_limit=_memory_limit(cfg, n),
                security=sec,
                dashboard_address="127.0.0.1:8787" if cfg.dashboard else None,
                protocol="tls://" if sec else None,
            ) as cluster,
            Client(cluster, security=sec) as client,
        ):
            yield client
        return
    if cfg.kind in ("slurm", "pbs"):
        cls, opts = _jobqueue_cluster(cfg)
        with cls(**opts) as cluster:
            cluster.scale(jobs=cfg.n_workers or 2)
            with Client(cluster, security=sec) as client:
                yield client
        return
    if cfg.kind == "kubernetes":
        if sec is not None:
            raise ValueError(
                "TLS files are not used for kind=kubernetes: the DaskCluster's scheduler is a ClusterIP service, "
                "reached inside the cluster or through `kubectl port-forward`. For TLS start the scheduler and workers "
                "with their --tls-* files yourself and use kind=address with a tls:// address"
            )
        if not cfg.volume_claim:
            raise ValueError(_NO_VOLUME)
        KubeCluster = require("dask_kubernetes.operator", "kubernetes").KubeCluster

        with (
            KubeCluster(custom_cluster_spec=render_kubernetes(cfg), namespace=cfg.namespace) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    raise ValueError(f"unknown cluster kind {cfg.kind!r}: local, address, slurm, pbs or kubernetes")
