"""The tests' one-node SLURM itself (tests/slurm_local.py), in seconds: a job runs on this machine
with its id in its environment, and ``scancel`` ends a running job and its processes."""

from __future__ import annotations

import time

import pytest
import slurm_local


def test_the_local_slurm_runs_and_cancels_jobs(local_slurm, batch_system, tmp_path):
    if not isinstance(local_slurm, slurm_local.LocalSlurm):
        pytest.skip(f"no local SLURM: {local_slurm}")
    jobs, _ = batch_system("slurm")
    out = tmp_path / "ran"
    done = local_slurm.run("sbatch", "--parsable", "--mem=100M", f"--wrap=echo $SLURM_JOB_ID > {out}").strip()
    running = local_slurm.run("sbatch", "--parsable", "--mem=100M", "--wrap=sleep 300").strip()
    end = time.monotonic() + 30
    while local_slurm.jobs().get(done) != "COMPLETED" or local_slurm.jobs().get(running) != "RUNNING":
        assert time.monotonic() < end, local_slurm.jobs()
        time.sleep(0.2)
    assert out.read_text().strip() == done
    assert "sleep 300" in jobs.script(running)
    local_slurm.run("scancel", running)
    jobs.assert_ended([done, running])
    assert local_slurm.jobs()[running] == "CANCELLED" and jobs.cancelled() == {running}
    assert jobs.submitted() == [done, running]
