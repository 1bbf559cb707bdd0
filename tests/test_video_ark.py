"""The `ark` video adapter (Seedance on BytePlus ModelArk) against the loopback simulator: the
body Ark receives, states, downloads, cancelling, token billing, resubmission, and a take
rendered through the pipeline and priced per token."""

import asyncio
import base64
import io
import os
import subprocess
import sys
import time
from decimal import Decimal

import av
import httpx
import pytest
from asgiref.sync import sync_to_async
from PIL import Image

from dramas.models import TakeStatus, Verdict
from studio.models import Price, UsageRecord
from studio.providers import registry
from studio.providers.base import CastMember, JobHandle, JobState, VideoRequest
from studio.providers.errors import BadRequest
from studio.providers.ledger import DbLedger, MemoryLedger
from studio.providers.sim import ark as sim_ark
from studio.providers.video_ark import ArkConfig, ArkVideo
from studio.providers.video_http import wait_for
from tests.factories import FACES_DIR
from tests.first_frame_support import difference, keyframe, picture, rendered_frame
from tests.providers_support import API_KEY, remote_video_for, running_sim
from tests.render_support import remote_video, render_first_scene, seed_prices

MODEL = "dreamina-seedance-2-0-260128"
ADA = str(FACES_DIR / "grace_hopper.jpg")
MARCUS = str(FACES_DIR / "obama.jpg")


@pytest.fixture
async def sim():
    async with running_sim(api_key=API_KEY) as simulator:
        yield simulator


def ark_for(sim, **config) -> ArkVideo:
    defaults = dict(name="byteplus", base_url=f"{sim.url}/ark", model=MODEL, api_key=API_KEY)
    return remote_video_for(ArkVideo, ArkConfig, **(defaults | config))


def scene(**fields) -> VideoRequest:
    values = dict(
        prompt="She hands him the tape.",
        duration_s=4.2,
        aspect="9:16",
        camera="static",
        cast=(CastMember("Ada", image_path=ADA), CastMember("Marcus", image_path=MARCUS)),
        seed=42,
    )
    return VideoRequest(**(values | fields))


def billed(ledger: MemoryLedger) -> list:
    return [e for e in ledger.entries if e.operation == "video.generate"]


async def test_it_sends_the_prompt_and_references_as_arks_content_list(sim):
    video = ark_for(sim)
    handle = await video.submit(scene(), "take-1")
    body = sim.jobs[handle.id]["body"]
    text, *images = body["content"]
    assert text == {"type": "text", "text": scene().prompt_text()}
    assert [item["role"] for item in images] == ["reference_image", "reference_image"]
    for item in images:
        head, _, data = item["image_url"]["url"].partition(",")
        assert head == "data:image/jpeg;base64" and item["type"] == "image_url"
        assert Image.open(io.BytesIO(base64.b64decode(data))).size == (720, 1280)
    assert body["model"] == MODEL and body["ratio"] == "9:16" and body["resolution"] == "720p"
    assert body["duration"] == 5  # 4.2 s rounded up to Ark's whole seconds
    assert body["generate_audio"] is True and body["seed"] == 42
    assert handle.data == {"seconds": 5.0, "ratio": "9:16", "resolution": "720p"}


async def test_each_model_family_has_its_own_table_unless_the_settings_say(sim):
    seedance2 = ark_for(sim).capabilities
    assert seedance2.max_reference_images == 9 and seedance2.can_cancel and seedance2.lipsync
    assert seedance2.fit_duration(2) == 4 and seedance2.fit_duration(30) == 15
    assert {"9:16", "16:9", "1:1"} <= set(seedance2.aspects)
    pro = ark_for(sim, model="seedance-1-0-pro-250528", resolution="1080p")
    assert pro.capabilities.max_reference_images == 1 and not pro.capabilities.lipsync
    assert pro.capabilities.fit_duration(1) == 2 and pro.resolution == "1080p"
    handle = await pro.submit(scene(), "take-pro")
    body = sim.jobs[handle.id]["body"]
    assert [item.get("role") for item in body["content"][1:]] == ["first_frame"]
    assert "generate_audio" not in body  # the 1.0 models have no sound
    assert ark_for(sim, model="seedance-1-0-lite-t2v-250219").capabilities.max_reference_images == 0
    assert ark_for(sim, resolution="1080p").resolution == "720p"  # not offered on 2.0
    configured = ark_for(sim, durations_s=(5.0, 10.0), max_reference_images=2).capabilities
    assert configured.fit_duration(6) == 10 and configured.max_reference_images == 2


async def test_it_maps_queued_running_and_succeeded(sim):
    sim.config.job_s = 0.3
    video = ark_for(sim)
    handle = await video.submit(scene(), "take-1")
    seen = []
    while not (status := await video.poll(handle)).state.finished:
        seen.append((status.state, status.vendor_status))
        await asyncio.sleep(0.02)
    assert seen[0] == (JobState.QUEUED, "queued")
    assert (JobState.RUNNING, "running") in seen
    assert status.state is JobState.SUCCEEDED and status.progress == 1.0


@pytest.mark.parametrize(("fault", "retryable"), [("fail", True), ("reject", False)])
async def test_it_maps_failed_tasks_and_says_if_retrying_helps(sim, fault, retryable):
    sim.queue_faults("ark_create", fault)
    video = ark_for(sim)
    status = await wait_for(video, await video.submit(scene(), "take-1"), timeout_s=5)
    assert status.state is JobState.FAILED and status.retryable is retryable
    assert status.vendor_status == "failed" and ("not retryable" in status.error) is not retryable


async def test_an_expired_task_fails_retryably_and_says_so(sim):
    sim.config.job_s = 5
    video = ark_for(sim, expires_after_s=0.05)
    handle = await video.submit(scene(), "take-1")
    assert sim.jobs[handle.id]["body"]["execution_expires_after"] == 0.05
    status = await wait_for(video, handle, timeout_s=5)
    assert status.state is JobState.FAILED and status.retryable
    assert status.vendor_status == "expired" and "expired" in status.error
    assert not billed(video.recorder)


async def test_it_fetches_the_clip_from_the_tasks_current_video_url(sim):
    video = ark_for(sim)
    handle = await video.submit(scene(), "take-1")
    await wait_for(video, handle, timeout_s=5)
    data = await video.fetch(handle)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert float(stream.duration * stream.time_base) == pytest.approx(5.0, abs=0.1)
        assert next(container.decode(video=0)).to_image().size == (stream.width, stream.height)
    assert sim.stats.requests["ark_file"] == 1


async def test_a_storage_link_on_another_host_gets_no_key():
    # The video_url names "localhost", not the API's 127.0.0.1; signed links need no key.
    async with running_sim(redirect_outputs=True) as sim:
        video = ark_for(sim)
        handle = await video.submit(scene(), "take-1")
        await wait_for(video, handle, timeout_s=5)
        assert (await video.fetch(handle))[4:8] == b"ftyp"
    assert sim.stats.requests["ark_file"] == 1 and sim.stats.keyed_downloads == 0


async def test_an_expired_link_fails_the_download_plainly(sim):
    video = ark_for(sim)
    handle = await video.submit(scene(), "take-1")
    await wait_for(video, handle, timeout_s=5)
    sim.queue_faults("ark_file", "status:403")
    with pytest.raises(BadRequest) as raised:
        await video.fetch(handle)
    assert "no longer works" in str(raised.value) and not raised.value.retryable


@pytest.mark.parametrize("route", ["ark_create", "ark_get", "ark_file"])
@pytest.mark.parametrize("fault", ["5xx", "429", "drop", "malformed"])
async def test_it_rides_out_faults_on_every_route(sim, route, fault):
    video = ark_for(sim)
    sim.queue_faults(route, fault)
    handle = await video.submit(scene(duration_s=1), "take-1")
    await wait_for(video, handle, timeout_s=5)
    assert (await video.fetch(handle))[4:8] == b"ftyp"
    assert sim.stats.jobs_per_key["take-1"] == 1


async def test_it_cancels_a_queued_task_but_not_a_running_one(sim):
    sim.config.job_s = 5
    video = ark_for(sim)
    queued = await video.submit(scene(), "take-1")
    assert await video.cancel(queued) is True
    status = await video.poll(queued)
    assert status.state is JobState.CANCELLED and status.vendor_status == "cancelled"
    running_task = await video.submit(scene(), "take-2")
    sim.jobs[running_task.id]["created"] = time.monotonic() - 2.5  # half way through
    assert await video.cancel(running_task) is False  # Ark lets it run (and bill)
    assert (await video.poll(running_task)).state is JobState.RUNNING
    await video.cancel(queued)  # a finished task is deleted: then it is gone
    assert await video.cancel(queued) is False
    assert (await video.poll(queued)).vendor_status == "missing"


async def test_it_books_the_completion_tokens_as_output_tokens(sim):
    ledger = MemoryLedger()
    video = ark_for(sim, ledger=ledger)
    handle = await video.submit(scene(), "take-1")
    await wait_for(video, handle, timeout_s=5)
    await video.poll(handle)  # seen finished twice: the ledger keeps one bill per request id
    await video.fetch(handle)
    reported = (await video._task(handle))[0]["usage"]["completion_tokens"]
    assert reported == 720 * 1280 * 24 * 5 // 1024  # 5 s at 720p, 24 fps
    entries = billed(ledger)
    assert len(entries) == 2
    for entry in entries:
        assert entry.usage.output_tokens == reported and entry.units == 0
        assert entry.once_per_request and entry.request_id == handle.id and entry.kind == "video"
    # The estimate for the budget bills what the vendor then reports.
    usage, units = video.estimated_usage(4.2)
    assert usage.output_tokens == reported and units == 0.0


async def test_a_success_without_usage_books_the_estimate(sim, monkeypatch):
    answer = sim_ark._task_json
    monkeypatch.setattr(sim_ark, "_task_json", lambda *args: {**answer(*args), "usage": None})
    ledger = MemoryLedger()
    video = ark_for(sim, ledger=ledger)
    await wait_for(video, await video.submit(scene(aspect="1:1"), "take-1"), timeout_s=5)
    [entry] = billed(ledger)
    assert entry.usage.output_tokens == 960 * 960 * 24 * 5 // 1024  # never a bill of 0


@pytest.mark.django_db(transaction=True)
async def test_a_task_polled_twice_is_billed_once_at_the_token_price(sim):
    await Price.objects.acreate(
        provider="byteplus",
        model=MODEL,
        kind="video",
        output_per_mtok=Decimal("2.8"),
        effective_date="2000-01-01",
    )
    video = ark_for(sim, ledger=DbLedger())
    handle = await video.submit(scene(), "take-1")
    await wait_for(video, handle, timeout_s=5)
    await video.poll(handle)
    [record] = [r async for r in UsageRecord.objects.filter(operation="video.generate")]
    assert record.output_tokens == 108_000 and record.request_id == handle.id
    assert record.cost_usd == Decimal("0.3024")  # 108,000 tokens at $2.8 a million


async def test_a_resubmission_with_the_same_key_makes_one_vendor_task(sim):
    sim.queue_faults("ark_create", "lost_response")
    video = ark_for(sim)
    handle = await video.submit(scene(), "take-7")
    again = await video.submit(scene(), "take-7")
    assert again.id == handle.id
    assert sim.stats.submissions["take-7"] == 3  # a lost answer, its retry, a resubmission...
    assert sim.stats.jobs_per_key["take-7"] == 1  # ...one task at the vendor
    assert len(sim.jobs) == 1


async def test_it_refuses_a_handle_of_another_provider_and_unknown_ratios(sim):
    video = ark_for(sim)
    with pytest.raises(BadRequest):
        await video.poll(JobHandle(provider="openai", id="abc"))
    with pytest.raises(BadRequest):
        await video.submit(scene(aspect="2:1"), "take-1")
    assert sim.stats.requests["ark_create"] == 0


@pytest.mark.django_db(transaction=True)
async def test_a_take_renders_through_ark_and_costs_its_tokens(settings):
    await sync_to_async(seed_prices)()
    await Price.objects.acreate(
        provider="byteplus",
        model=MODEL,
        kind="video",
        output_per_mtok=Decimal("2.8"),
        effective_date="2000-01-01",
    )
    try:
        async with running_sim(job_s=0.3) as sim:
            remote_video(
                settings,
                sim.url,
                api="ark",
                base_url=f"{sim.url}/ark",
                model=MODEL,
                provider="byteplus",
                api_key="k",
                durations_s=[],
                max_reference_images=0,
            )
            take = await render_first_scene()
            [job] = sim.jobs.values()
    finally:
        registry.forget()

    assert take.status == TakeStatus.DONE, take.error
    assert take.provider == "byteplus" and take.model == MODEL
    assert job["seconds"] == 4.0  # 2 s rounded up to Seedance 2.0's shortest clip
    assert [item["role"] for item in job["body"]["content"][1:]] == ["reference_image"]
    assert take.verdict == Verdict.ACCEPT and take.score >= 65
    assert await take.frames.acount() >= 5
    tokens = 720 * 1280 * 24 * 4 // 1024
    [record] = [r async for r in UsageRecord.objects.filter(operation="video.generate")]
    assert record.output_tokens == tokens and record.take_id == take.id
    assert take.cost_usd == Decimal(tokens) * Decimal("2.8") / 1_000_000


async def test_the_resolution_and_sound_settings_reach_arks_body(sim, settings):
    settings.PROVIDER_VIDEO = {
        **settings.PROVIDER_VIDEO,
        "api": "ark",
        "base_url": f"{sim.url}/ark",
        "model": "seedance-1-0-pro-250528",
        "provider": "byteplus",
        "api_key": API_KEY,
        "resolution": "1080p",
        "generate_audio": False,
        "durations_s": [],
        "max_reference_images": 0,
    }
    registry.forget()
    try:
        pro = registry.video()
        handle = await pro.submit(scene(), "take-1080")
        body = sim.jobs[handle.id]["body"]
        assert body["resolution"] == "1080p" and handle.data["resolution"] == "1080p"
        settings.PROVIDER_VIDEO = {
            **settings.PROVIDER_VIDEO,
            "model": MODEL,
            "resolution": "480p",
        }
        registry.forget()
        quiet = registry.video()
        assert not quiet.capabilities.native_audio  # the producer turned Seedance's sound off
        body = sim.jobs[(await quiet.submit(scene(), "take-480")).id]["body"]
        assert body["resolution"] == "480p" and body["generate_audio"] is False
    finally:
        registry.forget()


def test_an_unknown_resolution_is_refused_at_start():
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**os.environ, "VIDEO_RESOLUTION": "4k"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "VIDEO_RESOLUTION must be 480p, 720p or 1080p" in (
        result.stderr
    )


# --- first frame (the scene's keyframe) --------------------------------------------------------


async def test_the_keyframe_goes_as_the_first_frame_alone_and_the_clip_starts_from_it(sim):
    sim.config.drift_rate = 1.0  # a clip from the references would show a stranger
    video = ark_for(sim)
    handle = await video.submit(scene(first_frame=keyframe((1024, 1024))), "take-1")
    job = sim.jobs[handle.id]
    text, *images = job["body"]["content"]
    assert text["type"] == "text" and [item["role"] for item in images] == ["first_frame"]
    head, _, data = images[0]["image_url"]["url"].partition(",")
    assert head == "data:image/jpeg;base64"
    assert difference(picture(base64.b64decode(data)), picture(keyframe())) < 12
    assert job["first_frame"] is True and job["first_frame_size"] == (720, 1280)
    frame = await rendered_frame(video, handle)
    assert job["drift"] is False and difference(frame, picture(keyframe())) < 12


async def test_every_line_but_text_only_lite_takes_a_first_frame(sim):
    for model in (MODEL, "seedance-1-5-pro-251215", "seedance-1-0-pro-250528"):
        assert ark_for(sim, model=model).capabilities.first_frame, model
    assert ark_for(sim, model="seedance-1-0-lite-i2v-250428").capabilities.first_frame
    text_only = ark_for(sim, model="seedance-1-0-lite-t2v-250219")
    assert not text_only.capabilities.first_frame
    handle = await text_only.submit(scene(first_frame=keyframe()), "take-t2v")
    job = sim.jobs[handle.id]
    assert len(job["body"]["content"]) == 1 and job["first_frame"] is False


async def test_the_simulator_refuses_a_first_frame_beside_references_as_ark_does(sim):
    image = "data:image/png;base64," + base64.b64encode(keyframe((64, 64))).decode()
    body = {
        "model": MODEL,
        "content": [
            {"type": "text", "text": "She hands him the tape."},
            {"type": "image_url", "image_url": {"url": image}, "role": "first_frame"},
            {"type": "image_url", "image_url": {"url": image}, "role": "reference_image"},
        ],
    }
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{sim.url}/ark/contents/generations/tasks",
            json=body,
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
    assert response.status_code == 400
    assert "cannot be mixed with reference media" in response.json()["error"]["message"]
