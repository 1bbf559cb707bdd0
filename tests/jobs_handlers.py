"""Job handlers for tests that run a real `manage.py studio_worker` subprocess.

The worker loads this module through STUDIO_JOB_MODULES; every handler appends what it does to
the file named by STUDIO_TEST_JOB_LOG, one line per event, so the test can replay history.
"""

import asyncio
import os

from studio.jobs.registry import register


def note(line: str) -> None:
    with open(os.environ["STUDIO_TEST_JOB_LOG"], "a") as log:
        log.write(line + "\n")


@register("test.crash.steps")
async def steps(ctx):
    """`steps` steps of `step_s` seconds, each saved as a checkpoint before the next one."""
    start = ctx.checkpoint or 0
    note(f"{ctx.job_id} start {start} attempt {ctx.attempt}")
    for step in range(start, ctx.payload["steps"]):
        await asyncio.sleep(ctx.payload["step_s"])
        await ctx.save_checkpoint(step + 1)
        await ctx.progress((step + 1) / ctx.payload["steps"])
    note(f"{ctx.job_id} done")
    return {"resumed_from": start}


@register("test.noop")
async def noop(ctx):
    return None


@register("test.scaleout.claim")
async def claim(ctx):
    """Notes which worker process ran the job: a job claimed twice shows up twice."""
    note(f"{ctx.job_id} ran-in {os.getpid()} attempt {ctx.attempt}")
    await asyncio.sleep(ctx.payload.get("sleep_s", 0.02))
    await ctx.progress(1.0)
