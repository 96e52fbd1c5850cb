"""One writer per folder: a run holds an exclusive lock on its workdir (or demo-world folder)
for its whole duration, so a second run on the same folder stops at once with a clear message
instead of interleaving its writes with the first.

The lock is an OS file lock (``fcntl.flock`` on POSIX, ``msvcrt`` on Windows, through the
``filelock`` library) on ``<folder>/.fluxmap.lock``: the operating system releases it when the
holder exits for any reason, SIGKILL included, so a crashed run never leaves a stale lock.
Who holds it (process, host, command, start time) is written beside it for the message.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from fluxmap.io.provenance import write_json

__all__ = ["WorkdirBusy", "workdir_lock"]

LOCK_FILE = ".fluxmap.lock"
HOLDER_FILE = ".fluxmap.lock.json"


class WorkdirBusy(RuntimeError):
    """Another fluxmap run holds the folder's lock."""


def _holder(folder: Path) -> str:
    try:
        h = json.loads((folder / HOLDER_FILE).read_text())
        return f"pid {h['pid']} on {h['host']} since {h['started']}: {h['command']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"


@contextlib.contextmanager
def workdir_lock(folder: str | Path, *, wait_s: float = 0.0) -> Iterator[Path]:
    """Hold ``folder``'s lock for the block (created if needed); :class:`WorkdirBusy` if another
    process holds it after ``wait_s`` seconds. Not re-entrant across separate calls: take it once,
    at the outermost level (the CLI does)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK_FILE))
    try:
        lock.acquire(timeout=wait_s)
    except Timeout:
        raise WorkdirBusy(
            f"{folder} is in use by another fluxmap run ({_holder(folder)}); wait for it to end or use another workdir"
        ) from None
    try:
        write_json(
            folder / HOLDER_FILE,
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
                "command": " ".join(sys.argv),
            },
        )
        yield folder
    finally:
        (folder / HOLDER_FILE).unlink(missing_ok=True)
        lock.release()
