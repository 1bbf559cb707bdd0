"""Storyboard keyframes: rounds of candidates made by a real worker (offline composed stills
from the cast's references), each scored by the face engine and billed as an image; the best
consistent one is chosen unless a producer chose; renders start from it; the keyframe gate
holds a scene whose keyframe is not consistent unless a producer overrides it."""

import io
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from PIL import Image

from dramas import keyframes as kf
from dramas.models import Keyframe, KeyframeRound, KeyframeStatus, Take, Verdict
from dramas.pipeline_db import video_request
from dramas.takes import take_enqueue, takes_render_batch
from studio.jobs.models import Job, JobStatus
from studio.jobs.services import job_cancel
from studio.models import Price, UsageRecord
from studio.providers import registry
from studio.providers.base import GeneratedImage, ImageCapabilities
from tests.render_support import jobs_settled, running, seed_prices, two_person_drama


@pytest.fixture(autouse=True)
def offline_images(settings):
    settings.PROVIDER_IMAGE = {**settings.PROVIDER_IMAGE, "base_url": ""}
    registry.forget()
    yield
    registry.forget()


def image_price(per_image: str) -> None:
    Price.objects.update_or_create(
        provider="local",
        model="composed-still",
        kind="image",
        defaults={"per_request": Decimal(per_image), "effective_date": "2000-01-01"},
    )


async def storyboard(drama, scenes, **options) -> list[KeyframeRound]:
    rounds = await sync_to_async(kf.keyframes_enqueue)(drama=drama, scenes=scenes, **options)
    async with running():
        await jobs_settled([r.job_id for r in rounds], timeout=90)
    return [await KeyframeRound.objects.aget(id=r.id) for r in rounds]


def keyframes_of(round_: KeyframeRound) -> list[Keyframe]:
    return list(round_.keyframes.order_by("index"))


@pytest.mark.django_db(transaction=True)
async def test_a_round_makes_scored_billed_candidates_and_chooses_the_best():
    await sync_to_async(seed_prices)()
    await sync_to_async(image_price)("0.04")
    drama, _, cast = await sync_to_async(two_person_drama)()

    rounds = await storyboard(drama, [cast["first"], cast["second"]])

    for round_, name in zip(rounds, ["Marcus", "Ada"], strict=True):
        assert round_.status == KeyframeStatus.DONE
        assert round_.consistent is True
        assert round_.render_avoided_usd is None
        candidates = await sync_to_async(keyframes_of)(round_)
        assert [k.index for k in candidates] == [0, 1, 2]  # the drama's default of 3
        for keyframe in candidates:
            assert keyframe.status == KeyframeStatus.DONE
            with keyframe.image.open("rb") as handle:
                picture = Image.open(io.BytesIO(handle.read()))
                assert picture.size == (720, 1280)  # the drama's 9:16
            [character] = keyframe.scores["characters"]
            assert character["name"] == name
            assert character["verdict"] == "match" and character["box"]
            assert keyframe.verdict == Verdict.ACCEPT and keyframe.score >= 65
            assert keyframe.cost_usd == Decimal("0.04")
        [chosen] = [k for k in candidates if k.chosen]
        assert chosen.chosen_by_id is None  # the studio's pick
        assert chosen.score == max(k.score for k in candidates)
    usage = [u async for u in UsageRecord.objects.filter(operation="image.generate")]
    assert len(usage) == 6
    assert {u.drama_id for u in usage} == {drama.id} and {u.take_id for u in usage} == {None}
    assert sum(u.cost_usd for u in usage) == Decimal("0.24")


@pytest.mark.django_db(transaction=True)
async def test_renders_start_from_the_chosen_keyframe():
    await sync_to_async(seed_prices)()
    drama, _, cast = await sync_to_async(two_person_drama)()
    [round_] = await storyboard(drama, [cast["first"]])
    chosen = await Keyframe.objects.aget(round=round_, chosen=True)

    [take] = await sync_to_async(take_enqueue)(drama=drama, scenes=[cast["first"]])

    assert take.keyframe_id == chosen.id and not take.gate_override
    request = await sync_to_async(video_request)(take_id=take.id)
    with chosen.image.open("rb") as handle:
        assert request.first_frame == handle.read()
    [other] = await sync_to_async(take_enqueue)(drama=drama, scenes=[cast["second"]])
    assert other.keyframe_id is None  # no storyboard: rendered from the references
    assert (await sync_to_async(video_request)(take_id=other.id)).first_frame is None


@pytest.mark.django_db(transaction=True)
async def test_a_producers_pick_stays_through_later_rounds():
    await sync_to_async(seed_prices)()
    drama, _, cast = await sync_to_async(two_person_drama)()
    [first] = await storyboard(drama, [cast["first"]])
    candidates = await sync_to_async(keyframes_of)(first)
    user = drama.created_by
    picked = await sync_to_async(kf.keyframe_choose)(keyframe=candidates[2], user=user)

    [second] = await storyboard(drama, [cast["first"]], prompt="Closer on his eyes.", user=user)

    assert second.number == 2 and second.prompt == "Closer on his eyes."
    assert second.prompt_edited
    [chosen] = [k async for k in Keyframe.objects.filter(scene=cast["first"], chosen=True)]
    assert chosen.id == picked.id


def hold_by_the_gate(scene) -> Keyframe:
    """The scene's chosen keyframe, judged inconsistent (as a drifted still would be)."""
    keyframe = Keyframe.objects.get(scene=scene, chosen=True)
    keyframe.verdict, keyframe.score = Verdict.REJECT, 31.0
    keyframe.save()
    return keyframe


@pytest.mark.django_db(transaction=True)
async def test_the_gate_holds_an_inconsistent_keyframe_unless_a_producer_overrides():
    await sync_to_async(seed_prices)()
    drama, _, cast = await sync_to_async(two_person_drama)()
    await storyboard(drama, [cast["first"]])
    held = await sync_to_async(hold_by_the_gate)(cast["first"])

    with pytest.raises(ValidationError) as refused:
        await sync_to_async(take_enqueue)(drama=drama, scenes=[cast["first"]])
    assert refused.value.code == "gated"
    assert "Scene 1: its keyframe is not consistent (score 31)" in refused.value.messages[0]
    assert not await Take.objects.filter(scene=cast["first"]).aexists()  # nothing queued

    scenes = [cast["first"], cast["second"]]
    batch = await sync_to_async(takes_render_batch)(drama=drama, scenes=scenes)
    assert [t.scene_id for t in batch.takes] == [cast["second"].id]
    assert batch.skipped_gated == 1 and "held by the keyframe gate" in batch.summary()

    [forced] = await sync_to_async(take_enqueue)(
        drama=drama, scenes=[cast["first"]], override_gate=True
    )
    assert forced.keyframe_id == held.id and forced.gate_override


@pytest.mark.django_db(transaction=True)
async def test_with_the_gate_off_an_inconsistent_keyframe_renders():
    await sync_to_async(seed_prices)()
    drama, _, cast = await sync_to_async(two_person_drama)(keyframe_gate=False)
    await storyboard(drama, [cast["first"]])
    await sync_to_async(hold_by_the_gate)(cast["first"])

    [take] = await sync_to_async(take_enqueue)(drama=drama, scenes=[cast["first"]])

    assert take.keyframe_id is not None and not take.gate_override


@pytest.mark.django_db(transaction=True)
def test_keyframes_beyond_the_budget_are_refused_and_nothing_is_kept():
    seed_prices()
    image_price("0.50")
    drama, _, cast = two_person_drama(budget_usd=Decimal("2.00"))

    with pytest.raises(ValidationError) as refused:
        kf.keyframes_enqueue(drama=drama, scenes=[cast["first"], cast["second"]])

    assert "6 keyframes would cost about $3.00, but only $2.00" in refused.value.messages[0]
    assert not KeyframeRound.objects.exists() and not Keyframe.objects.exists()
    assert not Job.objects.filter(kind=kf.GENERATE).exists()
    # A queued round holds its estimate against the budget, as a queued render does.
    [round_] = kf.keyframes_enqueue(drama=drama, scenes=[cast["first"]], candidates=2)
    assert round_.estimate_usd == Decimal("1.00")
    with pytest.raises(ValidationError, match=r"only \$1\.00"):
        kf.keyframes_enqueue(drama=drama, scenes=[cast["second"]], candidates=3)


@pytest.mark.django_db(transaction=True)
def test_a_double_request_queues_one_round():
    seed_prices()
    drama, _, cast = two_person_drama()
    kf.keyframes_enqueue(drama=drama, scenes=[cast["first"]])

    with pytest.raises(ValidationError) as refused:
        kf.keyframes_enqueue(drama=drama, scenes=[cast["first"]])

    assert refused.value.code == "busy"
    assert KeyframeRound.objects.count() == 1 and Keyframe.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_round_settles_its_candidates():
    seed_prices()
    drama, _, cast = two_person_drama()
    [round_] = kf.keyframes_enqueue(drama=drama, scenes=[cast["first"]])

    job_cancel(job=Job.objects.get(id=round_.job_id))

    round_.refresh_from_db()
    assert round_.status == KeyframeStatus.CANCELLED
    assert set(round_.keyframes.values_list("status", flat=True)) == {KeyframeStatus.CANCELLED}
    assert not Keyframe.objects.filter(chosen=True).exists()


class NotAPicture:
    name, model, label = "local", "composed-still", "broken"
    capabilities = ImageCapabilities()

    async def generate(self, request, *, idempotency_key):
        return GeneratedImage(data=b"<html>busy</html>", width=720, height=1280)


@pytest.mark.django_db(transaction=True)
async def test_a_reply_that_is_not_a_picture_fails_the_round_saying_why_and_stores_nothing(
    monkeypatch,
):
    await sync_to_async(seed_prices)()
    drama, _, cast = await sync_to_async(two_person_drama)()
    monkeypatch.setattr(registry, "image", lambda: NotAPicture())

    [round_] = await storyboard(drama, [cast["first"]])

    assert round_.status == KeyframeStatus.FAILED and round_.consistent is None
    candidates = await sync_to_async(keyframes_of)(round_)
    assert {k.status for k in candidates} == {KeyframeStatus.FAILED}
    assert all("not a picture" in k.error for k in candidates)
    assert not any(k.image for k in candidates)
    job = await Job.objects.aget(id=round_.job_id)
    assert job.status == JobStatus.FAILED and "No keyframe could be made" in job.last_error


@pytest.mark.django_db(transaction=True)
async def test_a_take_queued_before_its_storyboard_starts_from_the_keyframe_chosen_since():
    from dramas.pipeline_db import build_prompt

    await sync_to_async(seed_prices)()
    drama, _, cast = await sync_to_async(two_person_drama)()
    [take] = await sync_to_async(take_enqueue)(drama=drama, scenes=[cast["first"]])
    assert take.keyframe_id is None
    [round_] = await storyboard(drama, [cast["first"]])
    chosen = await Keyframe.objects.aget(round=round_, chosen=True)

    await sync_to_async(build_prompt)(take_id=take.id, max_refs=1, provider="local", model="x")

    assert (await Take.objects.aget(id=take.id)).keyframe_id == chosen.id


def remote_images(settings, url: str) -> None:
    """Keyframes from the simulator's OpenAI images route, billed per image."""
    settings.PROVIDER_IMAGE = {
        **settings.PROVIDER_IMAGE,
        "api": "openai",
        "base_url": f"{url}/v1",
        "provider": "openai",
        "model": "gpt-image-1",
        "api_key": "",
        "timeout_s": 3.0,
        "rate_per_s": 100.0,
        "burst": 100,
    }
    registry.forget()


def remote_prices() -> None:
    Price.objects.update_or_create(
        provider="openai",
        model="gpt-image-1",
        kind="image",
        defaults={"per_request": Decimal("0.04"), "effective_date": "2000-01-01"},
    )


@pytest.mark.django_db(transaction=True)
async def test_remote_keyframes_are_billed_per_image_and_the_render_starts_from_one(settings):
    from tests.providers_support import running_sim
    from tests.render_support import remote_video, wait_for

    async with running_sim() as sim:
        remote_images(settings, sim.url)
        remote_video(settings, sim.url)
        await sync_to_async(seed_prices)()
        await sync_to_async(remote_prices)()
        drama, _, cast = await sync_to_async(two_person_drama)(seconds=2)

        [round_] = await storyboard(drama, [cast["first"]])

        assert round_.status == KeyframeStatus.DONE and round_.consistent is True
        assert (round_.provider, round_.model) == ("openai", "gpt-image-1")
        assert len(sim.images) == 3 and {i["references"] for i in sim.images.values()} == {1}
        usage = [u async for u in UsageRecord.objects.filter(operation="image.generate")]
        assert len(usage) == 3 and sum(u.cost_usd for u in usage) == Decimal("0.12")
        [take] = await sync_to_async(take_enqueue)(drama=drama, scenes=[cast["first"]])

        async def finished():
            current = await Take.objects.aget(id=take.id)
            return None if current.active else current

        async with running():
            done = await wait_for(finished, timeout=60)
        assert done.status == "done" and done.verdict == Verdict.ACCEPT
        [job] = [j for j in sim.jobs.values() if j.get("kind") == "video"]
        assert job["first_frame"] is True  # the vendor got the chosen keyframe as its start


@pytest.mark.django_db(transaction=True)
async def test_drifted_remote_keyframes_are_held_by_the_gate_and_the_render_it_saved_is_counted(
    settings,
):
    from tests.providers_support import running_sim
    from tests.render_support import remote_video

    async with running_sim(drift_rate=1.0) as sim:
        remote_images(settings, sim.url)
        remote_video(settings, sim.url)
        await sync_to_async(seed_prices)()
        await sync_to_async(remote_prices)()
        drama, _, cast = await sync_to_async(two_person_drama)(seconds=2)

        [round_] = await storyboard(drama, [cast["first"]])

    assert round_.consistent is False
    assert round_.render_avoided_usd == Decimal("0.20")  # sora-2's 2 s clip at $0.10/s
    candidates = await sync_to_async(keyframes_of)(round_)
    assert {k.verdict for k in candidates} == {Verdict.REJECT}  # another person's face
    with pytest.raises(ValidationError) as refused:
        await sync_to_async(take_enqueue)(drama=drama, scenes=[cast["first"]])
    assert refused.value.code == "gated"
    savings = await sync_to_async(kf.gate_savings)(drama=drama)
    assert (savings.renders_avoided, savings.saved_usd) == (1, Decimal("0.20"))
    assert savings.keyframes_usd == Decimal("0.12")
