"""Every drama URL against every visitor: anonymous, non-member, viewer, editor, producer."""

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import URLPattern, get_resolver, reverse

from dramas import services
from dramas.jobs import chapter_check_enqueue
from dramas.models import (
    Export,
    ExportStatus,
    Frame,
    Keyframe,
    KeyframeRound,
    Review,
    Role,
    Take,
    export_folder,
)
from studio.jobs.models import Job, QueuePause
from tests.conftest import login
from tests.factories import (
    add_member,
    create_chapter,
    create_character,
    create_drama,
    create_keyframes,
    create_line,
    create_scene,
    create_take,
    create_user,
)

PRODUCER_ONLY_WRITES = {
    "drama_edit",
    "drama_delete",
    "drama_members",
    "drama_member_remove",
    "drama_costs",
}
PRODUCER_ONLY_READS = {"drama_edit", "drama_costs"}  # costs: producers see their spend
EDITOR_READS = {  # write forms: a viewer may not even open them
    "character_create",
    "character_edit",
    "chapter_create",
    "chapter_edit",
    "scene_edit",
    "line_edit",
    "chapter_generate_new",
    "generation_estimate",
}


def drama_url_names() -> list[str]:
    return sorted(
        pattern.name
        for pattern in get_resolver().url_patterns[-1].url_patterns
        if isinstance(pattern, URLPattern) and "drama_id" in pattern.pattern.regex.pattern
    )


@pytest.fixture
def world(db):
    """A drama with one of everything, and a member of each role."""
    producer = create_user(username="prod")
    drama = create_drama(owner=producer)
    character = create_character(drama=drama, name="Mei", portrait="grace_hopper.jpg")
    chapter = create_chapter(drama=drama)
    scene = create_scene(chapter=chapter, characters=[character])
    line = create_line(scene=scene, speaker=character)
    version = services.chapter_version_save(chapter=chapter)
    job = chapter_check_enqueue(chapter=chapter)
    take = create_take(scene=scene)
    keyframes = create_keyframes(scene=scene)
    export = Export.objects.create(
        chapter=chapter,
        input_hash="0" * 64,
        status=ExportStatus.DONE,
        folder=export_folder(chapter, "0" * 64),
        files={"manifest.json": {"sha256": "", "bytes": 2}},
    )
    default_storage.save(f"{export.folder}/manifest.json", ContentFile(b"{}"))
    viewer = add_member(drama=drama, role=Role.VIEWER)
    editor = add_member(drama=drama, role=Role.EDITOR)
    ids = {
        "drama_id": drama.id,
        "character_id": character.id,
        "reference_id": character.references.get().id,
        "chapter_id": chapter.id,
        "scene_id": scene.id,
        "line_id": line.id,
        "version_id": version.id,
        "membership_id": drama.memberships.get(user=viewer).id,
        "job_id": job.id,
        "take_id": take.id,
        "frame_id": take.frames.get().id,
        "export_id": export.id,
        "keyframe_id": keyframes.keyframes.get(index=1).id,
        "name": "manifest.json",
    }
    return {"drama": drama, "producer": producer, "viewer": viewer, "editor": editor, "ids": ids}


def url_for(name: str, ids: dict) -> str:
    pattern = next(p for p in get_resolver().url_patterns[-1].url_patterns if p.name == name)
    wanted = pattern.pattern.regex.groupindex
    return reverse(name, kwargs={key: value for key, value in ids.items() if key in wanted})


def test_it_lists_every_drama_url_in_the_matrix():
    names = drama_url_names()
    assert len(names) >= 25
    assert PRODUCER_ONLY_WRITES <= set(names)
    assert EDITOR_READS <= set(names)


@pytest.mark.parametrize("name", drama_url_names())
def test_it_sends_anonymous_visitors_to_login(world, name):
    url = url_for(name, world["ids"])
    for method in ("get", "post"):
        response = getattr(Client(), method)(url)
        assert response.status_code == 302, (method, url)
        assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", drama_url_names())
def test_it_hides_every_drama_url_from_non_members(world, name):
    url = url_for(name, world["ids"])
    outsider = login(create_user())
    assert outsider.get(url).status_code == 404
    assert outsider.post(url).status_code == 404


@pytest.mark.parametrize("name", drama_url_names())
def test_it_forbids_viewers_every_write(world, name):
    url = url_for(name, world["ids"])
    viewer = login(world["viewer"])
    before = _snapshot(world["drama"])
    assert viewer.post(url, {"title": "x", "offset": "1", "note": "x"}).status_code == 403
    assert _snapshot(world["drama"]) == before
    get_status = viewer.get(url).status_code
    if name in EDITOR_READS | PRODUCER_ONLY_READS:
        assert get_status == 403
    else:
        assert get_status in (200, 405)  # 405: the URL only takes POST


@pytest.mark.parametrize("name", sorted(PRODUCER_ONLY_WRITES))
def test_it_keeps_budget_and_members_to_producers(world, name):
    editor = login(world["editor"])
    url = url_for(name, world["ids"])
    assert (
        editor.post(url, {"username": world["editor"].username, "role": "producer"}).status_code
        == 403
    )
    assert world["drama"].memberships.get(user=world["editor"]).role == Role.EDITOR


@pytest.mark.parametrize("name", sorted(set(drama_url_names()) - PRODUCER_ONLY_READS))
def test_it_lets_editors_open_every_page_they_may_use(world, name):
    status = login(world["editor"]).get(url_for(name, world["ids"])).status_code
    assert status in (200, 405)


def test_it_refuses_a_post_without_csrf_token(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["producer"])
    url = reverse("chapter_create", args=[world["drama"].id])
    response = client.post(url, {"title": "Sneaky"})
    assert response.status_code == 403
    assert not world["drama"].chapters.filter(title="Sneaky").exists()


def _snapshot(drama) -> tuple:
    drama.refresh_from_db()
    return (
        drama.title,
        str(drama.budget_usd),
        list(drama.memberships.values_list("user_id", "role")),
        list(drama.characters.values_list("id", "name", "appearance_notes")),
        list(drama.chapters.values_list("id", "title", "number")),
        list(drama.chapters.values_list("scenes__id", "scenes__order", "scenes__location")),
        list(drama.chapters.values_list("scenes__lines__id", "scenes__lines__line")),
        list(drama.chapters.values_list("versions__id", flat=True)),
        list(Job.objects.filter(drama_id=drama.id).values_list("id", "status", "priority")),
        QueuePause.objects.filter(drama_id=drama.id).exists(),
        list(Take.objects.filter(scene__chapter__drama=drama).values_list("id", "review_state")),
        list(Frame.objects.filter(take__scene__chapter__drama=drama).values_list("id", "comment")),
        Review.objects.filter(take__scene__chapter__drama=drama).count(),
        list(Keyframe.objects.filter(scene__chapter__drama=drama).values_list("id", "chosen")),
        KeyframeRound.objects.filter(scene__chapter__drama=drama).count(),
    )
