"""The chapter editor: scenes and dialog lines edited in place (htmx) and by plain forms."""

import pytest
from django.urls import reverse

from dramas import services
from dramas.models import Chapter, DialogLine, Role, Scene
from tests.conftest import login
from tests.factories import (
    add_member,
    create_chapter,
    create_character,
    create_drama,
    create_line,
    create_scene,
)

HTMX = {"HX-Request": "true"}


def scene_data(prefix="new", **overrides):
    data = {
        "location": "Harbour at night",
        "time_of_day": "night",
        "action": "Rain on the glass.",
        "camera": "slow push-in",
        "duration_s": "6",
        "mood": "tense",
    }
    data.update(overrides)
    return {f"{prefix}-{key}": value for key, value in data.items()}


@pytest.fixture
def chapter(drama):
    return create_chapter(drama=drama)


def test_it_numbers_chapters_and_closes_gaps_on_delete(drama, producer_client):
    for title in ("One", "Two", "Three"):
        response = producer_client.post(
            reverse("chapter_create", args=[drama.id]), {"title": title}
        )
        assert response.status_code == 302
    two = drama.chapters.get(title="Two")
    producer_client.post(reverse("chapter_delete", args=[drama.id, two.id]))
    assert list(drama.chapters.values_list("number", "title")) == [(1, "One"), (2, "Three")]


def test_it_refuses_a_chapter_without_title(drama, producer_client):
    response = producer_client.post(reverse("chapter_create", args=[drama.id]), {"title": ""})
    assert response.status_code == 422
    assert "This field is required." in response.text
    assert not Chapter.objects.exists()


def test_it_adds_a_scene_with_htmx_and_refreshes_the_header(drama, chapter, producer_client):
    mei = create_character(drama=drama, name="Mei")
    response = producer_client.post(
        reverse("scene_create", args=[drama.id, chapter.id]),
        {**scene_data(), "new-characters": [mei.id]},
        headers=HTMX,
    )
    assert response.status_code == 200
    assert "<html" not in response.text
    assert 'id="scenes-panel"' in response.text
    assert 'hx-swap-oob="true"' in response.text and "1 scene · 6 s" in response.text
    scene = chapter.scenes.get()
    assert (scene.location, scene.order, scene.duration_s) == ("Harbour at night", 1, 6.0)
    assert list(scene.characters.all()) == [mei]


def test_it_adds_a_scene_with_a_plain_form(drama, chapter, producer_client):
    response = producer_client.post(
        reverse("scene_create", args=[drama.id, chapter.id]), scene_data()
    )
    scene = chapter.scenes.get()
    assert response.status_code == 302
    assert response["Location"].endswith(f"/chapters/{chapter.id}/#scene-{scene.id}")
    page = producer_client.get(response["Location"])
    assert "Harbour at night" in page.text and "Camera: slow push-in" in page.text


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("location", "", "This field is required."),
        ("duration_s", "0", "greater than or equal to 1"),
        ("duration_s", "600", "less than or equal to 60"),
        ("duration_s", "soon", "Enter a number."),
        ("time_of_day", "teatime", "Select a valid choice."),
    ],
)
def test_it_shows_scene_errors_inline_and_stores_nothing(
    drama, chapter, producer_client, field, value, message
):
    response = producer_client.post(
        reverse("scene_create", args=[drama.id, chapter.id]),
        scene_data(**{field: value}),
        headers=HTMX,
    )
    assert response.status_code == 422
    assert message in response.text
    assert 'class="field invalid' in response.text
    assert not Scene.objects.exists()


def test_it_refuses_characters_of_another_drama(drama, chapter, producer_client):
    stranger = create_character(drama=create_drama(title="Other"), name="Stranger")
    response = producer_client.post(
        reverse("scene_create", args=[drama.id, chapter.id]),
        {**scene_data(), "new-characters": [stranger.id]},
        headers=HTMX,
    )
    assert response.status_code == 422
    assert not Scene.objects.exists()


def test_it_edits_a_scene_in_place(drama, chapter, producer_client):
    scene = create_scene(chapter=chapter, location="Old place")
    url = reverse("scene_edit", args=[drama.id, scene.id])
    form = producer_client.get(url, headers=HTMX)
    assert form.status_code == 200 and "Save scene" in form.text and "<html" not in form.text
    response = producer_client.post(
        url, scene_data(prefix=f"scene-{scene.id}", location="New place"), headers=HTMX
    )
    assert response.status_code == 200
    assert f'id="scene-{scene.id}"' in response.text and "New place" in response.text
    scene.refresh_from_db()
    assert scene.location == "New place"


def test_it_keeps_the_stored_scene_when_an_edit_is_invalid(drama, chapter, producer_client):
    scene = create_scene(chapter=chapter, location="Kept")
    response = producer_client.post(
        reverse("scene_edit", args=[drama.id, scene.id]),
        scene_data(prefix=f"scene-{scene.id}", location="", duration_s="5"),
        headers=HTMX,
    )
    assert response.status_code == 422
    assert "This field is required." in response.text
    scene.refresh_from_db()
    assert scene.location == "Kept"


def test_it_shows_the_scene_edit_form_on_a_full_page(drama, chapter, producer_client):
    scene = create_scene(chapter=chapter)
    response = producer_client.get(reverse("scene_edit", args=[drama.id, scene.id]))
    assert response.status_code == 200
    assert "<html" in response.text and "Save scene" in response.text


def test_it_moves_reorders_and_deletes_scenes(drama, chapter, producer_client):
    a, b, c = (create_scene(chapter=chapter, location=name) for name in "ABC")
    producer_client.post(
        reverse("scene_move", args=[drama.id, c.id]), {"offset": "-1"}, headers=HTMX
    )
    assert list(chapter.scenes.values_list("location", flat=True)) == ["A", "C", "B"]
    producer_client.post(reverse("scene_move", args=[drama.id, a.id]), {"offset": "-1"})
    assert list(chapter.scenes.values_list("location", flat=True)) == ["A", "C", "B"]
    response = producer_client.post(
        reverse("scenes_reorder", args=[drama.id, chapter.id]),
        {"scene": [b.id, a.id, c.id]},
        headers=HTMX,
    )
    assert response.status_code == 200
    assert list(chapter.scenes.values_list("location", "order")) == [("B", 1), ("A", 2), ("C", 3)]
    producer_client.post(reverse("scene_delete", args=[drama.id, b.id]), headers=HTMX)
    assert list(chapter.scenes.values_list("location", "order")) == [("A", 1), ("C", 2)]


def test_it_refuses_a_reorder_that_does_not_list_every_scene(drama, chapter, producer_client):
    a, b = create_scene(chapter=chapter, location="A"), create_scene(chapter=chapter, location="B")
    other = create_scene(chapter=create_chapter(drama=drama, title="Other"), location="X")
    for ids in ([b.id], [b.id, b.id], [b.id, a.id, other.id], ["x"]):
        response = producer_client.post(
            reverse("scenes_reorder", args=[drama.id, chapter.id]), {"scene": ids}, headers=HTMX
        )
        assert response.status_code == 200
        assert "changed while you were dragging" in response.text
    assert list(chapter.scenes.values_list("location", flat=True)) == ["A", "B"]


def test_it_rejects_a_move_without_offset(drama, chapter, producer_client):
    scene = create_scene(chapter=chapter)
    assert (
        producer_client.post(
            reverse("scene_move", args=[drama.id, scene.id]), {"offset": "up"}
        ).status_code
        == 404
    )


def test_it_adds_edits_moves_and_deletes_dialog_lines(drama, chapter, producer_client):
    mei = create_character(drama=drama, name="Mei")
    scene = create_scene(chapter=chapter, characters=[mei])
    add = reverse("line_create", args=[drama.id, scene.id])
    prefix = f"line-new-{scene.id}"
    response = producer_client.post(
        add,
        {f"{prefix}-speaker": mei.id, f"{prefix}-line": "Hi.", f"{prefix}-emotion": "shy"},
        headers=HTMX,
    )
    assert response.status_code == 200 and f'id="scene-{scene.id}"' in response.text
    producer_client.post(
        add, {f"{prefix}-speaker": "", f"{prefix}-line": "Years passed."}, headers=HTMX
    )
    first, second = scene.lines.all()
    assert (first.speaker, first.line, first.emotion) == (mei, "Hi.", "shy")
    assert (second.speaker, second.display_speaker) == (None, "Narrator")

    edit = reverse("line_edit", args=[drama.id, first.id])
    assert "Save" in producer_client.get(edit, headers=HTMX).text
    producer_client.post(
        edit,
        {f"line-{first.id}-speaker": mei.id, f"line-{first.id}-line": "Hello again."},
        headers=HTMX,
    )
    first.refresh_from_db()
    assert first.line == "Hello again."

    producer_client.post(
        reverse("line_move", args=[drama.id, second.id]), {"offset": "-1"}, headers=HTMX
    )
    assert list(scene.lines.values_list("line", flat=True)) == ["Years passed.", "Hello again."]
    producer_client.post(reverse("line_delete", args=[drama.id, second.id]), headers=HTMX)
    assert list(scene.lines.values_list("line", "order")) == [("Hello again.", 1)]


def test_it_refuses_an_empty_line_or_a_foreign_speaker(drama, chapter, producer_client):
    scene = create_scene(chapter=chapter)
    stranger = create_character(drama=create_drama(title="Other"), name="Stranger")
    prefix = f"line-new-{scene.id}"
    add = reverse("line_create", args=[drama.id, scene.id])
    empty = producer_client.post(add, {f"{prefix}-line": ""}, headers=HTMX)
    assert empty.status_code == 422 and "This field is required." in empty.text
    foreign = producer_client.post(
        add, {f"{prefix}-line": "Hi", f"{prefix}-speaker": stranger.id}, headers=HTMX
    )
    assert foreign.status_code == 422 and "Select a valid choice" in foreign.text
    assert not DialogLine.objects.exists()


def test_it_escapes_what_users_type(drama, chapter, producer_client):
    scene = create_scene(chapter=chapter, location="<script>alert(1)</script>")
    create_line(scene=scene, line="<img src=x onerror=alert(2)>")
    page = producer_client.get(reverse("chapter_editor", args=[drama.id, chapter.id]))
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<img src=x" not in page.text


def test_it_shows_viewers_a_read_only_editor(drama, chapter):
    create_line(scene=create_scene(chapter=chapter, location="Pier"), line="Wait.")
    viewer = login(add_member(drama=drama, role=Role.VIEWER))
    page = viewer.get(reverse("chapter_editor", args=[drama.id, chapter.id]))
    assert page.status_code == 200
    assert "Pier" in page.text and "Wait." in page.text
    assert "Add a scene" not in page.text and "Add line" not in page.text
    assert 'draggable="true"' not in page.text


def test_it_edits_the_chapter_title_in_place(drama, chapter, producer_client):
    url = reverse("chapter_edit", args=[drama.id, chapter.id])
    response = producer_client.post(url, {"title": "Renamed", "synopsis": "S."}, headers=HTMX)
    assert response.status_code == 200 and "Renamed" in response.text
    bad = producer_client.post(url, {"title": ""}, headers=HTMX)
    assert bad.status_code == 422
    chapter.refresh_from_db()
    assert chapter.title == "Renamed"


def test_it_renders_the_editor_without_query_explosion(
    drama, chapter, producer_client, django_assert_max_num_queries
):
    cast = [create_character(drama=drama, name=f"C{i}") for i in range(3)]
    for i in range(8):
        scene = create_scene(chapter=chapter, location=f"L{i}", characters=cast)
        for j in range(3):
            create_line(scene=scene, speaker=cast[j], line=f"line {j}")
    services.chapter_version_save(chapter=chapter)
    # 15 for the editor, plus the writer's panel: its latest job, the brief's chapters and
    # characters, the prices of the two estimates and the approved takes a new script would
    # archive, and the storyboard's chosen keyframes (constant, whatever the chapter's size).
    with django_assert_max_num_queries(22):
        producer_client.get(reverse("chapter_editor", args=[drama.id, chapter.id]))
