"""A take cancelled or given up while no render handler runs (queued again after its submit, or
its worker dead) still has its vendor job stopped: nobody pays for a render nobody will see."""

import pytest
from asgiref.sync import sync_to_async

from dramas.models import Take, TakeStatus
from dramas.takes import VENDOR_CANCEL, take_enqueue
from studio.jobs import services
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


async def test_cancelling_a_render_queued_again_after_its_submit_stops_the_vendor_job(settings):
    async with running_sim(job_s=60.0) as sim:
        remote_video(settings, sim.url)
        drama, _, cast = await sync_to_async(two_person_drama)(seconds=2)
        [take] = await sync_to_async(take_enqueue)(drama=drama, scenes=[cast["first"]])

        async def polling():
            current = await Take.objects.aget(id=take.id)
            return current.remote_handle and current.status == TakeStatus.RENDERING

        async with running():  # stopped mid-poll: the job goes back to the queue
            await wait_for(polling, step=0.02)
        job = await Job.objects.aget(id=take.job_id)
        assert job.status == JobStatus.QUEUED

        await sync_to_async(services.job_cancel)(job=job)  # the queue page's Cancel

        take = await Take.objects.aget(id=take.id)
        assert take.status == TakeStatus.CANCELLED
        stopper = await Job.objects.aget(kind=VENDOR_CANCEL)
        async with running():

            async def stopped():
                return (await Job.objects.aget(id=stopper.id)).status == JobStatus.SUCCEEDED

            await wait_for(stopped, timeout=20)
        vendor_job = sim.jobs[JobHandle.from_json(take.remote_handle).id]
        stats = sim.stats.as_dict(arrivals=False)

    assert vendor_job["deleted"]
    assert stats["requests"].get("video_delete") == 1
    assert stats["submissions"] == {take.idempotency_key: 1}
    assert (await Job.objects.aget(id=stopper.id)).result == {"cancelled": True}


async def test_a_render_given_up_while_polling_stops_the_vendor_job(settings):
    async with running_sim(job_s=60.0) as sim:
        remote_video(settings, sim.url)
        drama, _, cast = await sync_to_async(two_person_drama)(seconds=2)
        [take] = await sync_to_async(take_enqueue)(drama=drama, scenes=[cast["first"]])
        async with running():

            async def polling():
                current = await Take.objects.aget(id=take.id)
                return current.remote_handle and current.status == TakeStatus.RENDERING

            await wait_for(polling, step=0.02)
            sim.queue_faults("video_get", "status:400")  # the vendor refuses to answer

            async def ended():
                current = await Take.objects.aget(id=take.id)
                return None if current.active else current

            take = await wait_for(ended, timeout=20)
        vendor_job = sim.jobs[JobHandle.from_json(take.remote_handle).id]

    assert take.status == TakeStatus.FAILED
    # Told before the take failed: not left rendering, and billing, for nobody.
    assert vendor_job["deleted"]
