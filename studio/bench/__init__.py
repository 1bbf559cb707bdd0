"""Benchmarks: `python manage.py bench NAME [--quick] [--json]` runs one and prints its figures.

Each app that has benchmarks keeps them in its own `bench` package, one module each, and names
them in that package's `BENCHMARKS` ({name: "module:function"}, imported only when run);
`harness.py` holds what they share. A benchmark is `function(options) -> dict` and reports a
baseline measured in the same run. These are the platform's: the job engine, the providers'
rate limit and animatic, and the admin's cost review.
"""

BENCHMARKS = {
    "queue": "studio.bench.queue:queue",
    "ratelimit": "studio.bench.ratelimit:ratelimit",
    "animatic": "studio.bench.animatic:animatic",
    "costs": "studio.bench.costs:costs",
}
