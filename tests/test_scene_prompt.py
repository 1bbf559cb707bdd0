"""The render prompt of a scene: direction, cast notes and the best reference images."""

import pytest

from characters import services as character_services
from characters.models import ReferenceImage, ReferenceQuality
from dramas.prompts import scene_prompt
from tests.factories import (
    create_chapter,
    create_character,
    create_drama,
    create_line,
    create_scene,
    image_bytes,
    upload,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def drama(producer):
    return create_drama(owner=producer, style="photoreal, moody neon night", aspect="9:16")


@pytest.fixture
def cast(drama):
    return {
        "marcus": create_character(
            drama=drama, name="Marcus", appearance_notes="Greying hair, loosened dark tie."
        ),
        "ada": create_character(drama=drama, name="Ada", appearance_notes="Short white hair."),
        "bo": create_character(drama=drama, name="Bo", appearance_notes="Red raincoat."),
    }


def references(character, *specs) -> list[ReferenceImage]:
    """References with the given (quality, resemblance, face size), in upload order."""
    files = [
        upload(name=f"{character.name}-{i}.png", content=image_bytes(color=(i * 40, 60, 90)))
        for i in range(len(specs))
    ]
    results = character_services.reference_images_add(character=character, files=files)
    made = []
    for result, (quality, similarity, size) in zip(results, specs, strict=True):
        ReferenceImage.objects.filter(id=result.reference.id).update(
            quality=quality,
            profile_similarity=similarity,
            faces=[{"box": [0, 0, size, size], "score": 1.5, "size": size}] if size else [],
        )
        made.append(result.reference)
    return made


def scene_with(drama, *characters, **fields):
    chapter = create_chapter(drama=drama)
    return create_scene(
        chapter=chapter,
        location="Radio booth",
        action="Marcus leans into the microphone.",
        camera="slow push-in",
        mood="tense",
        time_of_day="night",
        characters=characters,
        **fields,
    )


def test_it_writes_the_direction_and_each_present_characters_notes(drama, cast):
    scene = scene_with(drama, cast["marcus"], cast["ada"], duration_s=6)
    create_line(scene=scene, speaker=cast["ada"], line="Your signal isn't yours.", emotion="urgent")

    prompt = scene_prompt(scene, max_refs=4)

    assert prompt.text.splitlines()[:3] == [
        "Marcus leans into the microphone.",
        "Setting: Radio booth, night. Camera: slow push-in. Mood: tense.",
        "Style: photoreal, moody neon night. Aspect ratio 9:16, 6 s.",
    ]
    assert "- Ada: Short white hair." in prompt.text
    assert "- Marcus: Greying hair, loosened dark tie." in prompt.text
    assert "Red raincoat" not in prompt.text  # Bo is not in this scene
    assert '- Ada (urgent): "Your signal isn\'t yours."' in prompt.text
    assert prompt.characters == ["Ada", "Marcus"]
    assert prompt.references == []  # nobody has a reference yet


def test_it_picks_the_best_references_first_and_skips_unusable_ones(drama, cast):
    scene = scene_with(drama, cast["marcus"])
    good = ReferenceQuality.GOOD
    small, pending, ok, best, _, _, _ = references(
        cast["marcus"],
        (ReferenceQuality.TOO_SMALL, None, 40),
        (ReferenceQuality.PENDING, None, 0),
        (good, 0.95, 300),
        (good, 0.98, 200),
        (ReferenceQuality.NO_FACE, None, 0),
        (ReferenceQuality.OUTLIER, 0.70, 300),
        (ReferenceQuality.SEVERAL_FACES, None, 250),
    )

    prompt = scene_prompt(scene, max_refs=10)

    assert [r.reference_id for r in prompt.references] == [best.id, ok.id, pending.id, small.id]
    assert prompt.references[0].image_name == best.image.name
    assert prompt.references[0].character_name == "Marcus"
    assert "(reference images 1, 2, 3, 4)" in prompt.text


def test_it_covers_the_cast_before_giving_anyone_a_second_image(drama, cast):
    scene = scene_with(drama, cast["marcus"], cast["ada"], cast["bo"])
    good = ReferenceQuality.GOOD
    m1, m2 = references(cast["marcus"], (good, 0.99, 300), (good, 0.90, 300))
    [a1] = references(cast["ada"], (good, None, 200))
    b1, b2 = references(cast["bo"], (good, 0.97, 150), (good, 0.96, 150))

    assert [r.reference_id for r in scene_prompt(scene, max_refs=4).references] == [
        a1.id,
        b1.id,
        m1.id,
        b2.id,
    ]
    two = scene_prompt(scene, max_refs=2)
    assert [r.character_name for r in two.references] == ["Ada", "Bo"]
    assert "- Marcus: Greying hair, loosened dark tie.\n" in two.text + "\n"  # notes, no image
    assert "- Ada: Short white hair. (reference image 1)" in two.text
    assert scene_prompt(scene, max_refs=0).references == []
    with pytest.raises(ValueError, match="negative"):
        scene_prompt(scene, max_refs=-1)
    assert m2.id not in [r.reference_id for r in scene_prompt(scene, max_refs=4).references]
