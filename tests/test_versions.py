"""Script versions: kept copies of a chapter, side-by-side compare, restore without loss."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from dramas import services
from dramas.models import ChapterVersion
from tests.factories import create_chapter, create_character, create_line, create_scene


def build_chapter(drama):
    mei = create_character(drama=drama, name="Mei")
    chapter = create_chapter(drama=drama, title="The Contract", synopsis="She signs.")
    scene = create_scene(chapter=chapter, location="Office", characters=[mei], camera="close-up")
    create_line(scene=scene, speaker=mei, line="I accept.", emotion="cold")
    create_line(scene=scene, line="Thunder outside.")
    return chapter, mei


def test_it_keeps_the_whole_script_in_a_version(drama):
    chapter, _ = build_chapter(drama)
    version = services.chapter_version_save(chapter=chapter, note="first draft")
    assert version.number == 1
    assert version.script == {
        "title": "The Contract",
        "synopsis": "She signs.",
        "scenes": [
            {
                "key": chapter.scenes.get().key,
                "location": "Office",
                "time_of_day": "day",
                "action": "She turns away.",
                "camera": "close-up",
                "duration_s": 5.0,
                "mood": "",
                "characters": ["Mei"],
                "dialog": [
                    {"speaker": "Mei", "line": "I accept.", "emotion": "cold"},
                    {"speaker": "", "line": "Thunder outside.", "emotion": ""},
                ],
            }
        ],
    }


def test_it_does_not_pile_up_identical_versions(drama, producer_client):
    chapter, _ = build_chapter(drama)
    url = reverse("chapter_versions", args=[drama.id, chapter.id])
    producer_client.post(url, {"note": "v1"})
    page = producer_client.post(url, {"note": "again"}, follow=True)
    assert "No changes since version 1." in page.text
    assert chapter.versions.count() == 1


def test_it_restores_a_version_and_keeps_the_current_script(drama, producer, producer_client):
    chapter, mei = build_chapter(drama)
    first = services.chapter_version_save(chapter=chapter, user=producer)
    scene = chapter.scenes.get()
    services.scene_update(scene=scene, location="Rooftop")
    create_scene(chapter=chapter, location="Street")
    response = producer_client.post(
        reverse("chapter_version_restore", args=[drama.id, chapter.id, first.id])
    )
    assert response.status_code == 302
    assert list(chapter.scenes.values_list("location", flat=True)) == ["Office"]
    restored = chapter.scenes.get()
    assert list(restored.characters.all()) == [mei]
    assert [(line.speaker, line.line) for line in restored.lines.all()] == [
        (mei, "I accept."),
        (None, "Thunder outside."),
    ]
    # The edited script (Rooftop + Street) was kept before being replaced.
    kept = chapter.versions.get(number=2)
    assert [s["location"] for s in kept.script["scenes"]] == ["Rooftop", "Street"]
    assert chapter.versions.get(number=3).note == "Restored version 1"


def test_it_keeps_an_unknown_speaker_by_name_on_restore(drama):
    chapter, mei = build_chapter(drama)
    version = services.chapter_version_save(chapter=chapter)
    mei.name = "Mei Lin"
    mei.save()
    services.chapter_version_restore(version=version)
    line = chapter.scenes.get().lines.first()
    assert (line.speaker, line.speaker_name, line.line) == (None, "Mei", "I accept.")


def test_it_matches_speakers_case_and_spacing_tolerant(drama):
    chapter, mei = build_chapter(drama)
    services.chapter_script_replace(
        chapter=chapter,
        note="import",
        source="written",
        script={
            "title": "T",
            "scenes": [
                {
                    "location": "L",
                    "action": "A",
                    "characters": [" MEI "],
                    "dialog": [{"speaker": "mei", "line": "Yes."}],
                }
            ],
        },
    )
    scene = chapter.scenes.get()
    assert list(scene.characters.all()) == [mei]
    assert scene.lines.get().speaker == mei


def test_it_stores_nothing_when_a_restored_script_is_invalid(drama):
    chapter, _ = build_chapter(drama)
    broken = ChapterVersion.objects.create(
        chapter=chapter,
        number=9,
        script={"title": "Broken", "scenes": [{"location": "", "action": "x"}]},
    )
    before = services.chapter_script(chapter=chapter)
    with pytest.raises(ValidationError, match="location"):
        services.chapter_version_restore(version=broken)
    chapter.refresh_from_db()
    assert services.chapter_script(chapter=chapter) == before
    assert chapter.versions.count() == 1


def test_it_compares_versions_side_by_side(drama, producer_client):
    chapter, _ = build_chapter(drama)
    first = services.chapter_version_save(chapter=chapter)
    services.scene_update(scene=chapter.scenes.get(), location="Rooftop")
    page = producer_client.get(
        reverse("chapter_version_detail", args=[drama.id, chapter.id, first.id])
    )
    assert page.status_code == 200
    changed = [row for row in page.context["rows"] if row["changed"]]
    assert [row["section"] for row in changed] == ["Scene 1"]
    assert "Office" in changed[0]["left"] and "Rooftop" in changed[0]["right"]
    second = services.chapter_version_save(chapter=chapter)
    between = producer_client.get(
        reverse("chapter_version_detail", args=[drama.id, chapter.id, first.id])
        + f"?compare={second.id}"
    )
    assert "Version 2" in between.text


def test_it_shows_a_restore_error_instead_of_failing(drama, producer_client):
    chapter, _ = build_chapter(drama)
    broken = ChapterVersion.objects.create(
        chapter=chapter, number=5, script={"title": "", "scenes": []}
    )
    response = producer_client.post(
        reverse("chapter_version_restore", args=[drama.id, chapter.id, broken.id]), follow=True
    )
    assert response.status_code == 200
    assert "This version cannot be restored" in response.text
    chapter.refresh_from_db()
    assert chapter.title == "The Contract"
