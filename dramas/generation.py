"""Chapter generation services: "Generate chapter" and "Rewrite scene" as jobs on the engine.

A service checks the request, prices it (generation_estimate) and enqueues a job; the job
(dramas/generation_jobs.py) writes, checks and saves. A producer's script is never replaced
silently: each save keeps the script before it as a version, and a cancel or an error leaves it
as it was. Only one writing job per chapter runs at a time.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from dramas import services
from dramas.generation_prompts import Estimate, generation_estimate, rewrite_estimate_from
from dramas.models import Chapter, Drama, Scene
from studio.jobs.models import ACTIVE, Job
from studio.jobs.services import job_enqueue

GENERATE = "chapter.generate"
REWRITE = "scene.rewrite"
KINDS = (GENERATE, REWRITE)
TARGET_S = (15, 300)  # seconds of screen time a chapter may ask for
PLOT_TURNS = (1, 5)

__all__ = [
    "Estimate",
    "active_generation",
    "chapter_generate",
    "chapter_generate_new",
    "generation_estimate",
    "latest_generation",
    "rewrite_estimate_from",
    "scene_rewrite",
]


def active_generation(*, chapter: Chapter) -> Job | None:
    return (
        Job.objects.filter(kind__in=KINDS, status__in=ACTIVE, payload__chapter_id=chapter.id)
        .order_by("id")
        .first()
    )


def latest_generation(*, chapter: Chapter) -> Job | None:
    return (
        Job.objects.filter(kind__in=KINDS, payload__chapter_id=chapter.id).order_by("-id").first()
    )


def _refuse_if_busy(chapter: Chapter) -> None:
    if active_generation(chapter=chapter) is not None:
        raise ValidationError(
            "The writer is already working on this chapter: wait for it or cancel it first."
        )


@transaction.atomic
def chapter_generate(
    *,
    chapter: Chapter,
    user=None,
    target_seconds: int = 60,
    plot_turns: int = 3,
    title_wish: str = "",
    notes: str = "",
) -> Job:
    """Queue writing the chapter's script; its current script is kept as a version."""
    if not TARGET_S[0] <= target_seconds <= TARGET_S[1]:
        raise ValidationError({"target_seconds": f"Between {TARGET_S[0]} and {TARGET_S[1]} s."})
    if not PLOT_TURNS[0] <= plot_turns <= PLOT_TURNS[1]:
        raise ValidationError({"plot_turns": f"Between {PLOT_TURNS[0]} and {PLOT_TURNS[1]}."})
    Chapter.objects.select_for_update().filter(id=chapter.id).first()  # one request at a time
    _refuse_if_busy(chapter)
    estimate = generation_estimate(
        chapter=chapter, target_seconds=target_seconds, plot_turns=plot_turns, title_wish=title_wish
    )
    return job_enqueue(
        kind=GENERATE,
        drama_id=chapter.drama_id,
        label=f"Write chapter {chapter.number}",
        priority=1,  # a producer is watching
        payload={
            "chapter_id": chapter.id,
            "user_id": getattr(user, "id", None),
            "target_seconds": target_seconds,
            "plot_turns": plot_turns,
            "title_wish": title_wish.strip()[:200],
            "notes": notes.strip()[:1000],
            "estimate": estimate.as_dict(),
        },
    )


@transaction.atomic
def chapter_generate_new(*, drama: Drama, user=None, title: str, **options) -> Job:
    """A new chapter named `title` and the job that writes it."""
    chapter = services.chapter_create(drama=drama, title=title.strip() or "New chapter")
    return chapter_generate(chapter=chapter, user=user, title_wish=title, **options)


@transaction.atomic
def scene_rewrite(*, scene: Scene, user=None, instruction: str) -> Job:
    """Queue rewriting one scene from the producer's instruction."""
    instruction = " ".join(instruction.split())
    if not instruction:
        raise ValidationError({"instruction": "Say what should change in the scene."})
    if len(instruction) > 1000:
        raise ValidationError({"instruction": "Keep the instruction under 1000 characters."})
    chapter = scene.chapter
    Chapter.objects.select_for_update().filter(id=chapter.id).first()
    _refuse_if_busy(chapter)
    return job_enqueue(
        kind=REWRITE,
        drama_id=chapter.drama_id,
        label=f"Rewrite scene {scene.order} of chapter {chapter.number}",
        priority=1,
        payload={
            "chapter_id": chapter.id,
            "scene_id": scene.id,
            "user_id": getattr(user, "id", None),
            "instruction": instruction,
            "estimate": generation_estimate(chapter=chapter, scene=scene).as_dict(),
        },
    )
