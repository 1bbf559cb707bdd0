"""Dashboard, drama creation and settings, members and roles, the drama board."""

from decimal import Decimal

import pytest
from django.urls import reverse

from dramas.models import Drama, Membership, Role
from tests.conftest import login
from tests.factories import (
    add_member,
    create_chapter,
    create_character,
    create_drama,
    create_line,
    create_scene,
    create_user,
)

HTMX = {"HX-Request": "true"}


def drama_form(**overrides):
    data = {
        "title": "Glass Harbour",
        "logline": "A ferry pilot hides a fortune.",
        "genre": "revenge",
        "style": "photoreal, cold blue",
        "language": "en",
        "aspect": "9:16",
        "budget_usd": "40.00",
    }
    data.update(overrides)
    return data


def test_it_requires_login_for_the_dashboard(client):
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_lists_only_the_dramas_a_user_belongs_to(producer, producer_client):
    mine = create_drama(owner=producer, title="Mine")
    shared = create_drama(title="Shared with me")
    add_member(drama=shared, user=producer, role=Role.VIEWER)
    create_drama(title="Someone else's")
    page = producer_client.get(reverse("dashboard"))
    assert [drama for drama, _ in page.context["cards"]] == [shared, mine]
    assert "Someone else" not in page.text
    assert "Viewer" in page.text and "Producer" in page.text


def test_it_counts_chapters_scenes_and_characters_on_cards(drama, producer_client):
    chapter = create_chapter(drama=drama)
    create_scene(chapter=chapter)
    create_scene(chapter=chapter)
    create_character(drama=drama, name="Mei")
    page = producer_client.get(reverse("dashboard"))
    assert "1 chapter" in page.text and "2 scenes" in page.text and "1 character" in page.text


def test_the_dashboard_reads_every_card_in_as_many_queries_for_20_dramas_as_for_2(
    producer, producer_client
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from studio.models import UsageRecord

    counts = {}
    for total in (2, 20):
        while Drama.objects.filter(created_by=producer).count() < total:
            drama = create_drama(owner=producer, budget_usd=Decimal("10"))
            UsageRecord.objects.create(provider="p", operation="x", drama_id=drama.id, cost_usd=2)
            UsageRecord.objects.create(provider="p", operation="x", drama_id=drama.id)
        with CaptureQueriesContext(connection) as captured:
            page = producer_client.get(reverse("dashboard"))
        counts[total] = len(captured)
        # Each card's spend bar: $2 booked of $10, one call without a price.
        assert page.text.count("$2.00 of $10.00") == total
        assert page.text.count("+ 1 call without a price") == total
    assert counts[20] == counts[2], counts


def test_it_makes_the_creator_the_producer(producer, producer_client):
    response = producer_client.post(reverse("drama_create"), drama_form())
    drama = Drama.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("drama_board", args=[drama.id])
    assert drama.budget_usd == Decimal("40.00") and drama.created_by == producer
    assert Membership.objects.get(drama=drama).role == Role.PRODUCER


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("title", "", "This field is required."),
        ("budget_usd", "-5", "greater than or equal to 0"),
        ("budget_usd", "lots", "Enter a number."),
        ("aspect", "4:3", "Select a valid choice."),
        ("title", "x" * 201, "at most 200 characters"),
    ],
)
def test_it_refuses_a_bad_drama_form_and_stores_nothing(producer_client, field, value, message):
    response = producer_client.post(reverse("drama_create"), drama_form(**{field: value}))
    assert response.status_code == 422
    assert message in response.text
    assert not Drama.objects.exists()


def test_it_lets_producers_change_settings_and_budget(drama, producer_client):
    url = reverse("drama_edit", args=[drama.id])
    response = producer_client.post(url, drama_form(budget_usd="120.50", title="Renamed"))
    assert response.status_code == 302
    drama.refresh_from_db()
    assert (drama.title, drama.budget_usd) == ("Renamed", Decimal("120.50"))


def test_it_adds_changes_and_removes_members(drama, producer_client):
    create_user(username="ana")
    url = reverse("drama_members", args=[drama.id])
    producer_client.post(url, {"username": "ANA", "role": "viewer"})
    membership = drama.memberships.get(user__username="ana")
    assert membership.role == Role.VIEWER
    producer_client.post(url, {"username": "ana", "role": "editor"})
    membership.refresh_from_db()
    assert membership.role == Role.EDITOR
    page = producer_client.get(url)
    assert "ana" in page.text and "Editor" in page.text
    producer_client.post(reverse("drama_member_remove", args=[drama.id, membership.id]))
    assert not drama.memberships.filter(user__username="ana").exists()


def test_it_names_an_unknown_user(drama, producer_client):
    response = producer_client.post(
        reverse("drama_members", args=[drama.id]), {"username": "nobody", "role": "editor"}
    )
    assert response.status_code == 422
    assert "No active user called “nobody”." in response.text


def test_it_keeps_at_least_one_producer(drama, producer, producer_client):
    own = drama.memberships.get(user=producer)
    response = producer_client.post(
        reverse("drama_member_remove", args=[drama.id, own.id]), follow=True
    )
    assert "at least one producer" in response.text
    demote = producer_client.post(
        reverse("drama_members", args=[drama.id]), {"username": producer.username, "role": "viewer"}
    )
    assert demote.status_code == 422 and "at least one producer" in demote.text
    own.refresh_from_db()
    assert own.role == Role.PRODUCER


def test_it_lets_a_producer_leave_when_another_remains(drama, producer, producer_client):
    add_member(drama=drama, role=Role.PRODUCER)
    own = drama.memberships.get(user=producer)
    response = producer_client.post(reverse("drama_member_remove", args=[drama.id, own.id]))
    assert response["Location"] == reverse("dashboard")
    assert producer_client.get(reverse("drama_board", args=[drama.id])).status_code == 404


def test_it_shows_the_board_with_chapters_scenes_and_characters(drama, producer_client):
    mei = create_character(drama=drama, name="Mei", portrait="grace_hopper.jpg")
    create_character(drama=drama, name="Jun")
    first = create_chapter(drama=drama, title="First")
    second = create_chapter(drama=drama, title="Second")
    create_line(scene=create_scene(chapter=first, location="Ferry deck", characters=[mei]))
    create_scene(chapter=second, location="Harbour office")
    page = producer_client.get(reverse("drama_board", args=[drama.id]))
    assert "1. First" in page.text and "2. Second" in page.text
    assert "Ferry deck" in page.text and "Harbour office" not in page.text
    assert "1 reference" in page.text and "0 references" in page.text
    partial = producer_client.get(
        reverse("drama_board", args=[drama.id]) + f"?chapter={second.id}",
        headers={**HTMX, "HX-Target": "board-body"},
    )
    assert "<html" not in partial.text
    assert "Harbour office" in partial.text and "Ferry deck" not in partial.text


def test_it_ignores_a_chapter_of_another_drama_on_the_board(drama, producer_client):
    create_chapter(drama=drama, title="Ours")
    theirs = create_chapter(drama=create_drama(title="Other"), title="Theirs")
    page = producer_client.get(reverse("drama_board", args=[drama.id]) + f"?chapter={theirs.id}")
    assert "Ours" in page.text and "Theirs" not in page.text


def test_it_answers_bad_ids_with_404_not_500(drama, producer_client):
    assert producer_client.get(f"/dramas/{drama.id + 999}/").status_code == 404
    assert producer_client.get("/dramas/99999999999999999999/").status_code == 404
    assert producer_client.get(f"/dramas/{drama.id}/chapters/0/").status_code == 404


def test_it_shows_a_clear_403_page(drama):
    viewer = login(add_member(drama=drama, role=Role.VIEWER))
    response = viewer.get(reverse("chapter_create", args=[drama.id]))
    assert response.status_code == 403
    assert "you are a viewer on this drama" in response.text


def test_the_board_shows_each_chapter_at_the_stage_it_really_is(drama, producer_client):
    from dramas.generation import GENERATE
    from dramas.models import Take
    from studio.jobs.services import job_enqueue
    from tests.factories import create_take

    create_chapter(drama=drama, title="Empty")
    ready = create_chapter(drama=drama, title="Ready")
    create_scene(chapter=ready)
    approved = create_chapter(drama=drama, title="All approved")
    for _ in range(2):
        take = create_take(scene=create_scene(chapter=approved))
        Take.objects.filter(id=take.id).update(locked=True, review_state="approved")
    writing = create_chapter(drama=drama, title="Being written")
    job = job_enqueue(kind=GENERATE, drama_id=drama.id, payload={"chapter_id": writing.id})

    page = producer_client.get(reverse("drama_board", args=[drama.id])).text

    assert "0 scenes · Draft" in page
    assert "1 scene · Ready to render" in page
    assert "2 scenes · Approved" in page
    assert "0 scenes · Generating" in page
    # The stage is read, not stored: a writer job that ended (or died) leaves no trace.
    job.status = "failed"
    job.save()
    page = producer_client.get(reverse("drama_board", args=[drama.id])).text
    assert "Generating" not in page and page.count("0 scenes · Draft") == 2
    editor = producer_client.get(reverse("chapter_editor", args=[drama.id, approved.id])).text
    assert '<span class="badge">Approved</span>' in editor
