"""A real `manage.py studio_worker` killed with SIGKILL mid-batch loses no job: expired leases
are reaped, interrupted jobs resume from their last checkpoint, finished jobs never run again.
Stopped with SIGTERM, it releases its running jobs to the queue at their checkpoint."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
JOBS = 6
STEPS = 8

ENQUEUE = f"""
import django
django.setup()
from django.core.management import call_command
from studio.jobs.services import job_enqueue
call_command("migrate", verbosity=0)
for n in range({JOBS}):
    job_enqueue(kind="test.crash.steps", drama_id=n % 2 + 1,
                payload={{"steps": {STEPS}, "step_s": 0.1}})
"""


@pytest.fixture
def world(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
        STUDIO_VAR_DIR=str(tmp_path / "var"),
        DJANGO_SETTINGS_MODULE="studio.settings",
        STUDIO_JOB_MODULES="tests.jobs_handlers",
        STUDIO_TEST_JOB_LOG=str(tmp_path / "jobs.log"),
        PYTHONUNBUFFERED="1",
    )
    subprocess.run([sys.executable, "-c", ENQUEUE], cwd=REPO, env=env, check=True, timeout=60)
    processes = []

    def start_worker(*options: str) -> subprocess.Popen:
        command = ["manage.py", "studio_worker", "--concurrency", "2", "--lease", "1", *options]
        process = subprocess.Popen(
            [sys.executable, *command],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        return process

    yield {"db": tmp_path / "jobs.sqlite3", "log": tmp_path / "jobs.log", "start": start_worker}
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def jobs(db: Path) -> dict[int, tuple[str, int | None, int]]:
    """id -> (status, checkpoint, attempts), read straight from the database file."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT id, status, checkpoint, attempts FROM jobs_job")
        return {id: (status, json.loads(cp) if cp else None, n) for id, status, cp, n in rows}


def wait_until(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_it_loses_no_job_when_the_worker_is_killed_mid_batch(world):
    first = world["start"]()

    def mid_batch():
        state = jobs(world["db"])
        done = [i for i, (status, _, _) in state.items() if status == "succeeded"]
        midway = [i for i, (s, cp, _) in state.items() if s == "running" and (cp or 0) >= 2]
        return state if done and midway else None

    wait_until(mid_batch, timeout=30, what="one job done and another one midway")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    at_kill = jobs(world["db"])
    lines_at_kill = len(world["log"].read_text().splitlines())
    finished = {i for i, (status, _, _) in at_kill.items() if status == "succeeded"}
    interrupted = {i: cp for i, (status, cp, _) in at_kill.items() if status == "running"}
    assert finished and interrupted

    second = world["start"]()
    final = wait_until(
        lambda: (
            (state := jobs(world["db"]))
            and all(status == "succeeded" for status, _, _ in state.values())
            and state
        ),
        timeout=30,
        what="every job to succeed after the restart",
    )
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=15) == 0

    after = world["log"].read_text().splitlines()[lines_at_kill:]
    starts = [line.split() for line in after if " start " in line]
    restarted = {int(job_id): int(checkpoint) for job_id, _, checkpoint, _, _ in starts}
    assert len(final) == JOBS
    # Every interrupted job resumed where its last checkpoint said, on its second attempt.
    for job_id, checkpoint in interrupted.items():
        assert restarted[job_id] == (checkpoint or 0)
        assert final[job_id][2] == 2
    # No finished job started again.
    assert not finished & set(restarted)
    # Every job finished; the ones finished before the kill exactly once. (An interrupted job
    # may have reached its end but not committed it: it resumes at its last step, a no-op.)
    done = Counter(
        int(line.split()[0]) for line in world["log"].read_text().splitlines() if "done" in line
    )
    assert set(done) == set(final)
    assert all(done[job_id] == 1 for job_id in finished)


def test_it_releases_running_jobs_at_their_checkpoint_on_sigterm(world):
    worker = world["start"]("--grace", "0.3")
    wait_until(
        lambda: sum(1 for s, cp, _ in jobs(world["db"]).values() if s == "running" and cp),
        timeout=30,
        what="two jobs running with a checkpoint",
    )

    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    output = worker.stdout.read().decode()

    assert time.monotonic() - started < 5, output
    state = jobs(world["db"])
    assert not [i for i, (status, _, _) in state.items() if status == "running"], state
    released = [i for i, (status, cp, n) in state.items() if status == "queued" and cp]
    assert len(released) == 2  # both were mid-way: queued again, checkpoint kept ...
    assert all(state[i][2] == 0 for i in released)  # ... and the attempt given back
    assert "Job worker stopped." in output


def test_it_refuses_a_concurrency_below_one(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "studio_worker", "--concurrency", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--concurrency: invalid positive_int value: '0'" in result.stderr
