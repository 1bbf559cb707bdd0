"""Smoke test of `manage.py bench load --quick`: two real studios served on a scratch folder
(one web process, then one per core), 4 logged-in clients for 5 s each while a chapter
renders. Its figures depend on the machine's load, so only their presence and sanity are
asserted here; BENCHMARKS.md has full runs."""

import json
import os
from io import StringIO

import pytest
from django.core.management import call_command

PAGES = {"board", "queue", "take", "editor"}


def test_it_drives_the_hot_pages_of_a_served_studio_with_one_and_every_core():
    out = StringIO()
    call_command("bench", "load", "--quick", "--json", stdout=out)
    figures = json.loads(out.getvalue().strip().splitlines()[-1])

    assert figures["clients"] == 4 and figures["duration_s"] == 5
    assert figures["chapters"] == 3 and figures["scenes_per_chapter"] == 4
    assert figures["load_average_1min_before"] >= 0
    assert figures["baseline"]["web_processes"] == 1
    assert figures["multi"]["web_processes"] == os.cpu_count()
    for label in ("baseline", "multi"):
        run = figures[label]
        assert run["requests"] > 0 and run["requests_per_s"] > 0
        assert run["errors"] == 0 and run["timeouts"] == 0, run["error_kinds"]
        assert 0 < run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"] <= run["max_ms"]
        assert set(run["per_page"]) == PAGES
        assert all(page["requests"] > 0 for page in run["per_page"].values())
        assert sum(page["requests"] for page in run["per_page"].values()) == run["requests"]
        # The chapter's render was started (a take per scene) and none of it failed.
        render = run["render"]
        assert render["takes_queued"] == render["scenes"] == 4
        assert render["scenes_failed"] == 0
    # The top level is the multi-process run, against the baseline of the same run.
    multi, baseline = figures["multi"], figures["baseline"]
    assert figures["requests_per_s"] == multi["requests_per_s"]
    assert figures["p95_ms"] == multi["p95_ms"]
    assert figures["errors"] == 0 and figures["timeouts"] == 0
    assert figures["baseline_requests_per_s"] == baseline["requests_per_s"]
    expected = multi["requests_per_s"] / baseline["requests_per_s"]
    assert figures["speedup"] == pytest.approx(expected, abs=0.01)
