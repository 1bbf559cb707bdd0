"""A real `studio_worker` killed with SIGKILL between submit and download: the next worker
polls the stored handle, and the vendor (the simulator, in its own process) sees one
submission for the take. Plus a take whose worker died after its last checkpoint.
(tests/test_render_crash_batch.py kills a worker 20 times over 200 takes.)"""

import json

import pytest
from asgiref.sync import sync_to_async

from dramas.models import Take, TakeStatus
from dramas.takes import take_enqueue
from studio.jobs.models import Job
from tests.render_batch_support import Studio, kill_hard, stop_gently, wait_until
from tests.render_support import jobs_settled, offline_video, running, two_person_drama
from tests.render_support import wait_for as wait_for_async


@pytest.fixture
def studio(tmp_path):
    studio = Studio(tmp_path, VIDEO_DURATIONS="2", VIDEO_POLL_S="0.1")
    studio.start_sim("--job-s", "4")
    studio.setup_takes(takes=1, seconds=2)
    try:
        yield studio
    finally:
        studio.close()


def take_row(studio: Studio) -> dict:
    [take] = studio.takes()
    return take


def test_it_resumes_polling_after_a_kill_and_never_submits_twice(studio):
    first = studio.start_worker("--concurrency", "2", "--lease", "1")
    submitted = wait_until(
        lambda: (row := take_row(studio))["remote_handle"] and row,
        timeout=60,
        what="the take to be submitted",
    )
    kill_hard(first)
    assert take_row(studio)["status"] == "rendering"  # killed before the download

    second = studio.start_worker("--concurrency", "2", "--lease", "1")
    done = wait_until(
        lambda: (row := take_row(studio))["status"] in ("done", "failed") and row,
        timeout=60,
        what="the take to finish after the restart",
    )
    stop_gently(second, timeout=15)

    assert done["status"] == "done"
    assert done["remote_handle"] == submitted["remote_handle"]  # the same vendor job
    assert studio.stats()["submissions"] == {submitted["idempotency_key"]: 1}
    assert done["attempts"] == 2 and json.loads(done["checkpoint"]) == {"step": "done"}
    [frames] = studio.query("SELECT COUNT(*) AS n FROM dramas_frame WHERE take_id = ?", done["id"])
    assert frames["n"] == 5


@pytest.mark.django_db(transaction=True)
async def test_it_finishes_a_take_whose_worker_died_after_the_last_checkpoint(settings, tmp_path):
    """Killed between the checkpoint "done" and `finish`: the next attempt only finishes (it
    once failed every attempt with "tuple.index(x): x not in tuple" and left the take
    "scoring")."""
    offline_video(settings, tmp_path)
    drama, _chapter, cast = await sync_to_async(two_person_drama)(seconds=1)
    [take] = await sync_to_async(take_enqueue)(drama=drama, scenes=[cast["first"]])
    await Take.objects.filter(id=take.id).aupdate(status=TakeStatus.SCORING)
    await Job.objects.filter(id=take.job_id).aupdate(checkpoint={"step": "done"})

    async with running():
        take = await wait_for_async(
            lambda: Take.objects.filter(id=take.id, status=TakeStatus.DONE).afirst(), timeout=30
        )
        # The take is done just before its job settles: a worker stopped in between would hand
        # the job back to the queue (seen on a loaded machine).
        [job] = await jobs_settled([take.job_id], timeout=30)

    assert (job.status, job.attempts) == ("succeeded", 1), job.last_error
