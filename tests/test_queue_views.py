"""The queue page and its controls; the board's live queue summary and scene job bars."""

import pytest
from django.urls import reverse
from django.utils import timezone

from dramas import services as drama_services
from dramas.jobs import chapter_check_enqueue
from dramas.models import Role
from studio.jobs import services
from studio.jobs.models import Job, JobStatus, QueuePause
from tests.conftest import login
from tests.factories import add_member, create_chapter, create_drama, create_scene

HTMX = {"HX-Request": "true"}


@pytest.fixture
def chapter(drama):
    chapter = create_chapter(drama=drama)
    create_scene(chapter=chapter, location="Harbour")
    create_scene(chapter=chapter, location="Rooftop")
    return chapter


def a_job(drama, *, status=JobStatus.QUEUED, label="Render scene 1", **fields) -> Job:
    return Job.objects.create(
        kind="chapter.check", label=label, drama_id=drama.id, status=status, **fields
    )


def test_it_lists_jobs_by_state_with_their_details(drama, producer_client):
    a_job(drama, label="Waiting one", priority=3)
    a_job(
        drama,
        status=JobStatus.RUNNING,
        label="Busy one",
        progress=0.42,
        progress_note="polling",
        started_at=timezone.now(),
        attempts=1,
    )
    a_job(
        drama,
        status=JobStatus.FAILED,
        label="Broken one",
        attempts=5,
        last_error="Gave up after 5 attempts. Last: TimeoutError: provider slow",
    )
    a_job(
        drama,
        status=JobStatus.SUCCEEDED,
        label="Done one",
        result={"summary": "No problems found in 2 scenes.", "details": []},
    )
    a_job(create_drama(), label="Another drama's job")

    page = producer_client.get(reverse("drama_queue", args=[drama.id]))

    assert page.status_code == 200
    sections = {
        section.key: [job.title for job in section.jobs] for section in page.context["sections"]
    }
    assert sections == {
        "running": ["Busy one"],
        "queued": ["Waiting one"],
        "failed": ["Broken one"],
        "done": ["Done one"],
    }
    text = page.text
    assert "42% · polling" in text
    assert "Gave up after 5 attempts. Last: TimeoutError: provider slow" in text
    assert "No problems found in 2 scenes." in text
    assert "Another drama" not in text
    assert f'ws-connect="/ws/dramas/{drama.id}/live/?view=queue"' in text
    assert "Pause queue" in text and "Retry</button>" in text and "Move up</button>" in text


def test_it_shows_viewers_the_queue_without_controls(drama):
    a_job(drama)
    a_job(drama, status=JobStatus.FAILED)
    viewer = login(add_member(drama=drama, role=Role.VIEWER))

    page = viewer.get(reverse("drama_queue", args=[drama.id]))

    assert page.status_code == 200
    for control in ("Pause queue", "Cancel</button>", "Retry</button>", "Move up</button>"):
        assert control not in page.text


def test_it_pauses_and_resumes_the_drama_queue(drama):
    editor = login(add_member(drama=drama, role=Role.EDITOR))

    paused = editor.post(reverse("queue_pause", args=[drama.id]), headers=HTMX)

    assert QueuePause.objects.filter(drama_id=drama.id).exists()
    assert paused.status_code == 200
    assert 'id="queue-live"' in paused.text and "Resume queue" in paused.text
    assert "Queue paused" in paused.text  # the flash message, out of band

    resumed = editor.post(reverse("queue_resume", args=[drama.id]))

    assert resumed.status_code == 302
    assert resumed["Location"] == reverse("drama_queue", args=[drama.id])
    assert not QueuePause.objects.filter(drama_id=drama.id).exists()


def test_it_cancels_queued_and_running_jobs(drama, producer_client):
    queued = a_job(drama)
    running = a_job(drama, status=JobStatus.RUNNING, lease_owner="w")

    producer_client.post(reverse("job_cancel", args=[drama.id, queued.id]))
    producer_client.post(reverse("job_cancel", args=[drama.id, running.id]))

    queued.refresh_from_db()
    running.refresh_from_db()
    assert queued.status == JobStatus.CANCELLED
    assert running.status == JobStatus.RUNNING and running.cancel_requested  # the worker acts


def test_it_explains_why_a_finished_job_cannot_be_cancelled(drama, producer_client):
    done = a_job(drama, status=JobStatus.SUCCEEDED)

    page = producer_client.post(reverse("job_cancel", args=[drama.id, done.id]), headers=HTMX)

    assert "This job has already finished." in page.text
    done.refresh_from_db()
    assert done.status == JobStatus.SUCCEEDED


def test_it_retries_a_failed_job_with_fresh_attempts(drama, producer_client):
    failed = a_job(
        drama,
        status=JobStatus.FAILED,
        attempts=5,
        checkpoint={"step": 3},
        finished_at=timezone.now(),
    )

    producer_client.post(reverse("job_retry", args=[drama.id, failed.id]))

    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.finished_at) == (JobStatus.QUEUED, 0, None)
    assert failed.checkpoint == {"step": 3}  # it resumes where it stopped


def test_it_moves_a_job_to_the_front_of_the_drama_queue(drama, producer_client):
    first = a_job(drama, priority=2)
    last = a_job(drama)

    producer_client.post(reverse("job_bump", args=[drama.id, last.id]))

    last.refresh_from_db()
    assert last.priority == 3 > first.priority


def test_it_hides_other_dramas_jobs(drama, producer_client):
    foreign = a_job(create_drama())

    response = producer_client.post(reverse("job_cancel", args=[drama.id, foreign.id]))

    assert response.status_code == 404
    foreign.refresh_from_db()
    assert foreign.status == JobStatus.QUEUED


def test_it_queues_a_script_check_from_the_board(drama, chapter, producer_client):
    response = producer_client.post(
        reverse("chapter_check", args=[drama.id, chapter.id]), headers=HTMX
    )

    job = Job.objects.get(drama_id=drama.id)
    assert job.kind == "chapter.check"
    assert job.payload == {
        "chapter_id": chapter.id,
        "scene_ids": list(chapter.scenes.values_list("id", flat=True)),
    }
    assert 'id="queue-summary"' in response.text and "1 queued" in response.text


def test_it_shows_the_queue_summary_and_scene_job_bars_on_the_board(
    drama, chapter, producer_client
):
    job = chapter_check_enqueue(chapter=chapter)
    Job.objects.filter(id=job.id).update(status=JobStatus.RUNNING, progress=0.5)
    a_job(drama, status=JobStatus.FAILED)

    page = producer_client.get(reverse("drama_board", args=[drama.id]))

    text = page.text
    assert "1 running" in text and "0 queued" in text and "1 failed" in text
    assert reverse("drama_queue", args=[drama.id]) in text
    assert f"/ws/dramas/{drama.id}/live/?view=board&amp;chapter={chapter.id}" in text
    for scene in chapter.scenes.all():
        assert f'id="scene-job-{scene.id}"' in text
    assert text.count('aria-valuenow="50"') == 2
    assert "Check script</button>" in text


def test_it_forgets_a_deleted_dramas_queue(drama):
    queued = a_job(drama)
    running = a_job(drama, status=JobStatus.RUNNING)
    services.queue_pause(drama_id=drama.id)

    drama_services.drama_delete(drama=drama)

    assert not Job.objects.filter(id=queued.id).exists()
    assert Job.objects.get(id=running.id).cancel_requested
    assert not QueuePause.objects.exists()


def test_it_says_whether_any_worker_will_run_the_queue(drama, producer_client):
    from datetime import timedelta

    from django.utils import timezone

    from studio.jobs.models import WorkerBeat

    url = reverse("drama_queue", args=[drama.id])
    assert "No worker running: queued jobs wait" in producer_client.get(url).text

    now = timezone.now()
    WorkerBeat.objects.create(
        owner="studio_worker@b:7", name="w", concurrency=8, started_at=now, beat_at=now
    )
    page = producer_client.get(url).text
    assert "1 worker online" in page and "No worker running" not in page

    WorkerBeat.objects.update(beat_at=now - timedelta(minutes=5))  # killed, not stopped
    page = producer_client.get(url).text
    assert "No worker running: queued jobs wait" in page
    assert "The last worker stopped answering 30" in page
