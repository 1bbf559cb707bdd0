"""Smoke test of `manage.py bench consistency` (not collected by default: `pytest tests/bench`)."""

import json
from io import StringIO

from django.core.management import call_command


def test_it_reports_frames_per_second_with_the_one_process_baseline():
    out = StringIO()

    call_command("bench", "consistency", "--quick", "--json", stdout=out)

    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert figures["frames"] == 8 and figures["frame_size"] == "1280x720"
    assert figures["frames_per_s"] > 0 and figures["baseline_frames_per_s"] > 0
    assert figures["consistent_frames"] == 8  # both characters found in every frame
    assert figures["same_verdicts_in_both_runs"] is True
