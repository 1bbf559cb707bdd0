"""The engine's settle hook: whoever ends a job (worker, retry limit, reaper, a user cancelling a
queued job), its kind's `on_settled` hears it once, inside the transaction that ends it."""

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from studio.jobs import registry, services, store
from studio.jobs.models import Job, JobStatus, QueuePause
from tests.test_jobs_engine import enqueue, job, job_in, running, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

heard: list[tuple[int, str, str, str]] = []  # (job id, status, by, error) per hook call
MARK = 10_000  # the hook writes QueuePause(drama_id=MARK + job id): a write in its transaction


def remember(job: Job, settled: registry.Settled) -> None:
    # The row is already in its final state when the hook runs.
    assert Job.objects.get(id=job.id).status == settled.status == job.status
    heard.append((job.id, settled.status, settled.by, settled.error))
    QueuePause.objects.create(drama_id=MARK + job.id)


def explode(job: Job, settled: registry.Settled) -> None:
    QueuePause.objects.create(drama_id=MARK + job.id)
    raise RuntimeError("the domain could not settle")


class Refused(Exception):
    retryable = False


@registry.register("settle.ok", on_settled=remember)
async def succeeds(ctx):
    return {"fine": True}


@registry.register("settle.refused", on_settled=remember)
async def refused(ctx):
    raise Refused("content policy")


@registry.register("settle.flaky", on_settled=remember)
async def flaky(ctx):
    raise RuntimeError("vendor busy")


@registry.register("settle.long", on_settled=remember)
async def long(ctx):
    await asyncio.sleep(30)


@registry.register("settle.released", on_settled=remember)
async def released(ctx):
    if ctx.attempt == 1 and not ctx.checkpoint:
        await ctx.save_checkpoint("deferred once")
        raise registry.Release("waiting for the vendor", after_s=0.05)
    return "after the wait"


@registry.register("settle.explodes", on_settled=explode)
async def explodes(ctx):
    return None


@pytest.fixture(autouse=True)
def clean():
    heard.clear()


def marked(job_id: int) -> bool:
    return QueuePause.objects.filter(drama_id=MARK + job_id).exists()


async def test_a_job_that_succeeds_is_settled_once_by_its_worker():
    queued = await enqueue(kind="settle.ok", drama_id=1)
    async with running():
        await wait_for(lambda: job_in(queued.id, JobStatus.SUCCEEDED))
        await asyncio.sleep(0.2)

    assert heard == [(queued.id, JobStatus.SUCCEEDED, "worker", "")]
    assert await sync_to_async(marked)(queued.id)


async def test_failures_are_settled_once_at_the_end_not_on_each_retry():
    refused = await enqueue(kind="settle.refused", drama_id=1)
    flaky = await enqueue(kind="settle.flaky", drama_id=1, max_attempts=3)
    async with running():
        await wait_for(lambda: job_in(refused.id, JobStatus.FAILED))
        await wait_for(lambda: job_in(flaky.id, JobStatus.FAILED))

    by_job = {job_id: (status, by, error) for job_id, status, by, error in heard}
    assert len(heard) == 2
    assert by_job[refused.id] == (
        JobStatus.FAILED,
        "worker",
        "Failed and not worth retrying: Refused: content policy",
    )
    status, by, error = by_job[flaky.id]
    assert (status, by) == (JobStatus.FAILED, "worker")
    assert error.startswith("Gave up after 3 attempts")
    assert (await job(flaky.id)).attempts == 3


async def test_a_deferred_job_is_settled_only_when_it_really_ends():
    queued = await enqueue(kind="settle.released", drama_id=1)
    async with running():
        await wait_for(lambda: job_in(queued.id, JobStatus.SUCCEEDED))

    assert heard == [(queued.id, JobStatus.SUCCEEDED, "worker", "")]


async def test_a_running_job_cancelled_by_a_user_is_settled_by_its_worker():
    queued = await enqueue(kind="settle.long", drama_id=1)
    async with running():
        await wait_for(lambda: job_in(queued.id, JobStatus.RUNNING))
        await sync_to_async(services.job_cancel)(job=await job(queued.id))
        await wait_for(lambda: job_in(queued.id, JobStatus.CANCELLED))

    assert heard == [(queued.id, JobStatus.CANCELLED, "worker", "Cancelled by a user.")]


async def test_a_queued_job_cancelled_by_a_user_is_settled_at_once():
    queued = await enqueue(kind="settle.ok", drama_id=1)

    await sync_to_async(services.job_cancel)(job=queued)

    assert heard == [(queued.id, JobStatus.CANCELLED, "user", "Cancelled by a user.")]
    assert await sync_to_async(marked)(queued.id)


def test_the_hook_commits_or_rolls_back_with_the_job():
    queued = services.job_enqueue(kind="settle.ok", drama_id=1)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.job_cancel(job=queued)
        assert marked(queued.id)
        raise RuntimeError("the request failed after cancelling")

    queued.refresh_from_db()
    assert queued.status == JobStatus.QUEUED
    assert not marked(queued.id)  # the hook's write went with the rolled-back cancel


def dead_worker_left(job_id: int, **fields) -> None:
    Job.objects.filter(id=job_id).update(
        status=JobStatus.RUNNING,
        lease_owner="dead-worker",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
        **fields,
    )


def test_the_reaper_settles_jobs_whose_worker_died():
    exhausted = services.job_enqueue(kind="settle.ok", drama_id=1, max_attempts=2)
    cancelled = services.job_enqueue(kind="settle.ok", drama_id=1)
    requeued = services.job_enqueue(kind="settle.ok", drama_id=1)
    dead_worker_left(exhausted.id, attempts=2)
    dead_worker_left(cancelled.id, attempts=1, cancel_requested=True)
    dead_worker_left(requeued.id, attempts=1)
    registry.load()

    assert store.reap() == 3

    by_job = {job_id: (status, by) for job_id, status, by, _error in heard}
    assert by_job == {
        exhausted.id: (JobStatus.FAILED, "reaper"),
        cancelled.id: (JobStatus.CANCELLED, "reaper"),
    }
    assert Job.objects.get(id=requeued.id).status == JobStatus.QUEUED  # not ended: not settled


async def test_a_failing_hook_never_keeps_the_job_from_ending():
    queued = await enqueue(kind="settle.explodes", drama_id=1)
    after = await enqueue(kind="settle.ok", drama_id=1)
    async with running():
        await wait_for(lambda: job_in(queued.id, JobStatus.SUCCEEDED))
        await wait_for(lambda: job_in(after.id, JobStatus.SUCCEEDED))

    ended = await job(queued.id)
    assert "Settling what it worked on failed: RuntimeError: the domain could not settle" in (
        ended.last_error
    )
    assert not await sync_to_async(marked)(queued.id)  # the hook's own writes rolled back
    assert [job_id for job_id, *_ in heard] == [after.id]  # the worker went on


def test_a_companion_must_be_a_coroutine_function():
    with pytest.raises(TypeError):
        registry.register_companion("not-async", lambda **kwargs: None)


async def test_every_worker_runs_the_registered_companions_while_it_lives():
    calls: list[str] = []
    stopped = asyncio.Event()

    async def companion(*, process: str, db) -> None:
        calls.append(process)
        assert await db(Job.objects.count) == 0  # on the worker's database thread
        try:
            await asyncio.sleep(30)
        finally:
            stopped.set()

    registry.register_companion("test-companion", companion)
    try:
        async with running() as worker:
            await wait_for(lambda: asyncio.sleep(0, result=bool(calls)))
            assert calls == [worker.owner]
        assert stopped.is_set()
    finally:
        registry._companions.pop("test-companion")
