"""Read-only queries over jobs and workers: queue summaries and sections, worker heartbeats."""

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count

from studio.jobs.models import Job, JobStatus, QueuePause, WorkerBeat
from studio.jobs.store import database_now

SECTION_LIMIT = 50


@dataclass(frozen=True)
class QueueSummary:
    running: int
    queued: int
    failed: int
    done: int
    paused: bool

    @property
    def idle(self) -> bool:
        return not (self.running or self.queued or self.failed)


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    jobs: list[Job]
    total: int

    @property
    def more(self) -> int:
        return self.total - len(self.jobs)


def queue_summary(*, drama_id: int) -> QueueSummary:
    counts = dict(
        Job.objects.filter(drama_id=drama_id)
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return QueueSummary(
        running=counts.get(JobStatus.RUNNING, 0),
        queued=counts.get(JobStatus.QUEUED, 0),
        failed=counts.get(JobStatus.FAILED, 0),
        done=counts.get(JobStatus.SUCCEEDED, 0) + counts.get(JobStatus.CANCELLED, 0),
        paused=QueuePause.objects.filter(drama_id=drama_id).exists(),
    )


def queue_sections(*, drama_id: int, limit: int = SECTION_LIMIT) -> list[Section]:
    """Running, queued (in the order they will run), failed, and recently finished jobs."""
    jobs = Job.objects.filter(drama_id=drama_id)
    finished = [JobStatus.SUCCEEDED, JobStatus.CANCELLED]
    parts = [
        ("running", "Running", jobs.filter(status=JobStatus.RUNNING).order_by("started_at", "id")),
        ("queued", "Queued", jobs.filter(status=JobStatus.QUEUED).order_by("-priority", "id")),
        ("failed", "Failed", jobs.filter(status=JobStatus.FAILED).order_by("-finished_at", "-id")),
        ("done", "Done", jobs.filter(status__in=finished).order_by("-finished_at", "-id")),
    ]
    return [
        Section(key, title, list(queryset[:limit]), queryset.count())
        for key, title, queryset in parts
    ]


def jobs_for_drama(*, drama_id: int, ids) -> list[Job]:
    return list(Job.objects.filter(drama_id=drama_id, id__in=list(ids)))


@dataclass(frozen=True)
class Workers:
    """Job workers as their heartbeats show them, in any process or machine."""

    online: int  # beat within `stale_after_s`
    stale: int  # stopped beating without stopping cleanly (killed, hung, cut off)
    last_seen_s: float | None  # seconds since the freshest beat of a stale worker


def workers(*, stale_after_s: float) -> Workers:
    # Beats are stamped by the database's clock (store.beat): compare them with that clock.
    now = database_now()
    fresh_since = now - timedelta(seconds=stale_after_s)
    beats = list(WorkerBeat.objects.values_list("beat_at", flat=True))
    stale = [beat for beat in beats if beat < fresh_since]
    return Workers(
        online=len(beats) - len(stale),
        stale=len(stale),
        last_seen_s=(now - max(stale)).total_seconds() if stale else None,
    )
