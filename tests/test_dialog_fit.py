"""Scenes that hold their dialog: the need measured from voiced lines (estimated for the rest)
by the render's own placement rules, and lengthening offered in durations the video model
takes, applied only when the producer accepts."""

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse

from dramas import services, speech
from dramas.dialog_audio import LEAD_IN_S, TAIL_S, TURN_GAP_S
from dramas.dialog_fit import scene_needs, speech_start_s
from dramas.jobs import scene_warnings
from dramas.models import LineAudio, Role, Scene
from studio.providers import registry
from tests.conftest import login
from tests.factories import (
    add_member,
    create_chapter,
    create_character,
    create_drama,
    create_line,
    create_scene,
)
from tests.render_support import remote_video

TEN_WORDS = "I have waited twelve years for this night to end"  # 4.0 s by word count


@pytest.fixture(autouse=True)
def offline_providers():
    registry.forget()  # the offline animatic and the offline voice
    yield
    registry.forget()


def voice(line) -> LineAudio:
    """Speak the line as a `dialog.speak` job (and the render) would."""
    service, spoken_voice = speech.voicing(line.speaker)
    row, _made = async_to_sync(speech.line_audio)(
        text=line.line, voice=spoken_voice, emotion=line.emotion, speech=service
    )
    return row


def reloaded(scene: Scene) -> Scene:
    return Scene.objects.prefetch_related("lines__speaker", "characters").get(id=scene.id)


# --- the need -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_voiced_lines_count_at_their_real_length_the_others_by_word_count():
    drama = create_drama()
    ada = create_character(drama=drama, name="Ada")
    ben = create_character(drama=drama, name="Ben")  # present, never speaks
    scene = create_scene(chapter=create_chapter(drama=drama), characters=[ada, ben], duration_s=5)
    spoken = create_line(scene=scene, speaker=ada, line="You came back after all.")
    create_line(scene=scene, line=TEN_WORDS)
    row = voice(spoken)

    [need] = scene_needs(scenes=[reloaded(scene)], language="en")

    title = speech_start_s(video=registry.video(), duration_s=5)
    assert title == pytest.approx(1.0)  # the animatic's title card: a fifth of the scene
    beat = speech.ESTABLISHING_S  # Ben never speaks: the render opens on the group
    expected = title + beat + LEAD_IN_S + row.duration_s + TURN_GAP_S + 4.0 + TAIL_S
    assert need.needed_s(5) == pytest.approx(expected)
    assert (need.measured, need.estimated) == (1, 1)
    assert need.source == "1 voiced line measured, 1 estimated from word counts"


@pytest.mark.django_db
def test_the_need_of_a_voiced_scene_is_what_the_render_places():
    drama = create_drama()
    ada = create_character(drama=drama, name="Ada", voice_id="f3")
    marcus = create_character(drama=drama, name="Marcus")
    scene = create_scene(
        chapter=create_chapter(drama=drama), characters=[ada, marcus], duration_s=6
    )
    lines = [
        create_line(scene=scene, speaker=ada, line="You came back after all."),
        create_line(scene=scene, speaker=ada, line="I knew you would.", emotion="quiet"),
        create_line(scene=scene, speaker=marcus, line="I never left."),
    ]
    for line in lines:
        voice(line)

    [need] = scene_needs(scenes=[reloaded(scene)], language="en")
    start = speech_start_s(video=registry.video(), duration_s=6)
    rendered = async_to_sync(speech.speak_scene)(
        scene=scene, lines=speech.scene_lines(scene_id=scene.id), start_s=start
    )

    assert rendered["synthesised"] == 0  # the same keys: every line came from the cache
    assert need.needed_s(6) == pytest.approx(rendered["needed_s"], abs=0.01)
    assert need.exact and need.source == "measured from its voiced lines"


@pytest.mark.django_db
def test_the_check_says_whether_it_measured_or_estimated():
    drama = create_drama()
    ada = create_character(drama=drama, name="Ada", portrait="grace_hopper.jpg")
    scene = create_scene(chapter=create_chapter(drama=drama), characters=[ada], duration_s=2)
    first = create_line(scene=scene, speaker=ada, line=TEN_WORDS)
    second = create_line(scene=scene, speaker=ada, line="Then leave.")

    estimated = scene_warnings(scene=scene, language="en")
    voice(first)
    mixed = scene_warnings(scene=scene, language="en")
    voice(second)
    measured = scene_warnings(scene=scene, language="en")

    assert estimated[0].startswith("The dialog needs about ")
    assert "(estimated from word counts: voice the chapter to measure it)" in estimated[0]
    assert "(1 voiced line measured, 1 estimated from word counts)" in mixed[0]
    [need] = scene_needs(scenes=[reloaded(scene)], language="en")
    assert measured == [
        f"The dialog needs {need.needed_s(2):.1f} s but the scene lasts 2 s (measured from its "
        "voiced lines): lengthen the scene or cut lines."
    ]


# --- lengthening, with consent --------------------------------------------------------------


def three_scenes(drama):
    """One that fits, one too short (2 s for about 6 s), one longer than any scene may be."""
    chapter = create_chapter(drama=drama)
    calm = create_scene(chapter=chapter, location="Harbour", duration_s=5)
    create_line(scene=calm, line="Hello.")
    rushed = create_scene(chapter=chapter, location="Alley", duration_s=2)
    create_line(scene=rushed, line=TEN_WORDS)
    endless = create_scene(chapter=chapter, location="Stage", duration_s=10)
    for _ in range(15):
        create_line(scene=endless, line=TEN_WORDS)
    return chapter, calm, rushed, endless


def durations(*scenes) -> list[float]:
    return [Scene.objects.get(id=scene.id).duration_s for scene in scenes]


@pytest.mark.django_db
def test_the_chapter_page_offers_to_lengthen_and_nothing_changes_until_accepted(client):
    drama = create_drama()
    chapter, calm, rushed, endless = three_scenes(drama)
    client.force_login(drama.created_by)
    editor_url = reverse("chapter_editor", args=[drama.id, chapter.id])

    page = client.get(editor_url).content.decode()

    assert "Lengthen 1 scene to fit its dialog" in page
    # 2 s -> 6 s, not 5: the animatic's title card grows with the scene (1.2 s at 6 s).
    assert (
        "Scene 2 (Alley): 2 s → 6 s (the dialog needs about 6.0 s, estimated from word counts: "
        "voice the chapter to measure it)" in page
    )
    assert (
        "Scene 3 (Stage): the dialog needs about 66.3 s, longer than the 60 s the video model "
        "allows for a scene: cut lines or split the scene." in page
    )
    assert "Harbour" not in page.split('id="dialog-fit"')[1].split("</section>")[0]
    assert durations(calm, rushed, endless) == [5, 2, 10]  # showing it changed nothing

    response = client.post(
        reverse("chapter_lengthen", args=[drama.id, chapter.id]), {f"scene-{rushed.id}": "6.0"}
    )

    assert response.status_code == 302
    assert durations(calm, rushed, endless) == [5, 6, 10]
    page = client.get(editor_url).content.decode()
    assert "Lengthened 1 scene to fit their dialog." in page
    assert "Lengthen 1 scene" not in page and "Scene 3 (Stage)" in page


@pytest.mark.django_db
def test_it_rounds_up_to_a_duration_the_video_model_lists(settings):
    remote_video(settings, "http://127.0.0.1:9", durations_s=[4.0, 8.0, 12.0])
    drama = create_drama()
    chapter = create_chapter(drama=drama)
    short = create_scene(chapter=chapter, location="Alley", duration_s=4)
    create_line(scene=short, line=TEN_WORDS)  # 4.8 s placed: no title card on a remote model
    create_line(scene=short, line="Go.")  # and a breath, 0.4 s more: 5.45 s
    long = create_scene(chapter=chapter, location="Stage", duration_s=8)
    for _ in range(3):
        create_line(scene=long, line=TEN_WORDS)

    plan = services.chapter_lengthenings(chapter=chapter)

    assert [(item.scene.id, item.old_s, item.new_s) for item in plan] == [
        (short.id, 4, 8.0),
        (long.id, 8, None),
    ]
    assert "longer than the 12 s the video model allows" in plan[1].message
    changed = services.chapter_scenes_lengthen(chapter=chapter, durations={short.id: 8.0})
    assert [scene.id for scene in changed] == [short.id]
    assert durations(short, long) == [8, 8]


@pytest.mark.django_db
def test_a_proposal_that_no_longer_stands_changes_nothing(client):
    drama = create_drama()
    chapter, calm, rushed, endless = three_scenes(drama)
    client.force_login(drama.created_by)
    url = reverse("chapter_lengthen", args=[drama.id, chapter.id])

    wrong = client.post(url, {f"scene-{rushed.id}": "9"}, follow=True)  # not what was offered
    fits = client.post(url, {f"scene-{calm.id}": "6"}, follow=True)  # it fits: nothing offered
    nothing = client.post(url, {}, follow=True)
    garbage = client.post(url, {f"scene-{rushed.id}": "soon"}, follow=True)

    assert "changed since this proposal was shown; nothing was lengthened" in wrong.content.decode()
    assert "nothing was lengthened" in fits.content.decode()
    assert "Choose the scenes to lengthen." in nothing.content.decode()
    assert "is not a number of seconds" in garbage.content.decode()
    assert durations(calm, rushed, endless) == [5, 2, 10]


@pytest.mark.django_db
def test_only_editors_and_producers_lengthen_and_only_with_a_csrf_token():
    drama = create_drama()
    chapter, _calm, rushed, _endless = three_scenes(drama)
    viewer = add_member(drama=drama, role=Role.VIEWER)
    editor = add_member(drama=drama, role=Role.EDITOR)
    url = reverse("chapter_lengthen", args=[drama.id, chapter.id])
    accepted = {f"scene-{rushed.id}": "6.0"}

    viewer_page = login(viewer).get(reverse("chapter_editor", args=[drama.id, chapter.id]))
    assert "Scene 2 (Alley): 2 s → 6 s" in viewer_page.content.decode()  # viewers read it
    assert 'action="' + url not in viewer_page.content.decode()  # but get no button
    assert login(viewer).post(url, accepted).status_code == 403
    csrf_checked = Client(enforce_csrf_checks=True)
    csrf_checked.force_login(editor)
    assert csrf_checked.post(url, accepted).status_code == 403
    assert durations(rushed) == [2]

    response = login(editor).post(url, accepted, headers={"HX-Request": "true"})

    assert response.status_code == 200 and 'id="scenes-panel"' in response.content.decode()
    assert durations(rushed) == [6]
