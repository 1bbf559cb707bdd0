import json
from io import StringIO

import pytest
from django.core.management import call_command


def run_bench(name: str) -> dict:
    out = StringIO()
    call_command("bench", name, "--quick", "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_it_runs_the_ratelimit_benchmark_quickly():
    figures = run_bench("ratelimit")
    assert figures["requests"] == figures["ok"] == 300 and figures["failed"] == 0
    assert figures["configured_rate"] == 100 and figures["window_limit"] == 200
    assert figures["windows_over_limit"] == 0 and figures["bucket_violations"] == 0
    assert figures["max_in_any_1s_window"] <= 200
    assert figures["sim_received"] == 300
    for key in ("achieved_rate", "overhead_p50_ms", "overhead_p99_ms", "sim_max_in_any_1s_window"):
        assert figures[key] is not None
    # The baseline in the same run: the same requests without the bucket (its rate depends on
    # the machine's load, so only its presence is asserted here; BENCHMARKS.md has figures).
    assert figures["baseline_unlimited_rate"] > 0
    assert figures["baseline_overhead_p50_ms"] is not None


def test_it_runs_the_animatic_benchmark_quickly():
    figures = run_bench("animatic")
    assert figures["frames"] == 48 and figures["size"] == "720x1280"
    assert figures["render_s"] > 0 and figures["bare_encode_s"] > 0
    assert figures["ratio"] == pytest.approx(figures["render_s"] / figures["bare_encode_s"], 0.01)
