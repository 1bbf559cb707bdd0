"""`python manage.py bench queue`: job throughput and per-job overhead of one worker.

Loads, each run on a fresh database (SQLite by default, whatever DATABASE_URL names otherwise):
- I/O: 1000 jobs whose handler awaits a 50 ms simulated call (asyncio.sleep, standing in for a
  provider's HTTP round trip), with concurrency 50; then the same 1000 jobs one at a time
  (concurrency 1) as the baseline. `speedup` is the ratio of the two throughputs.
- No-op: 1000 jobs whose handler returns at once, concurrency 50: `overhead_ms` is the wall
  time per job, i.e. everything the engine adds (claim, lease, settle, events, task start).
  The same at concurrency 1 is `overhead_serial_ms`.

Jobs are inserted in bulk before the clock starts (the worker is measured, not enqueueing), over
10 dramas so fair claiming has work to do, and every claim and settle publishes its events.
"""

import asyncio
import os
import time

from django.utils import timezone

from studio.bench.harness import scratch_database
from studio.jobs.models import Job
from studio.jobs.registry import register
from studio.jobs.worker import Worker, WorkerConfig

IO_S = 0.05
CONCURRENCY = 50
TARGET_OVERHEAD_MS = 5.0
TARGET_SPEEDUP = 10.0


@register("bench.io")
async def simulated_io(ctx) -> None:
    await asyncio.sleep(IO_S)


@register("bench.noop")
async def noop(ctx) -> None:
    return None


def queue(options: dict) -> dict:
    jobs = 100 if options.get("quick") else 1000
    say = options["stdout"].write
    load_before = os.getloadavg()[0]
    with scratch_database() as vendor:
        io = _timed(kind="bench.io", jobs=jobs, concurrency=CONCURRENCY)
        say(f"I/O load, concurrency {CONCURRENCY}: {jobs / io:.0f} jobs/s")
        noop_elapsed = _timed(kind="bench.noop", jobs=jobs, concurrency=CONCURRENCY)
        say(f"no-op load, concurrency {CONCURRENCY}: {noop_elapsed / jobs * 1000:.2f} ms/job")
        noop_serial = _timed(kind="bench.noop", jobs=jobs, concurrency=1)
        say(f"no-op load, one at a time: {noop_serial / jobs * 1000:.2f} ms/job")
        say(f"I/O load one at a time (baseline, about {jobs * IO_S:.0f} s)...")
        baseline = _timed(kind="bench.io", jobs=jobs, concurrency=1)
    jobs_per_s = jobs / io
    baseline_jobs_per_s = jobs / baseline
    overhead_ms = noop_elapsed / jobs * 1000
    speedup = jobs_per_s / baseline_jobs_per_s
    return {
        "database": vendor,
        "load_average_1min_before": round(load_before, 2),
        "jobs": jobs,
        "io_ms": IO_S * 1000,
        "concurrency": CONCURRENCY,
        "jobs_per_s": round(jobs_per_s, 1),
        "baseline_jobs_per_s": round(baseline_jobs_per_s, 2),
        "ideal_serial_jobs_per_s": round(1 / IO_S, 1),
        "speedup": round(speedup, 1),
        "overhead_ms": round(overhead_ms, 3),
        "noop_jobs_per_s": round(jobs / noop_elapsed, 1),
        "overhead_serial_ms": round(noop_serial / jobs * 1000, 3),
        "target_overhead_ms": TARGET_OVERHEAD_MS,
        "target_speedup": TARGET_SPEEDUP,
        "meets_targets": overhead_ms <= TARGET_OVERHEAD_MS and speedup >= TARGET_SPEEDUP,
    }


def _timed(*, kind: str, jobs: int, concurrency: int) -> float:
    """Seconds one worker takes to run `jobs` jobs of `kind` (inserted beforehand)."""
    Job.objects.all().delete()
    now = timezone.now()
    Job.objects.bulk_create(
        [Job(kind=kind, drama_id=n % 10 + 1, run_after=now) for n in range(jobs)],
        batch_size=500,
    )
    config = WorkerConfig(concurrency=concurrency, poll_s=0.05)
    return asyncio.run(_run(Worker(name="bench", config=config), jobs))


async def _run(worker: Worker, jobs: int) -> float:
    started = time.perf_counter()
    task = asyncio.create_task(worker.run())
    while worker.settled_count < jobs:
        if task.done():
            task.result()  # the worker died: raise its error
            raise RuntimeError("the worker stopped before the jobs were done")
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    await worker.stop(grace_s=0)
    await task
    return elapsed
