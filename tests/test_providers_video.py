import asyncio
import io
import random

import av
import numpy as np
import pytest
from PIL import Image

from studio.providers.base import CastMember, JobHandle, JobState, VideoRequest
from studio.providers.errors import BadRequest, MalformedResponse
from studio.providers.ledger import MemoryLedger
from studio.providers.sim.jobs import STRANGER
from studio.providers.sim.server import Simulator
from studio.providers.sim.state import SimConfig
from studio.providers.video_http import wait_for
from tests.factories import FACES_DIR
from tests.first_frame_support import difference, keyframe, picture, rendered_frame
from tests.providers_support import fast_guard, running_sim, video_for


@pytest.fixture
async def sim():
    async with running_sim() as simulator:
        yield simulator


FACE = str(FACES_DIR / "grace_hopper.jpg")


def scene(**fields) -> VideoRequest:
    values = dict(
        prompt="She turns to the window as the rain starts.",
        duration_s=3.0,
        aspect="9:16",
        camera="slow push-in",
        cast=(CastMember("Ada", image_path=FACE),),
    )
    return VideoRequest(**(values | fields))


def first_frame(data: bytes) -> Image.Image:
    with av.open(io.BytesIO(data)) as container:
        return next(container.decode(video=0)).to_image()


async def test_it_submits_polls_and_fetches_a_real_mp4(sim):
    ledger = MemoryLedger()
    video = video_for(sim, ledger=ledger)
    handle = await video.submit(scene(), "take-1")
    job = sim.jobs[handle.id]
    assert job["seconds"] == 4.0  # 3 s fits the vendor's 4 s
    assert job["size"] == (720, 1280) and "Camera: slow push-in." in job["prompt"]
    assert Image.open(io.BytesIO(job["reference"])).size == (720, 1280)
    status = await wait_for(video, handle, timeout_s=5)
    assert status.state is JobState.SUCCEEDED and status.progress == 1.0
    data = await video.fetch(handle)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (360, 640)  # the simulator's small copy
        assert float(stream.duration * stream.time_base) == pytest.approx(4.0, abs=0.1)
    operations = [e.operation for e in ledger.entries]
    assert operations[0] == "video.submit" and operations[-1] == "video.fetch"
    [billed] = [e for e in ledger.entries if e.operation == "video.generate"]
    assert billed.units == 4.0 and billed.once_per_request and billed.request_id == handle.id


async def test_it_reports_queued_and_running_states_with_progress(sim):
    sim.config.job_s = 0.3
    video = video_for(sim)
    handle = await video.submit(scene(), "take-1")
    states = []
    while not (status := await video.poll(handle)).state.finished:
        states.append((status.state, status.progress))
        await asyncio.sleep(0.02)
    assert states[0] == (JobState.QUEUED, 0.0)
    running = [progress for state, progress in states if state is JobState.RUNNING]
    assert running and running == sorted(running) and 0 < running[-1] < 1


async def test_it_resumes_from_a_stored_handle(sim):
    handle = await video_for(sim).submit(scene(), "take-1")
    stored = handle.to_json()
    resumed = JobHandle.from_json(stored)
    assert resumed == handle
    fresh = video_for(sim)  # a restarted worker: new adapter, same handle
    assert (await wait_for(fresh, resumed, timeout_s=5)).state is JobState.SUCCEEDED
    assert sim.stats.submissions["take-1"] == 1


async def test_it_never_creates_a_second_job_when_a_response_is_lost(sim):
    sim.queue_faults("video_create", "lost_response", "hang")
    handle = await video_for(sim).submit(scene(), "take-7")
    assert sim.stats.submissions["take-7"] == 3  # three tries with one key...
    assert sim.stats.jobs_per_key["take-7"] == 1  # ...one job at the vendor
    assert handle.id == next(iter(sim.jobs))


@pytest.mark.parametrize("route", ["video_create", "video_get", "video_content"])
@pytest.mark.parametrize("fault", ["5xx", "429", "drop", "hang", "malformed"])
async def test_it_rides_out_every_fault_on_every_route(sim, route, fault):
    video = video_for(sim)
    sim.queue_faults(route, fault)
    handle = await video.submit(scene(duration_s=1), "take-1")
    await wait_for(video, handle, timeout_s=5)
    data = await video.fetch(handle)
    assert data[4:8] == b"ftyp"
    assert sim.stats.statuses[route]["200"] >= 1
    assert sim.stats.jobs_per_key["take-1"] == 1


@pytest.mark.parametrize(("fault", "retryable"), [("fail", True), ("reject", False)])
async def test_it_maps_failed_jobs_and_says_if_retrying_helps(sim, fault, retryable):
    sim.queue_faults("video_create", fault)
    video = video_for(sim)
    status = await wait_for(video, await video.submit(scene(), "take-1"), timeout_s=5)
    assert status.state is JobState.FAILED and status.retryable is retryable
    assert ("not retryable" in status.error) is not retryable


async def test_it_cancels_and_then_reports_the_job_gone(sim):
    sim.config.job_s = 5
    video = video_for(sim)
    handle = await video.submit(scene(), "take-1")
    assert await video.cancel(handle) is True
    assert await video.cancel(handle) is False
    status = await video.poll(handle)
    assert status.state is JobState.FAILED and status.retryable


async def test_it_fits_durations_and_refuses_unknown_aspects(sim):
    video = video_for(sim, durations_s=(4.0, 8.0, 12.0))
    assert video.capabilities.fit_duration(5) == 8.0
    assert video.capabilities.fit_duration(30) == 12.0
    with pytest.raises(BadRequest):
        await video.submit(scene(aspect="4:3"), "take-1")
    assert sim.stats.requests["video_create"] == 0


async def test_it_refuses_a_handle_of_another_provider(sim):
    video = video_for(sim)
    with pytest.raises(BadRequest):
        await video.poll(JobHandle(provider="runway", id="abc"))


async def test_it_rejects_a_download_that_is_not_an_mp4(sim):
    video = video_for(sim, guard=fast_guard(attempts=1))
    handle = await video.submit(scene(), "take-1")
    await wait_for(video, handle, timeout_s=5)
    sim.jobs[handle.id]["content"] = b"<html>not a video</html>"
    with pytest.raises(MalformedResponse):
        await video.fetch(handle)


def _mean_colour(image: Image.Image) -> np.ndarray:
    return np.asarray(image.resize((16, 16)), dtype=float).mean(axis=(0, 1))


async def test_it_shows_another_face_on_drifted_videos(sim):
    video = video_for(sim)
    honest = await video.submit(scene(), "take-1")
    sim.config.drift_rate = 1.0
    drifted = await video.submit(scene(), "take-2")
    await wait_for(video, drifted, timeout_s=5)
    honest_frame = first_frame(await video.fetch(honest))
    drifted_frame = first_frame(await video.fetch(drifted))
    stranger = Image.open(STRANGER).convert("RGB")
    reference = Image.open(FACE).convert("RGB")
    # The drifted clip looks like the stranger's portrait, the honest one like the reference.
    assert (
        np.abs(_mean_colour(drifted_frame) - _mean_colour(stranger)).sum()
        < np.abs(_mean_colour(drifted_frame) - _mean_colour(reference)).sum()
    )
    assert (
        np.abs(_mean_colour(honest_frame) - _mean_colour(reference)).sum()
        < np.abs(_mean_colour(honest_frame) - _mean_colour(stranger)).sum()
    )


async def test_it_drifts_deterministically_per_seed_and_key():
    decisions = []
    for _ in range(2):
        simulator = Simulator(SimConfig(seed=7, drift_rate=0.5, job_s=0.05))
        await simulator.start()
        try:
            video = video_for(simulator)
            for key in range(20):
                await video.submit(scene(), f"take-{key}")
            decisions.append([job["drift"] for job in simulator.jobs.values()])
        finally:
            await simulator.stop()
    assert decisions[0] == decisions[1]
    assert 3 <= sum(decisions[0]) <= 17
    assert (random.Random("7:take-0").random() < 0.5) == decisions[0][0]


async def test_it_refuses_an_unreadable_reference_before_calling(sim):
    request = scene(cast=(CastMember("Ada", image=b"not an image"),))
    with pytest.raises(BadRequest):
        await video_for(sim).submit(request, "take-1")
    assert sim.stats.requests["video_create"] == 0


def test_a_reference_frame_is_made_once_per_portrait_and_size(monkeypatch):
    from studio.providers import frames

    decoded = []
    real_decode = frames.decode_image
    monkeypatch.setattr(frames, "decode_image", lambda data: decoded.append(1) or real_decode(data))
    ada = CastMember("Ada", image_path=FACE)
    first = frames.reference_frame(ada, (720, 1280))
    again = frames.reference_frame(CastMember("Ada again", image_path=FACE), (720, 1280))
    assert again == first and len(decoded) <= 1  # the same photo and size: made once
    framed = frames.reference_frame(
        CastMember("Ada", image_path=FACE, face_box=[10, 10, 90, 90]), (720, 1280)
    )
    wide = frames.reference_frame(ada, (1280, 720))
    assert framed != first and Image.open(io.BytesIO(wide)).size == (1280, 720)


# --- first frame (the scene's keyframe) --------------------------------------------------------


async def test_it_sends_the_keyframe_as_input_reference_at_the_output_size(sim):
    video = video_for(sim)
    assert video.capabilities.first_frame
    handle = await video.submit(scene(first_frame=keyframe((1024, 1024))), "take-1")
    job = sim.jobs[handle.id]
    assert job["first_frame"] is True and job["first_frame_size"] == (720, 1280)
    sent = picture(job["reference"])
    # Cover-cropped to 9:16: the square's quadrants, its sides trimmed; no face reference.
    assert difference(sent, picture(keyframe())) < 12
    assert difference(sent, Image.open(FACE)) > 40
    without = await video.submit(scene(), "take-2")
    assert sim.jobs[without.id]["first_frame"] is False


async def test_a_clip_from_a_first_frame_shows_that_picture_and_never_drifts(sim):
    sim.config.drift_rate = 1.0  # every clip from a reference shows the stranger
    video = video_for(sim)
    keyed = [await video.submit(scene(first_frame=keyframe()), f"key-{n}") for n in range(3)]
    plain = await video.submit(scene(), "plain")
    still = picture(keyframe())
    for handle in keyed:
        assert difference(await rendered_frame(video, handle), still) < 12
        assert sim.jobs[handle.id]["drift"] is False
    drifted = await rendered_frame(video, plain)
    assert sim.jobs[plain.id]["drift"] is True and difference(drifted, still) > 40


async def test_first_frame_clips_drift_at_their_own_rate(sim):
    sim.config.first_frame_drift_rate = 1.0
    video = video_for(sim)
    handle = await video.submit(scene(first_frame=keyframe()), "take-1")
    frame = await rendered_frame(video, handle)
    assert sim.jobs[handle.id]["drift"] is True
    assert difference(frame, Image.open(STRANGER)) < difference(frame, picture(keyframe()))


async def test_it_refuses_an_unreadable_first_frame_before_calling(sim):
    with pytest.raises(BadRequest, match="keyframe"):
        await video_for(sim).submit(scene(first_frame=b"not an image"), "take-1")
    assert sim.stats.requests["video_create"] == 0
