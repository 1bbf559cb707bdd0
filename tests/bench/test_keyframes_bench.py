"""Smoke test of `manage.py bench keyframes` (not collected by default: `pytest tests/bench`)."""

import json
from io import StringIO

from django.core.management import call_command


def test_it_reports_the_gated_and_ungated_spend_of_a_drifting_season(
    django_db_setup, django_db_blocker
):
    out = StringIO()
    with django_db_blocker.unblock():  # the bench makes and drops its own scratch database
        call_command("bench", "keyframes", "--quick", "--json", stdout=out)
    figures = json.loads(out.getvalue().strip().splitlines()[-1])

    assert figures["scenes"] == 4
    assert figures["unfinished_scenes"] == {"gated": 0, "ungated": 0}
    assert figures["renders_gated"] >= 4 and figures["renders_ungated"] >= 4
    assert figures["keyframe_rounds"] >= 4 and figures["keyframe_images"] >= 12
    # Every image and every video of both seasons is priced: nothing booked as unknown.
    images = figures["keyframe_images"] * figures["prices"]["image_usd"]
    assert abs(figures["spend_gated_images_usd"] - images) < 0.005
    video = figures["prices"]["video_usd_per_s"] * figures["prices"]["scene_s"]
    assert abs(figures["spend_ungated_usd"] - figures["renders_ungated"] * video) < 0.005
    total = figures["spend_gated_images_usd"] + figures["spend_gated_videos_usd"]
    assert abs(figures["spend_gated_usd"] - total) < 0.005
    saving = 1 - figures["spend_gated_usd"] / figures["spend_ungated_usd"]
    assert abs(figures["saving"] - saving) < 0.001
