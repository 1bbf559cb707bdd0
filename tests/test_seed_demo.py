from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from characters.models import Character, ReferenceImage
from dramas.models import Chapter, ChapterVersion, DialogLine, Drama, Role, Scene

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_it_creates_the_demo_drama(settings):
    output = seed()

    user = get_user_model().objects.get(username=settings.DEMO_USERNAME)
    drama = Drama.objects.get(title="Midnight Broadcast")
    assert drama.memberships.get(user=user).role == Role.PRODUCER
    assert (drama.genre, drama.aspect, drama.budget_usd) == ("thriller", "9:16", Decimal("25"))
    assert drama.logline and drama.style
    assert f"Demo login: {settings.DEMO_USERNAME} / {settings.DEMO_PASSWORD}" in output


def test_it_gives_both_characters_stored_reference_images():
    seed()

    marcus = Character.objects.get(name="Marcus Hale")
    ada = Character.objects.get(name="Dr. Ada Quinn")
    assert marcus.appearance_notes and ada.appearance_notes
    assert sorted(r.original_name for r in marcus.references.all()) == ["obama.jpg", "obama2.jpg"]
    assert [r.original_name for r in ada.references.all()] == ["grace_hopper.jpg"]
    for reference in ReferenceImage.objects.all():
        assert reference.image.storage.exists(reference.image.name)
        assert reference.width > 0 and reference.height > 0


def test_it_writes_one_chapter_of_three_scenes_with_dialog():
    seed()

    chapter = Chapter.objects.get()
    assert (chapter.number, chapter.title) == (1, "The Caller")
    scenes = list(chapter.scenes.all())
    assert len(scenes) == 3
    for scene in scenes:
        assert scene.location and scene.action and scene.camera and scene.mood
        assert scene.characters.exists()
        assert 2 <= scene.lines.count() <= 3
        assert all(line.speaker_id for line in scene.lines.all())
    assert ChapterVersion.objects.filter(chapter=chapter).count() == 1


def test_it_does_not_duplicate_anything_when_run_twice():
    seed()
    output = seed()

    assert "already exists" in output
    assert get_user_model().objects.count() == 1
    assert Drama.objects.count() == 1
    assert Character.objects.count() == 2
    assert ReferenceImage.objects.count() == 3
    assert Chapter.objects.count() == 1
    assert Scene.objects.count() == 3
    assert DialogLine.objects.count() == 7
    assert ChapterVersion.objects.count() == 1


def test_it_lets_the_demo_user_log_in_and_use_the_admin(client, settings):
    seed()

    response = client.post(
        reverse("login"),
        {"username": settings.DEMO_USERNAME, "password": settings.DEMO_PASSWORD},
    )

    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_it_keeps_an_existing_users_password(settings):
    get_user_model().objects.create_user(
        username=settings.DEMO_USERNAME, password="their-own-password"
    )

    output = seed()

    user = get_user_model().objects.get(username=settings.DEMO_USERNAME)
    assert user.check_password("their-own-password")
    assert Drama.objects.filter(memberships__user=user).count() == 1
    assert settings.DEMO_PASSWORD not in output


@pytest.mark.django_db(transaction=True)
async def test_the_demo_chapter_is_voiced_offline_and_every_scene_holds_its_dialog():
    from asgiref.sync import sync_to_async

    from dramas.live import dialog_context, editor_scenes
    from studio.jobs.models import Job
    from tests.render_support import jobs_settled, running

    await sync_to_async(seed)()
    jobs = [job.id async for job in Job.objects.filter(kind="dialog.speak")]
    assert len(jobs) == await DialogLine.objects.acount() == 7  # one job per line
    async with running():
        finished = await jobs_settled(jobs)
    assert {job.status for job in finished} == {"succeeded"}

    def dialog() -> dict:
        chapter = Chapter.objects.get(drama__title="Midnight Broadcast")
        return dialog_context(chapter=chapter, scenes=editor_scenes(chapter=chapter), can_edit=True)

    context = await sync_to_async(dialog)()
    assert context["voice_summary"]["voiced"] == 7
    assert context["lengthenings"] == []  # measured: no scene is too short for its lines


@pytest.mark.django_db(transaction=True)
async def test_the_demo_chapter_gets_a_scored_storyboard_offline_and_renders_from_it():
    from asgiref.sync import sync_to_async

    from dramas.keyframes import GENERATE
    from dramas.models import Keyframe, Scene
    from dramas.pipeline_db import video_request
    from dramas.takes import take_enqueue
    from studio.jobs.models import Job
    from tests.render_support import jobs_settled, running

    await sync_to_async(seed)()
    jobs = [job.id async for job in Job.objects.filter(kind=GENERATE)]
    assert len(jobs) == await Scene.objects.acount() == 3  # a round per scene
    async with running():
        finished = await jobs_settled(jobs, timeout=120)
    assert {job.status for job in finished} == {"succeeded"}

    chosen = [k async for k in Keyframe.objects.filter(chosen=True).order_by("scene__order")]
    assert len(chosen) == 3
    for keyframe in chosen:
        assert keyframe.verdict == "accept", keyframe.scores  # every cast face found, above 65
        names = {c["name"] for c in keyframe.scores["characters"]}
        cast = await sync_to_async(_cast_names)(keyframe.scene_id)
        assert names == cast
    drama_scene = await Scene.objects.select_related("chapter__drama").aget(id=chosen[0].scene_id)
    [take] = await sync_to_async(take_enqueue)(
        drama=drama_scene.chapter.drama, scenes=[drama_scene]
    )
    request = await sync_to_async(video_request)(take_id=take.id)
    with chosen[0].image.open("rb") as handle:
        assert request.first_frame == handle.read()


def _cast_names(scene_id: int) -> set[str]:
    from dramas.models import Scene

    return set(Scene.objects.get(id=scene_id).characters.values_list("name", flat=True))
