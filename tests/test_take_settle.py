"""A take settles with its render job (the engine's settle hook), whoever ends the job."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from dramas.models import TakeStatus
from dramas.takes import take_cancel, take_enqueue
from studio.jobs import registry, services, store
from studio.jobs.models import Job, JobStatus
from tests.factories import create_chapter, create_drama, create_scene
from tests.render_support import offline_video

pytestmark = pytest.mark.django_db


@pytest.fixture
def take(settings, tmp_path, producer):
    offline_video(settings, tmp_path)
    drama = create_drama(owner=producer)
    scene = create_scene(chapter=create_chapter(drama=drama))
    [queued] = take_enqueue(drama=drama, scenes=[scene])
    registry.load()
    return queued


def test_a_render_cancelled_on_the_queue_page_cancels_its_take(take):
    services.job_cancel(job=Job.objects.get(id=take.job_id))

    take.refresh_from_db()
    assert (take.status, take.note) == (TakeStatus.CANCELLED, "Cancelled by a user.")
    assert take.finished_at is not None


def test_cancel_render_on_the_take_cancels_it_at_once_when_queued(take):
    cancelled = take_cancel(take=take)

    assert cancelled.status == TakeStatus.CANCELLED
    assert Job.objects.get(id=take.job_id).status == JobStatus.CANCELLED


def test_a_render_whose_worker_died_on_its_last_attempt_fails_its_take_saying_why(take):
    Job.objects.filter(id=take.job_id).update(
        status=JobStatus.RUNNING,
        attempts=12,
        max_attempts=12,
        lease_owner="dead-worker",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )

    assert store.reap() == 1

    take.refresh_from_db()
    assert take.status == TakeStatus.FAILED
    assert take.error.startswith("Gave up after 12 attempts: the worker running it stopped")


def test_a_take_that_already_ended_is_left_as_it_is(take):
    take.status, take.note = TakeStatus.DONE, "Done"
    take.save(update_fields=["status", "note"])
    Job.objects.filter(id=take.job_id).update(status=JobStatus.RUNNING, lease_owner="w")
    late = registry.Settled(JobStatus.FAILED, "worker", "late failure")
    store.tell_settled(job_id=take.job_id, kind="take.render", settled=late)

    take.refresh_from_db()
    assert (take.status, take.error) == (TakeStatus.DONE, "")


def test_retrying_a_cancelled_render_on_the_queue_page_queues_its_take_again(take, producer_client):
    drama_id = take.scene.chapter.drama_id
    services.job_cancel(job=Job.objects.get(id=take.job_id))
    url = reverse("job_retry", args=[drama_id, take.job_id])

    producer_client.post(url)

    take.refresh_from_db()
    assert (take.status, take.finished_at) == (TakeStatus.QUEUED, None)
    assert Job.objects.get(id=take.job_id).status == JobStatus.QUEUED


def test_a_render_is_not_retried_over_another_take_of_its_scene(take, producer_client):
    services.job_cancel(job=Job.objects.get(id=take.job_id))
    take_enqueue(drama=take.scene.chapter.drama, scenes=[take.scene])  # take 2 renders
    url = reverse("job_retry", args=[take.scene.chapter.drama_id, take.job_id])

    page = producer_client.post(url, follow=True)

    assert "already rendering (take 2)" in page.text
    take.refresh_from_db()
    assert take.status == TakeStatus.CANCELLED
    assert Job.objects.get(id=take.job_id).status == JobStatus.CANCELLED
