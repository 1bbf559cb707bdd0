"""The studio's own health check of its data (`manage.py studio_doctor`): every invariant the
take lifecycle promises, counted, with examples, and repaired where a repair is safe.

Invariants (each a count; `problems` is their sum):
- `takes_without_job`: an active take whose render job has ended or is gone; it holds its
  estimate against the budget and keeps batch renders off its scene. Fix: it settles as its job
  did (failed or cancelled, saying why).
- `expired_leases`: a running job whose worker stopped renewing its lease (measured on the
  database's clock). Fix: the reaper's rule (requeued, or failed when out of attempts).
- `orphan_files`: a stored file under takes/, references/ or keyframes/ that no row names,
  older than ORPHAN_GRACE_S (a render writes its file just before the row names it). Fix:
  deleted.
- `missing_files`: a row naming a file the storage does not have. Not repairable here: the
  rows are listed so a producer can re-render or re-upload.
- `archived_rendering`: an archived scene with a render still going and no cancel asked.
  Fix: the render is cancelled (the vendor told where it allows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models.functions import Now
from django.utils import timezone

from characters.models import ReferenceImage
from dramas.models import TAKE_ACTIVE, Frame, Keyframe, Take, TakeStatus
from dramas.takes import take_cancel, take_set
from studio.files import delete_after_commit, stored_file_names
from studio.jobs import store
from studio.jobs.models import ACTIVE, Job, JobStatus

INVARIANTS = (
    "takes_without_job",
    "expired_leases",
    "orphan_files",
    "missing_files",
    "archived_rendering",
)
MEDIA_FOLDERS = ("takes", "references", "keyframes")
ORPHAN_GRACE_S = 15 * 60
EXAMPLES = 20  # listed per invariant; the counts are complete


@dataclass
class Findings:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INVARIANTS, 0))
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, invariant: str, items: list[str]) -> None:
        self.counts[invariant] = len(items)
        self.examples[invariant] = items[:EXAMPLES]

    @property
    def problems(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> dict[str, int]:
        return {**self.counts, "problems": self.problems}


def examine() -> Findings:
    findings = Findings()
    findings.add("takes_without_job", [_describe(t) for t in _takes_without_job()])
    findings.add("expired_leases", [f"job {job_id}" for job_id in _expired_leases()])
    findings.add("orphan_files", _orphans())
    findings.add("missing_files", _missing_files())
    findings.add("archived_rendering", [_describe(t) for t in _archived_rendering()])
    return findings


def repair() -> dict[str, int]:
    """Repair what is safe; returns how many of each were repaired."""
    return {
        "takes_without_job": _settle_takes_without_job(),
        "expired_leases": store.reap(),
        "orphan_files": _remove_orphan_files(),
        "archived_rendering": _cancel_archived_renders(),
    }


def _describe(take: Take) -> str:
    return f"take {take.id} (scene {take.scene_id}, {take.status}, job {take.job_id})"


# --- Active takes and their jobs --------------------------------------------------------------


def _takes_without_job() -> list[Take]:
    takes = list(Take.objects.filter(status__in=TAKE_ACTIVE).order_by("id"))
    live = set(
        Job.objects.filter(
            id__in=[t.job_id for t in takes if t.job_id], status__in=ACTIVE
        ).values_list("id", flat=True)
    )
    return [take for take in takes if take.job_id not in live]


def _settle_takes_without_job() -> int:
    settled = 0
    for take in _takes_without_job():
        with transaction.atomic():
            take = Take.objects.select_for_update().get(id=take.id)
            if not take.active:
                continue
            job = Job.objects.filter(id=take.job_id).first() if take.job_id else None
            if job is not None and job.status in ACTIVE:
                continue  # it came back to life meanwhile (requeued by a reaper)
            if job is not None and job.status == JobStatus.CANCELLED:
                take_set(take_id=take.id, status=TakeStatus.CANCELLED, note="Cancelled.")
            else:
                reason = (
                    f"Its render job ended ({job.status}) without settling it"
                    + (f": {job.last_error}" if job and job.last_error else ".")
                    if job is not None
                    else "Its render job is gone."
                )
                take_set(
                    take_id=take.id,
                    status=TakeStatus.FAILED,
                    error=take.error or reason,
                    note="Failed (settled by studio_doctor)",
                )
            settled += 1
    return settled


def _expired_leases() -> list[int]:
    return list(
        Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=Now())
        .order_by("id")
        .values_list("id", flat=True)
    )


def _archived_rendering() -> list[Take]:
    takes = Take.objects.filter(status__in=TAKE_ACTIVE, scene__archived_at__isnull=False)
    asked = set(
        Job.objects.filter(
            id__in=[t.job_id for t in takes if t.job_id], cancel_requested=True
        ).values_list("id", flat=True)
    )
    return [take for take in takes.order_by("id") if take.job_id not in asked]


def _cancel_archived_renders() -> int:
    cancelled = 0
    for take in _archived_rendering():
        try:
            take_cancel(take=take)
        except Exception:  # its job ended meanwhile: takes_without_job settles it
            continue
        cancelled += 1
    return cancelled


# --- Files and rows ---------------------------------------------------------------------------


def _named_files() -> set[str]:
    names: set[str] = set()
    for files in Take.objects.values_list("video", "unsynced_video", "poster"):
        names.update(files)
    names.update(Frame.objects.values_list("image", flat=True))
    names.update(ReferenceImage.objects.values_list("image", flat=True))
    names.update(Keyframe.objects.values_list("image", flat=True))
    names.discard("")
    return names


def _orphans() -> list[str]:
    named = _named_files()
    cutoff = timezone.now() - timedelta(seconds=ORPHAN_GRACE_S)
    orphans = []
    for name in stored_file_names(MEDIA_FOLDERS):
        if name in named:
            continue
        try:
            recent = default_storage.get_modified_time(name) > cutoff
        except (OSError, NotImplementedError):
            recent = False
        if not recent:
            orphans.append(name)
    return orphans


def _remove_orphan_files() -> int:
    orphans = _orphans()
    delete_after_commit(orphans)  # outside a transaction: at once
    return len(orphans)


def _missing_files() -> list[str]:
    stored = set(stored_file_names(MEDIA_FOLDERS))
    missing = []
    rows = [
        *(("take", i, "video", n) for i, n in Take.objects.values_list("id", "video")),
        *(("take", i, "poster", n) for i, n in Take.objects.values_list("id", "poster")),
        *(
            ("take", i, "unsynced video", n)
            for i, n in Take.objects.values_list("id", "unsynced_video")
        ),
        *(("frame", i, "image", n) for i, n in Frame.objects.values_list("id", "image")),
        *(
            ("reference image", i, "image", n)
            for i, n in ReferenceImage.objects.values_list("id", "image")
        ),
    ]
    for kind, row_id, field_name, name in rows:
        if name and name not in stored and not _exists_elsewhere(name):
            missing.append(f"{kind} {row_id} {field_name}: {name}")
    return missing


def _exists_elsewhere(name: str) -> bool:
    # A name outside the scanned folders (a legacy path) is asked about one by one.
    return not name.startswith(tuple(f"{folder}/" for folder in MEDIA_FOLDERS)) and (
        default_storage.exists(name)
    )
