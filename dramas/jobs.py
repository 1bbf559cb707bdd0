"""Drama jobs, run by the job engine (studio.jobs discovers this module by its name).

`chapter.check` reads a chapter's script the way a render would use it and lists what would
waste a render: dialog that cannot be spoken in the scene's duration (measured from the lines
voiced already, estimated for the others: dramas/dialog_fit.py), speakers who are not in the
scene, cast without a usable reference image (their face cannot be kept consistent).
"""

from asgiref.sync import sync_to_async
from django.db.models import Count, Q, prefetch_related_objects

from dramas.dialog_fit import scene_needs
from dramas.models import Chapter, Scene
from studio.jobs.models import Job
from studio.jobs.registry import PermanentError, register
from studio.jobs.services import job_enqueue

CHECK = "chapter.check"


def chapter_check_enqueue(*, chapter: Chapter) -> Job:
    scene_ids = list(chapter.scenes.values_list("id", flat=True))
    return job_enqueue(
        kind=CHECK,
        drama_id=chapter.drama_id,
        label=f"Check script: chapter {chapter.number}",
        payload={"chapter_id": chapter.id, "scene_ids": scene_ids},
        priority=1,  # quick, and a producer is waiting for it
    )


def scene_warnings(*, scene: Scene, language: str) -> list[str]:
    warnings = []
    prefetch_related_objects([scene], "lines__speaker", "characters")
    lines = list(scene.lines.all())
    [need] = scene_needs(scenes=[scene], language=language)
    if not need.fits(scene.duration_s):
        needed = need.needed_s(scene.duration_s)
        about = "" if need.exact else "about "
        warnings.append(
            f"The dialog needs {about}{needed:.1f} s but the scene lasts {scene.duration_s:g} s "
            f"({need.source}): lengthen the scene or cut lines."
        )
    cast = {character.id: character for character in scene.characters.all()}
    outsiders = sorted(
        {line.speaker.name for line in lines if line.speaker_id and line.speaker_id not in cast}
    )
    for name in outsiders:
        warnings.append(f"{name} speaks but is not in the scene: add them to its characters.")
    without_faces = scene.characters.annotate(
        good=Count("references", filter=Q(references__quality="good"))
    ).filter(good=0)
    for character in without_faces.order_by("name"):
        warnings.append(
            f"{character.name} has no usable reference image, so renders cannot keep their face."
        )
    return warnings


def _scenes(chapter_id: int) -> tuple[str, list[Scene]]:
    chapter = Chapter.objects.select_related("drama").filter(id=chapter_id).first()
    if chapter is None:
        raise PermanentError("The chapter no longer exists.")
    return chapter.drama.language, list(chapter.scenes.order_by("order", "id"))


@register(CHECK, max_attempts=2)
async def chapter_check(ctx) -> dict:
    language, scenes = await sync_to_async(_scenes)(ctx.payload["chapter_id"])
    by_scene: dict[str, list[str]] = {}
    details: list[str] = []
    for done, scene in enumerate(scenes, start=1):
        warnings = await sync_to_async(scene_warnings)(scene=scene, language=language)
        by_scene[str(scene.id)] = warnings
        details += [f"Scene {scene.order} ({scene.location}): {text}" for text in warnings]
        await ctx.progress(done / len(scenes), note=f"scene {done} of {len(scenes)}")
    troubled = sum(1 for warnings in by_scene.values() if warnings)
    if not scenes:
        summary = "The chapter has no scenes yet."
    elif details:
        summary = (
            f"{len(details)} warning{'s' if len(details) != 1 else ''} in {troubled} of "
            f"{len(scenes)} scene{'s' if len(scenes) != 1 else ''}."
        )
    else:
        summary = f"No problems found in {len(scenes)} scene{'s' if len(scenes) != 1 else ''}."
    return {"summary": summary, "details": details, "scenes": by_scene}


# Job kinds with modules of their own register when imported: the writing jobs
# (`chapter.generate`, `scene.rewrite`) and the render pipeline.
from dramas import generation_jobs as _generation_jobs  # noqa: E402,F401

# Storyboard keyframes register `keyframes.generate` (dramas/keyframe_jobs.py).
from dramas import keyframe_jobs as _keyframe_jobs  # noqa: E402,F401

# The render pipeline registers `take.render` when imported (its own module: it is long).
from dramas import pipeline as _pipeline  # noqa: E402,F401

# Voicing lines ahead of a render registers `dialog.speak` (dramas/speech_jobs.py).
from dramas import speech_jobs as _speech_jobs  # noqa: E402,F401

# Exporting a chapter's cut registers `chapter.export` (dramas/delivery/export.py).
from dramas.delivery import export as _export  # noqa: E402,F401
