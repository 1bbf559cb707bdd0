"""Where a chapter stands, from what is true now rather than a stored flag that a dead worker
could leave behind: writing (a writer job for it is queued or running), exported (approved, and
its current cut has an export: dramas/delivery/export.py `with_export_stage`), approved (every
scene has an approved take), ready to render (it has scenes) or draft (none yet)."""

from django.db.models import (
    CharField,
    Count,
    Exists,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

from dramas.generation import KINDS as WRITING_KINDS
from dramas.models import Chapter, ChapterStatus, Export, ExportStatus, Scene
from studio.jobs.models import ACTIVE, Job


def chapters_with_stage(chapters: QuerySet[Chapter]) -> QuerySet[Chapter]:
    """Annotate `scene_count` and what `chapter_stage` needs, in the same one query."""
    # Compared as text: a JSON value against an integer column has no common type on PostgreSQL.
    writing = Job.objects.filter(kind__in=WRITING_KINDS, status__in=ACTIVE)
    writing = writing.annotate(chapter_ref=KT("payload__chapter_id")).filter(
        chapter_ref=Cast(OuterRef("id"), CharField())
    )
    approved = (
        Scene.objects.filter(chapter=OuterRef("id"), takes__locked=True)
        .order_by()
        .values("chapter")
        .annotate(scenes=Count("id", distinct=True))
        .values("scenes")
    )
    exported = Export.objects.filter(chapter=OuterRef("id"), status=ExportStatus.DONE).order_by(
        "-created_at", "-id"
    )
    return chapters.annotate(
        latest_export_id=Subquery(exported.values("id")[:1]),
        writing=Exists(writing),
        # A join, not the live-scene manager: archived scenes are left out by hand.
        scene_count=Count("scenes", filter=Q(scenes__archived_at__isnull=True), distinct=True),
        approved_scenes=Coalesce(Subquery(approved), Value(0), output_field=IntegerField()),
    )


def chapter_stage(chapter: Chapter) -> ChapterStatus:
    """The stage of a chapter read through `chapters_with_stage`."""
    if chapter.writing:
        return ChapterStatus.GENERATING
    if chapter.scene_count and chapter.approved_scenes >= chapter.scene_count:
        return ChapterStatus.APPROVED
    return ChapterStatus.READY if chapter.scene_count else ChapterStatus.DRAFT
