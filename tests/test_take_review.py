"""Reviewing takes: who may do what, every action recorded, approved takes locked."""

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from dramas.models import Review, ReviewState, Role, Take
from dramas.takes import batch_scenes, take_approve, take_enqueue
from studio.jobs.models import Job
from tests.conftest import login
from tests.factories import (
    add_member,
    create_chapter,
    create_character,
    create_drama,
    create_scene,
    create_take,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(producer):
    drama = create_drama(owner=producer)
    mei = create_character(drama=drama, name="Mei")
    chapter = create_chapter(drama=drama)
    scene = create_scene(chapter=chapter, characters=[mei], duration_s=2)
    take = create_take(scene=scene)
    return {"drama": drama, "chapter": chapter, "scene": scene, "take": take}


def url(name, world, **extra):
    return reverse(name, kwargs={"drama_id": world["drama"].id, **extra})


def test_it_records_approve_reject_and_comment_with_who_and_when(world, producer_client, producer):
    take = world["take"]
    review_url = url("take_review_action", world, take_id=take.id)

    producer_client.post(review_url, {"action": "reject", "comment": "Wrong jacket"})
    producer_client.post(review_url, {"action": "comment", "comment": "Try warmer light"})
    producer_client.post(review_url, {"action": "approve", "comment": "Good enough"})

    take.refresh_from_db()
    assert take.review_state == ReviewState.APPROVED and take.locked
    reviews = list(take.reviews.order_by("id").values_list("user", "action", "comment"))
    assert reviews == [
        (producer.id, "reject", "Wrong jacket"),
        (producer.id, "comment", "Try warmer light"),
        (producer.id, "approve", "Good enough"),
    ]
    assert all(r.created_at for r in take.reviews.all())
    page = producer_client.get(url("take_review", world, take_id=take.id)).content.decode()
    assert "Wrong jacket" in page and "Approved · locked" in page


def test_it_reviews_single_frames(world, producer_client):
    take = world["take"]
    frame = take.frames.get()
    response = producer_client.post(
        url("frame_review_action", world, take_id=take.id, frame_id=frame.id),
        {"action": "reject", "comment": "Eyes closed"},
    )
    assert response.status_code == 302
    frame.refresh_from_db()
    assert frame.review_state == ReviewState.REJECTED and frame.comment == "Eyes closed"
    review = Review.objects.get()
    assert review.frame == frame and review.action == "reject"


def test_it_lets_viewers_watch_but_not_review(world):
    viewer = login(add_member(drama=world["drama"], role=Role.VIEWER))
    take = world["take"]
    page = viewer.get(url("take_review", world, take_id=take.id))
    assert page.status_code == 200
    assert b"Approve take" not in page.content and b"Mei 88" in page.content
    assert viewer.get(url("take_video", world, take_id=take.id))["Content-Type"] == "video/mp4"
    assert (
        viewer.post(
            url("take_review_action", world, take_id=take.id), {"action": "approve"}
        ).status_code
        == 403
    )
    assert viewer.post(url("take_regenerate", world, take_id=take.id)).status_code == 403
    assert not Review.objects.exists()


def test_it_keeps_media_from_other_dramas(world):
    outsider_drama = create_drama()
    outsider = login(outsider_drama.memberships.get().user)
    take = world["take"]
    assert outsider.get(url("take_poster", world, take_id=take.id)).status_code == 404
    other = reverse("take_poster", kwargs={"drama_id": outsider_drama.id, "take_id": take.id})
    assert outsider.get(other).status_code == 404


def test_it_never_overwrites_an_approved_take(world, producer, producer_client):
    take = take_approve(take=world["take"], user=producer)
    second = create_scene(chapter=world["chapter"], duration_s=2)
    before = (take.video.name, take.poster.name, take.score, take.prompt)

    producer_client.post(url("render_chapter", world, chapter_id=world["chapter"].id))

    # The batch skipped the approved scene and queued the other one.
    assert list(Take.objects.filter(scene=second).values_list("number", flat=True)) == [1]
    assert world["scene"].takes.count() == 1
    assert batch_scenes(scenes=[world["scene"], second]) == ([], 1)  # second is rendering now
    # Rendering the approved scene on purpose makes a new take; the approved one stays.
    producer_client.post(url("render_scene", world, scene_id=world["scene"].id))
    take.refresh_from_db()
    assert (take.video.name, take.poster.name, take.score, take.prompt) == before
    assert take.locked and world["scene"].takes.count() == 2


def test_it_regenerates_with_an_edited_prompt_and_a_new_seed(world, producer_client, producer):
    take = world["take"]
    take.seed = 1234
    take.save()
    response = producer_client.post(
        url("take_regenerate", world, take_id=take.id),
        {"prompt": "She turns away, rain on the glass.", "comment": "More rain"},
    )
    new = Take.objects.get(scene=world["scene"], number=2)
    assert response.status_code == 302 and response["Location"].endswith(f"/takes/{new.id}/")
    assert new.prompt == "She turns away, rain on the glass." and new.prompt_edited
    assert new.seed != 1234 and new.idempotency_key != take.idempotency_key
    job = Job.objects.get(id=new.job_id)
    assert job.kind == "take.render" and job.payload == {
        "take_id": new.id,
        "scene_id": world["scene"].id,
    }
    assert Review.objects.get().action == "regenerate"
    assert Review.objects.get().comment == "More rain"


def test_it_shows_the_estimate_and_refuses_over_budget(world, producer_client, settings):
    from studio.models import Price, UsageRecord

    settings.PROVIDER_VIDEO = {**settings.PROVIDER_VIDEO, "base_url": ""}
    Price.objects.update_or_create(
        provider="local",
        model="animatic",
        kind="video",
        defaults={"per_second": Decimal("1.00"), "effective_date": "2000-01-01"},
    )
    drama = world["drama"]
    drama.budget_usd = Decimal("3.00")
    drama.save()
    UsageRecord.objects.create(
        provider="x", model="y", operation="chat", drama_id=drama.id, cost_usd=Decimal("2.00")
    )
    page = producer_client.get(url("scene_takes", world, scene_id=world["scene"].id))
    assert b"Render scene" in page.content and b"~$2.00" in page.content

    response = producer_client.post(
        url("render_scene", world, scene_id=world["scene"].id), follow=True
    )
    assert (
        "would cost about $2.00, but only $1.00 of the $3.00 budget is left"
        in response.content.decode()
    )
    assert world["scene"].takes.count() == 1


def test_it_queues_with_the_chosen_priority(world, producer_client):
    producer_client.post(url("render_drama", world), {"priority": "2"})
    take = world["scene"].takes.get(number=2)
    assert take.priority == 2 and Job.objects.get(id=take.job_id).priority == 2
    with pytest.raises(Exception, match="Nothing to render"):
        take_enqueue(drama=world["drama"], scenes=[])


def test_it_renders_live_fragments_for_the_board_and_the_scene_pages(world):
    from dramas import live

    drama, scene, take = world["drama"], world["scene"], world["take"]
    board = live.snapshot(
        drama_id=drama.id, view="board", chapter_id=world["chapter"].id, can_edit=True
    )
    assert f'id="scene-take-{scene.id}"' in board and "Consistent" in board
    scene_page = live.snapshot(drama_id=drama.id, view="scene", chapter_id=scene.id, can_edit=True)
    assert f'id="scene-takes-{scene.id}" class="scene-takes" hx-swap-oob="true"' in scene_page
    assert f'id="take-status-{take.id}"' in scene_page
    [queued] = take_enqueue(drama=drama, scenes=[scene])
    progress = live.progress(
        drama_id=drama.id, view="scene", chapter_id=scene.id, can_edit=True, ids=[queued.job_id]
    )
    assert f'id="take-status-{queued.id}"' in progress and "Queued" in progress
    other = live.snapshot(drama_id=drama.id, view="scene", chapter_id=999999, can_edit=True)
    assert other == ""


def test_it_lets_producers_turn_on_auto_regenerate(world, producer_client):
    drama = world["drama"]
    response = producer_client.post(
        url("drama_edit", world),
        {
            "title": drama.title,
            "genre": drama.genre,
            "language": "en",
            "aspect": drama.aspect,
            "budget_usd": "20",
            "auto_regenerate": "on",
            "max_attempts": "4",
        },
    )
    assert response.status_code == 302
    drama.refresh_from_db()
    assert drama.auto_regenerate and drama.max_attempts == 4


def test_a_take_rejected_for_a_missing_character_is_red_whatever_its_score(world, producer_client):
    take = create_take(scene=world["scene"], score=91.0)
    Take.objects.filter(id=take.id).update(verdict="reject", consistency={"unseen": ["Ada"]})

    page = producer_client.get(url("take_review", world, take_id=take.id)).content.decode()

    badge = re.search(r'<span class="badge (\w+)" title="([^"]*)">Inconsistent · 91', page)
    assert badge, "no verdict badge"
    assert badge.group(1) == "red"
    assert "never found: Ada" in badge.group(2)


def test_it_approves_the_consistent_takes_of_a_chapter_in_one_go(world, producer_client):
    chapter, mei = world["chapter"], world["scene"].characters.get()
    first = world["take"]  # scene 1: done, consistent (88)
    second_scene = create_scene(chapter=chapter, characters=[mei])
    create_take(scene=second_scene, score=90.0)
    newer = create_take(scene=second_scene, score=91.0)  # the newest one counts
    low = create_take(scene=create_scene(chapter=chapter, characters=[mei]), score=30.0)
    rendering_scene = create_scene(chapter=chapter, characters=[mei])
    create_take(scene=rendering_scene, score=95.0)
    create_take(scene=rendering_scene, status="rendering")  # someone asked for another try
    reviewed = create_take(scene=create_scene(chapter=chapter, characters=[mei]), score=92.0)
    producer_client.post(
        url("take_review_action", world, take_id=reviewed.id), {"action": "reject"}
    )
    board = url("drama_board", world) + f"?chapter={chapter.id}"
    assert "Approve consistent takes (2)" in producer_client.get(board).text

    response = producer_client.post(
        url("chapter_approve_consistent", world, chapter_id=chapter.id), follow=True
    )

    assert "Approved 2 takes: scenes 1, 2." in response.text
    approved = set(Take.objects.filter(locked=True).values_list("id", flat=True))
    assert approved == {first.id, newer.id}
    assert low.id not in approved and reviewed.id not in approved
    assert Review.objects.filter(take=newer, action="approve").exists()
    assert "Approve consistent takes" not in producer_client.get(board).text
    again = producer_client.post(
        url("chapter_approve_consistent", world, chapter_id=chapter.id), follow=True
    )
    assert "No consistent take is waiting for approval" in again.text


@pytest.mark.parametrize(
    "status", ["queued", "waiting_for_provider", "rendering", "lipsync", "scoring"]
)
def test_a_take_on_its_way_at_any_stage_holds_its_scene_and_its_estimate(world, status):
    from dramas.takes import drama_reserved_usd

    second = create_scene(chapter=world["chapter"], duration_s=2)
    create_take(scene=second, status=status, score=None, estimate_usd=Decimal("0.40"))

    assert batch_scenes(scenes=[world["scene"], second]) == ([world["scene"]], 0)
    assert drama_reserved_usd(drama_id=world["drama"].id) == Decimal("0.40")
    assert Take.objects.get(scene=second).active
