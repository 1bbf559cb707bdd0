"""Queue operations for views and domain services: enqueue, cancel, retry, bump, pause.

Each runs in the caller's transaction; events and the worker wake-up go out after commit, so a
job enqueued inside a rolled-back change never runs and never shows. Due and finish times are
the database's clock (`Now()`), as the worker compares them (studio.jobs.store).
"""

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.db.models.functions import Now

from studio import events
from studio.jobs import registry, store
from studio.jobs.models import Job, JobStatus, QueuePause
from studio.jobs.registry import Settled
from studio.jobs.worker import notify

CHANGED = "jobs.changed"
DEFAULT_MAX_ATTEMPTS = 5


def job_enqueue(
    *,
    kind: str,
    payload: dict | None = None,
    drama_id: int | None = None,
    label: str = "",
    priority: int = 0,
    max_attempts: int | None = None,
    delay_s: float = 0.0,
) -> Job:
    registry.load()
    handler = registry.get(kind)
    if handler is None:
        raise ValueError(f"Unknown job kind {kind!r}; registered: {', '.join(registry.kinds())}")
    job = Job.objects.create(
        kind=kind,
        label=label[:200],
        payload=payload or {},
        drama_id=drama_id,
        priority=priority,
        max_attempts=max_attempts or handler.max_attempts or DEFAULT_MAX_ATTEMPTS,
        run_after=Now() + timedelta(seconds=delay_s) if delay_s else Now(),
    )
    events.publish(drama_id=drama_id, type=CHANGED, ids=[job.id])
    transaction.on_commit(notify)
    return job


@transaction.atomic
def job_cancel(*, job: Job) -> Job:
    """A queued job is cancelled at once; a running one is cancelled by its worker within 1 s."""
    error = "Cancelled by a user."
    cancelled = Job.objects.filter(id=job.id, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, finished_at=Now(), last_error=error
    )
    if cancelled:
        registry.load()
        settled = Settled(JobStatus.CANCELLED, "user", error)
        store.tell_settled(job_id=job.id, kind=job.kind, settled=settled)
    requested = cancelled or Job.objects.filter(id=job.id, status=JobStatus.RUNNING).update(
        cancel_requested=True, progress_note="Cancelling…"
    )
    if not requested:
        raise ValidationError("This job has already finished.")
    events.publish(drama_id=job.drama_id, type=CHANGED, ids=[job.id])
    job.refresh_from_db()
    return job


@transaction.atomic
def job_retry(*, job: Job) -> Job:
    """Queue a failed or cancelled job again with fresh attempts; it resumes from its checkpoint."""
    if not Job.objects.filter(id=job.id, status__in=[JobStatus.FAILED, JobStatus.CANCELLED]).update(
        status=JobStatus.QUEUED,
        attempts=0,
        run_after=Now(),
        finished_at=None,
        cancel_requested=False,
        progress_note="",
    ):
        raise ValidationError("Only a failed or cancelled job can be retried.")
    events.publish(drama_id=job.drama_id, type=CHANGED, ids=[job.id])
    transaction.on_commit(notify)
    job.refresh_from_db()
    return job


@transaction.atomic
def job_bump(*, job: Job) -> Job:
    """Move a queued job to the front of its drama's queue (above the drama's other jobs)."""
    top = Job.objects.filter(drama_id=job.drama_id, status=JobStatus.QUEUED).exclude(id=job.id)
    highest = top.aggregate(highest=Max("priority"))["highest"]
    priority = max(job.priority, (highest if highest is not None else job.priority - 1) + 1)
    if not Job.objects.filter(id=job.id, status=JobStatus.QUEUED).update(priority=priority):
        raise ValidationError("Only a queued job can be moved up.")
    events.publish(drama_id=job.drama_id, type=CHANGED, ids=[job.id])
    job.refresh_from_db()
    return job


@transaction.atomic
def queue_pause(*, drama_id: int) -> None:
    """Stop claiming the drama's queued jobs; running ones finish."""
    QueuePause.objects.get_or_create(drama_id=drama_id)
    events.publish(drama_id=drama_id, type="queue.changed")


@transaction.atomic
def queue_resume(*, drama_id: int) -> None:
    QueuePause.objects.filter(drama_id=drama_id).delete()
    events.publish(drama_id=drama_id, type="queue.changed")
    transaction.on_commit(notify)


def queue_is_paused(*, drama_id: int) -> bool:
    return QueuePause.objects.filter(drama_id=drama_id).exists()


@transaction.atomic
def jobs_forget_drama(*, drama_id: int) -> None:
    """A drama is being deleted: cancel its running jobs, delete the rest and its pause."""
    Job.objects.filter(drama_id=drama_id, status=JobStatus.RUNNING).update(cancel_requested=True)
    Job.objects.filter(drama_id=drama_id).exclude(status=JobStatus.RUNNING).delete()
    QueuePause.objects.filter(drama_id=drama_id).delete()
