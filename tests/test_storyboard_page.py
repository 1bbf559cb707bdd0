"""The storyboard page and the board's keyframes: candidates with their scores, the pick, new
rounds with an edited prompt, "Render anyway" past the gate, the settings, the sheet."""

import io

import pytest
from django.urls import reverse
from PIL import Image

from dramas.keyframes import GENERATE
from dramas.models import Keyframe, KeyframeRound, Role, Take
from studio.jobs.models import Job
from tests.conftest import login
from tests.factories import (
    add_member,
    create_chapter,
    create_character,
    create_drama,
    create_keyframes,
    create_line,
    create_scene,
)

HTMX = {"HX-Request": "true"}


@pytest.fixture
def storyboarded(db):
    drama = create_drama()
    mei = create_character(drama=drama, name="Mei", portrait="grace_hopper.jpg")
    chapter = create_chapter(drama=drama)
    first = create_scene(chapter=chapter, location="Rooftop", characters=[mei], camera="push in")
    create_line(scene=first, speaker=mei, line="You came back.")
    second = create_scene(chapter=chapter, location="Stairwell", characters=[mei])
    third = create_scene(chapter=chapter, location="Street", characters=[mei])
    create_keyframes(scene=first, scores=(88.0, 72.0, 40.0), chosen=0)
    create_keyframes(scene=second, scores=(52.0, 31.0), chosen=0)  # nothing consistent
    return {"drama": drama, "chapter": chapter, "scenes": [first, second, third]}


def page(client, world) -> str:
    url = reverse("chapter_storyboard", args=[world["drama"].id, world["chapter"].id])
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def test_it_shows_each_scenes_candidates_scores_pick_and_the_gate(storyboarded):
    html = page(login(storyboarded["drama"].created_by), storyboarded)

    first = storyboarded["scenes"][0]
    assert f'id="storyboard-scene-{first.id}"' in html
    assert "Consistent · 88" in html and "Consistent · 72" in html and "Inconsistent · 40" in html
    assert "Chosen by the studio (best score)" in html
    assert "Mei: “You came back.”" in html  # the scene's dialog, excerpted
    assert "Scene 2: its keyframe is not consistent (score 52)" in html
    assert "Render anyway" in html and 'name="override_gate" value="1"' in html
    assert "Render from this keyframe" in html
    assert html.count("Use this keyframe") == 3  # the unchosen finished candidates
    assert "No keyframe yet" in html  # the third scene
    # One scene lacks a chosen keyframe: the storyboard button offers that one.
    assert "Make the storyboard · 1 scene × 3" in html
    assert "Download the sheet (PNG)" in html
    for keyframe in Keyframe.objects.all():
        assert reverse("keyframe_image", args=[storyboarded["drama"].id, keyframe.id]) in html


def test_a_viewer_sees_it_without_the_buttons(storyboarded):
    viewer = add_member(drama=storyboarded["drama"], role=Role.VIEWER)

    html = page(login(viewer), storyboarded)

    assert "Consistent · 88" in html
    assert "Use this keyframe" not in html and "Render anyway" not in html
    assert "Make the storyboard" not in html


def test_the_board_tile_shows_the_chosen_keyframe_and_the_gate(storyboarded):
    drama = storyboarded["drama"]
    client = login(drama.created_by)

    html = client.get(reverse("drama_board", args=[drama.id])).content.decode()

    first = storyboarded["scenes"][0]
    assert f'id="scene-keyframe-{first.id}"' in html
    assert "Keyframe of scene 1" in html and "Consistent · 88" in html
    assert "Held by the keyframe gate" in html
    assert reverse("chapter_storyboard", args=[drama.id, storyboarded["chapter"].id]) in html


def test_a_producer_picks_another_candidate(storyboarded):
    drama, first = storyboarded["drama"], storyboarded["scenes"][0]
    client = login(drama.created_by)
    other = Keyframe.objects.get(scene=first, index=1)

    response = client.post(reverse("keyframe_choose", args=[drama.id, other.id]), headers=HTMX)

    assert response.status_code == 204
    assert response["HX-Redirect"].endswith(
        reverse("chapter_storyboard", args=[drama.id, storyboarded["chapter"].id])
    )
    [chosen] = Keyframe.objects.filter(scene=first, chosen=True)
    assert chosen.id == other.id and chosen.chosen_by == drama.created_by


def test_a_new_round_keeps_an_edited_prompt_and_the_built_one_is_not_kept_as_edited(
    storyboarded,
):
    drama, first, _, third = storyboarded["drama"], *storyboarded["scenes"]
    client = login(drama.created_by)

    client.post(
        reverse("scene_keyframes", args=[drama.id, first.id]), {"prompt": "Closer on her eyes."}
    )
    html = page(client, storyboarded)
    built = html.split('name="prompt"')[3].split(">", 1)[1].split("</textarea>")[0]
    client.post(reverse("scene_keyframes", args=[drama.id, third.id]), {"prompt": built})

    edited = KeyframeRound.objects.get(scene=first, number=2)
    assert edited.prompt == "Closer on her eyes." and edited.prompt_edited
    fresh = KeyframeRound.objects.get(scene=third)
    assert not fresh.prompt_edited and "Street" in fresh.prompt
    assert Job.objects.filter(kind=GENERATE).count() == 2


def test_make_the_storyboard_queues_only_scenes_without_a_keyframe(storyboarded):
    drama, third = storyboarded["drama"], storyboarded["scenes"][2]
    client = login(drama.created_by)

    client.post(reverse("chapter_keyframes", args=[drama.id, storyboarded["chapter"].id]))

    [round_] = KeyframeRound.objects.filter(status="queued")
    assert round_.scene_id == third.id and round_.keyframes.count() == 3


def test_render_anyway_overrides_the_gate_and_a_plain_render_is_refused(storyboarded):
    drama, second = storyboarded["drama"], storyboarded["scenes"][1]
    client = login(drama.created_by)
    url = reverse("render_scene", args=[drama.id, second.id])

    refused = client.post(url, {"back": "storyboard"}, follow=True)
    assert "its keyframe is not consistent" in refused.content.decode()
    assert not Take.objects.filter(scene=second).exists()

    client.post(url, {"back": "storyboard", "override_gate": "1"})
    [take] = Take.objects.filter(scene=second)
    assert take.gate_override and take.keyframe == Keyframe.objects.get(scene=second, chosen=True)


def test_the_settings_turn_the_gate_off_and_change_the_candidates(storyboarded):
    drama = storyboarded["drama"]
    client = login(drama.created_by)
    form = client.get(reverse("drama_edit", args=[drama.id])).content.decode()
    assert 'name="keyframe_gate"' in form and 'name="keyframe_candidates"' in form

    response = client.post(
        reverse("drama_edit", args=[drama.id]),
        {
            "title": drama.title,
            "genre": drama.genre,
            "language": drama.language,
            "aspect": drama.aspect,
            "budget_usd": "50",
            "keyframe_candidates": "5",
        },
    )

    assert response.status_code == 302
    drama.refresh_from_db()
    assert drama.keyframe_candidates == 5 and not drama.keyframe_gate
    assert "Render anyway" not in page(client, storyboarded)


def test_the_sheet_is_one_png_page_for_the_chapter(storyboarded):
    drama = storyboarded["drama"]
    client = login(drama.created_by)

    response = client.get(
        reverse("chapter_storyboard_sheet", args=[drama.id, storyboarded["chapter"].id])
    )

    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert "storyboard-chapter-1.png" in response["Content-Disposition"]
    with Image.open(io.BytesIO(response.content)) as sheet:
        assert sheet.format == "PNG" and sheet.width == 2480 and sheet.height > 500


def test_the_costs_page_shows_keyframes_apart_and_what_the_gate_saved(storyboarded):
    from decimal import Decimal

    from tests.factories import create_usage

    drama, second = storyboarded["drama"], storyboarded["scenes"][1]
    KeyframeRound.objects.filter(scene=second).update(
        consistent=False, render_avoided_usd=Decimal("0.80")
    )
    create_usage(drama=drama, operation="image.generate", cost_usd=Decimal("0.12"))
    create_usage(drama=drama, operation="video.generate", cost_usd=Decimal("1.60"))

    html = login(drama.created_by).get(reverse("drama_costs", args=[drama.id])).content.decode()

    section = html.split('id="keyframe-savings"')[1].split("</section>")[0]
    assert "Keyframes <strong>$0.12</strong> (5 images in 2 rounds)" in section
    assert "video renders <strong>$1.60</strong>" in section
    assert "held back <strong>1</strong> video render " in section
    assert "<strong>$0.80</strong> not spent" in section


def test_the_chapter_editor_shows_the_storyboard_over_the_script(storyboarded):
    drama, chapter = storyboarded["drama"], storyboarded["chapter"]
    client = login(drama.created_by)

    html = client.get(reverse("chapter_editor", args=[drama.id, chapter.id])).content.decode()

    strip = html.split('id="storyboard-strip"')[1].split("</section>")[0]
    assert strip.count("<figure") == 3
    assert "Keyframe of scene 1" in strip and "Consistent · 88" in strip
    assert "Inconsistent · 52" in strip and "held by the gate" in strip
    assert "No keyframe yet" in strip and "Mei: You came back." in strip


def test_the_storyboard_follows_the_drama_live(storyboarded):
    from dramas import live
    from dramas.keyframes import keyframes_enqueue

    drama, chapter, third = (
        storyboarded["drama"],
        storyboarded["chapter"],
        storyboarded["scenes"][2],
    )
    args = dict(drama_id=drama.id, view="storyboard", chapter_id=chapter.id, can_edit=True)

    snapshot = live.snapshot(**args)
    assert snapshot.count('hx-swap-oob="true"') == 4  # the action bar and the three scenes
    assert 'id="storyboard-actions"' in snapshot
    [round_] = keyframes_enqueue(drama=drama, scenes=[third])
    moved = live.progress(**args, ids=[round_.job_id])
    assert f'id="storyboard-scene-{third.id}"' in moved
    assert f'id="storyboard-scene-{storyboarded["scenes"][0].id}"' not in moved
    assert "Queued" in moved


def test_an_overlong_prompt_is_refused_and_nothing_is_queued(storyboarded):
    drama, first = storyboarded["drama"], storyboarded["scenes"][0]
    client = login(drama.created_by)

    response = client.post(
        reverse("scene_keyframes", args=[drama.id, first.id]), {"prompt": "x" * 9000}, follow=True
    )

    assert "The prompt is 9000 characters long; keep it under 8000." in response.content.decode()
    assert KeyframeRound.objects.filter(scene=first).count() == 1  # the fixture's round only
    assert not Job.objects.filter(kind=GENERATE).exists()
