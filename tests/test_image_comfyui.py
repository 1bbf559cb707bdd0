"""Keyframes on a self-hosted ComfyUI (IMAGE_API=comfyui), against the loopback simulator."""

import asyncio
import io
import json

import pytest
from PIL import Image

from studio.providers import registry
from studio.providers.comfyui_client import WORKFLOWS_DIR
from studio.providers.errors import BadRequest, JobFailed, MalformedResponse
from studio.providers.image_comfyui import ComfyImageConfig, ComfyImages
from studio.providers.ledger import MemoryLedger
from studio.providers.sim.comfyui import _comfy
from studio.providers.sim.jobs import STRANGER
from tests.providers_support import (
    PORTRAIT,
    fast_guard,
    image_request,
    looks_closer_to,
    only_image,
    remote_image_for,
    running_sim,
)

FLUX = WORKFLOWS_DIR / "flux_kontext.json"


@pytest.fixture
async def sim():
    async with running_sim() as simulator:
        yield simulator


def images_for(sim, **config) -> ComfyImages:
    defaults = dict(
        name="self-hosted", base_url=f"{sim.url}/comfyui", model="flux-dev", poll_s=0.02
    )
    return remote_image_for(ComfyImages, ComfyImageConfig, **(defaults | config))


def nodes(graph: dict, class_type: str) -> list[dict]:
    return [node["inputs"] for node in graph.values() if node["class_type"] == class_type]


def workflow_file(tmp_path, change) -> str:
    """The shipped workflow, changed by `change(graph)`, as a file of its own."""
    graph = json.loads(FLUX.read_text())
    change(graph)
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(graph))
    return str(path)


async def test_it_fills_the_workflow_and_returns_the_saved_still(sim):
    ledger = MemoryLedger()
    images = images_for(sim, ledger=ledger)
    image = await images.generate(image_request(seed=7, variant=2), idempotency_key="kf-1")

    record = only_image(sim)
    graph = record["graph"]
    assert "{{" not in json.dumps(graph)
    assert nodes(graph, "CLIPTextEncode")[0]["text"].startswith("Ada waits at the rainy window")
    [latent] = nodes(graph, "EmptySD3LatentImage")
    assert (latent["width"], latent["height"]) == (768, 1344)
    assert nodes(graph, "KSampler")[0]["seed"] == 9  # the seed moved on by the variant
    [loader] = nodes(graph, "LoadImage")
    uploaded = _comfy(sim).uploads[loader["image"]]
    assert Image.open(io.BytesIO(uploaded)).size == (768, 1344)  # the reference at the size

    assert (image.width, image.height, image.media_type) == (768, 1344, "image/png")
    assert Image.open(io.BytesIO(image.data)).size == (768, 1344)
    assert looks_closer_to(image.data, PORTRAIT, str(STRANGER))
    [billed] = [e for e in ledger.entries if e.operation == "image.generate"]
    assert (billed.kind, billed.requests, billed.ok) == ("image", 1, True)
    assert billed.request_id == record["prompt_id"] == image.request_id
    assert images.capabilities.max_reference_images == 1


async def test_a_scene_with_nobody_in_it_drops_the_reference_nodes(sim):
    image = await images_for(sim).generate(
        image_request(cast=(), aspect="16:9"), idempotency_key="kf-empty"
    )
    graph = only_image(sim)["graph"]
    assert nodes(graph, "LoadImage") == [] and nodes(graph, "VAEEncode") == []
    assert "latent" not in nodes(graph, "ReferenceLatent")[0]
    assert sim.stats.requests["comfyui_upload"] == 0
    assert (image.width, image.height) == (1344, 768)


async def test_node_errors_fail_at_once_naming_the_node(sim, tmp_path):
    def broken(graph):
        graph["11"]["class_type"] = "Broken"

    images = images_for(sim, workflow=workflow_file(tmp_path, broken))
    with pytest.raises(BadRequest, match=r"node 11 \(Broken\)") as refused:
        await images.generate(image_request(), idempotency_key="kf-broken")
    assert not refused.value.retryable and "does not exist" in str(refused.value)
    assert sim.stats.requests["comfyui_prompt"] == 1 and sim.images == {}


async def test_a_failed_prompt_names_the_node_and_a_retry_queues_it_again(sim):
    images = images_for(sim)
    sim.queue_faults("comfyui_prompt", "reject")
    with pytest.raises(JobFailed, match=r"node 11 \(KSampler\)") as rejected:
        await images.generate(image_request(), idempotency_key="kf-reject")
    assert not rejected.value.retryable

    sim.queue_faults("comfyui_prompt", "fail")
    with pytest.raises(JobFailed, match="OutOfMemoryError") as failed:
        await images.generate(image_request(), idempotency_key="kf-oom")
    assert failed.value.retryable
    image = await images.generate(image_request(), idempotency_key="kf-oom")  # the retry
    assert image.width == 768
    assert sim.stats.jobs_per_key["kf-oom"] == 1 and sim.stats.jobs_per_key["kf-oom#2"] == 1


async def test_identity_drift_shows_another_face(sim):
    sim.config.drift_rate = 1.0
    image = await images_for(sim).generate(image_request(), idempotency_key="kf-drift")
    assert only_image(sim)["drift"]
    assert looks_closer_to(image.data, str(STRANGER), PORTRAIT)


async def test_the_same_key_never_queues_twice(sim):
    sim.queue_faults("comfyui_prompt", "lost_response")
    first = await images_for(sim).generate(image_request(), idempotency_key="kf-1")
    again = await images_for(sim).generate(image_request(), idempotency_key="kf-1")  # elsewhere
    assert again.data == first.data and again.request_id == first.request_id
    assert sim.stats.requests["comfyui_prompt"] == 1  # the lost answer was found in the queue
    assert sim.stats.jobs_per_key == {"kf-1": 1}
    other = await images_for(sim).generate(image_request(), idempotency_key="kf-2")
    assert other.request_id != first.request_id and len(sim.images) == 2


async def test_an_output_that_is_not_an_image_is_refused(sim):
    sim.queue_faults("comfyui_view", "not_image")
    images = images_for(sim, guard=fast_guard(attempts=1))
    with pytest.raises(MalformedResponse, match=r"not an image .* starting '<html>"):
        await images.generate(image_request(), idempotency_key="kf-html")


async def test_a_workflow_it_cannot_use_is_refused_before_calling(sim, tmp_path):
    def no_seed(graph):
        graph["11"]["inputs"]["seed"] = 1

    def no_save(graph):
        graph["13"]["class_type"] = "PreviewImage"

    def frames(graph):
        graph["10"]["inputs"]["batch_size"] = "{{frames}}"

    cases = {
        no_seed: "has no {{seed}} placeholder",
        no_save: "has no output node",
        frames: "unknown placeholder {{frames}}",
    }
    for change, message in cases.items():
        images = images_for(sim, workflow=workflow_file(tmp_path, change))
        with pytest.raises(BadRequest) as refused:
            await images.generate(image_request(), idempotency_key="kf-bad")
        assert message in str(refused.value) and not refused.value.retryable
    video = images_for(sim, workflow="wan2.2.json")  # a shipped video workflow, by name
    with pytest.raises(BadRequest, match="unknown placeholder"):
        await video.generate(image_request(), idempotency_key="kf-video")
    with pytest.raises(BadRequest, match="set IMAGE_WORKFLOW"):
        await images_for(sim, model="sdxl").generate(image_request(), idempotency_key="kf")
    assert sum(sim.stats.requests.values()) == 0


async def test_the_registry_builds_it_for_image_api_comfyui(settings, tmp_path):
    settings.PROVIDER_IMAGE = {
        **settings.PROVIDER_IMAGE,
        "api": "comfyui",
        "base_url": "http://127.0.0.1:8188",
        "model": "flux-dev",
        "provider": "self-hosted",
        "workflow": str(FLUX),
        "poll_s": 0.5,
    }
    registry.forget()
    try:
        images = registry.image()
    finally:
        registry.forget()

    assert isinstance(images, ComfyImages) and images.name == "self-hosted"
    assert images.workflow_path() == FLUX and images.config.poll_s == 0.5
    assert images.capabilities.size_for("9:16") == (768, 1344)


async def test_the_socket_ends_the_wait_before_the_next_poll_is_due(sim):
    sim.config.job_s = 0.4
    images = images_for(sim, poll_s=30.0)  # over HTTP alone, the second look is 30 s away
    started = asyncio.get_running_loop().time()
    image = await images.generate(image_request(), idempotency_key="kf-socket")
    assert asyncio.get_running_loop().time() - started < 10 and image.width == 768
    assert sim.stats.requests["comfyui_ws"] == 1 and images._sockets == {}
