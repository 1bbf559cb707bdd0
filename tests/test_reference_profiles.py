"""Reference images are embedded on upload, flagged, and averaged into the character's profile."""

import re
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse

from characters import consistency, faces, services
from characters.models import Character, ReferenceImage, ReferenceQuality
from tests.conftest import login
from tests.face_data import encoded, group, portrait_scan, scaled, variant_scan
from tests.factories import add_member, create_character, face_upload, image_bytes, upload

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def character(drama):
    return create_character(drama=drama, name="Marcus Hale")


def add(character, *files) -> list[ReferenceImage]:
    results = services.reference_images_add(character=character, files=list(files))
    assert all(result.ok for result in results), [result.error for result in results]
    return [result.reference for result in results]


def jpeg(name: str, image) -> object:
    return upload(name=name, content=encoded(image), content_type="image/jpeg")


def unit(vector) -> np.ndarray:
    return consistency.unit(vector)


def stored_profile(character) -> np.ndarray:
    character.refresh_from_db()
    return faces.embedding_from_bytes(character.embedding)


def detail_url(character) -> str:
    return reverse("character_detail", args=[character.drama_id, character.id])


def upload_url(character) -> str:
    return reverse("reference_upload", args=[character.drama_id, character.id])


# --- Embedding and flags on upload -------------------------------------------------------------


def test_it_embeds_a_portrait_on_upload_and_builds_the_profile(character):
    [reference] = add(character, face_upload("grace_hopper.jpg"))

    reference.refresh_from_db()
    expected = portrait_scan("grace_hopper.jpg").faces[0]
    assert reference.quality == ReferenceQuality.GOOD
    assert reference.quality_message == f"One face, {expected.size} px wide."
    assert reference.face_box == list(expected.box)
    [found] = reference.faces
    assert (found["box"], found["size"]) == (list(expected.box), expected.size)
    assert found["score"] == pytest.approx(expected.score, abs=0.1)  # stored copy is a JPEG
    stored = faces.embedding_from_bytes(reference.embedding)
    assert consistency.cosine(stored, expected.embedding) > 0.995  # stored copy is a JPEG
    assert reference.profile_similarity is None  # no other reference to compare with
    assert np.allclose(stored_profile(character), unit(stored), atol=1e-6)
    assert character.embedding_model == faces.MODEL_ID


def test_it_flags_an_upload_without_a_face_and_leaves_it_out(character):
    [reference] = add(character, upload(name="sky.png", content=image_bytes(size=(400, 300))))

    reference.refresh_from_db()
    assert reference.quality == ReferenceQuality.NO_FACE
    assert reference.quality_message.startswith("No face found.")
    assert "Left out of the profile." in reference.quality_message
    assert (reference.face_box, reference.faces, reference.embedding) == (None, [], None)
    character.refresh_from_db()
    assert (character.embedding, character.embedding_model) == (None, "")


def test_it_flags_a_photo_of_several_people(character):
    photo = group(("obama.jpg", 150), ("grace_hopper.jpg", 140))

    [reference] = add(character, jpeg("couple.jpg", photo))

    reference.refresh_from_db()
    assert reference.quality == ReferenceQuality.SEVERAL_FACES
    assert reference.quality_message.startswith("2 faces of similar size: crop the photo")
    assert len(reference.faces) == 2
    assert reference.face_box is None
    character.refresh_from_db()
    assert character.embedding is None


def test_it_flags_a_face_too_small_to_recognise(character):
    [reference] = add(character, jpeg("far.jpg", scaled("grace_hopper.jpg", 0.22)))

    reference.refresh_from_db()
    assert reference.quality == ReferenceQuality.TOO_SMALL
    assert re.match(
        r"The face is \d\d px wide; at least 60 px is needed", reference.quality_message
    )
    assert reference.face_box is not None  # drawn, but not used
    character.refresh_from_db()
    assert character.embedding is None


def fake_face(size: int, score: float = 1.5) -> faces.Face:
    return faces.Face((0, 0, size, size), score, size, np.ones(128, dtype=np.float32))


@pytest.mark.parametrize(
    ("sizes", "quality", "message"),
    [
        ([200, 99], ReferenceQuality.GOOD, "One face, 200 px wide. 1 much smaller face ignored."),
        ([200, 101], ReferenceQuality.SEVERAL_FACES, "2 faces of similar size"),
        ([200, 60, 50], ReferenceQuality.GOOD, "2 much smaller faces ignored."),
        ([59], ReferenceQuality.TOO_SMALL, "The face is 59 px wide"),
        ([60], ReferenceQuality.GOOD, "One face, 60 px wide."),
    ],
)
def test_it_uses_the_largest_face_only_when_it_clearly_dominates(sizes, quality, message):
    scan = faces.FaceScan(1000, 1000, [fake_face(size) for size in sizes])

    judgement = services.judge_reference_faces(scan)

    assert judgement.quality == quality
    assert message in judgement.message
    assert (judgement.face is None) == (quality == ReferenceQuality.SEVERAL_FACES)


def test_it_does_not_count_a_weak_detection_as_a_second_face():
    scan = faces.FaceScan(1000, 1000, [fake_face(150, 0.1), fake_face(140, 1.8)])

    judgement = services.judge_reference_faces(scan)

    assert judgement.quality == ReferenceQuality.GOOD
    assert judgement.face.score == 1.8


# --- The profile follows the references --------------------------------------------------------


def test_it_flags_someone_else_and_recomputes_when_references_change(character):
    obama, obama2, mirrored, biden = add(
        character,
        face_upload("obama.jpg"),
        face_upload("obama2.jpg"),
        jpeg("obama2-mirror.jpg", scaled("obama2.jpg", 1.0).transpose(0)),
        face_upload("biden.jpg"),
    )

    for reference in (obama, obama2, mirrored, biden):
        reference.refresh_from_db()
    assert [r.quality for r in (obama, obama2, mirrored)] == [ReferenceQuality.GOOD] * 3
    assert biden.quality == ReferenceQuality.OUTLIER
    assert biden.quality_message.startswith("May be a different person: resemblance ")
    assert biden.profile_score < consistency.SHIPPED_THRESHOLD <= obama.profile_score
    good = [faces.embedding_from_bytes(r.embedding) for r in (obama, obama2, mirrored)]
    assert np.allclose(stored_profile(character), consistency.mean_profile(good), atol=1e-6)

    # Two references left: nothing to judge Biden by, so both count.
    services.reference_image_delete(reference=obama2)
    services.reference_image_delete(reference=mirrored)

    biden.refresh_from_db()
    assert biden.quality == ReferenceQuality.GOOD
    assert biden.quality_message == f"One face, {biden.faces[0]['size']} px wide."
    both = [faces.embedding_from_bytes(r.embedding) for r in (obama, biden)]
    assert np.allclose(stored_profile(character), consistency.mean_profile(both), atol=1e-6)

    services.reference_image_delete(reference=obama)
    services.reference_image_delete(reference=biden)
    character.refresh_from_db()
    assert (character.embedding, character.embedding_model) == (None, "")


def test_it_gives_the_profile_as_plain_data_for_frame_scoring(character):
    assert services.character_profile(character=character) is None
    add(character, face_upload("obama.jpg"))
    character.refresh_from_db()

    profile = services.character_profile(character=character)

    assert (profile.character_id, profile.name) == (character.id, "Marcus Hale")
    mirrored = variant_scan("obama.jpg", "mirror").faces[0].embedding
    assert consistency.similarity_to_score(consistency.cosine(profile.embedding, mirrored)) > 90


def test_it_keeps_the_upload_when_the_face_model_fails(character, monkeypatch, caplog):
    def broken(images):
        raise RuntimeError("model file damaged")

    monkeypatch.setattr(faces, "scan_many_in_pool", broken)

    [reference] = add(character, face_upload("obama.jpg"))

    reference.refresh_from_db()
    assert reference.quality == ReferenceQuality.PENDING
    assert "could not analyse this image" in reference.quality_message
    assert "Face analysis failed" in caplog.text


# --- What producers see ------------------------------------------------------------------------


def test_it_shows_the_no_face_warning_on_the_character_page(producer_client, character):
    sky = upload(name="sky.png", content=image_bytes(size=(400, 300)))

    response = producer_client.post(upload_url(character), {"images": [sky]}, headers=HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert "<strong>sky.png</strong> added. <span" in html
    assert "No face found: see the image below." in html
    page = producer_client.get(detail_url(character)).content.decode()
    reference = ReferenceImage.objects.get()
    figure = page[page.index(f'id="reference-{reference.id}"') :]
    figure = figure[: figure.index("</figure>")]
    assert '<span class="badge quality red">No face found</span>' in figure
    assert "No face found. Use a clear, front-facing portrait" in figure
    assert "No profile" in page
    assert "1 reference left out of the profile" in page


def test_it_draws_the_detected_face_box_on_the_reference(producer_client, character):
    [reference] = add(character, face_upload("obama.jpg"))
    reference.refresh_from_db()
    left, top, right, bottom = reference.face_box

    page = producer_client.get(detail_url(character)).content.decode()

    assert f'viewBox="0 0 {reference.width} {reference.height}"' in page
    assert (
        f'<rect class="face-box chosen" x="{left}" y="{top}" '
        f'width="{right - left}" height="{bottom - top}"'
    ) in page
    assert '<span class="badge quality green">Good</span>' in page
    assert "Profile ready" in page


def test_it_shows_each_references_resemblance_against_the_drama_threshold(
    producer_client, drama, character
):
    drama.consistency_threshold = 72
    drama.save()
    add(character, face_upload("obama.jpg"), face_upload("obama2.jpg"))

    page = producer_client.get(detail_url(character)).content.decode()

    scores = [int(s) for s in re.findall(r"other references: <strong>(\d+)</strong>", page)]
    assert len(scores) == 2 and all(score >= 72 for score in scores)
    assert page.count("(threshold 72)") == 2
    assert "left:72%" in page
    assert "this drama accepts 72 and above" in page


def test_it_warns_about_flagged_references_on_the_board(producer_client, drama, character):
    add(character, upload(name="sky.png", content=image_bytes(size=(400, 300))))
    fine = create_character(drama=drama, name="Ada", portrait="grace_hopper.jpg")

    page = producer_client.get(reverse("drama_board", args=[drama.id])).content.decode()

    marcus = page[page.index(f'id="character-{character.id}"') :]
    marcus = marcus[: marcus.index("</a>")]
    assert "No usable face yet: renders cannot be checked." in marcus
    assert "1 reference to check: no face found" in marcus
    ada = page[page.index(f'id="character-{fine.id}"') :]
    assert "char-warning" not in ada[: ada.index("</a>")]


def test_it_lets_the_producer_set_the_consistency_threshold(producer_client, drama):
    url = reverse("drama_edit", args=[drama.id])
    form = {"title": drama.title, "genre": "romance", "language": "en", "aspect": "9:16"}
    assert drama.consistency_threshold == consistency.SHIPPED_THRESHOLD

    assert producer_client.post(url, form | {"budget_usd": "10", "consistency_threshold": "80"})
    drama.refresh_from_db()
    assert drama.consistency_threshold == 80

    producer_client.post(url, form | {"budget_usd": "10", "consistency_threshold": ""})
    drama.refresh_from_db()
    assert drama.consistency_threshold == consistency.SHIPPED_THRESHOLD

    refused = producer_client.post(url, form | {"budget_usd": "10", "consistency_threshold": "100"})
    assert refused.status_code == 422
    assert "less than or equal to 99" in refused.content.decode()


def test_it_shows_flags_to_viewers_without_edit_controls(drama, character):
    add(character, upload(name="sky.png", content=image_bytes(size=(400, 300))))
    viewer = login(add_member(drama=drama, role="viewer"))

    page = viewer.get(detail_url(character)).content.decode()

    assert "No face found" in page
    assert "reference_delete" not in page and "Delete this reference image?" not in page
    assert Character.objects.get().embedding is None


def test_it_catches_up_on_references_stored_before_analysis(character):
    [reference] = add(character, face_upload("grace_hopper.jpg"))
    ReferenceImage.objects.update(quality=ReferenceQuality.PENDING, embedding=None, faces=[])
    Character.objects.update(embedding=None, embedding_model="")
    out = StringIO()

    call_command("analyse_references", stdout=out)

    reference.refresh_from_db()
    character.refresh_from_db()
    assert reference.quality == ReferenceQuality.GOOD
    assert character.embedding is not None
    assert (
        "Marcus Hale (drama" in out.getvalue() and "Analysed 1 reference image." in out.getvalue()
    )
    again = StringIO()
    call_command("analyse_references", stdout=again)
    assert again.getvalue().strip() == "Analysed 0 reference images."
