"""The Cut page: the chapter as an episode (each scene's take, trims, transitions, a preview
of the assembled chapter), its export and the package's downloads."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dramas.delivery.cut import cover_set, cut_entry_set
from dramas.delivery.export import export_request
from dramas.live import cut_context
from dramas.models import Chapter, Export, ExportStatus, Frame, Role, Scene, Transition
from dramas.views.helpers import can, done, drama_view

CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".srt": "application/x-subrip",
    ".vtt": "text/vtt",
    ".jpg": "image/jpeg",
    ".json": "application/json",
    ".zip": "application/zip",
    ".otio": "application/json",
    ".fcpxml": "application/xml",
    ".xml": "application/xml",
    ".edl": "text/plain",
}


def _chapter(drama, chapter_id: int) -> Chapter:
    return get_object_or_404(Chapter, drama=drama, id=chapter_id)


def _cut_url(chapter: Chapter) -> str:
    return reverse("chapter_cut", args=[chapter.drama_id, chapter.id])


@drama_view()
@require_GET
def chapter_cut(request, drama, chapter_id: int):
    chapter = _chapter(drama, chapter_id)
    context = cut_context(chapter=chapter, can_edit=can(request, Role.EDITOR))
    return render(request, "dramas/cut.html", context)


def _seconds(value: str, *, name: str, optional: bool = False) -> float | None:
    value = (value or "").strip()
    if not value and optional:
        return None
    try:
        return float(value)
    except ValueError:
        raise ValidationError(f"The {name} must be a number of seconds.") from None


@drama_view()
@require_POST
def cut_entry_update(request, drama, chapter_id: int, scene_id: int):
    """One scene's take, in and out points and transition into the next scene."""
    chapter = _chapter(drama, chapter_id)
    scene = get_object_or_404(Scene, chapter=chapter, id=scene_id)
    post = request.POST
    try:
        take_id = post.get("take", "").strip()
        take = scene.takes.filter(id=int(take_id)).first() if take_id.isdigit() else None
        if take_id and take is None:
            raise ValidationError("Choose one of this scene's takes.")
        cut_entry_set(
            scene=scene,
            take=take,
            in_s=_seconds(post.get("in_s", "0") or "0", name="in point"),
            out_s=_seconds(post.get("out_s", ""), name="out point", optional=True),
            transition=post.get("transition", Transition.CUT),
            transition_s=_seconds(post.get("transition_s", "0.5") or "0.5", name="transition"),
        )
    except ValidationError as error:
        messages.error(request, f"Scene {scene.order}: {' '.join(error.messages)}")
    else:
        messages.success(request, f"Scene {scene.order}: the cut is updated.")
    return done(request, _cut_url(chapter))


@drama_view()
@require_POST
def chapter_cover(request, drama, chapter_id: int):
    """The episode's cover: one of the cut's frames (empty: the best-scoring one)."""
    chapter = _chapter(drama, chapter_id)
    frame_id = request.POST.get("frame", "").strip()
    frame = None
    if frame_id.isdigit():
        frame = Frame.objects.filter(take__scene__chapter=chapter, id=int(frame_id)).first()
    try:
        if frame_id and frame is None:
            raise ValidationError("Pick a frame of one of this chapter's takes.")
        cover_set(chapter=chapter, frame=frame)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, "The cover is set; the next export uses it.")
    return done(request, _cut_url(chapter))


@drama_view()
@require_POST
def chapter_export(request, drama, chapter_id: int):
    """Export the cut (a job), or find the package of the same cut made before."""
    chapter = _chapter(drama, chapter_id)
    try:
        export, made = export_request(
            chapter=chapter,
            user=request.user,
            loudness_lufs=float(request.POST.get("loudness", "-14")),
            allow_gaps=request.POST.get("allow_gaps") == "on",
        )
    except (ValidationError, ValueError) as error:
        text = " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
        messages.error(request, text)
    else:
        if made:
            messages.success(request, "Exporting: the job is on the board and in the queue.")
        elif export.status == ExportStatus.DONE:
            messages.info(request, "This cut was exported before: its package is below.")
        else:
            messages.info(request, "This cut is being exported already.")
    return done(request, _cut_url(chapter))


@drama_view()
@require_GET
def export_file(request, drama, export_id: int, name: str):
    export = get_object_or_404(Export, chapter__drama=drama, id=export_id, status=ExportStatus.DONE)
    if name not in export.files:
        raise Http404("The package has no such file.")
    try:
        handle = default_storage.open(f"{export.folder}/{name}", "rb")
    except FileNotFoundError:
        raise Http404("The file is missing from storage.") from None
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    response = FileResponse(
        handle,
        content_type=CONTENT_TYPES.get(suffix, "application/octet-stream"),
        as_attachment=request.GET.get("play") != "1",
        filename=name.rsplit("/", 1)[-1],
    )
    response["Cache-Control"] = "private, max-age=3600"
    return response
