"""The drama board's cost in queries stays the same as the drama grows (issue #9), and the
`bench page` benchmark that reports it runs."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from characters import services as character_services
from dramas import live
from dramas.models import Role
from tests.conftest import login
from tests.factories import (
    add_member,
    create_board,
    create_chapter,
    create_character,
    create_drama,
    create_rendered_scene,
    upload,
)

TARGET_QUERIES = 20


def board_queries(client, drama, chapter) -> tuple[int, str]:
    url = reverse("drama_board", args=[drama.id]) + f"?chapter={chapter.id}"
    client.get(url)  # the first load of a session may set things up
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured), response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.PRODUCER, Role.EDITOR, Role.VIEWER])
def test_it_renders_the_board_of_100_scenes_in_as_many_queries_as_10(role):
    counts = {}
    for scenes in (10, 100):
        world = create_board(scenes=scenes)
        assert world["scenes"] == scenes and world["takes"] == 3 * scenes
        user = world["drama"].created_by
        if role != Role.PRODUCER:
            user = add_member(drama=world["drama"], role=role)
        counts[scenes], page = board_queries(login(user), world["drama"], world["chapter"])
        assert page.count('class="scene-tile"') == scenes

    assert counts[100] == counts[10] <= TARGET_QUERIES


@pytest.mark.django_db
def test_it_keeps_the_query_count_with_takes_in_every_state(producer):
    """Built through the services: rejected, approved (locked), rendering with its job,
    failed and finished takes, characters with and without references."""
    counts = {}
    for scenes in (4, 12):
        drama = create_drama(owner=producer)
        cast = [create_character(drama=drama, name=f"Mei {scenes}"), create_character(drama=drama)]
        character_services.reference_images_add(character=cast[0], files=[upload()])
        chapter = create_chapter(drama=drama)
        states = ["approved", "rendering", "failed", "done", "none"]
        for n in range(scenes):
            create_rendered_scene(chapter=chapter, characters=cast, last=states[n % len(states)])
        counts[scenes], page = board_queries(login(producer), drama, chapter)
        assert page.count('class="scene-tile"') == scenes
        assert "Approved · locked" in page and "Provider timed out." in page
        assert 'aria-label="Take 3"' in page  # the queued take's progress bar
        assert "approved scene" in page and "skipped" in page  # the batch estimates

    assert counts[12] == counts[4] <= TARGET_QUERIES


@pytest.mark.django_db
def test_it_sends_the_board_snapshot_in_as_many_queries_for_100_scenes_as_for_10():
    counts = {}
    for scenes in (10, 100):
        world = create_board(scenes=scenes)
        with CaptureQueriesContext(connection) as captured:
            html = live.snapshot(
                drama_id=world["drama"].id,
                view="board",
                chapter_id=world["chapter"].id,
                can_edit=True,
            )
        counts[scenes] = len(captured)
        assert html.count('id="scene-take-') == scenes
        assert html.count('id="scene-keyframe-') == scenes  # the storyboard's chosen stills
        # The render buttons come along, with their estimates (enabled again after renders).
        assert 'id="render-action-chapter"' in html and 'id="render-action-drama"' in html
        assert 'id="approve-action"' in html

    # 12: the tiles' chosen keyframes are one query (with the gate's verdicts).
    assert counts[100] == counts[10] <= 12, counts


@pytest.mark.django_db
def test_it_shows_each_scene_its_approved_take_else_its_newest():
    world = create_board(scenes=10)
    client = login(world["drama"].created_by)
    _, page = board_queries(client, world["drama"], world["chapter"])

    # Scene 1 (approved, locked: its take 3), scene 2 (take 3 rendering), scene 4 (take 3 failed).
    assert page.count("Approved · locked") == 2  # scenes 1 and 6
    assert page.count('aria-label="Take 3"') == 2  # the rendering and queued takes' bars
    assert "Provider timed out after 3 attempts." in page
    assert "3 lines of dialog" in page


def test_it_runs_the_page_benchmark_quickly(django_db_setup, django_db_blocker):
    out = StringIO()
    test_name = connection.settings_dict["TEST"].get("NAME")
    # The benchmark makes and drops its own scratch database, outside any test transaction.
    with django_db_blocker.unblock():
        call_command("bench", "page", "--quick", "--json", stdout=out)
    assert connection.settings_dict["TEST"].get("NAME") == test_name  # put back

    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert figures["baseline_scenes"] == 5 and figures["baseline_takes"] == 15
    assert figures["large_scenes"] == 50 and figures["large_takes"] == 150
    assert figures["runs"] == 5 and figures["database"] == "sqlite"
    for page in ("board", "board_live", "editor", "queue"):
        for size in ("baseline", "large"):
            assert figures[f"{size}_{page}_queries"] > 0
            p50, p95 = figures[f"{size}_{page}_p50_ms"], figures[f"{size}_{page}_p95_ms"]
            assert 0 < p50 <= p95 <= figures[f"{size}_{page}_max_ms"]
    assert figures["large_board_queries"] == figures["baseline_board_queries"] <= 20
    assert figures["board_queries_constant"] is True and figures["meets_targets"] is True
    assert "load_average_1min_before" in figures


@pytest.mark.django_db
def test_its_render_estimates_agree_with_a_pass_over_every_scene(published_prices):
    """The board's grouped estimate (one query) against the scene-by-scene rule the render
    buttons apply: same scenes, seconds, cost and approved scenes skipped."""
    from dramas import takes as take_services
    from dramas.models import Scene

    world = create_board(scenes=12)
    drama, chapter = world["drama"], world["chapter"]
    other = create_chapter(drama=drama)
    for last, duration in (("approved", 8.0), ("rendering", 5.0), ("done", 6.5), ("none", 6.5)):
        create_rendered_scene(chapter=other, last=last, duration_s=duration)
    chapter_ids = set(chapter.scenes.values_list("id", flat=True))

    chapter_estimate, drama_estimate = live.render_estimates(
        drama=drama, chapter_scene_ids=chapter_ids
    )

    everything = list(Scene.objects.filter(chapter__drama=drama))
    for estimate, scenes in (
        (chapter_estimate, [scene for scene in everything if scene.id in chapter_ids]),
        (drama_estimate, everything),
    ):
        chosen, skipped = take_services.batch_scenes(scenes=scenes)
        expected = take_services.takes_estimate(drama=drama, scenes=chosen, skipped_locked=skipped)
        assert estimate == expected
    assert drama_estimate.skipped_locked > chapter_estimate.skipped_locked > 0
    assert drama_estimate.scenes == chapter_estimate.scenes + 2  # the done and the take-less one
    assert drama_estimate.seconds == chapter_estimate.seconds + 6.5 + 6.5
