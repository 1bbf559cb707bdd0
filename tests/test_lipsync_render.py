"""Lip sync runs in renders: the take's video and its dialog track go to the lip-sync service
(the simulator's /v2/generate), the synced video replaces the take's video with the service's
render kept beside it, the frames are scored on the synced video, and the ledger bills one call.
Asserted on decoded media (PyAV)."""

from decimal import Decimal

import av
import numpy as np
import pytest
from asgiref.sync import sync_to_async

from dramas.models import Frame, SpeechOwner, Take, TakeStatus, Verdict
from dramas.takes import take_enqueue, take_stage_costs
from studio.models import Price, UsageRecord
from studio.providers import registry
from studio.providers.audio import decode_mono
from tests.factories import create_line
from tests.providers_support import API_KEY, running_sim
from tests.render_support import (
    offline_video,
    running,
    seed_prices,
    take_page,
    two_person_drama,
    wait_for,
)

LIPSYNC_PER_S = Decimal("0.05")


@pytest.fixture
def offline(settings, tmp_path, transactional_db):
    offline_video(settings, tmp_path)
    seed_prices()
    Price.objects.create(
        provider="sync",
        model="lipsync-2",
        kind="lipsync",
        per_second=LIPSYNC_PER_S,
        effective_date="2000-01-01",
    )
    registry.forget()
    yield settings
    registry.forget()


def lipsync_at(settings, sim) -> None:
    settings.PROVIDER_LIPSYNC = {
        **settings.PROVIDER_LIPSYNC,
        "base_url": f"{sim.url}/v2",
        "provider": "sync",
        "model": "lipsync-2",
        "api_key": API_KEY,
        "poll_s": 0.02,
        "timeout_s": 10,
    }
    registry.forget()


def speaking_scene():
    drama, _chapter, cast = two_person_drama(seconds=5.0)
    scene = cast["first"]
    create_line(scene=scene, speaker=cast["marcus"], line="Say it again, slowly.")
    return drama, scene


async def render(drama, scene, *, timeout: float = 90) -> Take:
    [take] = await sync_to_async(take_enqueue)(drama=drama, scenes=[scene])

    async def finished():
        row = await Take.objects.aget(id=take.id)
        return not row.active and row

    async with running():
        return await wait_for(finished, timeout=timeout)


def sound_of(path: str) -> np.ndarray:
    with open(path, "rb") as handle:
        samples, _rate = decode_mono(handle.read(), sample_rate=48_000)
    return samples


def video_frames(path: str) -> int:
    with av.open(path) as container:
        return sum(1 for _ in container.decode(video=0))


async def test_lip_sync_replaces_the_video_and_bills_one_call(offline):
    drama, scene = await sync_to_async(speaking_scene)()
    async with running_sim(job_s=0.05) as sim:
        lipsync_at(offline, sim)
        take = await render(drama, scene)

        assert take.status == TakeStatus.DONE, (take.error, take.note)
        assert sim.stats.requests["lipsync_create"] == 1
    assert take.speech_owner == SpeechOwner.STUDIO
    assert take.lipsync_note.startswith("Lip synced by sync (lipsync-2)")
    # The synced video is the take's; the service's render is kept, whole.
    assert take.unsynced_video and take.unsynced_video.name != take.video.name
    assert video_frames(take.video.path) == video_frames(take.unsynced_video.path)
    # What the service sent back carries the studio's dialog track: the same sound, in time.
    synced, unsynced = sound_of(take.video.path), sound_of(take.unsynced_video.path)
    assert len(synced) == pytest.approx(len(unsynced), abs=48_000 * 0.05)
    entry = take.dialog_track[-1]
    start, end = (round(entry[key] * 48_000) for key in ("start_s", "end_s"))
    assert np.sqrt(np.mean(synced[start:end] ** 2)) > 0.02
    assert np.corrcoef(synced[start:end], unsynced[start:end])[0, 1] > 0.95
    # Frames were sampled from the synced video and scored.
    frames = [f async for f in Frame.objects.filter(take=take)]
    assert frames and all(f.scores for f in frames)
    assert take.verdict == Verdict.ACCEPT
    # One bill for the call, priced per second of output, in the take's cost.
    calls = [r async for r in UsageRecord.objects.filter(take_id=take.id, provider="sync")]
    bills = [r for r in calls if r.operation == "lipsync.generate"]
    assert len(bills) == 1
    assert all(r.cost_usd == 0 for r in calls if r.operation != "lipsync.generate")
    assert bills[0].cost_usd == pytest.approx(
        LIPSYNC_PER_S * Decimal(bills[0].units), abs=Decimal("1e-6")
    )
    assert bills[0].units == pytest.approx(scene.duration_s, abs=0.2)
    assert take.cost_usd == bills[0].cost_usd  # the offline video and voice are free

    # The take page shows each stage's cost.
    stages = await sync_to_async(take_stage_costs)(take_id=take.id)
    assert [(s.stage, s.provider) for s in stages] == [
        ("Speech", "local"),
        ("Video", "local"),
        ("Lip sync", "sync"),
    ]
    assert stages[2].cost_usd == bills[0].cost_usd and stages[0].cost_usd == 0
    page = await sync_to_async(take_page)(drama, take)
    costs = page[page.index('aria-label="Costs"') :]
    assert "Lip sync" in costs and f"${bills[0].cost_usd:.4f}" in costs


async def test_a_rejected_sync_leaves_the_take_unsynced_and_says_why(offline):
    drama, scene = await sync_to_async(speaking_scene)()
    async with running_sim(job_s=0.05) as sim:
        lipsync_at(offline, sim)
        sim.queue_faults("lipsync_create", "reject")
        take = await render(drama, scene)
        assert sim.stats.requests["lipsync_create"] == 1  # a refusal is not sent again

    assert take.status == TakeStatus.DONE, (take.error, take.note)
    assert "Lip sync failed at sync" in take.lipsync_note
    assert "no face found" in take.lipsync_note
    assert not take.unsynced_video  # the video is the service's render, with the dialog track
    assert np.abs(sound_of(take.video.path)).max() > 0.1
    generated = UsageRecord.objects.filter(take_id=take.id, operation="lipsync.generate")
    assert not await generated.aexists()


async def test_a_failed_sync_is_tried_once_more_as_a_new_job(offline):
    drama, scene = await sync_to_async(speaking_scene)()
    async with running_sim(job_s=0.05) as sim:
        lipsync_at(offline, sim)
        sim.queue_faults("lipsync_create", "fail")
        take = await render(drama, scene)
        keys = [key for key in sim.stats.jobs_per_key if ":lipsync:" in key]

    assert take.status == TakeStatus.DONE, (take.error, take.note)
    assert sorted(key.rsplit(":", 1)[1] for key in keys) == ["1", "2"]
    assert take.lipsync_note.startswith("Lip synced by")
    generated = UsageRecord.objects.filter(take_id=take.id, operation="lipsync.generate")
    assert await generated.acount() == 1


async def test_a_silent_take_is_not_sent_to_lip_sync(offline):
    drama, _chapter, cast = await sync_to_async(two_person_drama)(seconds=3.0)
    async with running_sim(job_s=0.05) as sim:
        lipsync_at(offline, sim)
        take = await render(drama, cast["second"])
        assert sim.stats.requests["lipsync_create"] == 0

    assert take.status == TakeStatus.DONE, (take.error, take.note)
    assert take.lipsync_note.startswith("Skipped: this take has no dialog track")


async def test_the_verdict_is_the_synced_videos(offline):
    """Lip sync can change a face: the simulator's drift makes the synced video another
    person's, and the take fails its face check although the service's render was fine."""
    drama, scene = await sync_to_async(speaking_scene)()
    async with running_sim(job_s=0.05, drift_rate=1.0) as sim:
        lipsync_at(offline, sim)
        take = await render(drama, scene)

    assert take.status == TakeStatus.DONE, (take.error, take.note)
    assert take.unsynced_video and take.verdict == Verdict.REJECT


async def test_a_worker_stopped_mid_sync_resumes_the_same_job(offline):
    """The lip-sync job's handle is checkpointed before polling: the next worker polls it, and
    the service makes (and bills) one job."""
    from studio.jobs.models import Job

    drama, scene = await sync_to_async(speaking_scene)()
    async with running_sim(job_s=1.5) as sim:
        lipsync_at(offline, sim)
        [take] = await sync_to_async(take_enqueue)(drama=drama, scenes=[scene])

        async def syncing():
            job = await Job.objects.filter(id=(await Take.objects.aget(id=take.id)).job_id).afirst()
            return job and (job.checkpoint or {}).get("lipsync_handle")

        async with running():
            await wait_for(syncing, timeout=60)
        # Stopped without grace while the service is still syncing; another worker takes over.
        assert (await Take.objects.aget(id=take.id)).status == TakeStatus.LIPSYNC

        async def finished():
            row = await Take.objects.aget(id=take.id)
            return not row.active and row

        async with running():
            take = await wait_for(finished, timeout=60)
        assert sim.stats.requests["lipsync_create"] == 1

    assert take.status == TakeStatus.DONE, (take.error, take.note)
    assert take.lipsync_note.startswith("Lip synced by")
    generated = UsageRecord.objects.filter(take_id=take.id, operation="lipsync.generate")
    assert await generated.acount() == 1
