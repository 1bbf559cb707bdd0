"""Smoke test of `manage.py bench render` (not collected by default: `pytest tests/bench`)."""

import json
from io import StringIO

from django.core.management import call_command


def test_it_renders_every_take_once_and_reports_the_bound_and_the_seed_baseline(
    django_db_setup, django_db_blocker
):
    out = StringIO()

    with django_db_blocker.unblock():  # the bench makes and drops its own scratch database
        call_command("bench", "render", "--quick", "--json", stdout=out)

    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert figures["takes"] == 20 and figures["lost"] == 0
    assert figures["vendor_jobs_per_take"] == 1.0
    assert figures["takes_per_s"] > 0 and figures["baseline_takes_per_s"] > 0
    assert figures["bound_by"] in ("rate", "concurrency", "scoring")
    assert 0 < figures["ratio"] <= 1.2
    assert figures["pool_cpu_ms_per_take"] > 0 and figures["main_cpu_ms_per_take"] > 0
