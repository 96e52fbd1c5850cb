"""Progress of long loops and Dask computations on the console: counts, elapsed time and ETA."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["QUIET_SECONDS", "Progress", "dask_progress", "progress_line"]


def progress_line(desc: str, done: int, total: int, elapsed: float, unit: str = "") -> str:
    """``  desc: done/total (pct), elapsed, ETA`` (the ETA from the mean rate so far)."""
    eta = elapsed / done * (total - done) if done else float("nan")
    left = "" if done >= total or not done else f", about {_seconds(eta)} left"
    return f"  {desc}: {done}/{total}{unit} ({done / total:.0%}), {_seconds(elapsed)}{left}"


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


QUIET_SECONDS = 5.0
"""Progress lines come at most this often, and not at all for work that ends sooner."""


class Progress:
    """A tqdm bar when installed and the output is a terminal, else a log line at a tenth done
    (with the elapsed time and the ETA), at most every :data:`QUIET_SECONDS`; a loop that ends
    sooner says nothing.

    Used as ``with Progress(total, desc, log) as update: ... update(done)``.
    """

    def __init__(self, total: int, desc: str, log: Callable[[str], None], *, quiet: float = QUIET_SECONDS) -> None:
        self.total, self.desc, self.log, self.quiet = total, desc, log, quiet
        self.bar: Any = None
        self.last = 0
        self.t0 = self.said = time.perf_counter()

    def __enter__(self) -> Callable[[int], None]:
        self.t0 = self.said = time.perf_counter()
        try:
            from tqdm import tqdm

            if sys.stderr.isatty():
                self.bar = tqdm(total=self.total, desc=self.desc)
        except ImportError:
            pass
        return self.update

    def update(self, done: int) -> None:
        """Record ``done`` items finished."""
        if self.bar is not None:
            self.bar.n = done
            self.bar.refresh()
        elif self.total and (10 * done // self.total) > self.last:
            now = time.perf_counter()
            if now - self.said >= self.quiet or (done >= self.total and now - self.t0 >= self.quiet):
                self.last, self.said = 10 * done // self.total, now
                self.log(progress_line(self.desc, done, self.total, now - self.t0))

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


_PENDING = ("waiting", "processing", "no-worker", "queued")


def _pending_on_scheduler(dask_scheduler: Any) -> int:
    """Tasks still to run, but not joblib's (keys ``batch_of_<function>_<n>_calls-<uuid>``): the
    models stage's folds run beside the zone map's chunks and are counted by their own bar."""
    return sum(
        1
        for k, ts in dask_scheduler.tasks.items()
        if ts.state in _PENDING and not (isinstance(k, str) and k.startswith("batch_of_"))
    )


@contextlib.contextmanager
def dask_progress(
    desc: str, log: Callable[[str], None], *, every: float = 2.0, quiet: float = QUIET_SECONDS
) -> Iterator[None]:
    """Progress of the Dask computations run inside the block, as task counts with the ETA: from
        dask's callbacks on the local schedulers, or by asking the distributed scheduler how many tasks
        are still to run (every ``every`` seconds; a computation's total is the most tasks seen pending at
    once, so later computations in the block add to it as they start). Lines
        at every tenth of the tasks; nothing for blocks that compute nothing."""
    try:
        from distributed import get_client

        client: Any = get_client()
    except (ImportError, ValueError):
        client = None
    t0 = time.perf_counter()
    shown = [0, t0]  # the tenth last shown, when

    def show(done: int, total: int) -> None:
        tenth, now = (10 * done // total if total else 0), time.perf_counter()
        if tenth > shown[0] and now - shown[1] >= quiet:
            shown[0], shown[1] = tenth, now
            log(progress_line(desc, done, total, now - t0, " tasks"))

    if client is None:
        from dask.callbacks import Callback

        count = {"total": 0, "done": 0}

        def start(dsk: Any, state: Any) -> None:
            count["total"] += len(state["ready"]) + len(state["waiting"]) + len(state.get("running", ()))

        def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            count["done"] += 1
            show(count["done"], count["total"])

        with Callback(start_state=start, posttask=posttask):
            yield
        return
    stop = threading.Event()

    def poll() -> None:
        peak = finished = 0  # the computation running: most tasks seen pending; those before it: done
        while not stop.wait(every):
            try:
                pending = client.run_on_scheduler(_pending_on_scheduler)
            except Exception:  # the cluster going away ends the progress, not the run
                return
            peak = max(peak, pending)
            show(finished + peak - pending, finished + peak)
            if pending == 0:
                finished, peak = finished + peak, 0

    thread = threading.Thread(target=poll, name=f"progress: {desc}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 1)
