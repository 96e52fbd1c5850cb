"""Shared fixtures: one tiny demo world per test session, and the real data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fluxmap.demo import build_world
from fluxmap.testing import tiny_demo_config

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory):
    """A small demo world (Europe, 1 deg, 2020) generated once for the whole session."""
    return build_world(tmp_path_factory.mktemp("world"), tiny_demo_config())


@pytest.fixture(scope="session")
def demo_catalog(tiny_world):
    from fluxmap.io.catalog import builtin_catalog, load_catalog

    return load_catalog(builtin_catalog("demo"), **tiny_world.catalog_params)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout; skipped when absent unless FLUXMAP_REQUIRE_REALDATA=1."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("FLUXMAP_REQUIRE_REALDATA") == "1":
            pytest.fail(f"FLUXMAP_REQUIRE_REALDATA=1 but the real data folder {SHARED_DATA} is missing")
        pytest.skip(f"real data folder {SHARED_DATA} not found")
    return SHARED_DATA


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    """A self-signed certificate (its own CA) and its key as files: the three TLS settings of a
    cluster config."""
    from distributed.security import Security

    sec = Security.temporary()
    files = {"tls_ca_file": sec.tls_ca_file, "tls_cert": sec.tls_client_cert, "tls_key": sec.tls_client_key}
    out = {}
    for name, pem in files.items():
        path = tmp_path / f"{name}.pem"
        path.write_text(pem)
        path.chmod(0o600)
        out[name] = str(path)
    return out


_SUBMIT = {"slurm": ("sbatch", "scancel", "Submitted batch job $job"), "pbs": ("qsub", "qdel", "$job.fakepbs")}


def _fake_batch_system(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """Stand-ins for a batch system's submit and cancel commands (``sbatch``/``scancel``,
    ``qsub``/``qdel``), in a folder to put first on PATH. Submitting keeps the job script and runs
    it on this machine in the background, in its own session (so cancelling kills the job's
    nanny and workers together), and answers as the real command does, with a job id (the
    submitting process's pid, unique among concurrent submissions). Cancelling records the id.
    Returns the folder of the commands and the folder of the jobs (``<id>.sh``, ``.log``,
    ``.pid``; ``cancelled``)."""
    submit, cancel, answer = _SUBMIT[kind]
    bin_dir, jobs = tmp_path / "bin", tmp_path / "jobs"
    bin_dir.mkdir(parents=True)
    jobs.mkdir(parents=True)
    (bin_dir / submit).write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        f'job=$$; jobs="{jobs}"\n'
        'cp "$1" "$jobs/$job.sh"\n'
        'setsid bash "$jobs/$job.sh" > "$jobs/$job.log" 2>&1 < /dev/null &\n'
        'echo $! > "$jobs/$job.pid"\n'
        f'echo "{answer}"\n'
    )
    (bin_dir / cancel).write_text(
        "#!/usr/bin/env bash\n"
        f'jobs="{jobs}"; echo "$1" >> "$jobs/cancelled"\n'
        'kill -TERM -- "-$(cat "$jobs/$1.pid")" 2>/dev/null || true\n'
    )
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir, jobs


@pytest.fixture
def batch_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A function of ``kind`` (slurm or pbs) that puts that batch system's stand-ins first on PATH
    for the test and returns the folder its jobs go to (see :func:`_fake_batch_system`) and the
    cluster config the emulation needs: this Python on the "compute nodes", the scheduler and
    workers on the loopback interface, one core and 3 GB per job."""
    import sys

    from fluxmap.config import ClusterConfig

    def install(kind: str) -> tuple[Path, ClusterConfig]:
        bin_dir, jobs = _fake_batch_system(tmp_path / kind, kind)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        return jobs, ClusterConfig(kind=kind, cores=1, memory="3GB", python=sys.executable, interface="lo")

    return install
