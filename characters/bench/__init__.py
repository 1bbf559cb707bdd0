"""The characters app's benchmark (run by `manage.py bench NAME`; see studio/bench): frames
scored for character consistency per second, in the process pool and in one process."""

BENCHMARKS = {
    "consistency": "characters.bench.consistency:consistency",
}
