"""The job engine in process: priority, fairness, retries, cancellation, pause, reaping, stop."""

import asyncio
import contextlib
import itertools
import random
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.utils import timezone

from studio.jobs import registry, services
from studio.jobs.models import Job, JobStatus
from studio.jobs.worker import Worker, WorkerConfig, retry_delay

pytestmark = pytest.mark.django_db(transaction=True)

FAST = {
    "concurrency": 4,
    "lease_s": 3.0,
    "poll_s": 0.05,
    "watch_s": 0.1,
    "reap_s": 0.2,
    "grace_s": 1.0,
    "backoff_base_s": 0.05,
    "backoff_cap_s": 0.2,
    "progress_interval_s": 0.05,
}
ran: list[tuple[str, int]] = []  # (kind, job id) in the order handlers started
seen: dict[int, list[str]] = {}  # job id -> what its handler went through


class Flaky(Exception):
    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Refused(Exception):
    retryable = False


@registry.register("test.record")
async def record(ctx):
    ran.append(("record", ctx.job_id))
    await asyncio.sleep(ctx.payload.get("sleep", 0))
    await ctx.progress(1.0, note="done")
    return {"echo": ctx.payload.get("echo")}


@registry.register("test.flaky")
async def flaky(ctx):
    seen.setdefault(ctx.job_id, []).append(f"attempt {ctx.attempt} at {time.monotonic():.3f}")
    if ctx.attempt < ctx.payload.get("succeed_on", 99):
        raise Flaky("provider busy", retry_after_s=ctx.payload.get("retry_after_s"))
    return "ok"


@registry.register("test.refused")
async def refused(ctx):
    raise Refused("content policy")


@registry.register("test.long")
async def long(ctx):
    seen.setdefault(ctx.job_id, []).append("started")
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        seen[ctx.job_id].append("remote job cancelled")
        raise


@registry.register("test.steps")
async def steps(ctx):
    """Ten steps of 50 ms, a checkpoint after each; stops cooperatively when asked."""
    start = ctx.checkpoint or 0
    seen.setdefault(ctx.job_id, []).append(f"from {start}")
    for step in range(start, 10):
        if ctx.stopping:
            raise registry.Release()
        await asyncio.sleep(0.05)
        await ctx.save_checkpoint(step + 1)
        await ctx.progress((step + 1) / 10)
    return start


@registry.register("test.deferred")
async def deferred(ctx):
    """Waits on something outside the job (an open breaker) `defer` times, then succeeds."""
    seen.setdefault(ctx.job_id, []).append(f"attempt {ctx.attempt} at {time.monotonic():.3f}")
    if len(seen[ctx.job_id]) <= ctx.payload["defer"]:
        raise registry.Release("Waiting for the vendor", after_s=ctx.payload["after_s"])
    return "ok"


@pytest.fixture(autouse=True)
def clean_records():
    ran.clear()
    seen.clear()


@contextlib.asynccontextmanager
async def running(**config):
    """A worker running beside the test; stopped (no grace) when the block ends.

    A context manager, not an async fixture: after the browser tests, pytest-asyncio cannot set
    up async fixtures any more (Playwright's sync API leaves a running loop behind)."""
    worker = Worker(name="test", config=WorkerConfig(**{**FAST, **config}), rng=random.Random(7))
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.stop(grace_s=0)
        await task


enqueue = sync_to_async(services.job_enqueue)


async def job(job_id: int) -> Job:
    return await Job.objects.aget(id=job_id)


async def wait_for(check, *, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s")
        await asyncio.sleep(0.02)


async def all_finished() -> bool:
    return not await Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).aexists()


async def test_it_runs_a_job_and_keeps_its_result():
    queued = await enqueue(kind="test.record", payload={"echo": "hi"}, drama_id=1)
    async with running():
        await wait_for(all_finished)

    done = await job(queued.id)
    assert done.status == JobStatus.SUCCEEDED
    assert done.result == {"echo": "hi"}
    assert done.progress == 1.0
    assert done.attempts == 1
    assert done.lease_owner == ""
    assert done.started_at <= done.finished_at


async def test_it_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match=r"Unknown job kind 'no\.such'"):
        await enqueue(kind="no.such")


async def test_it_runs_higher_priority_first():
    low = await enqueue(kind="test.record", drama_id=1)
    high = await enqueue(kind="test.record", drama_id=1, priority=5)
    async with running(concurrency=1):
        await wait_for(all_finished)

    assert [job_id for _, job_id in ran] == [high.id, low.id]


async def test_it_shares_workers_fairly_between_dramas():
    big = [(await enqueue(kind="test.record", drama_id=1)).id for _ in range(12)]
    small = [(await enqueue(kind="test.record", drama_id=2)).id for _ in range(3)]
    async with running(concurrency=1):
        await wait_for(all_finished)

    order = [job_id for _, job_id in ran]
    # One at a time, the dramas take turns: the small drama's 3 jobs do not wait for the 12.
    assert order[:6] == [big[0], small[0], big[1], small[1], big[2], small[2]]
    assert sorted(order) == sorted(big + small)


async def test_it_claims_a_batch_fairly():
    big = {(await enqueue(kind="test.record", drama_id=1)).id for _ in range(30)}
    small = {(await enqueue(kind="test.record", drama_id=2)).id for _ in range(3)}
    async with running(concurrency=6):
        await wait_for(all_finished)

    first_batch = {job_id for _, job_id in ran[:6]}
    assert small <= first_batch
    assert len(first_batch & big) == 3


@registry.register("test.whoami")
async def whoami(ctx):
    ran.append((ctx.worker, ctx.job_id))
    await asyncio.sleep(0.02)  # long enough that both workers are busy at once


async def test_it_never_gives_one_job_to_two_concurrent_workers():
    ids = {(await enqueue(kind="test.whoami", drama_id=n % 3)).id for n in range(150)}
    async with running(concurrency=5), running(concurrency=5):
        await wait_for(all_finished, timeout=20)

    executions = [job_id for _, job_id in ran]
    assert sorted(executions) == sorted(ids)  # each job ran exactly once
    assert len({worker for worker, _ in ran}) == 2  # and both workers took a share
    assert not await Job.objects.exclude(status=JobStatus.SUCCEEDED).aexists()
    assert not await Job.objects.exclude(attempts=1).aexists()


def test_it_spreads_retries_with_full_jitter_under_a_cap():
    rng = random.Random(3)
    error = Flaky("busy")
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 10.0), (20, 10.0)]:
        delays = [
            retry_delay(attempt=attempt, base_s=1.0, cap_s=10.0, rng=rng, error=error)
            for _ in range(300)
        ]
        assert 0 <= min(delays) < 0.1 * ceiling
        assert 0.9 * ceiling < max(delays) <= ceiling


def test_it_waits_at_least_the_retry_after_the_error_asks_for():
    rng = random.Random(3)
    error = Flaky("429", retry_after_s=7.5)
    delays = [retry_delay(attempt=1, base_s=1, cap_s=10, rng=rng, error=error) for _ in range(50)]
    assert min(delays) == 7.5


async def test_it_retries_after_the_backoff_then_succeeds():
    queued = await enqueue(
        kind="test.flaky", payload={"succeed_on": 3, "retry_after_s": 0.3}, drama_id=1
    )
    async with running():
        await wait_for(all_finished)

    done = await job(queued.id)
    assert done.status == JobStatus.SUCCEEDED
    assert done.attempts == 3
    assert done.last_error == ""
    starts = [float(line.split(" at ")[1]) for line in seen[queued.id]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert all(0.3 <= gap < 1.0 for gap in gaps), gaps  # Retry-After honoured, then prompt


async def test_a_deferred_job_waits_its_delay_and_spends_no_attempt():
    queued = await enqueue(
        kind="test.deferred", payload={"defer": 7, "after_s": 0.2}, max_attempts=2, drama_id=1
    )
    async with running():
        waiting = await wait_for(
            lambda: (
                Job.objects.filter(id=queued.id, status=JobStatus.QUEUED, attempts=0)
                .exclude(progress_note="")
                .afirst()
            )
        )
        assert waiting.progress_note == "Waiting for the vendor"
        await wait_for(all_finished)

    done = await job(queued.id)
    # Deferred seven times with only two attempts allowed: none of them was spent.
    assert done.status == JobStatus.SUCCEEDED and done.attempts == 1
    assert seen[queued.id][-1].startswith("attempt 1 at")
    starts = [float(line.split(" at ")[1]) for line in seen[queued.id]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= 0.2, gaps  # each try after its delay


async def test_it_shows_the_retry_it_is_waiting_for():
    queued = await enqueue(kind="test.flaky", payload={"retry_after_s": 30}, drama_id=1)
    async with running():
        waiting = await wait_for(
            lambda: Job.objects.filter(id=queued.id, attempts=1, status=JobStatus.QUEUED).afirst()
        )
    assert waiting.last_error.startswith("Attempt 1 of 5 failed: Flaky: provider busy.")
    assert 29 <= waiting.waiting_s <= 30


async def test_it_fails_a_job_that_exhausts_its_attempts():
    queued = await enqueue(kind="test.flaky", max_attempts=3, drama_id=1)
    async with running():
        await wait_for(all_finished)

    failed = await job(queued.id)
    assert failed.status == JobStatus.FAILED
    assert failed.attempts == 3
    assert failed.last_error == "Gave up after 3 attempts. Last: Flaky: provider busy"
    assert failed.finished_at is not None


async def test_it_fails_at_once_on_an_error_not_worth_retrying():
    queued = await enqueue(kind="test.refused", drama_id=1)
    async with running():
        await wait_for(all_finished)

    failed = await job(queued.id)
    assert failed.status == JobStatus.FAILED
    assert failed.attempts == 1
    assert failed.last_error == "Failed and not worth retrying: Refused: content policy"


async def test_it_cancels_a_running_job_within_a_second():
    queued = await enqueue(kind="test.long", drama_id=1)
    async with running(watch_s=0.25):
        await wait_for(lambda: job_in(queued.id, JobStatus.RUNNING))
        await asyncio.sleep(0.1)
        asked = time.monotonic()
        await sync_to_async(services.job_cancel)(job=await job(queued.id))
        await wait_for(lambda: job_in(queued.id, JobStatus.CANCELLED), timeout=1.0)
        took = time.monotonic() - asked

    assert took < 1.0
    assert seen[queued.id] == ["started", "remote job cancelled"]
    cancelled = await job(queued.id)
    assert cancelled.last_error == "Cancelled by a user."
    assert cancelled.lease_owner == ""


async def test_it_cancels_a_queued_job_at_once_and_refuses_finished_ones():
    queued = await enqueue(kind="test.record", drama_id=1)

    cancelled = await sync_to_async(services.job_cancel)(job=queued)

    assert cancelled.status == JobStatus.CANCELLED
    with pytest.raises(ValidationError):
        await sync_to_async(services.job_cancel)(job=cancelled)


async def test_it_holds_a_paused_drama_and_runs_it_on_resume():
    await sync_to_async(services.queue_pause)(drama_id=1)
    held = await enqueue(kind="test.record", drama_id=1)
    other = await enqueue(kind="test.record", drama_id=2)
    async with running():
        await wait_for(lambda: job_in(other.id, JobStatus.SUCCEEDED))
        await asyncio.sleep(0.2)
        assert (await job(held.id)).status == JobStatus.QUEUED

        await sync_to_async(services.queue_resume)(drama_id=1)
        await wait_for(lambda: job_in(held.id, JobStatus.SUCCEEDED))


async def test_it_requeues_a_job_whose_worker_died_and_resumes_its_checkpoint():
    queued = await enqueue(kind="test.steps", drama_id=1)
    # What a worker killed mid-job leaves behind: running, a checkpoint, an old lease.
    await Job.objects.filter(id=queued.id).aupdate(
        status=JobStatus.RUNNING,
        attempts=1,
        checkpoint=6,
        lease_owner="dead-worker",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    async with running():
        await wait_for(lambda: job_in(queued.id, JobStatus.SUCCEEDED))

    done = await job(queued.id)
    assert seen[queued.id] == ["from 6"]
    assert done.attempts == 2
    assert done.result == 6


async def test_it_fails_a_job_whose_worker_died_on_its_last_attempt():
    queued = await enqueue(kind="test.steps", drama_id=1, max_attempts=2)
    await Job.objects.filter(id=queued.id).aupdate(
        status=JobStatus.RUNNING,
        attempts=2,
        lease_owner="dead-worker",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    async with running():
        await wait_for(lambda: job_in(queued.id, JobStatus.FAILED))

    assert (await job(queued.id)).last_error.startswith("Gave up after 2 attempts: the worker")


async def test_it_stops_gracefully_releasing_jobs_at_their_checkpoint():
    queued = await enqueue(kind="test.steps", drama_id=1)
    async with running() as worker:
        await wait_for(lambda: Job.objects.filter(id=queued.id, checkpoint__gte=3).aexists())
        await worker.stop(grace_s=1.0)

    released = await job(queued.id)
    assert released.status == JobStatus.QUEUED
    assert released.attempts == 0  # a shutdown is not the job's failure
    assert released.lease_owner == ""
    assert 3 <= released.checkpoint < 10

    async with running():
        await wait_for(lambda: job_in(queued.id, JobStatus.SUCCEEDED))
    assert seen[queued.id] == ["from 0", f"from {released.checkpoint}"]


async def test_it_cancels_and_releases_a_job_that_outlives_the_grace_period():
    queued = await enqueue(kind="test.long", drama_id=1)
    async with running() as worker:
        await wait_for(lambda: job_in(queued.id, JobStatus.RUNNING))
        started = time.monotonic()
        await worker.stop(grace_s=0.3)
        assert time.monotonic() - started < 1.5

    released = await job(queued.id)
    assert released.status == JobStatus.QUEUED
    assert released.attempts == 0
    assert seen[queued.id] == ["started", "remote job cancelled"]


async def test_it_throttles_progress_writes_but_keeps_the_last_value():
    writes = []

    class Store:
        owner = "test"

        async def save_progress(self, **values):
            writes.append(values["progress"])

    context = registry.JobContext(
        job_id=1,
        kind="k",
        payload={},
        drama_id=1,
        attempt=1,
        max_attempts=1,
        checkpoint=None,
        store=Store(),
        progress_interval_s=0.2,
        stopping=lambda: False,
    )
    for step in range(1, 101):
        await context.progress(step / 100)
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.3)

    assert writes[0] == 0.01
    assert writes[-1] == 1.0
    assert len(writes) <= 4


async def job_in(job_id: int, status: str) -> bool:
    return await Job.objects.filter(id=job_id, status=status).aexists()
