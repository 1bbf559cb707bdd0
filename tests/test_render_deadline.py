"""A vendor render not done VIDEO_MAX_RENDER_S after its first submit is cancelled at the vendor
and its take fails saying so; the deadline survives a worker restart, and a render that finished
while nobody was polling is still kept."""

import asyncio
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async

from dramas.models import Take, TakeStatus
from dramas.takes import take_enqueue
from studio.jobs import store
from studio.jobs.models import Job, JobStatus
from studio.providers import registry
from studio.providers.base import JobHandle
from tests.providers_support import running_sim
from tests.render_support import remote_video, running, seed_prices, two_person_drama, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def prices(transactional_db):
    seed_prices()
    yield
    registry.forget()


async def render_one() -> Take:
    drama, _, cast = await sync_to_async(two_person_drama)(seconds=2)
    [take] = await sync_to_async(take_enqueue)(drama=drama, scenes=[cast["first"]])
    return take


async def finished(take_id: int) -> Take | None:
    take = await Take.objects.aget(id=take_id)
    return None if take.active else take


async def polling(take_id: int) -> bool:
    # The handle is saved on the take a moment before the job's checkpoint moves to "poll":
    # wait for both, or a loaded machine stops the worker in between.
    take = await Take.objects.aget(id=take_id)
    if not take.remote_handle or take.status != TakeStatus.RENDERING:
        return False
    job = await Job.objects.aget(id=take.job_id)
    return (job.checkpoint or {}).get("step") == "poll"


def vendor_job(sim, take: Take) -> dict:
    return sim.jobs[JobHandle.from_json(take.remote_handle).id]


async def submitted_long_ago(take: Take, *, seconds: float) -> None:
    """What a render first submitted `seconds` ago leaves in its job's checkpoint."""
    job = await Job.objects.aget(id=take.job_id)
    assert job.checkpoint["step"] == "poll" and job.checkpoint["submitted_at"]
    then = await sync_to_async(store.database_now)() - timedelta(seconds=seconds)
    await Job.objects.filter(id=job.id).aupdate(
        checkpoint={**job.checkpoint, "submitted_at": then.isoformat()}
    )


async def test_a_render_still_running_at_the_deadline_is_cancelled_and_its_take_fails(settings):
    settings.VIDEO_MAX_RENDER_S = 0.6
    async with running_sim(job_s=60.0) as sim:
        remote_video(settings, sim.url)
        take = await render_one()
        async with running():
            await wait_for(lambda: polling(take.id), step=0.02)
            started = time.monotonic()
            take = await wait_for(lambda: finished(take.id), timeout=10, step=0.02)
            waited = time.monotonic() - started
        stats = sim.stats.as_dict(arrivals=False)
        cancelled_at_vendor = vendor_job(sim, take)["deleted"]

    assert take.status == TakeStatus.FAILED
    assert take.error == (
        "The video service (openai) had not finished after 0.6 s (VIDEO_MAX_RENDER_S); the "
        "render was cancelled there. Render a new take to try again."
    )
    assert cancelled_at_vendor and stats["requests"].get("video_delete") == 1
    assert stats["submissions"] == {take.idempotency_key: 1}
    job = await Job.objects.aget(id=take.job_id)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)  # not retried
    assert waited < 3  # promptly after the deadline, not after a polling interval or two


async def test_the_deadline_counts_from_the_first_submit_across_worker_restarts(settings):
    async with running_sim(job_s=60.0) as sim:
        remote_video(settings, sim.url)
        take = await render_one()
        async with running():
            await wait_for(lambda: polling(take.id), step=0.02)
        # The worker stopped mid-poll; the render was first submitted 31 minutes ago.
        await submitted_long_ago(take, seconds=31 * 60)
        async with running():
            take = await wait_for(lambda: finished(take.id), timeout=10, step=0.02)
        stats = sim.stats.as_dict(arrivals=False)
        cancelled_at_vendor = vendor_job(sim, take)["deleted"]

    assert take.status == TakeStatus.FAILED
    assert take.error.startswith(
        "The video service (openai) had not finished after 30 min (VIDEO_MAX_RENDER_S); the "
        "render was cancelled there."
    )
    assert cancelled_at_vendor
    assert stats["submissions"] == {take.idempotency_key: 1}  # polled again, never resubmitted


async def test_a_render_that_finished_past_the_deadline_is_still_kept(settings):
    async with running_sim(job_s=1.0) as sim:
        remote_video(settings, sim.url)
        take = await render_one()
        async with running():
            await wait_for(lambda: polling(take.id), step=0.02)
        await asyncio.sleep(1.2)  # the vendor finishes while no worker polls
        await submitted_long_ago(take, seconds=31 * 60)
        async with running():
            take = await wait_for(lambda: finished(take.id), timeout=30)
        stats = sim.stats.as_dict(arrivals=False)

    assert take.status == TakeStatus.DONE, take.error
    assert "video_delete" not in stats["requests"]
