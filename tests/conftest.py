"""Shared fixtures: one tiny demo world per test session, and the real data folder."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import warnings
from pathlib import Path

import pytest
import slurm_local
from slurm_local import ACTIVE

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


_SUBMIT = {
    "slurm": ("sbatch", "scancel", "SLURM_JOB_ID", "Submitted batch job $job"),
    "pbs": ("qsub", "qdel", "PBS_JOBID", "$job.fakepbs"),
}


def _fake_batch_system(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """Stand-ins for a batch system's submit and cancel commands (``sbatch``/``scancel``,
    ``qsub``/``qdel``), in a folder to put first on PATH: always for PBS (Debian packages no PBS
    server), for SLURM only where a real one cannot be started (see :func:`local_slurm`).
    Submitting keeps the job script and runs it on this machine in the background, in its own
    session (so cancelling kills the job's nanny and workers together), with the job id in the
    environment as the real systems put it (``SLURM_JOB_ID``; ``PBS_JOBID`` without the server),
    and answers as the real command does, with a job id (the submitting process's pid, unique among
    concurrent submissions). Cancelling records the id. Returns the folder of the commands and the
    folder of the jobs (``<id>.sh``, ``.log``, ``.pid``; ``cancelled``)."""
    submit, cancel, variable, answer = _SUBMIT[kind]
    bin_dir, jobs = tmp_path / "bin", tmp_path / "jobs"
    bin_dir.mkdir(parents=True)
    jobs.mkdir(parents=True)
    (bin_dir / submit).write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        f'job=$$; jobs="{jobs}"\n'
        'cp "$1" "$jobs/$job.sh"\n'
        f'{variable}=$job setsid bash "$jobs/$job.sh" > "$jobs/$job.log" 2>&1 < /dev/null &\n'
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


def _processes_with(variable: str, job: str) -> list[int]:
    """The pids of the running processes whose environment has ``variable=job`` (a job's)."""
    needle = f"\0{variable}={job}\0".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if needle in b"\0" + environ.read_bytes():
                pids.append(int(environ.parent.name))
    return pids


class BatchJobs:
    """The jobs a test submitted, as the test checks them: submitted ids, their scripts, which were
    cancelled, that none still runs; and a job killed as when its node fails."""

    kind: str
    variable: str  # the job id in a job's environment
    folder: Path  # the jobs' output (and the stand-ins' records)

    def submitted(self) -> list[str]:
        raise NotImplementedError

    def script(self, job: str) -> str:
        raise NotImplementedError

    def cancelled(self) -> set[str]:
        raise NotImplementedError

    def kill(self, job: str) -> None:
        """SIGKILL everything the job runs (nanny and workers), as when its node fails."""
        raise NotImplementedError

    def of_workers(self, client) -> dict[str, str]:
        """Worker address -> the id of the job it runs in (from the worker's environment)."""
        variable = self.variable
        ids = client.run(lambda: os.environ.get(variable, ""))
        return {w: j.split(".")[0] for w, j in ids.items()}  # PBS ids are <number>.<server>

    def assert_ended(self, jobs, timeout: float = 30) -> None:
        """No process of these jobs still runs (within ``timeout``)."""
        end = time.monotonic() + timeout
        while left := {j: p for j in jobs if (p := _processes_with(self.variable, j))}:
            assert time.monotonic() < end, f"cancelled jobs still running (job: pids): {left}"
            time.sleep(0.1)


class StandInJobs(BatchJobs):
    """The jobs of :func:`_fake_batch_system`'s stand-ins."""

    def __init__(self, kind: str, folder: Path):
        self.kind, self.variable, self.folder = kind, _SUBMIT[kind][2], folder

    def submitted(self) -> list[str]:
        return sorted(s.stem for s in self.folder.glob("*.sh"))

    def script(self, job: str) -> str:
        return (self.folder / f"{job}.sh").read_text()

    def cancelled(self) -> set[str]:
        f = self.folder / "cancelled"
        return set(f.read_text().split()) if f.is_file() else set()

    def kill(self, job: str) -> None:
        os.killpg(int((self.folder / f"{job}.pid").read_text()), signal.SIGKILL)


class SlurmJobs(BatchJobs):
    """The jobs a test submitted to the real one-node SLURM (:func:`local_slurm`), seen through
    ``squeue`` (finished jobs stay listed for ``MinJobAge``, an hour), ``scontrol`` and slurmctld's
    log: the jobs with ids above the highest one known when the test started."""

    kind, variable = "slurm", "SLURM_JOB_ID"

    def __init__(self, slurm, folder: Path):
        self.slurm, self.folder = slurm, folder
        slurm.cancel_all()  # a job an earlier test left behind would hold a core
        self.after = max(map(int, slurm.jobs()), default=0)

    def _states(self) -> dict[str, str]:
        return {j: s for j, s in self.slurm.jobs().items() if int(j) > self.after}

    def submitted(self) -> list[str]:
        return sorted(self._states(), key=int)

    def script(self, job: str) -> str:
        return self.slurm.run("scontrol", "write", "batch_script", job, "-")

    def cancelled(self) -> set[str]:
        """The jobs ``scancel`` was called for, from slurmctld's log: the state alone does not say,
        a job whose worker the closing cluster retired just before ``scancel`` ends COMPLETED."""
        log = (self.slurm.root / "log" / "slurmctld.log").read_text(errors="replace")
        return {j for j in re.findall(r"REQUEST_KILL_JOB JobId=(\d+) ", log) if int(j) > self.after}

    def kill(self, job: str) -> None:
        self.slurm.run("scancel", "--signal=KILL", job)

    def assert_ended(self, jobs, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while active := set(jobs) & set(self.slurm.jobs(ACTIVE)):
            assert time.monotonic() < end, f"jobs still active in squeue: {active}"
            time.sleep(0.2)
        super().assert_ended(jobs, timeout)


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory: pytest.TempPathFactory):
    """A real one-node SLURM on this machine for the session (see ``tests/slurm_local.py``), or,
    where it cannot be started (not root, ``slurm-wlm``/``munge`` not installed), the reason why:
    the tests then use the stand-ins. With FLUXMAP_REQUIRE_SLURM=1 (CI) that fails the tests instead."""
    try:
        slurm = slurm_local.start(tmp_path_factory.mktemp("slurm"))
    except slurm_local.Unavailable as e:
        if os.environ.get("FLUXMAP_REQUIRE_SLURM") == "1":
            pytest.fail(f"FLUXMAP_REQUIRE_SLURM=1 but a local SLURM could not be started: {e}", pytrace=False)
        yield e
        return
    try:
        yield slurm
    finally:
        slurm.stop()


@pytest.fixture
def batch_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """A function of ``kind`` (slurm or pbs) that sets up that batch system for the test and returns
    its jobs (a :class:`BatchJobs`) and the cluster config for it: this Python on the "compute
    nodes", the scheduler and workers on the loopback interface, one core and 3 GB per job.

    SLURM is the real one (:func:`local_slurm`; ``SLURM_CONF`` set for the test, the jobs' output in
    ``tmp_path/slurm``); the stand-ins only where it cannot be started, with a warning that says why.
    PBS is always the stand-ins (:func:`_fake_batch_system`): Debian packages no PBS server."""
    import sys

    from fluxmap.config import ClusterConfig

    def install(kind: str) -> tuple[BatchJobs, ClusterConfig]:
        config = ClusterConfig(kind=kind, cores=1, memory="3GB", python=sys.executable, interface="lo")
        if kind == "slurm":
            slurm = request.getfixturevalue("local_slurm")
            if isinstance(slurm, slurm_local.LocalSlurm):
                folder = tmp_path / "slurm"
                folder.mkdir()
                monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
                monkeypatch.setenv("SBATCH_OUTPUT", str(folder / "%j.log"))  # not slurm-<id>.out in the cwd
                return SlurmJobs(slurm, folder), config
            warnings.warn(f"SLURM emulated by stand-ins: {slurm}", stacklevel=2)
        bin_dir, jobs = _fake_batch_system(tmp_path / kind, kind)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        return StandInJobs(kind, jobs), config

    return install
