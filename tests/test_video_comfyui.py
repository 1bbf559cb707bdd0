"""The `comfyui` video wire format against the loopback simulator, and one render end to end."""

import asyncio
import io
import json
from decimal import Decimal

import av
import pytest
from asgiref.sync import sync_to_async
from PIL import Image

from dramas.models import TakeStatus, Verdict
from studio.models import Price
from studio.providers import registry
from studio.providers.base import CastMember, JobState, VideoRequest
from studio.providers.errors import BadRequest
from studio.providers.ledger import MemoryLedger
from studio.providers.sim.comfyui import _comfy
from studio.providers.transport import looks_like_video
from studio.providers.video_comfyui import WORKFLOWS_DIR, ComfyConfig, ComfyVideo
from studio.providers.video_http import wait_for
from tests.factories import FACES_DIR
from tests.first_frame_support import difference, keyframe, picture, rendered_frame
from tests.providers_support import remote_video_for, running_sim
from tests.render_support import remote_video, render_first_scene, seed_prices

FACE = str(FACES_DIR / "grace_hopper.jpg")


@pytest.fixture
async def sim():
    async with running_sim() as simulator:
        yield simulator


def comfy_for(sim, **config) -> ComfyVideo:
    defaults = dict(
        name="self-hosted", base_url=f"{sim.url}/comfyui", model="wan2.2", timeout_s=2.0
    )
    return remote_video_for(ComfyVideo, ComfyConfig, **(defaults | config))


def scene(**fields) -> VideoRequest:
    values = dict(
        prompt="She turns to the window as the rain starts.",
        duration_s=2.5,
        aspect="9:16",
        camera="slow push-in",
        cast=(CastMember("Ada", image_path=FACE),),
        seed=1234,
    )
    return VideoRequest(**(values | fields))


def job_of(sim, handle) -> dict:
    return next(job for job in sim.jobs.values() if job.get("prompt_id") == handle.id)


def nodes(graph: dict, class_type: str) -> list[dict]:
    return [node["inputs"] for node in graph.values() if node["class_type"] == class_type]


async def test_it_fills_the_workflow_uploads_the_reference_and_fetches_an_mp4(sim):
    ledger = MemoryLedger()
    video = comfy_for(sim, ledger=ledger)
    handle = await video.submit(scene(), "take-1")
    graph = job_of(sim, handle)["graph"]
    [positive, negative] = nodes(graph, "CLIPTextEncode")
    assert "rain starts" in positive["text"] and "Camera: slow push-in." in positive["text"]
    assert negative["text"] and "{{" not in json.dumps(graph)
    [latent] = nodes(graph, "WanImageToVideo")
    assert (latent["width"], latent["height"], latent["length"]) == (720, 1280, 41)  # 2.5 s
    assert [s["noise_seed"] for s in nodes(graph, "KSamplerAdvanced")] == [1234, 1234]
    assert nodes(graph, "CreateVideo")[0]["fps"] == 16
    [loader] = nodes(graph, "LoadImage")
    uploaded = job_of(sim, handle)["reference"]
    assert Image.open(io.BytesIO(uploaded)).size == (720, 1280)
    assert sim.stats.requests["comfyui_upload"] == 1 and loader["image"].endswith(".jpg")

    status = await wait_for(video, handle, timeout_s=5)
    assert status.state is JobState.SUCCEEDED and status.progress == 1.0
    data = await video.fetch(handle)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert float(stream.duration * stream.time_base) == pytest.approx(41 / 16, abs=0.15)
    [billed] = [e for e in ledger.entries if e.operation == "video.generate"]
    assert billed.units == 2.5 and billed.once_per_request and billed.request_id == handle.id
    assert video.estimated_usage(2.5)[1] == 2.5


async def test_it_fits_frames_and_fps_to_the_model_family(sim):
    wan = comfy_for(sim)
    assert wan.capabilities.max_duration_s == 5.0 and wan.capabilities.max_reference_images == 1
    handle = await wan.submit(scene(duration_s=12.0, aspect="16:9"), "long")
    [latent] = nodes(job_of(sim, handle)["graph"], "WanImageToVideo")
    assert (latent["width"], latent["height"], latent["length"]) == (1280, 720, 81)
    assert handle.data["seconds"] == 5.0

    named = comfy_for(sim, model="wan2.2", workflow="ltx.json")  # a shipped file by name
    assert named.workflow_path() == WORKFLOWS_DIR / "ltx.json"
    ltx = comfy_for(sim, model="ltxv")
    handle = await ltx.submit(scene(duration_s=3.0), "ltx")
    graph = job_of(sim, handle)["graph"]
    [latent] = nodes(graph, "LTXVImgToVideo")
    assert (latent["width"], latent["height"], latent["length"]) == (704, 1280, 73)
    assert nodes(graph, "LTXVConditioning")[0]["frame_rate"] == 24
    assert nodes(graph, "KSampler")[0]["seed"] == 1234


async def test_it_drops_the_image_loader_for_a_scene_without_a_reference(sim):
    video = comfy_for(sim)
    handle = await video.submit(scene(cast=(), seed=None), "text-only")
    graph = job_of(sim, handle)["graph"]
    assert nodes(graph, "LoadImage") == [] and sim.stats.requests["comfyui_upload"] == 0
    assert "start_image" not in nodes(graph, "WanImageToVideo")[0]
    again = await comfy_for(sim).submit(scene(cast=(), seed=None, prompt="Other."), "text-only")
    assert again.id == handle.id  # the seed comes from the key: a retry renders the same


async def test_node_errors_fail_clearly_and_are_not_retried(sim, tmp_path):
    workflow = json.loads((WORKFLOWS_DIR / "wan2.2.json").read_text())
    workflow["13"]["class_type"] = "Broken"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(workflow))
    video = comfy_for(sim, workflow=str(path))
    with pytest.raises(BadRequest) as refused:
        await video.submit(scene(), "take-1")
    assert "node 13 (Broken)" in str(refused.value) and not refused.value.retryable
    assert "does not exist" in str(refused.value)
    assert sim.stats.requests["comfyui_prompt"] == 1  # refused once, not tried again
    assert sim.jobs == {}


async def test_a_prompt_queued_with_node_errors_beside_it_is_taken_back(sim, tmp_path):
    workflow = json.loads((WORKFLOWS_DIR / "wan2.2.json").read_text())
    # A second output (a preview) through a node ComfyUI does not have: the main one still
    # validates, so ComfyUI queues it and answers 200 with the other node's errors.
    workflow["20"] = {"class_type": "Broken", "inputs": {"images": ["13", 0]}}
    workflow["21"] = {"class_type": "SaveWEBM", "inputs": {"images": ["20", 0]}}
    path = tmp_path / "preview.json"
    path.write_text(json.dumps(workflow))
    with pytest.raises(BadRequest, match=r"node 20 \(Broken\)") as refused:
        await comfy_for(sim, workflow=str(path)).submit(scene(), "take-1")
    assert not refused.value.retryable
    [job] = sim.jobs.values()
    assert job["result"] == "interrupted"  # it had started: stopped, not left to run
    assert sim.stats.requests["comfyui_interrupt"] == 1


async def test_a_missing_or_invalid_workflow_is_refused_before_calling(sim, tmp_path):
    no_prompt = tmp_path / "no_prompt.json"
    no_prompt.write_text(json.dumps({"1": {"class_type": "SaveVideo", "inputs": {}}}))
    not_json = tmp_path / "not_json.json"
    not_json.write_text("{nope")
    ui_format = tmp_path / "ui.json"
    ui_format.write_text(json.dumps({"nodes": [], "links": []}))
    cases = {
        str(tmp_path / "missing.json"): "cannot be read",
        str(not_json): "is not JSON",
        str(no_prompt): "has no {{prompt}} placeholder",
        str(ui_format): "Save (API)",
    }
    for workflow, message in cases.items():
        with pytest.raises(BadRequest, match=None) as refused:
            await comfy_for(sim, workflow=workflow).submit(scene(), "take-1")
        assert message in str(refused.value) and workflow in str(refused.value)
        assert not refused.value.retryable
    with pytest.raises(BadRequest, match="no ComfyUI workflow ships for model 'hunyuan'"):
        await comfy_for(sim, model="hunyuan").submit(scene(), "take-1")
    assert sum(sim.stats.requests.values()) == 0


async def test_it_maps_queued_running_and_done(sim):
    sim.config.job_s = 0.3
    video = comfy_for(sim)
    first = await video.submit(scene(), "take-1")
    second = await video.submit(scene(), "take-2")
    assert (await video.poll(first)).state is JobState.RUNNING
    queued = await video.poll(second)
    assert queued.state is JobState.QUEUED and queued.vendor_status == "queued (1 ahead)"
    states = []
    while not (status := await video.poll(second)).state.finished:
        states.append(status.state)
        await asyncio.sleep(0.02)
    assert states[0] is JobState.QUEUED and JobState.RUNNING in states
    assert status.state is JobState.SUCCEEDED and status.progress == 1.0
    assert (await video.poll(first)).state is JobState.SUCCEEDED


@pytest.mark.parametrize(
    "fault, retryable, text",
    [("fail", True, "OutOfMemoryError"), ("reject", False, "invalid input")],
)
async def test_execution_errors_name_the_node(sim, fault, retryable, text):
    sim.queue_faults("comfyui_prompt", fault)
    video = comfy_for(sim)
    handle = await video.submit(scene(), "take-1")
    status = await wait_for(video, handle, timeout_s=5)
    assert status.state is JobState.FAILED and status.retryable is retryable
    assert "node 11 (KSamplerAdvanced)" in status.error and text in status.error


async def test_it_cancels_a_running_prompt_by_interrupt_and_a_queued_one_by_delete(sim):
    sim.config.job_s = 5.0
    video = comfy_for(sim)
    first = await video.submit(scene(), "take-1")
    second = await video.submit(scene(), "take-2")
    assert await video.cancel(second) is True
    assert sim.stats.requests["comfyui_queue_change"] == 1
    assert sim.stats.requests["comfyui_interrupt"] == 0
    assert (await video.poll(second)).vendor_status == "missing"  # out of the queue
    assert await video.cancel(first) is True
    assert sim.stats.requests["comfyui_interrupt"] == 1
    assert (await video.poll(first)).state is JobState.CANCELLED
    assert await video.cancel(first) is False  # nothing left to stop


async def test_resubmitting_with_the_same_key_queues_one_prompt(sim):
    sim.config.job_s = 0.2
    first = await comfy_for(sim).submit(scene(), "take-1")
    again = await comfy_for(sim).submit(scene(), "take-1")  # another process, same key
    assert again.id == first.id
    await wait_for(comfy_for(sim), first, timeout_s=5)
    after = await comfy_for(sim).submit(scene(), "take-1")  # done and in history by now
    assert after.id == first.id
    assert sim.stats.requests["comfyui_prompt"] == 1
    assert sim.stats.jobs_per_key == {"take-1": 1}


async def test_a_lost_answer_is_found_again_not_queued_twice(sim):
    sim.queue_faults("comfyui_prompt", "lost_response")
    handle = await comfy_for(sim).submit(scene(), "take-7")
    assert sim.stats.requests["comfyui_prompt"] == 1  # the retry found it in the queue
    assert sim.stats.jobs_per_key == {"take-7": 1} and job_of(sim, handle)


ROUTES = (
    "comfyui_upload",
    "comfyui_prompt",
    "comfyui_queue",
    "comfyui_history",
    "comfyui_history_list",
    "comfyui_view",
)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("fault", ["5xx", "429", "drop", "malformed", "lost_response"])
async def test_it_rides_out_every_fault_on_every_route(sim, route, fault):
    sim.queue_faults(route, fault)
    video = comfy_for(sim)
    handle = await video.submit(scene(), "take-1")
    assert (await wait_for(video, handle, timeout_s=5)).state is JobState.SUCCEEDED
    assert looks_like_video(await video.fetch(handle))
    assert sim.stats.statuses[route]["dropped" if fault in ("drop", "lost_response") else "200"]
    assert sim.stats.jobs_per_key == {"take-1": 1}  # a lost answer is found, not resubmitted


async def test_it_finds_a_prompt_by_its_key_on_a_server_that_ignores_prompt_ids(sim):
    video = comfy_for(sim)
    handle = await video.submit(scene(), "take-1")
    job = job_of(sim, handle)
    server_id = "0b9e3c9e-5a1f-4f4e-8a43-1d1f2b3c4d5e"  # as if the server chose its own id
    server = _comfy(sim)
    server.prompts[server_id] = server.prompts.pop(job["prompt_id"])
    job["prompt_id"] = server_id
    assert (await video.submit(scene(), "take-1")).id == server_id  # found in /queue
    await asyncio.sleep(0.1)
    assert (await video.submit(scene(), "take-1")).id == server_id  # found in /history
    assert sim.stats.requests["comfyui_prompt"] == 1


# --- end to end --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_take_renders_on_comfyui_and_is_scored(settings):
    await sync_to_async(seed_prices)()
    await Price.objects.aget_or_create(
        provider="self-hosted",
        model="wan2.2",
        kind="video",
        defaults={"per_second": Decimal("0"), "effective_date": "2000-01-01"},
    )
    try:
        async with running_sim(job_s=0.3) as sim:
            remote_video(
                settings,
                sim.url,
                api="comfyui",
                base_url=f"{sim.url}/comfyui",
                model="wan2.2",
                provider="self-hosted",
                durations_s=[],
                max_reference_images=0,
                workflow="",
            )
            take = await render_first_scene(timeout=30)
            stats = sim.stats.as_dict(arrivals=False)
    finally:
        registry.forget()

    assert take.status == TakeStatus.DONE, take.error
    assert take.provider == "self-hosted" and take.model == "wan2.2"
    assert stats["jobs_per_key"] == {take.idempotency_key: 1}
    assert stats["requests"]["comfyui_upload"] == 1  # the character's face went to LoadImage
    assert await take.frames.acount() >= 4
    assert take.verdict == Verdict.ACCEPT and take.score >= 65
    assert take.cost_usd == Decimal("0")


# --- first frame (the scene's keyframe) --------------------------------------------------------


@pytest.mark.parametrize("model", ["wan2.2", "ltx"])
async def test_loadimage_loads_the_keyframe_and_the_clip_starts_from_it(sim, model):
    sim.config.drift_rate = 1.0  # a clip from the reference would show a stranger
    video = comfy_for(sim, model=model)
    assert video.capabilities.first_frame
    handle = await video.submit(scene(first_frame=keyframe((1024, 1024))), "take-1")
    job = job_of(sim, handle)
    [loader] = nodes(job["graph"], "LoadImage")
    assert loader["image"].endswith("-first-frame.jpg")
    loaded = picture(_comfy(sim).uploads[loader["image"]])
    width, height = job["size"]
    assert loaded.size == (width, height) == job["first_frame_size"]
    assert job["first_frame"] is True and difference(loaded, picture(keyframe())) < 12
    frame = await rendered_frame(video, handle)
    assert job["drift"] is False and difference(frame, picture(keyframe())) < 12


async def test_a_workflow_without_a_start_image_takes_no_keyframe(sim, tmp_path):
    graph = json.loads((WORKFLOWS_DIR / "ltx.json").read_text())
    del graph["5"]
    graph["6"]["inputs"].pop("image")
    path = tmp_path / "text-only.json"
    path.write_text(json.dumps(graph))
    video = comfy_for(sim, model="ltx", workflow=str(path))
    assert not video.capabilities.first_frame
    handle = await video.submit(scene(first_frame=keyframe()), "take-1")
    assert job_of(sim, handle)["first_frame"] is False
    assert sim.stats.requests["comfyui_upload"] == 0
