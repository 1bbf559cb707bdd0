"""The storyboard: each scene's keyframe candidates with their scores, the producer's pick, new
rounds with an edited prompt, and the chapter's sheet as a PNG to share."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dramas import keyframes as keyframe_services
from dramas import live
from dramas.models import Chapter, Keyframe, Role, Scene
from dramas.views.helpers import can, done, drama_view
from dramas.views.takes import _file


def _chapter(drama, chapter_id: int) -> Chapter:
    return get_object_or_404(Chapter.objects.select_related("drama"), drama=drama, id=chapter_id)


def _url(chapter: Chapter) -> str:
    return reverse("chapter_storyboard", args=[chapter.drama_id, chapter.id])


@drama_view()
@require_GET
def chapter_storyboard(request, drama, chapter_id: int):
    chapter = _chapter(drama, chapter_id)
    context = live.storyboard_context(chapter=chapter, can_edit=can(request, Role.EDITOR))
    return render(request, "dramas/storyboard.html", context)


@drama_view()
@require_POST
def chapter_keyframes(request, drama, chapter_id: int):
    """ "Make the storyboard": a round for every scene without a chosen keyframe."""
    chapter = _chapter(drama, chapter_id)
    scenes = list(chapter.scenes.select_related("chapter"))
    wanted = keyframe_services.storyboard_scenes(scenes=scenes)
    if not wanted:
        messages.info(request, "Every scene has a keyframe (or is being given one already).")
        return done(request, _url(chapter))
    try:
        rounds = keyframe_services.keyframes_enqueue(drama=drama, scenes=wanted, user=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        images = sum(r.candidates for r in rounds)
        messages.success(
            request, f"Making {images} keyframes for {len(rounds)} scene{'s' * (len(rounds) != 1)}."
        )
    return done(request, _url(chapter))


@drama_view()
@require_POST
def scene_keyframes(request, drama, scene_id: int):
    """A new round for one scene, from the prompt as the producer edited it."""
    scene = get_object_or_404(
        Scene.objects.select_related("chapter"), chapter__drama=drama, id=scene_id
    )
    try:
        [round_] = keyframe_services.keyframes_enqueue(
            drama=drama,
            scenes=[scene],
            user=request.user,
            prompt=_edited(request.POST.get("prompt", ""), scene=scene),
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(
            request, f"Scene {scene.order}: making {round_.candidates} new keyframe candidates."
        )
    return done(request, _url(scene.chapter))


def _edited(prompt: str, *, scene: Scene) -> str:
    """The prompt if the producer changed it from the built one, else "" (built afresh)."""
    built = keyframe_services.keyframe_prompt(scene=scene)
    return prompt if prompt.strip() and prompt.strip() != built.strip() else ""


def _keyframe(drama, keyframe_id: int) -> Keyframe:
    return get_object_or_404(
        Keyframe.objects.select_related("scene__chapter"),
        scene__chapter__drama=drama,
        id=keyframe_id,
    )


@drama_view()
@require_POST
def keyframe_choose(request, drama, keyframe_id: int):
    keyframe = _keyframe(drama, keyframe_id)
    try:
        keyframe_services.keyframe_choose(keyframe=keyframe, user=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(
            request,
            f"Scene {keyframe.scene.order}: candidate {keyframe.index + 1} of round "
            f"{keyframe.round.number} is its keyframe for the next renders.",
        )
    return done(request, _url(keyframe.scene.chapter))


@drama_view()
@require_GET
def keyframe_image(request, drama, keyframe_id: int):
    keyframe = _keyframe(drama, keyframe_id)
    kind = "image/png" if keyframe.image.name.endswith(".png") else "image/jpeg"
    return _file(keyframe.image, kind)


@drama_view()
@require_GET
def chapter_storyboard_sheet(request, drama, chapter_id: int):
    """The chapter's storyboard as one PNG page, to share with a director."""
    chapter = _chapter(drama, chapter_id)
    response = HttpResponse(
        keyframe_services.storyboard_png(chapter=chapter), content_type="image/png"
    )
    name = f"storyboard-chapter-{chapter.number}.png"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
