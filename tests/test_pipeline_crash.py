"""A real `studio_worker` killed with SIGKILL between submit and download: the next worker
polls the stored handle, and the vendor (the simulator, in its own process) sees one
submission for the take."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SETUP = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from dramas.takes import take_enqueue
from tests.render_support import two_person_drama
drama, chapter, cast = two_person_drama(seconds=2)
take_enqueue(drama=drama, scenes=[cast["first"]])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def take_row(db: Path) -> dict:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        row = connection.execute(
            "SELECT id, status, remote_handle, idempotency_key, job_id FROM dramas_take"
        ).fetchone()
        return dict(row) if row else {}


def wait_until(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def world(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'studio.sqlite3'}",
        STUDIO_VAR_DIR=str(tmp_path / "var"),
        DJANGO_SETTINGS_MODULE="studio.settings",
        VIDEO_BASE_URL=f"http://127.0.0.1:{port}/v1",
        VIDEO_PROVIDER="openai",
        VIDEO_DURATIONS="2",
        VIDEO_POLL_S="0.1",
        PYTHONUNBUFFERED="1",
    )
    processes = []

    def start(*command: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "manage.py", *command],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        return process

    start("provider_sim", "--port", str(port), "--job-s", "4")
    subprocess.run([sys.executable, "-c", SETUP], cwd=REPO, env=env, check=True, timeout=60)
    yield {"db": tmp_path / "studio.sqlite3", "start": start, "sim": f"http://127.0.0.1:{port}"}
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_it_resumes_polling_after_a_kill_and_never_submits_twice(world):
    first = world["start"]("studio_worker", "--concurrency", "2", "--lease", "1")
    submitted = wait_until(
        lambda: (row := take_row(world["db"])) and row["remote_handle"] and row,
        timeout=60,
        what="the take to be submitted",
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert take_row(world["db"])["status"] == "rendering"  # killed before the download

    second = world["start"]("studio_worker", "--concurrency", "2", "--lease", "1")
    done = wait_until(
        lambda: (row := take_row(world["db"]))["status"] in ("done", "failed") and row,
        timeout=60,
        what="the take to finish after the restart",
    )
    second.send_signal(signal.SIGTERM)
    second.wait(timeout=15)

    assert done["status"] == "done"
    assert done["remote_handle"] == submitted["remote_handle"]  # the same vendor job
    with urllib.request.urlopen(f"{world['sim']}/_sim/stats") as response:
        stats = json.load(response)
    assert stats["submissions"] == {submitted["idempotency_key"]: 1}
    with sqlite3.connect(world["db"]) as connection:
        attempts, checkpoint = connection.execute(
            "SELECT attempts, checkpoint FROM jobs_job WHERE id = ?", (done["job_id"],)
        ).fetchone()
        frames = connection.execute(
            "SELECT COUNT(*) FROM dramas_frame WHERE take_id = ?", (done["id"],)
        ).fetchone()[0]
    assert attempts == 2 and json.loads(checkpoint) == {"step": "done"}
    assert frames == 5
