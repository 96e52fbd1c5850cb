"""A real one-node SLURM cluster on this machine, for the tests of ``cluster: {kind: slurm}``.

Debian's ``slurm-wlm`` and ``munge`` packages, started by hand in a temporary folder (no systemd,
nothing under /etc): ``munged`` with a fresh key and its own socket, a minimal ``slurm.conf`` with
this machine as the only node (``NodeAddr=127.0.0.1``, free ports), ``slurmctld`` and ``slurmd`` in
the foreground as children of the test process. The clients (``sbatch``, ``squeue``, ``scancel``,
``scontrol``) find it through ``SLURM_CONF``. Needs root (``slurmd`` runs the jobs as their user;
``SlurmUser=root``); without root or the binaries :func:`start` raises :class:`Unavailable`.

By hand: ``sudo python tests/slurm_local.py`` starts it, prints ``export SLURM_CONF=...`` and stops it
on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

JOBS_AT_ONCE, JOB_MEMORY_MB = 2, 3072
"""What the tests run together: two one-core jobs of 3GB (dask-jobqueue asks ``--mem=3G``)."""

ACTIVE = "PENDING,RUNNING,SUSPENDED,COMPLETING,CONFIGURING"


class Unavailable(RuntimeError):
    """SLURM cannot be started here (the reason is the message)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return f"({path.name} not written)"


class LocalSlurm:
    """A started one-node cluster: :meth:`run` its clients, :meth:`stop` it."""

    def __init__(self, root: Path, conf: Path, procs: dict[str, subprocess.Popen]):
        self.root, self.conf, self.procs = root, conf, procs

    @property
    def env(self) -> dict[str, str]:
        """This process's environment (as it is now) with ``SLURM_CONF`` pointing here."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *args: str, timeout: float = 30, check: bool = True) -> str:
        """A SLURM client's output (``run("squeue", "-h")``)."""
        p = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode:
            raise RuntimeError(f"{' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
        return p.stdout

    def jobs(self, states: str = "all") -> dict[str, str]:
        """Job id -> state of the jobs slurmctld knows (finished ones for ``MinJobAge``)."""
        out = self.run("squeue", "-h", "-t", states, "-o", "%i %T")
        return dict(line.split() for line in out.splitlines() if line.strip())

    def wait(self, predicate, what: str, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while not predicate():
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise Unavailable(f"{name} exited ({p.returncode}) while waiting for {what}:\n{self.logs()}")
            if time.monotonic() > end:
                raise Unavailable(f"timed out after {timeout:.0f} s waiting for {what}:\n{self.logs()}")
            time.sleep(0.2)

    def cancel_all(self, timeout: float = 60) -> None:
        """Cancel every job and wait until none is left running or completing."""
        active = self.jobs(ACTIVE)
        if active:
            self.run("scancel", "--quiet", *active, check=False)
        self.wait(lambda: not self.jobs(ACTIVE), "the jobs to end", timeout)

    def logs(self) -> str:
        return "\n".join(f"--- {f.name}\n{_tail(f)}" for f in sorted((self.root / "log").glob("*")))

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.cancel_all()
        for name in reversed(DAEMONS):  # slurmd, slurmctld, then munged (which they authenticate with)
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def slurm_conf(root: Path, socket_path: Path, host: str, cpus: int, memory_mb: int) -> str:
    """The configuration: one node (this machine, at 127.0.0.1) in one default partition, cores and
    memory as consumable resources, processes tracked by /proc (no cgroups), no accounting database,
    short timeouts, job records kept an hour (the tests read finished jobs' states and scripts)."""
    overrides = ""
    if cpus > (os.cpu_count() or 1) or memory_mb > _physical_mb():
        overrides = "SlurmdParameters=config_overrides\n"  # more than the hardware: let slurmd accept it
    return f"""\
ClusterName=fluxmaptest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={socket_path}
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=3600
Waittime=0
{overrides}NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _physical_mb() -> int:
    with open("/proc/meminfo") as f:
        return int(re.search(r"MemTotal:\s+(\d+) kB", f.read()).group(1)) // 1024


def start(root: Path, timeout: float = 60) -> LocalSlurm:
    """Start munged, slurmctld and slurmd in ``root`` and wait until the node is idle.

    The node declares this machine's cores and 90 % of its memory (slurmd refuses more than it has),
    raised to what the tests run at once (two one-core jobs of 3 GB) with ``config_overrides`` on a
    smaller machine: there the jobs share cores and memory instead of waiting for each other."""
    if os.geteuid() != 0:
        raise Unavailable("not root: slurmd and munged run as root here (SlurmUser=root)")
    missing = [b for b in (*DAEMONS, *CLIENTS) if not shutil.which(b, path=SBIN_PATH)]
    if missing:
        raise Unavailable(f"not installed: {', '.join(missing)} (apt-get install slurm-wlm munge)")
    munge_dir = root / "munge"
    if len(str(munge_dir / "munge.socket")) > 100:  # a unix socket path has at most 107 bytes
        munge_dir = Path(tempfile.mkdtemp(prefix="fluxmap-munge-"))
    for d in (munge_dir, root / "state", root / "spool", root / "log"):
        d.mkdir(parents=True, exist_ok=True)
    key, sock = munge_dir / "munge.key", munge_dir / "munge.socket"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    cpus = max(os.cpu_count() or 1, JOBS_AT_ONCE)
    memory_mb = max(int(_physical_mb() * 0.9), JOBS_AT_ONCE * JOB_MEMORY_MB)
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, sock, host, cpus, memory_mb))
    commands = {
        "munged": [
            "munged",
            "--foreground",
            "--force",
            f"--key-file={key}",
            f"--socket={sock}",
            f"--pid-file={munge_dir / 'munged.pid'}",
            f"--log-file={root / 'log' / 'munged.log'}",
            f"--seed-file={munge_dir / 'munged.seed'}",
        ],
        "slurmctld": ["slurmctld", "-D", "-f", str(conf)],
        "slurmd": ["slurmd", "-D", "-f", str(conf)],
    }
    slurm = LocalSlurm(root, conf, {})
    env = {**slurm.env, "PATH": SBIN_PATH}
    try:
        for name, cmd in commands.items():
            with open(root / "log" / f"{name}.out", "wb") as out:
                slurm.procs[name] = subprocess.Popen(
                    cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            if name == "munged":
                slurm.wait(sock.exists, "munged's socket", timeout)

        def idle() -> bool:
            try:
                return slurm.run("sinfo", "-h", "-N", "-o", "%t", check=False, timeout=10).strip() == "idle"
            except subprocess.TimeoutExpired:
                return False

        slurm.wait(idle, f"node {host} to be idle in sinfo", timeout)
    except BaseException:
        slurm.stop()
        raise
    return slurm


if __name__ == "__main__":
    s = start(Path(tempfile.mkdtemp(prefix="fluxmap-slurm-")))
    print(f"export SLURM_CONF={s.conf}")
    try:
        signal.pause()
    finally:
        s.stop()
