"""Leases, due times and finish times run on the database's clock, not the worker machine's.

Each test sets this process's clock (django.utils.timezone.now) ten minutes off, as a worker
machine with a wrong clock would have it, and shows the engine does not care: a live job keeps
its lease, a dead worker's lease is still reaped, a due job is claimed at once and a retry waits
its delay, not its delay plus the skew.
"""

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.db.models.functions import Now
from django.utils import timezone

from studio.jobs import registry, services, store
from studio.jobs.models import Job, JobStatus
from tests.render_support import running, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SKEW = timedelta(minutes=10)
LEASE_S = 1.0


@registry.register("test.clock.hold")
async def hold(ctx):
    await asyncio.sleep(ctx.payload["sleep_s"])


@registry.register("test.clock.flaky")
async def flaky(ctx):
    if ctx.attempt == 1:
        error = RuntimeError("vendor busy")
        error.retry_after_s = ctx.payload["retry_after_s"]
        raise error
    return "ok"


@pytest.fixture
def clock(monkeypatch):
    """`clock(skew)`: this process's wall clock runs `skew` ahead (negative: behind)."""
    real_now = timezone.now

    def set_skew(skew: timedelta) -> None:
        monkeypatch.setattr(timezone, "now", lambda: real_now() + skew)

    return set_skew


def db_seconds_until(value) -> float:
    return (value - store.database_now()).total_seconds()


async def job(job_id: int) -> Job:
    return await Job.objects.aget(id=job_id)


def test_database_now_is_an_aware_time_of_the_database():
    now = store.database_now()
    assert timezone.is_aware(now)
    assert abs((now - timezone.now()).total_seconds()) < 2  # one machine here: the same clock


def test_stored_times_and_the_database_clock_compare_in_time_order():
    """On SQLite datetimes are text, written with 0, 3 or 6 decimals depending on who wrote
    them (Python, Now(), Now() + an interval): the comparisons must still follow time."""
    now = store.database_now()
    whole_second = now.replace(microsecond=0)
    written = {
        "python, whole second, past": whole_second - timedelta(seconds=1),
        "python, microseconds, past": now - timedelta(seconds=0.3),
        "now() minus an interval": Now() - timedelta(seconds=1),
        "python, whole second, future": whole_second + timedelta(seconds=3),
        "python, microseconds, future": now + timedelta(seconds=0.3, microseconds=7),
        "now() plus an interval": Now() + timedelta(seconds=1),
    }
    ids = {}
    for name, value in written.items():
        created = Job.objects.create(kind="test.clock.hold", label=name)
        Job.objects.filter(id=created.id).update(lease_expires_at=value)
        ids[name] = created.id
    past = {ids[name] for name in written if "past" in name or "minus" in name}
    future = set(ids.values()) - past

    def ids_where(**lookup) -> set[int]:
        return set(Job.objects.filter(**lookup).values_list("id", flat=True))

    assert ids_where(lease_expires_at__lt=Now()) == past
    assert ids_where(lease_expires_at__gt=Now()) == future
    if connection.vendor == "sqlite":  # the case this test is about: several text forms
        with connection.cursor() as cursor:
            cursor.execute("SELECT lease_expires_at || '' FROM jobs_job")
            decimals = {len(text.partition(".")[2]) for (text,) in cursor.fetchall()}
        assert {0, 6} <= decimals, decimals


async def test_a_live_lease_is_not_reaped_whichever_way_the_clock_is_off(clock):
    clock(-SKEW)  # the worker that claims it runs behind: its lease must not look expired
    queued = await sync_to_async(services.job_enqueue)(
        kind="test.clock.hold", payload={"sleep_s": 30}, drama_id=1
    )
    async with running(lease_s=LEASE_S, reap_s=0.1) as worker:
        await wait_for(lambda: Job.objects.filter(id=queued.id, status="running").aexists())
        for skew in (-SKEW, SKEW):
            clock(skew)
            assert await sync_to_async(store.reap)() == 0
            await asyncio.sleep(2.5 * LEASE_S)  # renewals and the worker's own reaper, skewed
            live = await job(queued.id)
            assert (live.status, live.lease_owner, live.attempts) == (
                JobStatus.RUNNING,
                worker.owner,
                1,
            )
            assert 0 < await sync_to_async(db_seconds_until)(live.lease_expires_at) <= LEASE_S


async def test_a_dead_workers_lease_is_reaped_by_a_worker_whose_clock_lags(clock):
    queued = await sync_to_async(services.job_enqueue)(kind="test.clock.hold", drama_id=1)
    await Job.objects.filter(id=queued.id).aupdate(
        status=JobStatus.RUNNING,
        attempts=1,
        lease_owner="dead-worker",
        lease_expires_at=Now() - timedelta(seconds=1),
    )
    clock(-SKEW)

    assert await sync_to_async(store.reap)() == 1
    assert (await job(queued.id)).status == JobStatus.QUEUED


async def test_a_due_job_is_claimed_at_once_whatever_the_clocks_say(clock):
    clock(SKEW)  # the web process that queues it runs ahead
    queued = await sync_to_async(services.job_enqueue)(kind="test.clock.hold", drama_id=1)
    clock(-SKEW)  # and the worker behind

    claimed = await sync_to_async(store.cycle)(
        owner="lagging-worker", settled=[], claim_limit=5, lease_s=30.0
    )

    assert [c.id for c in claimed] == [queued.id]
    running_job = await job(queued.id)
    assert 28 < await sync_to_async(db_seconds_until)(running_job.lease_expires_at) <= 30
    assert abs(await sync_to_async(db_seconds_until)(running_job.started_at)) < 2


async def test_a_retry_waits_its_delay_on_the_database_clock_and_finishes_on_it(clock):
    clock(SKEW)  # a worker ahead would otherwise park the retry ten minutes too long
    queued = await sync_to_async(services.job_enqueue)(
        kind="test.clock.flaky", payload={"retry_after_s": 0.3}, drama_id=1
    )
    async with running():
        waiting = await wait_for(
            lambda: Job.objects.filter(id=queued.id, attempts=1, status="queued").afirst(),
            step=0.01,
        )
        assert 0 < await sync_to_async(db_seconds_until)(waiting.run_after) <= 0.3
        await wait_for(
            lambda: Job.objects.filter(id=queued.id, status="succeeded").aexists(), timeout=5
        )

    done = await job(queued.id)
    assert done.attempts == 2
    assert abs(await sync_to_async(db_seconds_until)(done.finished_at)) < 3
    assert done.started_at <= done.finished_at
