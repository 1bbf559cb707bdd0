"""Keyframes on OpenAI's images wire format, against the loopback simulator."""

import io

import pytest
from PIL import Image

from studio.providers.base import CastMember, ImageRequest
from studio.providers.errors import BadRequest, MalformedResponse
from studio.providers.image_openai import ImageConfig, OpenAIImages
from studio.providers.ledger import MemoryLedger
from studio.providers.sim.jobs import STRANGER
from tests.factories import FACES_DIR
from tests.providers_support import (
    API_KEY,
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
SEEDREAM = "seedream-4-0-250828"


@pytest.fixture
async def sim():
    async with running_sim() as simulator:
        yield simulator


def images_for(sim, **config) -> OpenAIImages:
    defaults = dict(name="openai", base_url=f"{sim.url}/v1", model="gpt-image-1", api_key=API_KEY)
    return remote_image_for(OpenAIImages, ImageConfig, **(defaults | config))


async def test_it_generates_a_scene_without_references_on_the_generations_route(sim):
    image = await images_for(sim).generate(image_request(cast=()), idempotency_key="kf-1")
    record = only_image(sim)

    assert sim.stats.requests["image_create"] == 1 and sim.stats.submissions["kf-1"] == 1
    assert (record["model"], record["size"]) == ("gpt-image-1", (1024, 1536))
    assert record["references"] == 0
    assert record["seed"] is None  # gpt-image-1 takes no seed
    assert "response_format" not in record["input"]  # gpt-image models refuse the field
    assert record["input"]["n"] == 1 and record["input"]["size"] == "1024x1536"
    assert (image.width, image.height, image.media_type) == (1024, 1536, "image/png")
    assert Image.open(io.BytesIO(image.data)).size == (1024, 1536)


async def test_it_sends_the_casts_references_as_image_parts_to_edits(sim):
    images = images_for(sim)
    image = await images.generate(image_request(cast=(ADA, MARCUS)), idempotency_key="kf-2")
    record = only_image(sim)

    assert sim.stats.requests["image_edit_create"] == 1 and not sim.stats.requests["image_create"]
    assert record["references"] == 2 and record["input"]["model"] == "gpt-image-1"
    assert record["input"]["size"] == "1024x1536"
    assert images.capabilities.max_reference_images == 16
    # The still is made from the first reference: it looks like her, not like the stranger.
    assert looks_closer_to(image.data, ADA, str(STRANGER))


@pytest.mark.parametrize(
    ("model", "aspect", "size"),
    [
        ("gpt-image-1", "16:9", (1536, 1024)),
        ("gpt-image-1", "1:1", (1024, 1024)),
        ("dall-e-3", "9:16", (1024, 1792)),
        (SEEDREAM, "9:16", (1440, 2560)),
        ("someone/proxy-image-model", "16:9", (1536, 1024)),
    ],
)
async def test_each_model_gets_its_own_size_per_aspect(sim, model, aspect, size):
    images = images_for(sim, model=model)
    image = await images.generate(image_request(cast=(), aspect=aspect), idempotency_key="kf")

    assert images.capabilities.size_for(aspect) == size
    assert only_image(sim)["size"] == size and (image.width, image.height) == size


async def test_dall_e_3_answers_in_base64_with_its_revised_prompt(sim):
    images = images_for(sim, model="dall-e-3")
    image = await images.generate(image_request(), idempotency_key="kf-dalle")
    record = only_image(sim)

    assert images.capabilities.max_reference_images == 0
    assert record["references"] == 0 and sim.stats.requests["image_create"] == 1
    assert record["input"]["response_format"] == "b64_json"
    assert image.revised_prompt.startswith("A cinematic film still.")


async def test_seedream_takes_references_as_a_json_list_and_answers_a_link(sim):
    ledger = MemoryLedger()
    images = images_for(sim, model=SEEDREAM, ledger=ledger)
    request = image_request(cast=(ADA, MARCUS), seed=40, variant=2)
    image = await images.generate(request, idempotency_key="kf-seedream")
    record = only_image(sim)

    assert sim.stats.requests["image_create"] == 1 and record["references"] == 2
    sent = record["input"]
    assert (sent["watermark"], sent["sequential_image_generation"]) == (False, "disabled")
    assert sent["response_format"] == "url" and "seed" not in sent  # Seedream 4 takes none
    assert (image.width, image.height, image.media_type) == (1440, 2560, "image/jpeg")
    assert sim.stats.requests["image_file"] == 1
    assert sim.stats.keyed_downloads == 0  # the link is on another host: no key goes there
    [entry] = ledger.entries
    assert entry.usage.output_tokens == 1440 * 2560 // 256


async def test_a_model_that_takes_a_seed_gets_the_seed_moved_on_by_the_variant(sim):
    images = images_for(sim, model="seedream-3-0-t2i-250415")
    await images.generate(image_request(seed=40, variant=2), idempotency_key="kf-a")
    await images.generate(image_request(seed=None), idempotency_key="kf-b")
    seeded, unseeded = sim.images.values()

    assert seeded["seed"] == 42 and seeded["references"] == 0  # text only
    assert unseeded["seed"] is None


async def test_the_settings_cap_the_references_sent(sim):
    images = images_for(sim, max_reference_images=1)
    await images.generate(image_request(cast=(ADA, MARCUS)), idempotency_key="kf-cap")

    assert images.capabilities.max_reference_images == 1
    assert only_image(sim)["references"] == 1


async def test_each_image_is_booked_once_per_image_with_its_tokens(sim):
    ledger = MemoryLedger()
    images = images_for(sim, ledger=ledger)
    image = await images.generate(image_request(), idempotency_key="kf-bill")

    [entry] = ledger.entries
    assert (entry.provider, entry.model, entry.kind) == ("openai", "gpt-image-1", "image")
    assert (entry.operation, entry.requests, entry.ok) == ("image.generate", 1, True)
    assert entry.once_per_request and entry.request_id.startswith("req_")
    assert entry.request_id == image.request_id
    assert entry.usage.output_tokens == 1024 * 1536 // 1500 and entry.usage.input_tokens > 258


async def test_a_drifted_still_shows_another_face():
    async with running_sim(drift_rate=1.0) as sim:
        drifted = await images_for(sim).generate(image_request(), idempotency_key="kf-drift")
        assert only_image(sim)["drift"]
    async with running_sim() as sim:
        honest = await images_for(sim).generate(image_request(), idempotency_key="kf-drift")
        assert not only_image(sim)["drift"]

    assert drifted.data != honest.data
    assert looks_closer_to(drifted.data, str(STRANGER), ADA)
    assert looks_closer_to(honest.data, ADA, str(STRANGER))


async def test_drift_is_drawn_per_candidate_and_kept_for_a_retry():
    async with running_sim(drift_rate=0.5, seed=3) as sim:
        images = images_for(sim)
        for n in range(10):
            await images.generate(image_request(cast=(), variant=n), idempotency_key=f"kf-{n}")
        drifts = [record["drift"] for record in sim.images.values()]
    assert 1 <= sum(drifts) <= 9  # candidates draw independently

    async with running_sim(drift_rate=0.5, seed=3) as sim:
        images = images_for(sim)
        for n in range(10):
            await images.generate(image_request(cast=(), variant=n), idempotency_key=f"kf-{n}")
        assert [record["drift"] for record in sim.images.values()] == drifts


async def test_the_same_key_gets_the_same_picture(sim):
    images = images_for(sim)
    sim.queue_faults("image_edit_create", "lost_response")  # made, but the answer was lost
    first = await images.generate(image_request(), idempotency_key="kf-same")
    again = await images.generate(image_request(), idempotency_key="kf-same")
    other = await images.generate(image_request(), idempotency_key="kf-other")

    assert first.data == again.data and first.data != other.data
    assert sim.stats.submissions["kf-same"] == 3  # the lost try, its retry, the second call
    assert sim.stats.jobs_per_key["kf-same"] == 1 and len(sim.images) == 2


async def test_server_errors_rate_limits_and_malformed_answers_are_retried(sim):
    ledger = MemoryLedger()
    images = images_for(sim, ledger=ledger, guard=fast_guard(attempts=5))
    sim.queue_faults("image_edit_create", "5xx", "429", "malformed", "not_image")
    image = await images.generate(image_request(), idempotency_key="kf-faults")

    assert (image.width, image.height) == (1024, 1536)
    statuses = sim.stats.statuses["image_edit_create"]
    assert (statuses["503"], statuses["429"], statuses["200"]) == (1, 1, 3)
    failed = [entry for entry in ledger.entries if not entry.ok]
    assert len(failed) == 4 and all(entry.requests == 0 for entry in failed)
    assert [entry.requests for entry in ledger.entries if entry.ok] == [1]


async def test_an_answer_that_is_not_an_image_is_refused_with_a_clear_error(sim):
    images = images_for(sim, guard=fast_guard(attempts=1))
    sim.queue_faults("image_edit_create", "not_image", "no_image")

    with pytest.raises(MalformedResponse, match=r"not an image .* starting '<html>"):
        await images.generate(image_request(), idempotency_key="kf-html")
    with pytest.raises(MalformedResponse, match="no image"):
        await images.generate(image_request(), idempotency_key="kf-empty")


async def test_a_rejected_prompt_is_not_retried(sim):
    ledger = MemoryLedger()
    images = images_for(sim, ledger=ledger)
    sim.queue_faults("image_edit_create", "reject")

    with pytest.raises(BadRequest, match="moderation") as raised:
        await images.generate(image_request(), idempotency_key="kf-reject")
    assert raised.value.status == 400 and not raised.value.retryable
    assert sim.stats.requests["image_edit_create"] == 1
    [entry] = ledger.entries
    assert not entry.ok and entry.requests == 0


async def test_an_unreadable_reference_is_refused_before_calling(sim):
    request = image_request(cast=())
    request = ImageRequest(prompt=request.prompt, cast=(CastMember("Ada", image=b"not a jpeg"),))
    with pytest.raises(BadRequest, match="unreadable"):
        await images_for(sim).generate(request, idempotency_key="kf-bad")
    assert not sim.stats.requests


async def test_the_registry_builds_it_for_image_api_openai(settings):
    from studio.providers import registry

    settings.PROVIDER_IMAGE = {
        **settings.PROVIDER_IMAGE,
        "api": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "model": SEEDREAM,
        "max_reference_images": 3,
    }
    registry.forget()
    try:
        images = registry.image()
    finally:
        registry.forget()

    assert isinstance(images, OpenAIImages) and images.model == SEEDREAM
    assert images.capabilities.max_reference_images == 3
