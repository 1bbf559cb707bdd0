"""The worker's database operations: short synchronous transactions, run off the event loop.

Every write to a running job is guarded by `lease_owner=<this worker>, status=running`, so a
worker whose lease was reaped can never overwrite what another worker now owns.

Time is the database server's (`Now()`), never this machine's: leases, due times and finish
times are all stored and compared on that one clock, so a worker whose clock runs fast or slow
neither reaps live jobs nor leaves due ones waiting.

Claiming: on PostgreSQL candidate rows are locked with `FOR UPDATE SKIP LOCKED`, so concurrent
workers never wait for or take each other's rows; on SQLite the transaction is IMMEDIATE
(settings), so claims from all processes are serialised by the database lock. One transaction
settles the jobs that just finished and claims the next batch, which keeps the per-job cost of
a busy worker to a fraction of a commit.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Q, Window
from django.db.models.functions import Now, RowNumber
from django.db.models.sql import Query

from studio import events
from studio.jobs.models import FINISHED, Job, JobStatus, QueuePause, WorkerBeat
from studio.jobs.registry import Settled, has_settle_hook, settle_hook

CHANGED = "jobs.changed"


@dataclass(frozen=True)
class Claimed:
    id: int
    kind: str
    payload: dict
    drama_id: int | None
    attempts: int
    max_attempts: int
    checkpoint: Any


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. `state`: succeeded, retry, failed, cancelled, released, lost.

    `retry_after_s`: how long a retried or deferred job waits, counted on the database clock
    when the outcome is recorded."""

    state: str
    result: Any = None
    error: str = ""
    retry_after_s: float | None = None


@dataclass
class _Touched:
    by_drama: dict[int | None, set[int]] = field(default_factory=dict)

    def add(self, drama_id: int | None, job_id: int) -> None:
        self.by_drama.setdefault(drama_id, set()).add(job_id)

    def publish(self, type: str = CHANGED) -> None:
        for drama_id, ids in self.by_drama.items():
            events.publish(drama_id=drama_id, type=type, ids=ids)


def database_now() -> datetime:
    """The database server's current time: the clock every worker and web process shares."""
    now = Now()
    sql, params = Query(None).get_compiler(connection=connection).compile(now)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}", params)
        [value] = cursor.fetchone()
    for convert in connection.ops.get_db_converters(now):  # SQLite answers with text
        value = convert(value, now, connection)
    return value


def _from_now(seconds: float | None):
    """The database's now plus `seconds`, as an expression evaluated by the database."""
    return Now() + timedelta(seconds=seconds) if seconds else Now()


def cycle(
    *,
    owner: str,
    settled: list[tuple[Claimed, Outcome]],
    claim_limit: int,
    lease_s: float,
) -> list[Claimed]:
    """Record finished attempts and claim up to `claim_limit` jobs, in one transaction."""
    if not settled and not _anything_due():
        return []  # an idle poll: no write lock taken
    touched = _Touched()
    with transaction.atomic():
        for job, outcome in settled:
            if _settle(owner=owner, job=job, outcome=outcome):
                touched.add(job.drama_id, job.id)
        claimed = _claim(owner=owner, limit=claim_limit, lease_s=lease_s)
        for job in claimed:
            touched.add(job.drama_id, job.id)
        touched.publish()
    return claimed


def _anything_due() -> bool:
    ready = Job.objects.filter(status=JobStatus.QUEUED, run_after__lte=Now())
    return ready.exists()


def _settle(*, owner: str, job: Claimed, outcome: Outcome) -> bool:
    ours = Job.objects.filter(id=job.id, lease_owner=owner, status=JobStatus.RUNNING)
    free = {"lease_owner": "", "lease_expires_at": None}
    match outcome.state:
        case "succeeded":
            changes = {"status": JobStatus.SUCCEEDED, "progress": 1.0, "result": outcome.result}
            changes |= {"finished_at": Now(), "last_error": "", "cancel_requested": False}
        case "retry":
            changes = {"status": JobStatus.QUEUED, "run_after": _from_now(outcome.retry_after_s)}
            changes |= {"last_error": outcome.error}
        case "failed":
            changes = {"status": JobStatus.FAILED, "finished_at": Now()}
            changes |= {"last_error": outcome.error}
        case "cancelled":
            changes = {"status": JobStatus.CANCELLED, "finished_at": Now()}
            changes |= {"last_error": outcome.error, "cancel_requested": False}
        case "released":  # shutdown or deferred: not the job's fault, the attempt is given back
            changes = {"status": JobStatus.QUEUED, "run_after": _from_now(outcome.retry_after_s)}
            note = (outcome.error or "Waiting for a worker")[:200]
            changes |= {"attempts": F("attempts") - 1, "progress_note": note}
        case _:  # lost: the row is no longer ours to write
            return False
    if ours.update(**changes, **free) != 1:
        return False
    if changes["status"] in FINISHED:
        settled = Settled(
            status=changes["status"], by="worker", error=outcome.error, result=outcome.result
        )
        tell_settled(job_id=job.id, kind=job.kind, settled=settled)
    return True


def tell_settled(*, job_id: int, kind: str, settled: Settled) -> None:
    """The job just ended, in the caller's transaction: its kind's settle hook settles what it
    worked on. A failing hook leaves its reason on the job (the job's own end stands)."""
    if not has_settle_hook(kind):
        return  # most kinds: not even a read
    job = Job.objects.get(id=job_id)
    problem = settle_hook(job, settled)
    if problem:
        note = f"{job.last_error} ({problem})" if job.last_error else problem
        Job.objects.filter(id=job_id).update(last_error=note)


def _claim(*, owner: str, limit: int, lease_s: float) -> list[Claimed]:
    if limit <= 0:
        return []
    ready = Job.objects.filter(status=JobStatus.QUEUED, run_after__lte=Now()).exclude(
        Exists(QueuePause.objects.filter(drama_id=OuterRef("drama_id")))
    )
    # Per-drama fairness: each drama's jobs are ranked within their priority, and a drama's
    # running jobs count against it, so one drama's 500 takes queue behind another's 5.
    candidates = list(
        ready.annotate(
            rank=Window(
                RowNumber(), partition_by=[F("drama_id"), F("priority")], order_by=F("id").asc()
            )
        )
        .filter(rank__lte=limit)
        .values_list("id", "drama_id", "priority", "rank")
    )
    if not candidates:
        return []
    dramas = {drama_id for _, drama_id, _, _ in candidates}
    if len(dramas) > 1:
        # Highest priority first; then the drama with the fewest jobs running and ahead of
        # this one; then the drama served least recently (round robin, one job at a time).
        load = {
            drama_id: (running, last.timestamp() if last else 0.0)
            for drama_id, running, last in Job.objects.filter(drama_id__in=dramas - {None})
            .values("drama_id")
            .annotate(
                running=Count("id", filter=Q(status=JobStatus.RUNNING)), last=Max("started_at")
            )
            .values_list("drama_id", "running", "last")
        }
        candidates.sort(
            key=lambda c: (
                -c[2],
                load.get(c[1], (0, 0.0))[0] + c[3],
                load.get(c[1], (0, 0.0))[1],
                c[0],
            )
        )
    else:
        candidates.sort(key=lambda c: (-c[2], c[0]))
    wanted = [c[0] for c in candidates]
    if connection.features.has_select_for_update_skip_locked:
        locked = set(
            Job.objects.select_for_update(skip_locked=True)
            .filter(id__in=wanted, status=JobStatus.QUEUED)
            .values_list("id", flat=True)
        )
        wanted = [job_id for job_id in wanted if job_id in locked]
    ids = wanted[:limit]
    Job.objects.filter(id__in=ids, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING,
        lease_owner=owner,
        lease_expires_at=_from_now(lease_s),
        attempts=F("attempts") + 1,
        started_at=Now(),
        progress_note="",
    )
    rows = Job.objects.filter(id__in=ids, lease_owner=owner, status=JobStatus.RUNNING).values_list(
        "id", "kind", "payload", "drama_id", "attempts", "max_attempts", "checkpoint"
    )
    order = {job_id: index for index, job_id in enumerate(ids)}
    return sorted((Claimed(*row) for row in rows), key=lambda job: order[job.id])


def watch(*, owner: str, job_ids: list[int], lease_s: float | None) -> tuple[set[int], set[int]]:
    """Renew the leases (when `lease_s` is given); return (lost ids, cancel-requested ids)."""
    if not job_ids:
        return set(), set()
    ours = Job.objects.filter(id__in=job_ids, lease_owner=owner, status=JobStatus.RUNNING)
    if lease_s is not None:
        ours.update(lease_expires_at=_from_now(lease_s))
    flags = dict(ours.values_list("id", "cancel_requested"))
    lost = set(job_ids) - set(flags)
    return lost, {job_id for job_id, wanted in flags.items() if wanted}


def reap() -> int:
    """Requeue running jobs whose lease expired (their worker died); fail the exhausted ones."""
    if not Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=Now()).exists():
        return 0  # the usual case, answered without a write lock
    touched = _Touched()
    with transaction.atomic():
        expired = list(
            Job.objects.select_for_update(**_skip_locked())
            .filter(status=JobStatus.RUNNING, lease_expires_at__lt=Now())
            .values_list("id", "kind", "drama_id", "attempts", "max_attempts", "cancel_requested")
        )
        free = {"lease_owner": "", "lease_expires_at": None}
        for job_id, kind, drama_id, attempts, max_attempts, cancel_requested in expired:
            row = Job.objects.filter(id=job_id, status=JobStatus.RUNNING)
            if cancel_requested:
                error = "Cancelled by a user; its worker had stopped responding."
                row.update(status=JobStatus.CANCELLED, finished_at=Now(), last_error=error, **free)
                settled = Settled(JobStatus.CANCELLED, "reaper", error)
                tell_settled(job_id=job_id, kind=kind, settled=settled)
            elif attempts >= max_attempts:
                error = (
                    f"Gave up after {attempts} attempts: the worker running it stopped "
                    "responding (its lease expired)."
                )
                row.update(status=JobStatus.FAILED, finished_at=Now(), last_error=error, **free)
                settled = Settled(JobStatus.FAILED, "reaper", error)
                tell_settled(job_id=job_id, kind=kind, settled=settled)
            else:
                row.update(
                    status=JobStatus.QUEUED,
                    run_after=Now(),
                    progress_note="Requeued: its worker stopped responding",
                    **free,
                )
            touched.add(drama_id, job_id)
        touched.publish()
    return len(expired)


# Rows of workers that died without saying goodbye are dropped after this long.
BEAT_FORGET_S = 3600.0


def beat(*, owner: str, name: str, concurrency: int, running: int) -> None:
    """This worker is alive (WorkerBeat); old rows of killed workers are tidied on the way."""
    fields = {"name": name[:60], "concurrency": concurrency, "running": running, "beat_at": Now()}
    WorkerBeat.objects.update_or_create(
        owner=owner[:120], defaults=fields, create_defaults={**fields, "started_at": Now()}
    )
    WorkerBeat.objects.filter(beat_at__lt=Now() - timedelta(seconds=BEAT_FORGET_S)).delete()


def prune_finished(*, retention_days: float, limit: int) -> int:
    """Delete up to `limit` jobs that finished more than `retention_days` ago (database clock);
    return how many went. One small batch per call, so no call holds a lock for long; queued
    and running jobs are never touched."""
    old = Job.objects.filter(
        status__in=FINISHED, finished_at__lt=Now() - timedelta(days=retention_days)
    )
    ids = list(old.order_by("id").values_list("id", flat=True)[:limit])
    if not ids:
        return 0
    # The status again: a job retried since the select is active and stays.
    deleted, _ = Job.objects.filter(id__in=ids, status__in=FINISHED).delete()
    return deleted


def forget_beat(*, owner: str) -> None:
    WorkerBeat.objects.filter(owner=owner[:120]).delete()


def save_checkpoint(*, owner: str, job_id: int, data: Any) -> bool:
    ours = Job.objects.filter(id=job_id, lease_owner=owner, status=JobStatus.RUNNING)
    return ours.update(checkpoint=data) == 1


def save_progress(
    *, owner: str, job_id: int, drama_id: int | None, progress: float, note: str
) -> bool:
    ours = Job.objects.filter(id=job_id, lease_owner=owner, status=JobStatus.RUNNING)
    if ours.update(progress=progress, progress_note=note) != 1:
        return False
    events.publish(drama_id=drama_id, type="jobs.progress", ids=[job_id])
    return True


def _skip_locked() -> dict:
    return {"skip_locked": True} if connection.features.has_select_for_update_skip_locked else {}
