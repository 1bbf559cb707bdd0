"""Drama jobs, run by the job engine (studio.jobs discovers this module by its name).

`chapter.check` reads a chapter's script the way a render would use it and lists what would
waste a render: dialog that cannot be spoken in the scene's duration, speakers who are not in
the scene, cast without a usable reference image (their face cannot be kept consistent).
"""

from asgiref.sync import sync_to_async
from django.db.models import Count, Q

from dramas.models import Chapter, Scene
from studio.jobs.models import Job
from studio.jobs.registry import PermanentError, register
from studio.jobs.services import job_enqueue

CHECK = "chapter.check"
# Unhurried speech: about 150 words a minute, or 4.5 characters a second in Chinese, Japanese
# and Korean, plus a breath between lines.
WORDS_PER_S = 2.5
CJK_CHARS_PER_S = 4.5
PAUSE_PER_LINE_S = 0.3
CJK_LANGUAGES = ("zh", "ja", "ko")


def chapter_check_enqueue(*, chapter: Chapter) -> Job:
    scene_ids = list(chapter.scenes.values_list("id", flat=True))
    return job_enqueue(
        kind=CHECK,
        drama_id=chapter.drama_id,
        label=f"Check script: chapter {chapter.number}",
        payload={"chapter_id": chapter.id, "scene_ids": scene_ids},
        priority=1,  # quick, and a producer is waiting for it
    )


def speaking_time_s(*, lines: list[str], language: str) -> float:
    cjk = language.lower().startswith(CJK_LANGUAGES)
    seconds = 0.0
    for line in lines:
        if cjk:
            seconds += len("".join(line.split())) / CJK_CHARS_PER_S
        else:
            seconds += len(line.split()) / WORDS_PER_S
    return seconds + PAUSE_PER_LINE_S * max(0, len(lines) - 1)


def scene_warnings(*, scene: Scene, language: str) -> list[str]:
    warnings = []
    lines = list(scene.lines.select_related("speaker"))
    needed = speaking_time_s(lines=[line.line for line in lines], language=language)
    if needed > scene.duration_s:
        warnings.append(
            f"The dialog needs about {needed:.0f} s but the scene lasts {scene.duration_s:g} s: "
            "lengthen the scene or cut lines."
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

# The render pipeline registers `take.render` when imported (its own module: it is long).
from dramas import pipeline as _pipeline  # noqa: E402,F401
