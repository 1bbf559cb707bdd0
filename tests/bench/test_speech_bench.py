"""Smoke test of `manage.py bench speech` (not collected by default: `pytest tests/bench`)."""

import json
import shutil
from io import StringIO

from django.core.management import call_command

POSITIVE = (
    "realtime_factor",
    "audio_s",
    "wall_s",
    "line_p50_ms",
    "line_p95_ms",
    "one_at_a_time_realtime_factor",
    "baseline_realtime_factor",
    "baseline_audio_s",
    "baseline_wall_s",
    "baseline_line_p50_ms",
    "baseline_line_p95_ms",
    "speedup",
    "pool_cpu_ms_per_line",
    "main_cpu_ms_per_line",
    "bare_encode_s",
    "mux_s",
    "mux_cost",
)


def bench_speech(django_db_blocker) -> dict:
    out = StringIO()
    with django_db_blocker.unblock():  # the bench makes and drops its own scratch database
        call_command("bench", "speech", "--quick", "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_it_reports_the_offline_voices_speed_and_the_mux_cost(django_db_setup, django_db_blocker):
    figures = bench_speech(django_db_blocker)

    assert (figures["lines"], figures["scenes"], figures["mandarin_lines"]) == (7, 2, 2)
    for key in POSITIVE:
        assert figures[key] > 0, key
    # Every line, spoken by the pool and one at a time, was booked in the ledger.
    assert figures["usage_records"] == 2 * figures["lines"] * figures["passes"]
    assert figures["take"] == "10 s 720x1280"
    assert figures["lines_heard"] == figures["take_lines"] == 3
    assert figures["dialog_track_s"] >= figures["last_line_end_s"]
    if shutil.which("espeak-ng"):
        assert figures["baseline"].startswith("espeak-ng command line")
    else:
        assert figures["baseline"] == "the same adapter, one line at a time"


def test_without_the_espeak_ng_program_the_baseline_is_the_adapter_one_line_at_a_time(
    django_db_setup, django_db_blocker, monkeypatch, tmp_path
):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no espeak-ng on it

    figures = bench_speech(django_db_blocker)

    assert figures["baseline"] == "the same adapter, one line at a time"
    assert figures["baseline_realtime_factor"] == figures["one_at_a_time_realtime_factor"]
    assert figures["baseline_realtime_factor"] > 0 and figures["mux_cost"] > 0
