"""Keyframes on fal's queue (image models that take references), against the simulator."""

import base64
import io

import pytest
from PIL import Image

from studio.providers.errors import JobFailed, MalformedResponse, ProviderTimeout
from studio.providers.image_fal import FalImageConfig, FalImages
from studio.providers.ledger import MemoryLedger
from studio.providers.sim.jobs import STRANGER
from tests.factories import FACES_DIR
from tests.providers_support import (
    PORTRAIT,
    fast_guard,
    image_request,
    looks_closer_to,
    only_image,
    remote_image_for,
    running_sim,
)

ADA = PORTRAIT
MARCUS = str(FACES_DIR / "obama.jpg")
KONTEXT = "fal-ai/flux-pro/kontext"
SEEDREAM = "fal-ai/bytedance/seedream/v4/edit"
NANO = "fal-ai/nano-banana/edit"


@pytest.fixture
async def sim():
    async with running_sim() as simulator:
        yield simulator


def fal_for(sim, *, model: str = KONTEXT, **config) -> FalImages:
    defaults = dict(name="fal", base_url=f"{sim.url}/fal", model=model, api_key="k", poll_s=0.02)
    return remote_image_for(FalImages, FalImageConfig, **(defaults | config))


async def test_kontext_gets_one_image_url_an_aspect_ratio_and_the_seed(sim):
    image = await fal_for(sim).generate(image_request(variant=1), idempotency_key="kf-1")
    record = only_image(sim)
    sent = record["input"]

    assert record["model"] == KONTEXT and record["authorization"] == "Key k"
    assert sent["image_url"].startswith("data:image/jpeg;base64,")
    assert base64.b64decode(sent["image_url"].split(",", 1)[1])[:2] == b"\xff\xd8"
    assert (sent["aspect_ratio"], sent["seed"], sent["num_images"]) == ("9:16", 8, 1)
    assert "image_urls" not in sent and "image_size" not in sent
    assert (image.width, image.height, image.media_type) == (768, 1344, "image/jpeg")
    assert Image.open(io.BytesIO(image.data)).size == (768, 1344)
    assert sim.stats.requests["fal_image_create"] == 1 and not sim.stats.requests["fal_create"]
    assert sim.stats.requests["fal_image_status"] >= 1
    assert sim.stats.requests["fal_image_result"] == 1
    assert sim.stats.keyed_downloads == 0  # fal's file host gets no key
    assert looks_closer_to(image.data, ADA, str(STRANGER))


async def test_seedream_edit_gets_a_list_of_references_and_an_image_size(sim):
    images = fal_for(sim, model=SEEDREAM)
    image = await images.generate(image_request(cast=(ADA, MARCUS)), idempotency_key="kf-2")
    record = only_image(sim)
    sent = record["input"]

    assert len(sent["image_urls"]) == 2 and record["references"] == 2
    assert sent["image_size"] == {"width": 1440, "height": 2560} and "aspect_ratio" not in sent
    assert (image.width, image.height) == (1440, 2560)
    assert images.capabilities.max_reference_images == 10


async def test_nano_banana_takes_no_seed_and_the_settings_cap_its_references(sim):
    images = fal_for(sim, model=NANO, max_reference_images=1)
    await images.generate(image_request(cast=(ADA, MARCUS)), idempotency_key="kf-3")
    sent = only_image(sim)["input"]

    assert len(sent["image_urls"]) == 1 and "seed" not in sent
    assert sent["aspect_ratio"] == "9:16"
    assert fal_for(sim, max_reference_images=4).capabilities.max_reference_images == 1


@pytest.mark.parametrize(
    ("aspect", "size"), [("9:16", (768, 1344)), ("16:9", (1344, 768)), ("1:1", (1024, 1024))]
)
async def test_each_aspect_gets_its_size(sim, aspect, size):
    images = fal_for(sim)
    image = await images.generate(image_request(aspect=aspect), idempotency_key="kf")
    assert images.capabilities.size_for(aspect) == size == (image.width, image.height)


async def test_a_scene_without_anybody_goes_to_the_text_to_image_sibling(sim):
    await fal_for(sim).generate(image_request(cast=()), idempotency_key="kf-empty")
    record = only_image(sim)
    assert record["model"] == "fal-ai/flux-pro/kontext/text-to-image"
    assert record["references"] == 0 and "image_url" not in record["input"]


async def test_the_image_is_booked_once_with_the_fal_request_id(sim):
    ledger = MemoryLedger()
    image = await fal_for(sim, ledger=ledger).generate(image_request(), idempotency_key="kf-b")

    [billed] = [e for e in ledger.entries if e.requests]
    assert (billed.operation, billed.kind, billed.requests) == ("image.generate", "image", 1)
    assert billed.once_per_request and billed.request_id == only_image(sim)["id"]
    assert billed.request_id == image.request_id
    others = {e.operation for e in ledger.entries if not e.requests}
    assert others <= {"image.submit", "image.poll", "image.result"}
    assert all(e.kind == "image" and e.ok for e in ledger.entries)


async def test_a_drifted_still_shows_another_face():
    async with running_sim(drift_rate=1.0) as sim:
        drifted = await fal_for(sim).generate(image_request(), idempotency_key="kf-drift")
        assert only_image(sim)["drift"]
    assert looks_closer_to(drifted.data, str(STRANGER), ADA)


async def test_the_same_key_finds_the_first_request(sim):
    sim.queue_faults("fal_image_create", "lost_response")
    first = await fal_for(sim).generate(image_request(), idempotency_key="kf-same")
    again = await fal_for(sim).generate(image_request(), idempotency_key="kf-same")

    assert first.data == again.data and len(sim.images) == 1
    assert sim.stats.submissions["kf-same"] == 3 and sim.stats.jobs_per_key["kf-same"] == 1


async def test_outages_on_every_step_are_retried_through_the_guard(sim):
    images = fal_for(sim, guard=fast_guard(attempts=5))
    sim.queue_faults("fal_image_create", "5xx", "429")
    sim.queue_faults("fal_image_status", "malformed", "5xx")
    sim.queue_faults("fal_image_result", "429")
    sim.queue_faults("image_file", "5xx")
    image = await images.generate(image_request(), idempotency_key="kf-faults")

    assert (image.width, image.height) == (768, 1344)
    assert sim.stats.statuses["fal_image_create"]["503"] == 1
    assert sim.stats.statuses["fal_image_create"]["429"] == 1
    assert sim.stats.statuses["image_file"]["503"] == 1


async def test_failed_and_rejected_requests_are_job_failures(sim):
    ledger = MemoryLedger()
    images = fal_for(sim, ledger=ledger)
    sim.queue_faults("fal_image_create", "fail", "reject")

    with pytest.raises(JobFailed, match="simulated generation failure") as failed:
        await images.generate(image_request(), idempotency_key="kf-fail")
    assert failed.value.retryable
    with pytest.raises(JobFailed, match="content policy") as rejected:
        await images.generate(image_request(), idempotency_key="kf-reject")
    assert not rejected.value.retryable
    assert sim.stats.requests["fal_image_result"] == 1  # read once, not retried
    assert not [e for e in ledger.entries if e.requests]


async def test_a_result_that_is_not_an_image_is_refused_with_a_clear_error(sim):
    images = fal_for(sim, guard=fast_guard(attempts=1))
    sim.queue_faults("fal_image_create", "not_image", "no_image")

    with pytest.raises(MalformedResponse, match=r"not an image .* starting '<html>"):
        await images.generate(image_request(), idempotency_key="kf-html")
    with pytest.raises(MalformedResponse, match=r"no image URL \(`images\[0\]\.url`\)"):
        await images.generate(image_request(), idempotency_key="kf-none")


async def test_a_request_that_never_finishes_times_out():
    async with running_sim(job_s=30.0) as sim:
        images = fal_for(sim, max_wait_s=0.1)
        with pytest.raises(ProviderTimeout, match="in queue"):
            await images.generate(image_request(), idempotency_key="kf-slow")


async def test_the_registry_builds_it_for_image_api_fal(settings):
    from studio.providers import registry

    settings.PROVIDER_IMAGE = {
        **settings.PROVIDER_IMAGE,
        "api": "fal",
        "base_url": "http://127.0.0.1:9/fal",
        "provider": "fal",
        "model": SEEDREAM,
        "poll_s": 0.5,
    }
    registry.forget()
    try:
        images = registry.image()
    finally:
        registry.forget()

    assert isinstance(images, FalImages) and images.model == SEEDREAM and images.name == "fal"
    assert images.config.poll_s == 0.5
