"""Subprocess plumbing for the render proofs: the provider simulator and real `studio_worker`
processes against one SQLite file, a batch of takes set up in its own process, and the
readings the tests judge (takes, jobs, billed usage, the simulator's own counts).

Everything runs as `manage.py` commands, as in production; the test process only reads the
database file (WAL lets it read beside the worker) and the simulator's `/_sim/*` routes.
"""

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.studio_process import REPO

TERMINAL = ("done", "failed", "cancelled")

# Set up in a process of its own (the test process must not open the worker's database through
# Django): migrate, a drama (the first time), `takes` takes, one per scene.
# With faces the scenes are `two_person_drama`'s, each with a character whose face every frame
# is scored against; without, nobody is in them, so the takes skip face scoring (and the pool
# loads no face models).
SETUP = """
import sys
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from dramas.takes import take_enqueue
from tests.factories import create_chapter, create_drama, create_scene
from tests.render_support import two_person_drama
seconds, takes, faces = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "faces"
from dramas.models import Drama
# One take per scene (a scene has one take on its way at a time): the scenes without a take
# first, then a new scene per take, the cast taking turns; a later call adds to the same drama.
if drama := Drama.objects.first():
    chapter = drama.chapters.get()
elif faces:
    drama, chapter, _ = two_person_drama(seconds=seconds, budget_usd=1000)
else:
    drama = create_drama(budget_usd=1000)
    chapter = create_chapter(drama=drama)
cast = list(drama.characters.order_by("id"))
fresh = [scene for scene in chapter.scenes.order_by("id") if not scene.takes.exists()]
places = ("Empty street", "Harbour at dawn")
for n in range(takes):
    scene = fresh[n] if n < len(fresh) else create_scene(
        chapter=chapter,
        location=places[n % 2],
        characters=[cast[n % len(cast)]] if cast else [],
        duration_s=seconds,
        camera="static",
    )
    take_enqueue(drama=drama, scenes=[scene])
"""


class Studio:
    """One test's processes: a simulator, workers started and killed at will, their logs."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.tmp_path = tmp_path
        self.db = tmp_path / "studio.sqlite3"
        self.sim = ""  # the simulator's URL, once started
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        self.env.update(
            DATABASE_URL=f"sqlite:///{self.db}",
            STUDIO_VAR_DIR=str(tmp_path / "var"),
            MEDIA_ROOT=str(tmp_path / "media"),
            DJANGO_SETTINGS_MODULE="studio.settings",
            VIDEO_API="openai_videos",
            VIDEO_PROVIDER="openai",
            VIDEO_MODEL="sora-2",
            VIDEO_DURATIONS="2",
            VIDEO_POLL_S="0.1",
            # The bucket is not under test here: polls of many takes must not queue for tokens.
            VIDEO_RATE_PER_S="500",
            VIDEO_BURST="500",
            PYTHONUNBUFFERED="1",
        )
        self.env.update(env)
        self.processes: list[subprocess.Popen] = []
        self._logs = 0

    def start(self, *command: str) -> subprocess.Popen:
        """`manage.py <command>` in a session of its own, so a kill takes its pool with it."""
        self._logs += 1
        log_path = self.tmp_path / f"{self._logs:02d}-{command[0]}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "manage.py", *command],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process.log_path = log_path
        self.processes.append(process)
        return process

    def start_sim(self, *options: str) -> subprocess.Popen:
        """The simulator on a port it picks itself (no race for a free port); workers started
        afterwards are pointed at it."""
        process = self.start("provider_sim", "--port", "0", *options)
        self.sim = wait_until(lambda: self._sim_url(process), timeout=60, what="the simulator")
        self.env["VIDEO_BASE_URL"] = f"{self.sim}/v1"
        return process

    def _sim_url(self, process: subprocess.Popen) -> str:
        if process.poll() is not None:
            pytest.fail(f"provider_sim exited:\n{log_tail(process)}")
        found = re.search(r"listening on (http://\S+)", process.log_path.read_text())
        return found.group(1) if found else ""

    def start_worker(self, *options: str) -> subprocess.Popen:
        return self.start("studio_worker", *options)

    def setup_takes(self, *, takes: int, seconds: float, faces: bool = True) -> None:
        cast = "faces" if faces else "nobody"
        command = [sys.executable, "-c", SETUP, str(seconds), str(takes), cast]
        done = subprocess.run(command, cwd=REPO, env=self.env, capture_output=True, timeout=180)
        if done.returncode:
            pytest.fail(f"setting up the takes failed:\n{done.stderr.decode()[-3000:]}")

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.sim}/_sim/stats", timeout=10) as response:
            return json.load(response)

    def configure_sim(self, values: dict) -> dict:
        request = urllib.request.Request(
            f"{self.sim}/_sim/config",
            data=json.dumps(values).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def query(self, sql: str, *params) -> list[dict]:
        with sqlite3.connect(self.db, timeout=30) as connection:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(sql, params)]

    def takes(self) -> list[dict]:
        return self.query(
            "SELECT t.id, t.status, t.remote_handle, t.idempotency_key, t.job_id, t.error,"
            " j.attempts, j.status AS job_status, j.checkpoint, j.lease_owner"
            " FROM dramas_take t LEFT JOIN jobs_job j ON j.id = t.job_id ORDER BY t.id"
        )

    def terminal_count(self) -> int:
        marks = ",".join("?" * len(TERMINAL))
        [row] = self.query(
            f"SELECT COUNT(*) AS n FROM dramas_take WHERE status IN ({marks})", *TERMINAL
        )
        return row["n"]

    def billed(self) -> list[dict]:
        """The usage records that bill a finished video (one per vendor job, at most)."""
        return self.query(
            "SELECT request_id, take_id, units FROM studio_usagerecord"
            " WHERE operation = 'video.generate' AND ok ORDER BY id"
        )

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                kill_hard(process)


def kill_hard(process: subprocess.Popen) -> None:
    """SIGKILL the process and its process pool (its session), as a crashed machine would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def stop_gently(process: subprocess.Popen, *, timeout: float = 30) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_hard(process)
        pytest.fail(f"the worker ignored SIGTERM:\n{process.log_path.read_text()[-3000:]}")
    kill_hard(process)  # its pool processes, if any outlived it


def wait_until(check, *, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(step)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def log_tail(process: subprocess.Popen, chars: int = 3000) -> str:
    return process.log_path.read_text(errors="replace")[-chars:]
