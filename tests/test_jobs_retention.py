"""Finished jobs are deleted STUDIO_JOB_RETENTION_DAYS after they finished, by the workers, in
small batches; active jobs never; and a take whose job is gone still shows."""

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db.models.functions import Now
from django.urls import reverse

from dramas.takes import take_cancel
from dramas.takes_display import attach_jobs
from studio.jobs import store
from studio.jobs.models import ACTIVE, FINISHED, Job, JobStatus
from tests.conftest import login
from tests.factories import create_chapter, create_drama, create_scene, create_take, create_user
from tests.render_support import running, wait_for


def job_finished(*, status: str, days_ago: float) -> int:
    job = Job.objects.create(kind="test.retention", status=status)
    Job.objects.filter(id=job.id).update(finished_at=Now() - timedelta(days=days_ago))
    return job.id


def left() -> set[int]:
    return set(Job.objects.values_list("id", flat=True))


@pytest.mark.django_db
def test_it_deletes_jobs_finished_before_the_retention_and_nothing_else():
    old = {job_finished(status=status, days_ago=31) for status in FINISHED}
    recent = {job_finished(status=status, days_ago=29) for status in FINISHED}
    # Active jobs stay whatever their dates say (a retried job once had a finish time).
    active = {job_finished(status=status, days_ago=40) for status in ACTIVE}

    assert store.prune_finished(retention_days=30, limit=100) == 3
    assert left() == recent | active
    assert not old & left()


@pytest.mark.django_db
def test_it_deletes_in_batches_of_the_size_asked():
    for _ in range(7):
        job_finished(status=JobStatus.SUCCEEDED, days_ago=60)

    batches = [store.prune_finished(retention_days=30, limit=3) for _ in range(4)]

    assert batches == [3, 3, 1, 0]
    assert not left()


@pytest.mark.django_db(transaction=True)
async def test_the_worker_prunes_by_itself_a_batch_per_pass_until_none_is_left(settings):
    settings.STUDIO_JOB_RETENTION_DAYS = 30
    for _ in range(5):
        await sync_to_async(job_finished)(status=JobStatus.FAILED, days_ago=45)
    kept = await sync_to_async(job_finished)(status=JobStatus.SUCCEEDED, days_ago=2)

    async with running(reap_s=0.05, prune_batch=2):

        async def only_kept():
            return await sync_to_async(left)() == {kept}

        await wait_for(only_kept, timeout=10, step=0.05)


@pytest.mark.django_db(transaction=True)
async def test_a_retention_of_zero_keeps_every_job(settings):
    settings.STUDIO_JOB_RETENTION_DAYS = 0
    old = await sync_to_async(job_finished)(status=JobStatus.SUCCEEDED, days_ago=400)

    async with running(reap_s=0.05, prune_every_s=0.05):
        await asyncio.sleep(0.5)  # about ten reap passes

    assert await sync_to_async(left)() == {old}


@pytest.mark.django_db
def test_a_take_whose_job_was_pruned_still_shows_and_cannot_be_cancelled():
    owner = create_user()
    drama = create_drama(owner=owner)
    scene = create_scene(chapter=create_chapter(drama=drama))
    done = create_take(scene=scene)
    failed = create_take(scene=scene, status="failed", score=None)
    for take in (done, failed):
        take.job_id = job_finished(status=JobStatus.SUCCEEDED, days_ago=90)
        take.save(update_fields=["job_id"])
    assert store.prune_finished(retention_days=30, limit=10) == 2

    for take in (done, failed):
        with pytest.raises(ValidationError, match="not rendering"):
            take_cancel(take=take)
    assert [take.live_job for take in attach_jobs([done, failed])] == [None, None]
    client = login(owner)
    pages = [
        reverse("drama_board", kwargs={"drama_id": drama.id}),
        reverse("drama_queue", kwargs={"drama_id": drama.id}),
        reverse("scene_takes", kwargs={"drama_id": drama.id, "scene_id": scene.id}),
        reverse("take_review", kwargs={"drama_id": drama.id, "take_id": done.id}),
        reverse("take_review", kwargs={"drama_id": drama.id, "take_id": failed.id}),
    ]
    for page in pages:
        assert client.get(page).status_code == 200, page
    cancel = reverse("take_cancel", kwargs={"drama_id": drama.id, "take_id": done.id})
    assert client.post(cancel).status_code < 500
