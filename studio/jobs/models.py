"""Jobs and per-drama queue pauses.

`drama_id` is a plain indexed integer, not a foreign key: the engine imports no domain app. It
groups jobs for fairness, pausing and live events; a drama's jobs go when the drama's services
delete them (`job_delete_for_drama`).
"""

from django.db import models
from django.utils import timezone


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    kind = models.CharField(max_length=100, db_index=True)
    label = models.CharField(max_length=200, blank=True, help_text="What a producer reads.")
    payload = models.JSONField(default=dict, blank=True)
    # Higher runs first; equal priorities share the workers fairly between dramas.
    priority = models.IntegerField(default=0)
    status = models.CharField(max_length=10, choices=JobStatus, default=JobStatus.QUEUED)
    drama_id = models.BigIntegerField(null=True, blank=True)
    run_after = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    lease_owner = models.CharField(max_length=120, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    progress = models.FloatField(default=0.0, help_text="0 to 1.")
    progress_note = models.CharField(max_length=200, blank=True)
    # What a resumable handler saved last (e.g. a remote job handle, the next step).
    checkpoint = models.JSONField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-priority", "id"]
        indexes = [
            models.Index(fields=["status", "run_after"], name="job_claimable"),
            models.Index(fields=["status", "lease_expires_at"], name="job_lease"),
            models.Index(fields=["drama_id", "status"], name="job_drama_status"),
            models.Index(fields=["drama_id", "started_at"], name="job_drama_started"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.id} ({self.status})"

    @property
    def progress_percent(self) -> int:
        return round(max(0.0, min(1.0, self.progress)) * 100)

    @property
    def title(self) -> str:
        return self.label or self.kind

    @property
    def eta_s(self) -> float | None:
        """Seconds left for a running job, extrapolated from its progress so far."""
        if self.status != JobStatus.RUNNING or not self.started_at or not 0.02 <= self.progress < 1:
            return None
        elapsed = (timezone.now() - self.started_at).total_seconds()
        return max(0.0, elapsed * (1 - self.progress) / self.progress)

    @property
    def waiting_s(self) -> float:
        """Seconds until a queued job may run (a retry's backoff), 0 when it is due."""
        return max(0.0, (self.run_after - timezone.now()).total_seconds())


class QueuePause(models.Model):
    """A row per paused drama queue: its queued jobs are not claimed until it is removed."""

    drama_id = models.BigIntegerField(unique=True)
    paused_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"queue of drama {self.drama_id} paused"


class WorkerBeat(models.Model):
    """A running worker, as its last heartbeat left it: web processes see workers they do not
    host (scale-out), for /healthz and the queue page. A worker that stops cleanly removes its
    row; a killed one stops beating and goes stale."""

    owner = models.CharField(max_length=120, unique=True)
    name = models.CharField(max_length=60)
    concurrency = models.PositiveIntegerField()
    running = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"worker {self.owner} ({self.running}/{self.concurrency} running)"
