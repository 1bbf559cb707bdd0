"""The fal queue adapter against the loopback simulator, and one take rendered through it."""

import asyncio
import base64
import io
from decimal import Decimal

import av
import pytest
from asgiref.sync import sync_to_async

from studio.providers.base import CastMember, DialogCue, JobState, VideoRequest
from studio.providers.errors import BadRequest
from studio.providers.ledger import MemoryLedger
from studio.providers.video_fal import FALLBACK, MODELS, FalConfig, FalVideo
from studio.providers.video_http import wait_for
from tests.factories import FACES_DIR
from tests.first_frame_support import difference, keyframe, picture, rendered_frame
from tests.providers_support import remote_video_for, running_sim

KLING = "fal-ai/kling-video/v2.1/standard/image-to-video"
VEO = "fal-ai/veo3/fast"
WAN = "fal-ai/wan-i2v"
FACE = str(FACES_DIR / "grace_hopper.jpg")


@pytest.fixture
async def sim():
    async with running_sim() as simulator:
        yield simulator


def fal_for(sim, *, model: str = KLING, **config) -> FalVideo:
    defaults = dict(name="fal", base_url=f"{sim.url}/fal", model=model, api_key="k", timeout_s=2.0)
    return remote_video_for(FalVideo, FalConfig, **(defaults | config))


def scene(**fields) -> VideoRequest:
    values = dict(
        prompt="She turns to the window as the rain starts.",
        duration_s=3.0,
        aspect="9:16",
        cast=(CastMember("Ada", image_path=FACE),),
        seed=7,
    )
    return VideoRequest(**(values | fields))


def only_job(sim) -> dict:
    [job] = [job for job in sim.jobs.values() if job.get("api") == "fal"]
    return job


async def test_kling_gets_its_own_inputs_and_the_key_in_fals_scheme(sim):
    video = fal_for(sim)
    handle = await video.submit(scene(duration_s=3.0), "take-1")
    job = only_job(sim)

    assert job["model"] == KLING
    assert job["authorization"] == "Key k"
    sent = job["input"]
    assert sent["duration"] == "5"  # 3 s asked, Kling renders "5" or "10"
    assert sent["prompt"].startswith("She turns to the window")
    assert sent["image_url"].startswith("data:image/jpeg;base64,")
    assert base64.b64decode(sent["image_url"].split(",", 1)[1])[:2] == b"\xff\xd8"
    assert "negative_prompt" in sent and "aspect_ratio" not in sent and "seed" not in sent
    assert handle.id == job["id"] and handle.data["seconds"] == 5.0
    assert handle.data["status_url"].endswith(f"/fal/requests/{handle.id}/status")
    assert handle.data["cancel_url"].endswith(f"/fal/requests/{handle.id}/cancel")
    assert video.capabilities.durations_s == (5.0, 10.0)
    assert video.capabilities.max_reference_images == 1
    assert video.estimated_usage(7.0)[1] == 10.0


async def test_veo_text_to_video_gets_other_names_and_a_suffixed_duration(sim):
    video = fal_for(sim, model=VEO)
    spoken = scene(duration_s=5.0, dialog=(DialogCue("Ada", "It is raining."),))
    await video.submit(spoken, "take-veo")
    sent = only_job(sim)["input"]

    assert sent["duration"] == "6s"  # the next longer of 4s, 6s and 8s
    assert sent["aspect_ratio"] == "9:16" and sent["seed"] == 7
    assert sent["generate_audio"] is True  # the model voices the line itself
    assert "image_url" not in sent  # text-to-video: the cast is in the prompt only
    assert video.native_audio and video.capabilities.max_reference_images == 0


async def test_wan_writes_its_length_as_frames_and_is_billed_per_request(sim):
    ledger = MemoryLedger()
    video = fal_for(sim, model=WAN, ledger=ledger)
    handle = await video.submit(scene(duration_s=2.0), "take-wan")
    sent = only_job(sim)["input"]
    assert (sent["num_frames"], sent["frames_per_second"]) == (81, 16)
    assert sent["aspect_ratio"] == "9:16" and sent["resolution"] == "720p"

    assert (await wait_for(video, handle, timeout_s=5)).state is JobState.SUCCEEDED
    [booked] = [e for e in ledger.entries if e.operation == "video.generate"]
    assert (booked.units, booked.requests) == (5.0, 1)
    assert MODELS[WAN].per_request


async def test_settings_override_the_table_and_unknown_ids_fall_back(sim):
    video = fal_for(sim, durations_s=(4.0, 8.0), max_reference_images=3)
    assert video.capabilities.durations_s == (4.0, 8.0)
    assert video.capabilities.max_reference_images == 1  # one image_url carries one image

    other = fal_for(sim, model="someone/new-video-model")
    assert other.info is FALLBACK
    await other.submit(scene(duration_s=8.0), "take-other")
    job = only_job(sim)
    assert job["model"] == "someone/new-video-model"
    assert set(job["input"]) == {"prompt", "image_url", "duration"}
    assert job["input"]["duration"] == "10"


async def test_an_image_to_video_model_refuses_a_shot_without_a_reference(sim):
    with pytest.raises(BadRequest, match="reference image"):
        await fal_for(sim).submit(scene(cast=()), "take-empty")
    with pytest.raises(BadRequest, match="aspect"):
        await fal_for(sim, model="fal-ai/minimax/hailuo-02/standard/text-to-video").submit(
            scene(), "take-vertical"
        )
    assert sim.stats.requests["fal_create"] == 0


async def test_status_maps_the_queue_position_then_progress_then_completion():
    async with running_sim(job_s=1.0) as sim:
        video = fal_for(sim)
        handle = await video.submit(scene(), "take-queue")
        seen = []
        while True:
            status = await video.poll(handle)
            seen.append(status)
            if status.state.finished:
                break
            await asyncio.sleep(0.03)

    queued = [s for s in seen if s.state is JobState.QUEUED]
    running = [s for s in seen if s.state is JobState.RUNNING]
    positions = [int(s.vendor_status.split("position ")[1].rstrip(")")) for s in queued]
    assert queued and all(s.progress == 0 for s in queued)
    assert positions[0] == 3 and positions == sorted(positions, reverse=True)
    assert queued[0].vendor_status == "in queue (position 3)"
    progress = [s.progress for s in running]
    assert running and progress == sorted(progress) and all(0 <= p < 1 for p in progress)
    assert all(s.vendor_status == "in progress" for s in running)
    assert seen[-1].state is JobState.SUCCEEDED and seen[-1].progress == 1.0


async def test_the_result_is_fetched_and_decodes_as_video_without_the_key(sim):
    video = fal_for(sim)
    handle = await video.submit(scene(), "take-fetch")
    assert (await wait_for(video, handle, timeout_s=5)).state is JobState.SUCCEEDED
    data = await video.fetch(handle)

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert float(container.duration or 0) / 1_000_000 == pytest.approx(5.0, abs=0.5)
    assert sim.stats.requests["fal_file"] == 1
    assert sim.stats.keyed_downloads == 0  # the file host is not the queue's host


async def test_it_is_billed_once_however_often_it_is_polled(sim):
    ledger = MemoryLedger()
    video = fal_for(sim, ledger=ledger)
    handle = await video.submit(scene(), "take-bill")
    await wait_for(video, handle, timeout_s=5)
    for _ in range(3):
        assert (await video.poll(handle)).state is JobState.SUCCEEDED

    booked = [e for e in ledger.entries if e.operation == "video.generate"]
    assert len(booked) == 4  # each poll offers it; the ledger keeps one per request id
    assert all(e.once_per_request and e.request_id == handle.id for e in booked)
    billed = {(e.units, e.provider, e.model, e.kind) for e in booked}
    assert billed == {(5.0, "fal", KLING, "video")}


async def test_a_failed_generation_is_a_failed_job_and_not_billed(sim):
    ledger = MemoryLedger()
    video = fal_for(sim, ledger=ledger)
    sim.queue_faults("fal_create", "fail", "reject")
    failed = await video.submit(scene(), "take-fail")
    rejected = await video.submit(scene(), "take-reject")

    status = await wait_for(video, failed, timeout_s=5)
    assert status.state is JobState.FAILED and status.retryable
    assert "simulated generation failure" in status.error
    status = await wait_for(video, rejected, timeout_s=5)
    assert status.state is JobState.FAILED and not status.retryable
    assert "content policy" in status.error
    assert not [e for e in ledger.entries if e.operation == "video.generate"]


async def test_cancel_goes_to_the_cancel_url_while_queued():
    async with running_sim(job_s=5.0) as sim:
        video = fal_for(sim)
        handle = await video.submit(scene(), "take-cancel")
        assert await video.cancel(handle) is True
        status = await video.poll(handle)
        job = only_job(sim)

        assert sim.stats.requests["fal_cancel"] == 1 and job["cancelled"]
        assert status.state is JobState.CANCELLED

    async with running_sim(job_s=0.05) as sim:
        video = fal_for(sim)
        handle = await video.submit(scene(), "take-late")
        await wait_for(video, handle, timeout_s=5)
        assert await video.cancel(handle) is False  # fal cancels queued requests only


async def test_a_resubmission_with_the_same_key_makes_one_vendor_job(sim):
    video = fal_for(sim)
    sim.queue_faults("fal_create", "lost_response")  # queued, but the answer never came
    first = await video.submit(scene(), "take-same")
    again = await fal_for(sim).submit(scene(), "take-same")

    assert first.id == again.id
    assert sim.stats.submissions["take-same"] == 3
    assert sim.stats.jobs_per_key["take-same"] == 1
    assert len([j for j in sim.jobs.values() if j.get("api") == "fal"]) == 1


@pytest.mark.django_db(transaction=True)
async def test_a_take_renders_through_fal_and_is_done_scored_and_billed(settings):
    from dramas.models import TakeStatus
    from studio.models import Price
    from studio.providers import registry
    from tests.render_support import remote_video, render_first_scene, seed_prices

    await sync_to_async(seed_prices)()
    await Price.objects.acreate(
        provider="fal",
        model=KLING,
        kind="video",
        per_second=Decimal("0.05"),
        source="test",
        effective_date="2000-01-01",
    )
    async with running_sim() as sim:
        remote_video(
            settings,
            sim.url,
            api="fal",
            base_url=f"{sim.url}/fal",
            model=KLING,
            provider="fal",
            api_key="k",
            durations_s=[],
            max_reference_images=0,
        )
        try:
            take = await render_first_scene()
        finally:
            registry.forget()
        job = only_job(sim)

    assert take.status == TakeStatus.DONE, take.error
    assert take.provider == "fal" and take.model == KLING
    assert job["authorization"] == "Key k" and job["input"]["duration"] == "5"
    assert take.score is not None and await take.frames.acount() > 0
    assert take.cost_usd == Decimal("0.25")  # 5 s at $0.05 a second, booked once


# --- first frame (the scene's keyframe) --------------------------------------------------------


def sent_image(value: str):
    head, _, data = value.partition(",")
    assert head == "data:image/jpeg;base64"
    return picture(base64.b64decode(data))


@pytest.mark.parametrize("model", [KLING, WAN, "fal-ai/ltx-2/image-to-video"])
async def test_the_keyframe_takes_the_place_of_the_face_in_the_models_image_input(sim, model):
    video = fal_for(sim, model=model)
    assert video.capabilities.first_frame
    # No cast needed: an image-to-video model animates the keyframe.
    await video.submit(scene(cast=(), first_frame=keyframe((1024, 1024))), "take-1")
    job = only_job(sim)
    sent = sent_image(job["input"][MODELS[model].image])
    assert difference(sent, picture(keyframe())) < 12
    assert job["first_frame"] is True and job["first_frame_size"] == (720, 1280)


async def test_a_clip_from_the_keyframe_starts_from_it_and_does_not_drift(sim):
    sim.config.drift_rate = 1.0
    video = fal_for(sim)
    handle = await video.submit(scene(first_frame=keyframe()), "take-1")
    frame = await rendered_frame(video, handle)
    assert only_job(sim)["drift"] is False and difference(frame, picture(keyframe())) < 12


@pytest.mark.parametrize("model", [VEO, "fal-ai/veo3.1/reference-to-video"])
async def test_models_without_a_start_image_ignore_the_keyframe(sim, model):
    video = fal_for(sim, model=model)
    assert not video.capabilities.first_frame
    await video.submit(scene(first_frame=keyframe()), "take-1")
    job = only_job(sim)
    assert job["first_frame"] is False
    if MODELS[model].image:  # reference-to-video: the cast's faces, as before
        [reference] = job["input"]["image_urls"]
        assert difference(sent_image(reference), picture(keyframe())) > 40
    else:
        assert not any(name in job["input"] for name in ("image_url", "image_urls"))
