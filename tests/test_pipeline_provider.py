"""The take pipeline against the loopback provider simulator: slow and failed jobs, faults,
the circuit breaker, the budget gate, and a worker killed between submit and download."""

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError

from dramas.models import Take, TakeStatus, Verdict
from dramas.takes import take_enqueue, takes_estimate
from studio.jobs.models import Job
from studio.models import UsageRecord
from studio.providers import registry
from tests.providers_support import running_sim
from tests.render_support import remote_video, running, seed_prices, two_person_drama, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def prices(transactional_db, tmp_path, settings):
    seed_prices()
    yield
    registry.forget()


async def finished(take_id: int) -> Take | None:
    take = await Take.objects.aget(id=take_id)
    return None if take.active else take


async def render_one(drama, scene) -> Take:
    [take] = await sync_to_async(take_enqueue)(drama=drama, scenes=[scene])
    return take


async def test_it_follows_a_slow_job_and_scores_the_vendors_clip(settings):
    async with running_sim(job_s=1.0) as sim:
        remote_video(settings, sim.url)
        drama, _, cast = await sync_to_async(two_person_drama)(seconds=2)
        take = await render_one(drama, cast["first"])
        progress = set()
        async with running():

            async def done():
                current = await Take.objects.aget(id=take.id)
                if current.status == TakeStatus.RENDERING and current.remote_handle:
                    progress.add(round(current.progress, 2))
                return None if current.active else current

            take = await wait_for(done, timeout=30, step=0.02)
        stats = sim.stats.as_dict(arrivals=False)

    assert take.status == TakeStatus.DONE, take.error
    assert take.provider == "openai" and take.model == "sora-2"
    assert len(progress) >= 2  # progress moved while the vendor worked
    assert stats["submissions"] == {take.idempotency_key: 1}
    assert await take.frames.acount() == 5  # 0, 0.5, 1, 1.5 and the last frame
    assert take.verdict == Verdict.ACCEPT and take.score >= 65
    assert take.cost_usd == Decimal("0.2")  # 2 s at $0.10 a second, from the ledger


async def test_it_fails_the_take_when_the_vendor_job_fails(settings):
    async with running_sim() as sim:
        remote_video(settings, sim.url)
        sim.queue_faults("video_create", "fail")
        drama, _, cast = await sync_to_async(two_person_drama)(seconds=2)
        take = await render_one(drama, cast["first"])
        async with running():
            take = await wait_for(lambda: finished(take.id), timeout=20)
        stats = sim.stats.as_dict(arrivals=False)

    assert take.status == TakeStatus.FAILED
    assert "simulated generation failure" in take.error
    job = await Job.objects.aget(id=take.job_id)
    assert job.status == "failed" and job.attempts == 1  # a failed render is not resubmitted
    assert stats["submissions"] == {take.idempotency_key: 1}


async def test_it_rides_out_faults_on_poll_without_submitting_again(settings):
    async with running_sim(job_s=0.3) as sim:
        remote_video(settings, sim.url)
        sim.queue_faults("video_get", "5xx", "429", "malformed", "ok", "5xx")
        drama, _, cast = await sync_to_async(two_person_drama)(seconds=2)
        take = await render_one(drama, cast["first"])
        async with running():
            take = await wait_for(lambda: finished(take.id), timeout=30)
        stats = sim.stats.as_dict(arrivals=False)

    assert take.status == TakeStatus.DONE, take.error
    assert stats["submissions"] == {take.idempotency_key: 1}
    assert stats["jobs_per_key"] == {take.idempotency_key: 1}


async def test_it_parks_takes_while_the_breaker_is_open_and_recovers(settings):
    async with running_sim(job_s=0.2) as sim:
        remote_video(settings, sim.url)
        sim.queue_faults("video_create", "5xx", "5xx")  # two failures open the breaker
        drama, _, cast = await sync_to_async(two_person_drama)(seconds=2)
        take = await render_one(drama, cast["first"])
        seen = set()
        async with running():

            async def done():
                current = await Take.objects.aget(id=take.id)
                seen.add(current.status)
                return None if current.active else current

            take = await wait_for(done, timeout=30, step=0.02)
        stats = sim.stats.as_dict(arrivals=False)

    assert TakeStatus.WAITING in seen  # parked, not failed, while the breaker was open
    assert take.status == TakeStatus.DONE, take.error
    assert stats["jobs_per_key"] == {take.idempotency_key: 1}
    job = await Job.objects.aget(id=take.job_id)
    # Waiting for the breaker spends no attempt; only a 503 that reached the vendor may have.
    assert job.attempts <= 2


async def test_it_refuses_renders_beyond_the_budget(settings):
    async with running_sim() as sim:
        remote_video(settings, sim.url)
        drama, _, cast = await sync_to_async(two_person_drama)(
            seconds=2, budget_usd=Decimal("0.50")
        )
        scenes = [cast["first"], cast["second"], cast["first"]]
        estimate = await sync_to_async(takes_estimate)(drama=drama, scenes=scenes)
        assert estimate.cost_usd == Decimal("0.6") and not estimate.fits
        with pytest.raises(ValidationError) as refused:
            await sync_to_async(take_enqueue)(drama=drama, scenes=scenes)
        assert "only $0.50 of the $0.50 budget is left" in refused.value.messages[0]
        assert not await Take.objects.aexists()

        take = await render_one(drama, cast["first"])  # $0.20 fits; now $0.20 is reserved
        # Meanwhile other work spent most of the budget: the pre-flight check refuses.
        await UsageRecord.objects.acreate(
            provider="openai",
            model="gpt-4.1",
            operation="chat.complete",
            drama_id=drama.id,
            cost_usd=Decimal("0.45"),
        )
        async with running():
            take = await wait_for(lambda: finished(take.id), timeout=20)
        stats = sim.stats.as_dict(arrivals=False)

    assert take.status == TakeStatus.FAILED
    assert take.error.startswith("Over budget: this render needs about $0.20")
    assert stats["submissions"] == {}  # refused before anything was paid for


async def test_it_regenerates_drifted_takes_up_to_the_attempt_limit(settings):
    async with running_sim(drift_rate=1.0) as sim:  # every clip shows a stranger's face
        remote_video(settings, sim.url)
        drama, _, cast = await sync_to_async(two_person_drama)(
            seconds=2, auto_regenerate=True, max_attempts=2
        )
        first = await render_one(drama, cast["first"])
        async with running():

            async def both_finished():
                takes = [t async for t in Take.objects.order_by("number")]
                return len(takes) == 2 and all(not t.active for t in takes) and takes

            first, second = await wait_for(both_finished, timeout=40)
        stats = sim.stats.as_dict(arrivals=False)

    for take in (first, second):
        assert take.status == TakeStatus.DONE and take.verdict == Verdict.REJECT
        assert take.score < 65
    assert first.seed != second.seed and second.created_by_id is None
    assert first.note == "Below the threshold: take 2 queued with a new seed."
    assert second.note == "Not regenerated: 2 attempts is the drama's limit."
    assert sorted(stats["submissions"].values()) == [1, 1]


async def test_an_outage_defers_the_take_without_spending_attempts_then_fails_it_saying_why(
    settings,
):
    settings.PROVIDER_OUTAGE_MAX_S = 3.0
    async with running_sim() as sim:
        remote_video(settings, sim.url)
        sim.queue_faults("video_create", *["5xx"] * 500)  # the vendor is down
        drama, _, cast = await sync_to_async(two_person_drama)(seconds=2)
        take = await render_one(drama, cast["first"])
        waits = []
        async with running():

            async def done():
                current = await Take.objects.aget(id=take.id)
                if current.status == TakeStatus.WAITING:
                    waits.append(current.note)
                return None if current.active else current

            take = await wait_for(done, timeout=30, step=0.05)

    assert waits and waits[0].startswith("Waiting for openai: it is failing, next try in")
    assert take.status == TakeStatus.FAILED
    assert "kept failing" in take.error and "circuit breaker stayed open" in take.error
    job = await Job.objects.aget(id=take.job_id)
    # The deferrals gave their attempts back: only calls that reached the vendor spent one.
    assert job.status == "failed" and job.attempts < job.max_attempts, job.attempts


async def test_cancelling_a_running_render_cancels_its_take_and_the_vendors_job(settings):
    from studio.jobs.services import job_cancel

    async with running_sim(job_s=30.0) as sim:
        remote_video(settings, sim.url)
        drama, _, cast = await sync_to_async(two_person_drama)(seconds=2)
        take = await render_one(drama, cast["first"])
        async with running():

            async def polling():
                current = await Take.objects.aget(id=take.id)
                return current.remote_handle and current.status == TakeStatus.RENDERING

            await wait_for(polling, timeout=30, step=0.02)
            await sync_to_async(job_cancel)(job=await Job.objects.aget(id=take.job_id))
            take = await wait_for(lambda: finished(take.id), timeout=10, step=0.02)
        stats = sim.stats.as_dict(arrivals=False)

    assert (take.status, take.note) == (TakeStatus.CANCELLED, "Cancelled by a user.")
    assert (await Job.objects.aget(id=take.job_id)).status == "cancelled"
    assert stats["requests"].get("video_delete") == 1  # the vendor was told
