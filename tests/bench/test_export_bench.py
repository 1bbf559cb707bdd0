"""Smoke test of `manage.py bench export` (not collected by default: `pytest tests/bench`)."""

import json
from io import StringIO

from django.core.management import call_command

POSITIVE = (
    "export_s",
    "peak_rss_mb",
    "process_start_rss_mb",
    "bare_encode_s",
    "bare_audio_s",
    "bare_peak_rss_mb",
    "one_encode_s",
    "one_encode_peak_rss_mb",
    "ratio",
    "episode_bytes",
    "package_bytes",
)


def test_it_exports_a_short_chapter_and_times_it_against_the_bare_encode():
    out = StringIO()

    call_command("bench", "export", "--quick", "--json", stdout=out)

    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    for key in POSITIVE:
        assert figures[key] > 0, key
    assert figures["ratio"] == round(figures["export_s"] / figures["bare_encode_s"], 3)
    # What the bench checked by decoding before it reported: the delivered episode.
    assert (figures["size"], figures["fps"], figures["takes"]) == ("1080x1920", 24, 2)
    assert figures["frames"] == 360 and figures["duration_s"] == figures["episode_s"] == 15.0
    assert abs(figures["loudness_lufs"] - -14.0) <= 0.5
    assert abs(figures["measured_loudness_lufs"] - -14.0) <= 0.5
    assert figures["true_peak_dbtp"] <= -1.0
    assert figures["captions"] == figures["dialog_lines"] > 0
    assert figures["joins"] == {"dissolve": 1, "fade": 0, "cut": 0}
    # Every stage of the package was seen; together they are the export.
    stages = figures["export_stages_s"]
    assert set(stages) == {
        "copy_takes",
        "audio_mix_loudness_aac",
        "pictures_both_files",
        "captions_timelines_covers",
        "manifest_zip",
    }
    assert stages["pictures_both_files"] > 0 and stages["audio_mix_loudness_aac"] > 0
    assert abs(sum(stages.values()) - figures["export_s"]) < 0.05
    # Each timed process's peak is its own, above what it started with; the memory sampled in
    # each stage stays under that peak.
    assert figures["peak_rss_mb"] > figures["process_start_rss_mb"]
    stage_peaks = figures["export_stage_peak_rss_mb"]
    assert {"audio_mix_loudness_aac", "pictures_both_files"} <= set(stage_peaks) <= set(stages)
    assert 0 < max(stage_peaks.values()) <= figures["peak_rss_mb"]
