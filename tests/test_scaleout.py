"""Scale-out mode on real engines: PostgreSQL, Redis as the channel layer, two Daphne web
processes with no embedded worker and two `studio_worker` processes, all separate.

A browser on web process A sees, live, what a producer starts on web process B and what the
workers do; 200 jobs spread over both workers run exactly once each.
"""

import collections
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser_support import (
    assert_not_reloaded,
    collect_console_errors,
    drama_id_of,
    log_in,
    mark_window,
    set_timeouts,
    shot,
    wait_for_live,
    wait_for_queue_progress_to_move,
)
from tests.services import postgres_server, redis_server
from tests.studio_process import REPO, serve_studio, studio_env

# Browser-marked as a whole so its tests stay together at the end of the run (conftest).
pytestmark = [pytest.mark.scaleout, pytest.mark.browser]
TIMEOUT_MS = 20_000
BATCH = 200

SETUP = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
call_command("seed_demo", verbosity=0)
"""

ENQUEUE = """
import sys
import django
django.setup()
from dramas.models import Drama, Scene
from studio.jobs.services import job_enqueue
drama = Drama.objects.get(title="Midnight Broadcast")
kind, count = sys.argv[1], int(sys.argv[2])
scenes = list(Scene.objects.filter(chapter__drama=drama).values_list("id", flat=True))
for number in range(count):
    payload = {"steps": 10, "step_s": 0.3, "scene_ids": scenes} if kind == "test.crash.steps" \
        else {"sleep_s": 0.2}
    job_enqueue(kind=kind, drama_id=drama.id, label=f"Scale-out job {number}", payload=payload)
"""


def start(command: list[str], *, env: dict, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", *command],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scaleout")
    with postgres_server() as postgres, redis_server() as redis_url:
        env = studio_env(tmp)
        env.update(
            DATABASE_URL=postgres.create_database("studio_scaleout"),
            REDIS_URL=redis_url,
            # Every web process must sign sessions with the same key.
            SECRET_KEY="scale-out-test-key-" + "x" * 40,
            STUDIO_EMBEDDED_WORKER="0",
            STUDIO_JOB_MODULES="tests.jobs_handlers",
            STUDIO_TEST_JOB_LOG=str(tmp / "jobs.log"),
        )
        subprocess.run([sys.executable, "-c", SETUP], cwd=REPO, env=env, check=True, timeout=120)
        workers = [
            start(
                ["studio_worker", "--concurrency", "8", "--name", f"worker-{n}"],
                env=env,
                log=tmp / f"worker-{n}.log",
            )
            for n in (1, 2)
        ]
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        try:
            with (
                serve_studio(tmp / "a", env) as (web_a, _, _),
                serve_studio(tmp / "b", env) as (web_b, _, _),
            ):
                yield {
                    "env": env,
                    "a": web_a,
                    "b": web_b,
                    "workers": workers,
                    "tmp": tmp,
                    "database_url": env["DATABASE_URL"],
                }
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.terminate()
                    worker.wait(timeout=20)


def enqueue(cluster, kind: str, count: int) -> None:
    subprocess.run(
        [sys.executable, "-c", ENQUEUE, kind, str(count)],
        cwd=REPO,
        env=cluster["env"],
        check=True,
        timeout=120,
    )


def job_rows(cluster, kind: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(cluster["database_url"]) as connection:
        return connection.execute(
            "SELECT id, status, attempts FROM jobs_job WHERE kind = %s ORDER BY id", (kind,)
        ).fetchall()


def test_both_web_processes_are_healthy_on_postgres_and_redis(cluster):
    for base in (cluster["a"], cluster["b"]):
        health = httpx.get(f"{base}/healthz", timeout=10).json()
        assert health["database"] == "ok", health
        assert health["channel_layer"] == "ok", health
        # No worker inside the web processes: both see the two studio_workers' heartbeats.
        assert health["worker"] == "ok" and health["workers"] == 2, health
    for worker in cluster["workers"]:
        assert worker.poll() is None, "a worker exited"


def test_a_browser_on_one_web_process_sees_work_started_on_the_other_and_done_by_workers(
    cluster, page: Page
):
    errors = collect_console_errors(page)
    set_timeouts(page, TIMEOUT_MS)

    # The queue page on web process A, websocket open.
    log_in(page, cluster["a"])
    page.get_by_role("link", name="Midnight Broadcast").first.click()
    drama_id = drama_id_of(page)
    page.goto(f"{cluster['a']}/dramas/{drama_id}/queue/")
    wait_for_live(page)
    mark_window(page)

    # The board on web process B, in its own browser session.
    other = page.context.browser.new_context()
    board = other.new_page()
    set_timeouts(board, TIMEOUT_MS)
    log_in(board, cluster["b"])
    board.goto(f"{cluster['b']}/dramas/{drama_id}/")
    board.get_by_role("button", name="Check script").click()
    expect(board.get_by_text("Checking the script of chapter 1")).to_be_visible()

    # B enqueued it, a worker process ran it, A's page shows it done without a reload.
    expect(page.locator("#queue-done tr.job", has_text="Check script: chapter 1")).to_be_visible()

    # Progress only a worker publishes: a job's bar moves on A's page, then the job finishes.
    enqueue(cluster, "test.crash.steps", 1)
    wait_for_queue_progress_to_move(page)
    expect(page.locator("#queue-done tr.job", has_text="Scale-out job 0")).to_be_visible()
    shot(page, "scaleout-queue")

    assert_not_reloaded(page)
    assert errors == [], errors
    other.close()


def test_two_workers_share_a_batch_and_never_claim_a_job_twice(cluster):
    log = Path(cluster["env"]["STUDIO_TEST_JOB_LOG"])
    started = time.monotonic()
    enqueue(cluster, "test.scaleout.claim", BATCH)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = job_rows(cluster, "test.scaleout.claim")
        if len(rows) == BATCH and all(status == "succeeded" for _, status, _ in rows):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"not all done: {collections.Counter(status for _, status, _ in rows)}")
    elapsed = time.monotonic() - started

    runs = [line.split() for line in log.read_text().splitlines() if " ran-in " in line]
    runs_per_job = collections.Counter(int(fields[0]) for fields in runs)
    assert set(runs_per_job) == {job_id for job_id, _, _ in rows}
    assert set(runs_per_job.values()) == {1}, "a job ran more than once"
    assert all(attempts == 1 for _, _, attempts in rows)
    # Both workers took part: 200 jobs of 0.2 s keep 8 slots of each busy, so both claim
    # (FOR UPDATE SKIP LOCKED) from the same queue at the same time.
    per_worker = collections.Counter(fields[2] for fields in runs)
    assert len(per_worker) == 2, per_worker
    assert min(per_worker.values()) >= BATCH // 10, per_worker
    print(f"{BATCH} jobs in {elapsed:.1f} s, per worker process: {dict(per_worker)}")
