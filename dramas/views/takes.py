"""Render buttons, the scene's takes, the take review page, and the take media.

Views parse, check membership (drama_view) and call dramas/takes.py. Media goes through
membership-checked views, never public URLs.
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dramas import takes as take_services
from dramas.models import Chapter, Frame, ReviewAction, Role, Scene, Take
from dramas.page_parts import take_frames_key
from dramas.takes import PRIORITIES
from dramas.takes_display import attach_jobs, decorate_frames
from dramas.views.helpers import can, done, drama_view


def _priority(request) -> int:
    try:
        value = int(request.POST.get("priority", 0))
    except ValueError:
        return 0
    return max(-1, min(2, value))


def _scene(drama, scene_id: int) -> Scene:
    # Archived scenes too: their takes stay reachable (a render of one is refused).
    return get_object_or_404(
        Scene.all_objects.select_related("chapter__drama"), chapter__drama=drama, id=scene_id
    )


def _take(drama, take_id: int) -> Take:
    return get_object_or_404(
        Take.objects.select_related("scene__chapter__drama"),
        scene__chapter__drama=drama,
        id=take_id,
    )


def _queue(request, drama, scenes, *, back: str, batch: bool):
    """Queue takes for `scenes` (a batch skips approved and rendering scenes); a refusal
    (budget, nothing to do, already rendering) is a message, not an error."""
    try:
        if batch:
            queued = take_services.takes_render_batch(
                drama=drama, scenes=scenes, priority=_priority(request), user=request.user
            )
        else:
            takes = take_services.take_enqueue(
                drama=drama,
                scenes=scenes,
                priority=_priority(request),
                user=request.user,
                # "Render anyway": a producer's call past the keyframe gate, one scene at a time.
                override_gate=request.POST.get("override_gate") == "1",
            )
            queued = take_services.Batch(takes=takes, skipped_approved=0, skipped_busy=0)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, queued.summary())
    return done(request, back)


@drama_view()
@require_POST
def render_scene(request, drama, scene_id: int):
    scene = _scene(drama, scene_id)
    backs = {
        "board": reverse("drama_board", args=[drama.id]) + f"?chapter={scene.chapter_id}",
        "storyboard": reverse("chapter_storyboard", args=[drama.id, scene.chapter_id]),
    }
    back = backs.get(request.POST.get("back", ""))
    return _queue(request, drama, [scene], back=back or _scene_url(scene), batch=False)


@drama_view()
@require_POST
def render_chapter(request, drama, chapter_id: int):
    chapter = get_object_or_404(Chapter, drama=drama, id=chapter_id)
    back = reverse("drama_board", args=[drama.id]) + f"?chapter={chapter.id}"
    scenes = list(chapter.scenes.select_related("chapter"))
    return _queue(request, drama, scenes, back=back, batch=True)


@drama_view()
@require_POST
def chapter_approve_consistent(request, drama, chapter_id: int):
    chapter = get_object_or_404(Chapter, drama=drama, id=chapter_id)
    approved = take_services.takes_approve_consistent(chapter=chapter, user=request.user)
    if approved:
        orders = ", ".join(str(take.scene.order) for take in approved)
        what = "1 take: scene" if len(approved) == 1 else f"{len(approved)} takes: scenes"
        messages.success(request, f"Approved {what} {orders}.")
    else:
        messages.info(request, "No consistent take is waiting for approval in this chapter.")
    return done(request, reverse("drama_board", args=[drama.id]) + f"?chapter={chapter.id}")


@drama_view()
@require_POST
def render_drama(request, drama):
    scenes = Scene.objects.filter(chapter__drama=drama).select_related("chapter")
    scenes = list(scenes.order_by("chapter__number", "order"))
    return _queue(request, drama, scenes, back=reverse("drama_board", args=[drama.id]), batch=True)


def _scene_url(scene: Scene) -> str:
    return reverse("scene_takes", args=[scene.chapter.drama_id, scene.id])


def _take_url(take: Take) -> str:
    return reverse("take_review", args=[take.scene.chapter.drama_id, take.id])


@drama_view()
@require_GET
def scene_takes(request, drama, scene_id: int):
    scene = _scene(drama, scene_id)
    takes = attach_jobs(list(scene.takes.select_related("scene__chapter__drama")))
    estimate = take_services.takes_estimate(drama=drama, scenes=[scene])
    return render(
        request,
        "dramas/scene_takes.html",
        {
            "drama": drama,
            "scene": scene,
            "takes": takes,
            "estimate": estimate,
            "priorities": PRIORITIES,
            "can_edit": can(request, Role.EDITOR),
        },
    )


@drama_view()
@require_GET
def take_review(request, drama, take_id: int):
    take = _take(drama, take_id)
    [take] = attach_jobs([take])
    history = attach_jobs(list(take.scene.takes.select_related("scene__chapter__drama")))
    frames = decorate_frames(take)
    can_edit = can(request, Role.EDITOR)
    return render(
        request,
        "dramas/take_review.html",
        {
            "drama": drama,
            "scene": take.scene,
            "take": take,
            "frames": frames,
            "frames_key": take_frames_key(take=take, frames=frames, can_edit=can_edit),
            "history": history,
            "reviews": take.reviews.select_related("user", "frame")[:50],
            "estimate": take_services.takes_estimate(drama=drama, scenes=[take.scene]),
            "stage_costs": take_services.take_stage_costs(take_id=take.id),
            "dialog_cut": sum(1 for e in take.dialog_track if e.get("heard") in ("cut", "unheard")),
            # Why a line was not heard in its character's own voice, each reason once.
            "voice_notes": list(
                dict.fromkeys(e["voice_note"] for e in take.dialog_track if e.get("voice_note"))
            ),
            "can_edit": can_edit,
        },
    )


@drama_view()
@require_POST
def take_review_action(request, drama, take_id: int):
    """Approve, reject or comment on the whole take."""
    take = _take(drama, take_id)
    action, comment = request.POST.get("action", ""), request.POST.get("comment", "")
    actions = {
        ReviewAction.APPROVE: take_services.take_approve,
        ReviewAction.REJECT: take_services.take_reject,
        ReviewAction.COMMENT: take_services.take_comment,
    }
    if action not in actions:
        messages.error(request, "Choose approve, reject or comment.")
        return done(request, _take_url(take))
    try:
        actions[action](take=take, user=request.user, comment=comment)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Take {take.number}: {ReviewAction(action).label.lower()}.")
    return done(request, _take_url(take))


@drama_view()
@require_POST
def frame_review_action(request, drama, take_id: int, frame_id: int):
    take = _take(drama, take_id)
    frame = get_object_or_404(Frame, take=take, id=frame_id)
    action = request.POST.get("action", "")
    try:
        take_services.frame_review(
            frame=frame, user=request.user, action=action, comment=request.POST.get("comment", "")
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Frame {frame.index} at {frame.time_s:g} s: {action}d.")
    return done(request, _take_url(take) + f"?frame={frame.index}")


@drama_view()
@require_POST
def take_regenerate(request, drama, take_id: int):
    take = _take(drama, take_id)
    try:
        new = take_services.take_regenerate(
            take=take,
            user=request.user,
            prompt=request.POST.get("prompt", ""),
            comment=request.POST.get("comment", ""),
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return done(request, _take_url(take))
    messages.success(request, f"Take {new.number} queued with a new seed.")
    return done(request, _take_url(new))


@drama_view()
@require_POST
def take_cancel(request, drama, take_id: int):
    take = _take(drama, take_id)
    try:
        take_services.take_cancel(take=take)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    return done(request, _take_url(take))


def _file(field, content_type: str):
    if not field:
        raise Http404("Not rendered yet.")
    try:
        handle = field.open("rb")
    except FileNotFoundError:
        raise Http404("The file is missing from storage.") from None
    response = FileResponse(handle, content_type=content_type)
    response["Cache-Control"] = "private, max-age=3600"
    return response


@drama_view()
@require_GET
def take_video(request, drama, take_id: int):
    return _file(_take(drama, take_id).video, "video/mp4")


@drama_view()
@require_GET
def take_poster(request, drama, take_id: int):
    return _file(_take(drama, take_id).poster, "image/jpeg")


@drama_view()
@require_GET
def frame_image(request, drama, take_id: int, frame_id: int):
    frame = get_object_or_404(Frame, take=_take(drama, take_id), id=frame_id)
    return _file(frame.image, "image/jpeg")
