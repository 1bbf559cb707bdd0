"""Scenes keep who they are across script versions: paid and approved takes are never lost by
generating, rewriting or restoring a chapter; gone scenes are archived, and come back."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from dramas import services
from dramas import takes as take_services
from dramas.models import ChapterVersion, DialogLine, Scene, Take, TakeStatus
from studio.jobs import registry
from studio.jobs.models import Job, JobStatus
from tests.factories import (
    create_chapter,
    create_character,
    create_line,
    create_scene,
    create_take,
)
from tests.render_support import offline_video

pytestmark = pytest.mark.django_db


@pytest.fixture
def chapter(drama):
    mei = create_character(drama=drama, name="Mei")
    chapter = create_chapter(drama=drama, title="The Contract")
    for location in ("Office", "Rooftop", "Street"):
        scene = create_scene(chapter=chapter, location=location, characters=[mei])
        create_line(scene=scene, speaker=mei, line=f"At the {location.lower()}.")
    return chapter


def approve(take, user):
    return take_services.take_approve(take=take, user=user)


def other_script(chapter, *, keep: int) -> dict:
    """The chapter's script with only its first `keep` scenes and one new scene."""
    script = services.chapter_script(chapter=chapter)
    new = {**script["scenes"][0], "location": "Harbour", "action": "Fog rolls in."}
    del new["key"]
    return {**script, "scenes": [*script["scenes"][:keep], new]}


def test_restoring_the_current_script_changes_nothing(chapter, producer):
    first = chapter.scenes.get(order=1)
    approved = approve(create_take(scene=first), producer)
    version = services.chapter_version_save(chapter=chapter, user=producer)
    scenes_before = list(chapter.scenes.values_list("id", "key", "order", "updated_at"))
    lines_before = list(DialogLine.objects.order_by("id").values_list("id", "line"))

    restored = services.chapter_version_restore(version=version, user=producer)

    assert restored.id == version.id  # no new version: nothing changed
    assert list(chapter.scenes.values_list("id", "key", "order", "updated_at")) == scenes_before
    assert list(DialogLine.objects.order_by("id").values_list("id", "line")) == lines_before
    approved.refresh_from_db()
    assert approved.locked and approved.video and approved.frames.count() == 1


def test_a_script_update_keeps_matching_scenes_and_their_takes_in_place(chapter, producer):
    first = chapter.scenes.get(order=1)
    take = approve(create_take(scene=first), producer)
    script = services.chapter_script(chapter=chapter)
    script["scenes"][0]["action"] = "She signs, then tears it up."
    script["scenes"].reverse()

    services.chapter_script_replace(chapter=chapter, script=script, note="Edited", source="written")

    first.refresh_from_db()
    assert (first.order, first.action) == (3, "She signs, then tears it up.")
    assert list(chapter.scenes.values_list("location", flat=True)) == [
        "Street",
        "Rooftop",
        "Office",
    ]
    assert Take.objects.get(id=take.id).scene_id == first.id


def test_scenes_a_new_script_lacks_are_archived_with_their_takes_and_come_back(
    chapter, producer, producer_client
):
    street = chapter.scenes.get(order=3)
    take = create_take(scene=street)
    old = services.chapter_version_save(chapter=chapter, user=producer)

    services.chapter_script_replace(
        chapter=chapter, script=other_script(chapter, keep=2), note="Shorter", source="written"
    )

    assert list(chapter.scenes.values_list("location", flat=True)) == [
        "Office",
        "Rooftop",
        "Harbour",
    ]
    street.refresh_from_db()
    assert street.archived and Take.objects.filter(id=take.id).exists()
    board = producer_client.get(reverse("drama_board", args=[chapter.drama_id]))
    assert "Street" not in board.text
    editor = producer_client.get(reverse("chapter_editor", args=[chapter.drama_id, chapter.id]))
    assert "Archived scenes (1)" in editor.text
    versions = producer_client.get(reverse("chapter_versions", args=[chapter.drama_id, chapter.id]))
    assert f'id="archived-scene-{street.id}"' in versions.text
    assert f"v{old.number}</a>" in versions.text  # the version that brings it back

    services.chapter_version_restore(version=old, user=producer)

    street.refresh_from_db()
    assert not street.archived and street.order == 3
    assert list(street.takes.values_list("id", flat=True)) == [take.id]
    harbour = Scene.all_objects.get(chapter=chapter, location="Harbour")
    assert harbour.archived  # the newer scene is archived in turn, not deleted


def test_a_version_older_than_scene_keys_finds_its_scenes_by_content(chapter, producer):
    take = approve(create_take(scene=chapter.scenes.get(order=2)), producer)
    script = services.chapter_script(chapter=chapter)
    for data in script["scenes"]:
        del data["key"]
    legacy = ChapterVersion.objects.create(chapter=chapter, number=7, script=script)

    services.chapter_version_restore(version=legacy, user=producer)

    assert chapter.scenes.count() == 3
    assert not Scene.all_objects.filter(chapter=chapter, archived_at__isnull=False).exists()
    assert Take.objects.get(id=take.id).scene.order == 2


def test_archiving_approved_takes_asks_first(chapter, producer, producer_client):
    street = chapter.scenes.get(order=3)
    take = approve(create_take(scene=street), producer)
    services.chapter_script_replace(
        chapter=chapter,
        script=other_script(chapter, keep=2),
        note="Shorter",
        source="written",
        archive_approved=True,
    )
    shorter = chapter.versions.order_by("-number").first()
    services.chapter_version_restore(version=chapter.versions.get(number=1), user=producer)
    assert not Scene.all_objects.get(id=street.id).archived

    url = reverse("chapter_version_restore", args=[chapter.drama_id, chapter.id, shorter.id])
    asked = producer_client.post(url)

    assert asked.status_code == 409
    assert "1 approved take" in asked.text and f"take {take.number}" in asked.text
    assert not Scene.all_objects.get(id=street.id).archived  # nothing happened yet
    with pytest.raises(ValidationError, match="approved take"):
        services.chapter_version_restore(version=shorter, user=producer)

    confirmed = producer_client.post(url, {"archive_approved": "1"})

    assert confirmed.status_code == 302
    assert Scene.all_objects.get(id=street.id).archived
    assert Take.objects.get(id=take.id).locked


def test_generating_over_approved_takes_needs_the_box_ticked(chapter, producer, producer_client):
    approve(create_take(scene=chapter.scenes.get(order=1)), producer)
    url = reverse("chapter_generate", args=[chapter.drama_id, chapter.id])
    form = {"target_seconds": 30, "plot_turns": 2}

    refused = producer_client.post(url, form, follow=True)

    assert "1 approved take" in refused.text
    assert not Job.objects.filter(kind="chapter.generate").exists()
    editor = producer_client.get(reverse("chapter_editor", args=[chapter.drama_id, chapter.id]))
    assert "Archive the 1 approved take" in editor.text

    producer_client.post(url, {**form, "archive_approved": "on"})

    job = Job.objects.get(kind="chapter.generate")
    assert job.payload["archive_approved"] is True


def test_archiving_a_scene_cancels_its_render(settings, tmp_path, chapter, producer):
    offline_video(settings, tmp_path)
    registry.load()
    street = chapter.scenes.get(order=3)
    [take] = take_services.take_enqueue(drama=chapter.drama, scenes=[street], user=producer)

    services.chapter_script_replace(
        chapter=chapter, script=other_script(chapter, keep=2), note="Shorter", source="written"
    )

    take.refresh_from_db()
    assert take.status == TakeStatus.CANCELLED
    assert "archived" in take.note
    assert Job.objects.get(id=take.job_id).status == JobStatus.CANCELLED
    with pytest.raises(ValidationError, match="archived"):
        take_services.take_enqueue(
            drama=chapter.drama, scenes=[Scene.all_objects.get(id=street.id)]
        )


def test_deleting_a_scene_with_takes_archives_it(chapter, producer, producer_client):
    office = chapter.scenes.get(order=1)
    take = create_take(scene=office)
    empty = chapter.scenes.get(order=2)
    editor = producer_client.get(reverse("chapter_editor", args=[chapter.drama_id, chapter.id]))
    assert editor.text.count("It has takes: it is archived with them") == 1  # the button says so

    services.scene_delete(scene=office)
    services.scene_delete(scene=empty)

    assert Scene.all_objects.get(id=office.id).archived
    assert Take.objects.filter(id=take.id).exists()
    assert not Scene.all_objects.filter(id=empty.id).exists()  # nothing paid in it: gone
    assert list(chapter.scenes.values_list("order", flat=True)) == [1]


# --- At most one active take per scene -------------------------------------------------------


@pytest.fixture
def offline(settings, tmp_path):
    offline_video(settings, tmp_path)
    registry.load()


def test_the_database_refuses_a_second_active_take_of_a_scene(chapter):
    scene = chapter.scenes.first()
    create_take(scene=scene, status="rendering")
    create_take(scene=scene, status="done")  # finished takes are as many as you like

    with pytest.raises(IntegrityError), transaction.atomic():
        create_take(scene=scene, status="scoring")


def test_rendering_a_scene_twice_queues_one_render_and_says_why(offline, chapter, producer_client):
    scene = chapter.scenes.first()
    url = reverse("render_scene", args=[chapter.drama_id, scene.id])

    producer_client.post(url)
    second = producer_client.post(url, follow=True)

    assert scene.takes.count() == 1
    assert Job.objects.filter(kind=take_services.RENDER).count() == 1
    assert "Scene 1 is already rendering (take 1)" in second.text


def test_a_double_click_on_render_chapter_queues_each_scene_once(offline, chapter, producer):
    scenes = list(chapter.scenes.select_related("chapter"))
    busy = scenes[0]
    take_services.take_enqueue(drama=chapter.drama, scenes=[busy])

    first = take_services.takes_render_batch(drama=chapter.drama, scenes=scenes, user=producer)
    with pytest.raises(ValidationError, match="3 scenes already rendering"):
        take_services.takes_render_batch(drama=chapter.drama, scenes=scenes, user=producer)

    assert (len(first.takes), first.skipped_busy) == (2, 1)
    assert "1 scene already rendering" in first.summary()
    assert Take.objects.filter(scene__chapter=chapter).count() == 3


def test_a_regenerate_while_the_scene_renders_is_refused(offline, chapter, producer):
    scene = chapter.scenes.first()
    done = create_take(scene=scene)
    take_services.take_enqueue(drama=chapter.drama, scenes=[scene])

    with pytest.raises(ValidationError, match="already rendering"):
        take_services.take_regenerate(take=done, user=producer)


def test_archived_scenes_do_not_count_in_the_chapter_stage_nor_the_dashboard(
    chapter, producer, producer_client
):
    from dramas.models import Chapter, ChapterStatus
    from dramas.stages import chapter_stage, chapters_with_stage

    for scene in chapter.scenes.all()[:2]:
        approve(create_take(scene=scene), producer)
    services.chapter_script_replace(
        chapter=chapter,
        script={
            **services.chapter_script(chapter=chapter),
            "scenes": services.chapter_script(chapter=chapter)["scenes"][:2],
        },
        note="Two scenes",
        source="written",
    )

    staged = chapters_with_stage(Chapter.objects.filter(id=chapter.id)).get()
    assert (staged.scene_count, chapter_stage(staged)) == (2, ChapterStatus.APPROVED)
    dashboard = producer_client.get(reverse("dashboard"))
    assert "2 scenes" in dashboard.text
