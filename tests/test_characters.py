"""Characters through the studio's views: create, edit in place, delete, and their images."""

import itertools
from pathlib import Path

import pytest
from django.urls import reverse

from characters import services
from characters.models import Character, ReferenceImage
from dramas import services as drama_services
from dramas.models import Drama, Role
from tests.conftest import login
from tests.factories import (
    add_member,
    create_character,
    create_drama,
    create_user,
    image_bytes,
    upload,
)

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
DUPLICATE = "This drama already has a character with this name."
_colors = itertools.count(1)


@pytest.fixture
def character(drama):
    return create_character(drama=drama, name="Lin Wu", appearance_notes="Short black hair.")


def with_references(character, count: int = 1) -> list[ReferenceImage]:
    files = []
    for _ in range(count):
        shade = next(_colors) % 250
        files.append(upload(name=f"ref{shade}.png", content=image_bytes(color=(shade, 90, 40))))
    results = services.reference_images_add(character=character, files=files)
    assert all(result.ok for result in results), [result.error for result in results]
    return [result.reference for result in results]


def stored_files(root) -> list[Path]:
    return sorted(path for path in Path(root).rglob("*") if path.is_file())


def file_of(reference, root) -> Path:
    return Path(root) / reference.image.name


def url(name: str, character, *extra) -> str:
    return reverse(name, args=[character.drama_id, character.id, *extra])


def member(drama, role: Role):
    return login(add_member(drama=drama, role=role))


# --- Create ------------------------------------------------------------------------------------


def test_it_lets_an_editor_create_a_character(drama):
    editor = member(drama, Role.EDITOR)

    response = editor.post(
        reverse("character_create", args=[drama.id]),
        {"name": "  Lin   Wu ", "appearance_notes": "Short black hair.", "voice": "Low, calm."},
    )

    character = Character.objects.get()
    assert response.status_code == 302
    assert response["Location"] == url("character_detail", character)
    assert character.drama == drama
    assert character.name == "Lin Wu"  # spacing tidied
    assert character.appearance_notes == "Short black hair."
    assert character.voice == "Low, calm."
    page = editor.get(response["Location"]).content.decode()
    assert "Lin Wu added. Upload reference images next." in page
    assert "<h1>Lin Wu</h1>" in page


def test_it_shows_the_creation_form_to_editors(drama):
    response = member(drama, Role.EDITOR).get(reverse("character_create", args=[drama.id]))

    assert response.status_code == 200
    assert 'name="name"' in response.content.decode()


def test_it_forbids_viewers_to_create_characters(drama):
    viewer = member(drama, Role.VIEWER)
    create_url = reverse("character_create", args=[drama.id])

    assert viewer.get(create_url).status_code == 403
    response = viewer.post(create_url, {"name": "Lin Wu"})

    assert response.status_code == 403
    assert "editor role" in response.content.decode()
    assert not Character.objects.exists()


def test_it_hides_character_creation_from_non_members(drama):
    outsider = login(create_user())

    response = outsider.post(reverse("character_create", args=[drama.id]), {"name": "Lin Wu"})

    assert response.status_code == 404
    assert not Character.objects.exists()


@pytest.mark.parametrize("name", ["Lin Wu", "  Lin   Wu  ", "LIN wu"])
def test_it_refuses_a_second_character_with_the_same_name(producer_client, character, name):
    response = producer_client.post(
        reverse("character_create", args=[character.drama_id]),
        {"name": name, "appearance_notes": "Someone else."},
    )

    assert response.status_code == 422
    html = response.content.decode()
    assert DUPLICATE in html
    assert "Someone else." in html  # the form comes back with what was typed
    assert list(Character.objects.all()) == [character]
    assert Character.objects.get().appearance_notes == "Short black hair."


def test_it_allows_the_same_name_in_another_drama(producer, producer_client, character):
    other = create_drama(owner=producer, title="Second Chance")

    response = producer_client.post(
        reverse("character_create", args=[other.id]), {"name": "Lin Wu"}
    )

    assert response.status_code == 302
    assert sorted(Character.objects.values_list("drama__title", flat=True)) == [
        "Neon Vows",
        "Second Chance",
    ]


def test_it_refuses_a_character_without_a_name(producer_client, drama):
    response = producer_client.post(reverse("character_create", args=[drama.id]), {"name": "   "})

    assert response.status_code == 422
    assert "This field is required." in response.content.decode()
    assert not Character.objects.exists()


# --- Edit --------------------------------------------------------------------------------------


def test_it_opens_the_edit_form_in_place_for_htmx(producer_client, character):
    response = producer_client.get(url("character_edit", character), headers=HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert html.lstrip().startswith('<section id="character-info"')
    assert f'hx-post="{url("character_edit", character)}"' in html
    assert 'value="Lin Wu"' in html


def test_it_saves_an_edit_in_place_for_htmx(producer_client, character):
    response = producer_client.post(
        url("character_edit", character),
        {"name": "Lin  Wei", "appearance_notes": "Silver streak in her hair.", "voice": "Husky."},
        headers=HTMX,
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert html.lstrip().startswith('<section id="character-info"')
    assert "<h1>Lin Wei</h1>" in html
    assert "Silver streak in her hair." in html
    assert "Voice: Husky." in html
    assert '<form class="panel"' not in html  # back to the read-only view
    assert 'id="gallery"' not in html
    assert "Character saved." in html  # delivered out of band with the fragment
    character.refresh_from_db()
    assert (character.name, character.appearance_notes, character.voice) == (
        "Lin Wei",
        "Silver streak in her hair.",
        "Husky.",
    )


def test_it_saves_a_plain_edit_and_redirects(producer_client, character):
    response = producer_client.post(
        url("character_edit", character), {"name": "Lin Wei", "appearance_notes": ""}
    )

    assert response.status_code == 302
    assert response["Location"] == url("character_detail", character)
    character.refresh_from_db()
    assert character.name == "Lin Wei"
    assert character.appearance_notes == ""
    page = producer_client.get(response["Location"]).content.decode()
    assert "Character saved." in page
    assert "<h1>Lin Wei</h1>" in page


def test_it_keeps_the_old_name_when_an_edit_would_duplicate_another(
    producer_client, drama, character
):
    create_character(drama=drama, name="Mei")

    response = producer_client.post(
        url("character_edit", character),
        {"name": "Mei", "appearance_notes": "Changed."},
        headers=HTMX,
    )

    assert response.status_code == 422
    html = response.content.decode()
    assert "<html" not in html
    assert html.lstrip().startswith('<section id="character-info"')
    assert DUPLICATE in html
    character.refresh_from_db()
    assert character.name == "Lin Wu"
    assert character.appearance_notes == "Short black hair."


def test_it_forbids_viewers_to_edit(drama, character):
    response = member(drama, Role.VIEWER).post(
        url("character_edit", character), {"name": "Hacked"}, headers=HTMX
    )

    assert response.status_code == 403
    character.refresh_from_db()
    assert character.name == "Lin Wu"


# --- Delete ------------------------------------------------------------------------------------


def test_it_deletes_a_character_with_its_images(
    producer_client, drama, character, media_root, django_capture_on_commit_callbacks
):
    references = with_references(character, 2)
    other = create_character(drama=drama, name="Mei")
    [kept] = with_references(other)
    assert all(file_of(reference, media_root).exists() for reference in references)

    with django_capture_on_commit_callbacks(execute=True):  # files go once the delete commits
        response = producer_client.post(url("character_delete", character))

    assert response.status_code == 302
    assert response["Location"] == reverse("drama_board", args=[drama.id])
    assert list(Character.objects.all()) == [other]
    assert list(ReferenceImage.objects.all()) == [kept]
    assert stored_files(media_root) == [file_of(kept, media_root)]
    page = producer_client.get(response["Location"]).content.decode()
    assert "Lin Wu was deleted." in page


def test_it_forbids_viewers_to_delete_a_character(drama, character, media_root):
    [reference] = with_references(character)

    response = member(drama, Role.VIEWER).post(url("character_delete", character))

    assert response.status_code == 403
    assert Character.objects.filter(id=character.id).exists()
    assert ReferenceImage.objects.filter(id=reference.id).exists()
    assert file_of(reference, media_root).exists()


def test_it_deletes_a_reference_and_returns_the_gallery_to_htmx(
    producer_client, character, media_root, django_capture_on_commit_callbacks
):
    gone, kept = with_references(character, 2)

    with django_capture_on_commit_callbacks(execute=True):
        response = producer_client.post(url("reference_delete", character, gone.id), headers=HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert html.lstrip().startswith('<section id="gallery">')
    assert f'id="reference-{gone.id}"' not in html
    assert f'id="reference-{kept.id}"' in html
    assert "1 image<" in html
    assert list(ReferenceImage.objects.all()) == [kept]
    assert stored_files(media_root) == [file_of(kept, media_root)]


def test_it_deletes_a_reference_and_redirects_a_plain_form(
    producer_client, character, media_root, django_capture_on_commit_callbacks
):
    [reference] = with_references(character)

    with django_capture_on_commit_callbacks(execute=True):
        response = producer_client.post(url("reference_delete", character, reference.id))

    assert response.status_code == 302
    assert response["Location"] == url("character_detail", character)
    assert not ReferenceImage.objects.exists()
    assert stored_files(media_root) == []


def test_it_forbids_viewers_to_delete_a_reference(drama, character, media_root):
    [reference] = with_references(character)

    response = member(drama, Role.VIEWER).post(
        url("reference_delete", character, reference.id), headers=HTMX
    )

    assert response.status_code == 403
    assert ReferenceImage.objects.filter(id=reference.id).exists()
    assert file_of(reference, media_root).exists()


# --- Deleting the drama ------------------------------------------------------------------------


def test_it_removes_the_reference_files_when_the_producer_deletes_the_drama(
    producer, producer_client, drama, character, media_root, django_capture_on_commit_callbacks
):
    with_references(character, 2)
    with_references(create_character(drama=drama, name="Mei"))
    elsewhere = create_character(drama=create_drama(owner=producer, title="Other"), name="Bo")
    [kept] = with_references(elsewhere)
    assert len(stored_files(media_root)) == 4

    with django_capture_on_commit_callbacks(execute=True):
        response = producer_client.post(reverse("drama_delete", args=[drama.id]))

    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    assert not Drama.objects.filter(id=drama.id).exists()
    assert list(Character.objects.all()) == [elsewhere]
    assert list(ReferenceImage.objects.all()) == [kept]
    assert stored_files(media_root) == [file_of(kept, media_root)]


def test_it_removes_the_reference_files_in_the_drama_delete_service(
    drama, character, media_root, django_capture_on_commit_callbacks
):
    with_references(character, 2)

    with django_capture_on_commit_callbacks(execute=True):
        drama_services.drama_delete(drama=drama)

    assert not ReferenceImage.objects.exists()
    assert stored_files(media_root) == []


def test_it_lets_only_the_producer_delete_the_drama(drama, character, media_root):
    [reference] = with_references(character)

    response = member(drama, Role.EDITOR).post(reverse("drama_delete", args=[drama.id]))

    assert response.status_code == 403
    assert Drama.objects.filter(id=drama.id).exists()
    assert ReferenceImage.objects.filter(id=reference.id).exists()
    assert file_of(reference, media_root).exists()


# --- Other dramas stay out of reach ------------------------------------------------------------


def test_it_does_not_reach_another_dramas_character_through_this_dramas_urls(
    producer, producer_client, drama, media_root
):
    theirs = create_character(
        drama=create_drama(owner=producer, title="Other"), name="Bo", appearance_notes="Tall."
    )
    [reference] = with_references(theirs)

    def via_this_drama(name, *extra):
        return reverse(name, args=[drama.id, theirs.id, *extra])

    requests = [
        ("get", via_this_drama("character_detail"), {}),
        ("get", via_this_drama("character_edit"), {}),
        ("post", via_this_drama("character_edit"), {"name": "Renamed"}),
        ("post", via_this_drama("reference_upload"), {"images": [upload(name="x.png")]}),
        ("get", via_this_drama("reference_image", reference.id), {}),
        ("post", via_this_drama("reference_delete", reference.id), {}),
        ("post", via_this_drama("character_delete"), {}),
    ]
    for method, path, data in requests:
        response = getattr(producer_client, method)(path, data)
        assert response.status_code == 404, (method, path, response.status_code)

    theirs.refresh_from_db()
    assert theirs.name == "Bo"
    assert list(ReferenceImage.objects.all()) == [reference]
    assert stored_files(media_root) == [file_of(reference, media_root)]
    # The same character is fine through its own drama's URL.
    assert producer_client.get(url("character_detail", theirs)).status_code == 200
