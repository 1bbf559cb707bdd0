"""Parts of pages drawn once per state (`{% fragment %}`, studio/templatetags/fragments.py):
the chapter editor's scene cards. A cached card is the card drawn afresh, follows every change
at once, and carries its own visitor's CSRF token."""

import re

import pytest
from django.core.cache import caches
from django.middleware.csrf import _unmask_cipher_token
from django.template import Context, Template
from django.test import Client, override_settings
from django.urls import reverse

from dramas import services
from dramas.models import Role, Take
from tests.conftest import login
from tests.factories import (
    PASSWORD,
    add_member,
    create_chapter,
    create_character,
    create_drama,
    create_line,
    create_scene,
)

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
NO_FRAGMENT_CACHE = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "fragments": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
}


@pytest.fixture(autouse=True)
def empty_fragment_cache():
    caches["fragments"].clear()
    yield
    caches["fragments"].clear()


@pytest.fixture
def script(db):
    drama = create_drama()
    mei = create_character(drama=drama, name="Mei")
    chapter = create_chapter(drama=drama)
    scenes = [create_scene(chapter=chapter, characters=[mei]) for _ in range(3)]
    for scene in scenes:
        create_line(scene=scene, speaker=mei, line=f"Line of scene {scene.order}.")
        create_line(scene=scene, line="Rain on the glass.", emotion="quiet")
    url = reverse("chapter_editor", args=[drama.id, chapter.id])
    return {"drama": drama, "chapter": chapter, "scenes": scenes, "mei": mei, "url": url}


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def _without_tokens(html: str) -> str:
    html = TOKEN.sub('name="csrfmiddlewaretoken" value=""', html)
    return re.sub(r'"X-CSRFToken": "[^"]+"', '"X-CSRFToken": ""', html)


def test_a_cached_card_is_the_card_drawn_afresh(script):
    client = login(script["drama"].created_by)
    first = _page(client, script["url"])
    cached = _page(client, script["url"])
    with override_settings(CACHES=NO_FRAGMENT_CACHE):
        fresh = _page(client, script["url"])
    assert _without_tokens(cached) == _without_tokens(fresh) == _without_tokens(first)
    assert cached.count('class="scene-card"') == 3


def test_every_change_shows_at_once(script):
    client = login(script["drama"].created_by)
    scene = script["scenes"][1]
    _page(client, script["url"])

    line = scene.lines.get(speaker=script["mei"])
    services.line_update(dialog=line, line="A new line, typed just now.", speaker=script["mei"])
    page = _page(client, script["url"])
    assert "A new line, typed just now." in page and "Line of scene 2." not in page

    script["mei"].name = "Mei Lin"
    script["mei"].save(update_fields=["name"])
    assert _page(client, script["url"]).count("Mei Lin") >= 6  # every line and chip of hers

    services.scene_update(scene=scene, location="Rooftop in the rain", duration_s=9.0)
    page = _page(client, script["url"])
    assert "Rooftop in the rain" in page and "9 s" in page


def test_each_visitor_gets_their_own_token(script):
    producer = script["drama"].created_by
    editor = add_member(drama=script["drama"], role=Role.EDITOR)
    scene = script["scenes"][0]
    create_url = reverse("line_create", args=[script["drama"].id, scene.id])

    visitors = {}
    for user in (producer, editor):
        client = Client(enforce_csrf_checks=True)
        assert client.login(username=user.username, password=PASSWORD)
        page = _page(client, script["url"])
        secret = client.cookies["csrftoken"].value  # the secret itself (Django >= 4.1)
        tokens = TOKEN.findall(page)
        assert len(tokens) > 10
        assert {_unmask_cipher_token(token) for token in tokens} == {secret}
        visitors[user.username] = (client, page)

    # The editor posts with the token of a form inside a card drawn for the producer.
    client, page = visitors[editor.username]
    form = page[page.index(f'action="{create_url}"') :]
    token = TOKEN.search(form).group(1)
    answer = client.post(
        create_url,
        {f"line-new-{scene.id}-line": "Posted from a cached card.", "csrfmiddlewaretoken": token},
    )
    assert answer.status_code == 302
    assert scene.lines.filter(line="Posted from a cached card.").exists()


def test_a_card_being_edited_is_drawn_afresh(script):
    client = login(script["drama"].created_by)
    scene = script["scenes"][2]
    _page(client, script["url"])
    answer = client.get(reverse("scene_edit", args=[script["drama"].id, scene.id]))
    assert answer.status_code == 200
    assert "Save scene" in answer.content.decode()


def test_the_tag_draws_without_a_key_or_outside_a_request():
    template = Template(
        "{% load fragments %}{% fragment key %}<b>{{ n }}</b>{% csrf_token %}{% endfragment %}"
    )
    assert template.render(Context({"key": "", "n": 1})) == "<b>1</b>"
    assert template.render(Context({"key": "k", "n": 2})) == "<b>2</b>"  # no visitor
    drawn = template.render(Context({"key": "k", "n": 3, "csrf_token": "abc"}))
    again = template.render(Context({"key": "k", "n": 4, "csrf_token": "xyz"}))
    assert drawn == '<b>3</b><input type="hidden" name="csrfmiddlewaretoken" value="abc">'
    assert again == '<b>3</b><input type="hidden" name="csrfmiddlewaretoken" value="xyz">'


def test_a_line_queued_to_voice_shows_on_its_card(script):
    from dramas import speech_jobs

    client = login(script["drama"].created_by)
    assert "Queued to voice" not in _page(client, script["url"])
    line = script["scenes"][0].lines.get(speaker=script["mei"])
    speech_jobs.line_speak_enqueue(line=line)
    page = _page(client, script["url"])
    card = page[page.index(f'id="line-{line.id}"') :]
    assert card[: card.index("</li>")].count("Queued to voice") == 1


def test_the_new_scene_form_offers_a_character_registered_since(script):
    client = login(script["drama"].created_by)
    _page(client, script["url"])
    jun = create_character(drama=script["drama"], name="Jun")
    page = _page(client, script["url"])
    form = page[page.index('id="scenes-panel"') :]
    form = form[form.index("Add a scene") :]
    assert f'value="{jun.id}"' in form and "Jun" in form


# --- The board's tiles, the queue's settled jobs, the take page's frames -----------------------


@pytest.fixture
def board(db):
    from tests.factories import create_board

    world = create_board(scenes=8)
    drama = world["drama"]
    take = Take.objects.filter(scene__chapter=world["chapter"], status="done").order_by("id")[0]
    world["urls"] = {
        "board": reverse("drama_board", args=[drama.id]) + f"?chapter={world['chapter'].id}",
        "queue": reverse("drama_queue", args=[drama.id]),
        "take": reverse("take_review", args=[drama.id, take.id]),
    }
    world["take"] = take
    return world


@pytest.mark.parametrize("role", [Role.PRODUCER, Role.VIEWER])
@pytest.mark.parametrize("page", ["board", "queue", "take"])
def test_cached_parts_of_the_live_pages_are_the_parts_drawn_afresh(board, page, role):
    user = board["drama"].created_by
    if role == Role.VIEWER:
        user = add_member(drama=board["drama"], role=Role.VIEWER)
    client = login(user)
    url = board["urls"][page]
    first = _page(client, url)
    cached = _page(client, url)
    with override_settings(CACHES=NO_FRAGMENT_CACHE):
        fresh = _page(client, url)
    assert _without_tokens(cached) == _without_tokens(fresh) == _without_tokens(first)
    if page == "board":  # the tiles' own forms follow the role
        assert ('name="back" value="board"' in cached) == (role == Role.PRODUCER)


def test_an_approval_shows_on_its_tile_at_once(board):
    from dramas import takes as take_services

    client = login(board["drama"].created_by)
    newest = [
        scene.takes.order_by("-number").first()
        for scene in board["chapter"].scenes.all()
        if not scene.takes.filter(locked=True).exists()
    ]
    take = next(take for take in newest if take is not None and take.status == "done")
    tile = f'id="tile-{take.scene_id}"'
    before = _page(client, board["urls"]["board"])
    take_services.take_approve(take=take, user=board["drama"].created_by)

    after = _page(client, board["urls"]["board"])
    shown = after[after.index(tile) :]
    assert "Approved · locked" in shown[: shown.index("</article>")]
    assert after.count("Approved · locked") == before.count("Approved · locked") + 1


def test_a_retried_job_leaves_the_failed_section_at_once(board):
    from studio.jobs.models import Job, JobStatus
    from studio.jobs.services import job_retry

    client = login(board["drama"].created_by)
    failed = Job.objects.filter(drama_id=board["drama"].id, status=JobStatus.FAILED).first()
    page = _page(client, board["urls"]["queue"])
    row = page[page.index(f'id="job-{failed.id}"') :]
    assert 'class="badge red">Failed' in row[: row.index("</tr>")]
    job_retry(job=failed)
    page = _page(client, board["urls"]["queue"])
    row = page[page.index(f'id="job-{failed.id}"') :]
    assert "Failed" not in row[: row.index("</tr>")] and "Queued" in row[: row.index("</tr>")]
