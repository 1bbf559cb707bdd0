"""The `chapter.check` job: what would waste a render, found before paying for one."""

import pytest
from asgiref.sync import sync_to_async

from dramas.dialog_fit import speaking_time_s
from dramas.jobs import chapter_check, scene_warnings
from studio.jobs.registry import PermanentError
from tests.factories import (
    create_chapter,
    create_character,
    create_drama,
    create_line,
    create_scene,
)


class Context:
    """What the worker hands a handler, minus the database writes."""

    def __init__(self, payload: dict) -> None:
        self.payload = payload
        self.reports: list[tuple[float, str]] = []

    async def progress(self, fraction: float, *, note: str = "") -> None:
        self.reports.append((fraction, note))


def test_it_estimates_speaking_time_by_words_or_characters():
    assert speaking_time_s(lines=["one two three four five"], language="en") == 2.0
    assert speaking_time_s(lines=["a b", "c d"], language="en") == pytest.approx(1.9)
    assert speaking_time_s(lines=["你回来了吗我们"], language="zh-CN") == pytest.approx(7 / 4.5)


@pytest.mark.django_db
def test_it_flags_dialog_that_cannot_fit_and_speakers_outside_the_scene():
    drama = create_drama()
    mei = create_character(drama=drama, name="Mei", portrait="grace_hopper.jpg")
    jun = create_character(drama=drama, name="Jun")
    scene = create_scene(chapter=create_chapter(drama=drama), characters=[mei], duration_s=3)
    create_line(scene=scene, speaker=mei, line="I have waited twelve years for this night to end")
    create_line(scene=scene, speaker=jun, line="Then leave.")

    warnings = scene_warnings(scene=scene, language="en")

    # Nothing voiced yet: 4.8 s of words placed as the render would, after the animatic's
    # title card (0.58 s), with its lead-in, a turn between speakers and a tail.
    assert warnings == [
        "The dialog needs about 6.6 s but the scene lasts 3 s (estimated from word counts: "
        "voice the chapter to measure it): lengthen the scene or cut lines.",
        "Jun speaks but is not in the scene: add them to its characters.",
    ]


@pytest.mark.django_db
def test_it_flags_cast_without_a_usable_reference():
    drama = create_drama()
    scene = create_scene(
        chapter=create_chapter(drama=drama), characters=[create_character(drama=drama, name="Jun")]
    )

    assert scene_warnings(scene=scene, language="en") == [
        "Jun has no usable reference image, so renders cannot keep their face."
    ]


@pytest.mark.django_db(transaction=True)
async def test_it_checks_every_scene_and_reports_progress():
    chapter, scenes = await sync_to_async(_chapter_with_one_problem)()
    context = Context({"chapter_id": chapter.id, "scene_ids": [scene.id for scene in scenes]})

    result = await chapter_check(context)

    assert result["summary"] == "1 warning in 1 of 2 scenes."
    assert result["details"] == [
        "Scene 2 (Alley): The dialog needs about 4.5 s but the scene lasts 1 s (estimated from "
        "word counts: voice the chapter to measure it): lengthen the scene or cut lines."
    ]
    assert result["scenes"][str(scenes[0].id)] == []
    assert len(result["scenes"][str(scenes[1].id)]) == 1
    assert context.reports == [(0.5, "scene 1 of 2"), (1.0, "scene 2 of 2")]


@pytest.mark.django_db(transaction=True)
async def test_it_fails_without_retrying_when_the_chapter_is_gone():
    with pytest.raises(PermanentError, match="no longer exists"):
        await chapter_check(Context({"chapter_id": 987654, "scene_ids": []}))


def _chapter_with_one_problem():
    chapter = create_chapter(drama=create_drama())
    calm = create_scene(chapter=chapter, location="Harbour", duration_s=5)
    rushed = create_scene(chapter=chapter, location="Alley", duration_s=1)
    create_line(scene=calm, line="Hello.")
    create_line(scene=rushed, line="Run, run now, they are coming for us")
    return chapter, [calm, rushed]
