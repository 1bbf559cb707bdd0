"""Chapter editor: chapters, their ordered scenes, dialog lines and kept script versions.

Each write answers htmx with the fragment it changed and a plain form post with a redirect,
so the editor works without reloads and with them.
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from dramas import services, speech_jobs
from dramas.delivery.export import with_export_stage
from dramas.forms import ChapterForm, DialogLineForm, SceneForm, VersionForm
from dramas.live import attach_storyboard, dialog_context, editor_scenes
from dramas.models import Chapter, ChapterVersion, DialogLine, Role, Scene
from dramas.page_parts import editor_form_keys, scene_card_key
from dramas.stages import chapter_stage, chapters_with_stage
from dramas.views.generation import editor_context as generation_editor_context
from dramas.views.helpers import INVALID, add_errors, can, done, drama_view

EDITOR = "dramas/chapter_editor.html"
DIALOG = "dramas/dialog_parts.html"


def _chapter(drama, chapter_id: int) -> Chapter:
    return get_object_or_404(Chapter, drama=drama, id=chapter_id)


def _scene(drama, scene_id: int) -> Scene:
    return get_object_or_404(
        Scene.objects.select_related("chapter"), chapter__drama=drama, id=scene_id
    )


def _line(drama, line_id: int) -> DialogLine:
    return get_object_or_404(
        DialogLine.objects.select_related("scene__chapter"),
        scene__chapter__drama=drama,
        id=line_id,
    )


def _editor_url(chapter: Chapter, anchor: str = "") -> str:
    url = reverse("chapter_editor", args=[chapter.drama_id, chapter.id])
    return f"{url}#{anchor}" if anchor else url


def _editor_context(request, chapter: Chapter, **extra) -> dict:
    drama = chapter.drama
    # The header's stage, version count and archived scenes, in one query.
    counted = chapters_with_stage(Chapter.objects.filter(id=chapter.id))
    counted = counted.annotate(
        version_total=Count("versions", distinct=True),
        archived_total=Count("scenes", filter=Q(scenes__archived_at__isnull=False), distinct=True),
    ).get()
    scenes = editor_scenes(chapter=chapter)
    context = {
        "drama": drama,
        "chapter": chapter,
        "scenes": scenes,
        "chapter_duration_s": sum(scene.duration_s for scene in scenes),
        "characters": list(drama.characters.order_by("name")),
        "can_edit": can(request, Role.EDITOR),
        "new_scene_form": SceneForm(drama=drama, prefix="new"),
        "version_count": counted.version_total,
        "archived_count": counted.archived_total,
        "stage": with_export_stage(chapter=counted, stage=chapter_stage(counted)),
        # The storyboard's chosen keyframes over the script (one query; dramas/keyframes.py).
        "storyboard_strip": attach_storyboard(drama=drama, scenes=list(scenes)),
    }
    # The header links the latest package (found on the counted copy of the chapter).
    chapter.latest_export, chapter.export_current = counted.latest_export, counted.export_current
    context.update(
        dialog_context(chapter=chapter, scenes=scenes, can_edit=can(request, Role.EDITOR))
    )
    # The chapter writer's panel, live preview and estimates (dramas/views/generation.py).
    context.update(generation_editor_context(chapter=chapter, can_edit=context["can_edit"]))
    context.update(extra)
    # Each card and empty form is drawn once per state of what it shows.
    for scene in scenes:
        scene.card_key = scene_card_key(scene=scene, context=context)
    context["form_keys"] = editor_form_keys(context=context)
    # A single scene's card shows the listed instance: its lines carry their voices.
    if "scene" in extra:
        listed = next((scene for scene in scenes if scene.id == extra["scene"].id), None)
        context["scene"] = listed or extra["scene"]
    return context


def _scene_changed(request, scene: Scene):
    """After a write to one scene: its card (and the header) for htmx, else back to it."""
    return done(
        request,
        _editor_url(scene.chapter, f"scene-{scene.id}"),
        partial=f"{EDITOR}#scene-update",
        context=_editor_context(request, scene.chapter, scene=scene),
    )


def _scenes_changed(request, chapter: Chapter, *, anchor: str = ""):
    """After a write to the scene list: the whole panel (and the header) for htmx."""
    return done(
        request,
        _editor_url(chapter, anchor),
        partial=f"{EDITOR}#scenes-update",
        context=_editor_context(request, chapter),
    )


def _render_editor(request, chapter, partial: str | None = None, status: int = 200, **extra):
    """The fragment for htmx, or the whole editor page (same partials) for a plain request."""
    context = _editor_context(request, chapter, **extra)
    template = f"{EDITOR}#{partial}" if request.htmx and partial else EDITOR
    return render(request, template, context, status=status)


# --- Chapters ----------------------------------------------------------------------------------


@drama_view(read=Role.EDITOR)
@require_http_methods(["GET", "POST"])
def chapter_create(request, drama):
    form = ChapterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        chapter = services.chapter_create(drama=drama, **form.cleaned_data)
        messages.success(request, f"Chapter {chapter.number} created. Add its scenes.")
        return done(request, _editor_url(chapter))
    return render(
        request,
        "dramas/chapter_form.html",
        {"form": form, "drama": drama},
        status=INVALID if form.errors else 200,
    )


@drama_view()
@require_http_methods(["GET"])
def chapter_editor(request, drama, chapter_id: int):
    return _render_editor(request, _chapter(drama, chapter_id))


@drama_view(read=Role.EDITOR)
@require_http_methods(["GET", "POST"])
def chapter_edit(request, drama, chapter_id: int):
    chapter = _chapter(drama, chapter_id)
    form = ChapterForm(request.POST or None, instance=chapter)
    if request.method == "POST" and form.is_valid():
        form.save()
        return done(
            request,
            _editor_url(chapter),
            partial=f"{EDITOR}#chapter-header",
            context=_editor_context(request, chapter),
        )
    if request.method == "GET" and not request.htmx:
        return _render_editor(request, chapter, chapter_form=form)
    return _render_editor(
        request,
        chapter,
        "chapter-header",
        chapter_form=form,
        status=INVALID if form.errors else 200,
    )


@drama_view()
@require_POST
def chapter_delete(request, drama, chapter_id: int):
    chapter = _chapter(drama, chapter_id)
    services.chapter_delete(chapter=chapter)
    messages.success(request, f"Chapter “{chapter.title}” was deleted.")
    return done(request, reverse("drama_board", args=[drama.id]))


# --- Scenes ------------------------------------------------------------------------------------


@drama_view()
@require_POST
def scene_create(request, drama, chapter_id: int):
    chapter = _chapter(drama, chapter_id)
    form = SceneForm(request.POST, drama=drama, prefix="new")
    if form.is_valid():
        data = dict(form.cleaned_data)
        try:
            scene = services.scene_create(
                chapter=chapter, characters=list(data.pop("characters")), **data
            )
        except ValidationError as error:
            add_errors(form, error)
        else:
            return _scenes_changed(request, chapter, anchor=f"scene-{scene.id}")
    return _render_editor(request, chapter, "scenes-update", status=INVALID, new_scene_form=form)


@drama_view()
@require_http_methods(["GET"])
def scene_card(request, drama, scene_id: int):
    scene = _scene(drama, scene_id)
    return _render_editor(request, scene.chapter, "scene-update", scene=scene)


@drama_view(read=Role.EDITOR)
@require_http_methods(["GET", "POST"])
def scene_edit(request, drama, scene_id: int):
    scene = _scene(drama, scene_id)
    form = SceneForm(request.POST or None, instance=scene, drama=drama, prefix=f"scene-{scene.id}")
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        try:
            services.scene_update(scene=scene, characters=list(data.pop("characters")), **data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            return _scene_changed(request, scene)
    if form.errors:
        scene.refresh_from_db()  # show the stored scene around the rejected edit
    return _render_editor(
        request,
        scene.chapter,
        "scene-update",
        scene=scene,
        editing_scene=scene,
        scene_form=form,
        status=INVALID if form.errors else 200,
    )


@drama_view()
@require_POST
def scene_delete(request, drama, scene_id: int):
    scene = _scene(drama, scene_id)
    chapter = scene.chapter
    services.scene_delete(scene=scene)
    return _scenes_changed(request, chapter)


def _offset(request) -> int:
    try:
        offset = int(request.POST.get("offset", ""))
    except ValueError:
        raise Http404("Move needs an offset of -1 or 1.") from None
    return max(-1, min(1, offset))


@drama_view()
@require_POST
def scene_move(request, drama, scene_id: int):
    scene = _scene(drama, scene_id)
    services.scene_move(scene=scene, offset=_offset(request))
    return _scenes_changed(request, scene.chapter, anchor=f"scene-{scene.id}")


@drama_view()
@require_POST
def scenes_reorder(request, drama, chapter_id: int):
    chapter = _chapter(drama, chapter_id)
    raw = request.POST.getlist("scene")
    try:
        services.scenes_reorder(chapter=chapter, scene_ids=[int(value) for value in raw])
    except (ValueError, ValidationError):
        messages.error(
            request, "The scenes changed while you were dragging; here is the current order."
        )
    return _scenes_changed(request, chapter)


# --- Dialog lines ------------------------------------------------------------------------------


@drama_view()
@require_POST
def line_create(request, drama, scene_id: int):
    scene = _scene(drama, scene_id)
    form = DialogLineForm(request.POST, drama=drama, prefix=f"line-new-{scene.id}")
    if form.is_valid():
        try:
            services.line_create(scene=scene, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            return _scene_changed(request, scene)
    return _render_editor(
        request,
        scene.chapter,
        "scene-update",
        scene=scene,
        new_line_form=form,
        new_line_scene_id=scene.id,
        status=INVALID,
    )


@drama_view(read=Role.EDITOR)
@require_http_methods(["GET", "POST"])
def line_edit(request, drama, line_id: int):
    dialog = _line(drama, line_id)
    scene = dialog.scene
    form = DialogLineForm(
        request.POST or None, instance=dialog, drama=drama, prefix=f"line-{dialog.id}"
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.line_update(
                dialog=dialog, line=data["line"], speaker=data["speaker"], emotion=data["emotion"]
            )
        except ValidationError as error:
            add_errors(form, error)
        else:
            return _scene_changed(request, scene)
    if form.errors:
        dialog.refresh_from_db()
    return _render_editor(
        request,
        scene.chapter,
        "scene-update",
        scene=scene,
        editing_line_id=dialog.id,
        line_form=form,
        status=INVALID if form.errors else 200,
    )


@drama_view()
@require_POST
def line_delete(request, drama, line_id: int):
    dialog = _line(drama, line_id)
    scene = dialog.scene
    services.line_delete(dialog=dialog)
    return _scene_changed(request, scene)


@drama_view()
@require_POST
def line_move(request, drama, line_id: int):
    dialog = _line(drama, line_id)
    scene = dialog.scene
    services.line_move(dialog=dialog, offset=_offset(request))
    return _scene_changed(request, scene)


# --- Versions ----------------------------------------------------------------------------------


@drama_view()
@require_http_methods(["GET", "POST"])
def chapter_versions(request, drama, chapter_id: int):
    chapter = _chapter(drama, chapter_id)
    form = VersionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        latest = chapter.versions.order_by("-number").first()
        version = services.chapter_version_save(
            chapter=chapter, user=request.user, note=form.cleaned_data["note"]
        )
        if latest is not None and version.id == latest.id:
            messages.info(request, f"No changes since version {version.number}.")
        else:
            messages.success(request, f"Saved as version {version.number}.")
        return done(request, reverse("chapter_versions", args=[drama.id, chapter.id]))
    versions = list(chapter.versions.select_related("created_by"))
    return render(
        request,
        "dramas/versions.html",
        {
            "drama": drama,
            "chapter": chapter,
            "versions": versions,
            "archived": services.chapter_archive(chapter=chapter, versions=versions),
            "form": form,
            "can_edit": can(request, Role.EDITOR),
        },
        status=INVALID if form.errors else 200,
    )


@drama_view()
@require_http_methods(["GET"])
def chapter_version_detail(request, drama, chapter_id: int, version_id: int):
    chapter = _chapter(drama, chapter_id)
    version = get_object_or_404(ChapterVersion, chapter=chapter, id=version_id)
    compare_id = request.GET.get("compare", "")
    if compare_id.isdigit():
        other = get_object_or_404(ChapterVersion, chapter=chapter, id=int(compare_id))
        other_script, other_label = other.script, f"Version {other.number}"
    else:
        other_script, other_label = services.chapter_script(chapter=chapter), "Current script"
    return render(
        request,
        "dramas/version_detail.html",
        {
            "drama": drama,
            "chapter": chapter,
            "version": version,
            "versions": chapter.versions.all(),
            "rows": services.scripts_side_by_side(left=version.script, right=other_script),
            "other_label": other_label,
            "can_edit": can(request, Role.EDITOR),
        },
    )


@drama_view()
@require_POST
def chapter_version_restore(request, drama, chapter_id: int, version_id: int):
    chapter = _chapter(drama, chapter_id)
    version = get_object_or_404(ChapterVersion, chapter=chapter, id=version_id)
    confirmed = request.POST.get("archive_approved") == "1"
    try:
        services.chapter_version_restore(
            version=version, user=request.user, archive_approved=confirmed
        )
    except ValidationError as error:
        if getattr(error, "code", None) == "confirm":
            # Approved takes would go to the archive: the producer sees which, and confirms.
            plan = services.script_plan(chapter=chapter, script=version.script)
            context = {"drama": drama, "chapter": chapter, "version": version, "plan": plan}
            return render(request, "dramas/restore_confirm.html", context, status=409)
        messages.error(request, "This version cannot be restored: " + " ".join(error.messages))
        return done(request, reverse("chapter_versions", args=[drama.id, chapter.id]))
    messages.success(
        request, f"Restored version {version.number}; the script you had is kept as a version too."
    )
    return done(request, _editor_url(chapter))


# --- Voicing the dialog, and scenes that hold it ------------------------------------------------


def _dialog_changed(request, chapter: Chapter):
    """The voicing panel, every line's voice and the lengthening proposal, as out-of-band
    fragments (the panel polls this while lines are being voiced)."""
    scenes = editor_scenes(chapter=chapter)
    context = dialog_context(chapter=chapter, scenes=scenes, can_edit=can(request, Role.EDITOR))
    return render(request, f"{DIALOG}#dialog-live", context)


@drama_view()
@require_http_methods(["GET", "POST"])
def chapter_voice(request, drama, chapter_id: int):
    """GET: the chapter's voicing state. POST: "Voice the chapter", a job per line to voice."""
    chapter = _chapter(drama, chapter_id)
    if request.method == "POST":
        result = speech_jobs.chapter_speak_enqueue(chapter=chapter)
        if result.queued:
            count = len(result.queued)
            messages.success(
                request,
                f"Voicing {count} line{'s' if count != 1 else ''}; each is a job on the board "
                "and in the queue.",
            )
        elif result.waiting:
            messages.info(request, "The chapter's lines are being voiced already.")
        else:
            messages.info(request, "Every line of this chapter is voiced already.")
        if not request.htmx:
            return done(request, _editor_url(chapter, "voice-panel"))
    return _dialog_changed(request, chapter)


@drama_view()
@require_http_methods(["GET", "POST"])
def line_voice(request, drama, line_id: int):
    """GET: the line's voice (with `?audio=<key>`, its audio, while that is the line's current
    voice). POST: "Voice again", a job for this line unless one is on its way already."""
    dialog = _line(drama, line_id)
    chapter = dialog.scene.chapter
    if request.method == "POST":
        try:
            speech_jobs.line_speak_enqueue(line=dialog)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        if not request.htmx:
            return done(request, _editor_url(chapter, f"line-{dialog.id}"))
        return _dialog_changed(request, chapter)
    dialog.voice = speech_jobs.line_voices(chapter=chapter, lines=[dialog]).get(dialog.id)
    if "audio" in request.GET:
        voice = dialog.voice
        if voice is None or not voice.voiced or voice.key != request.GET["audio"]:
            raise Http404("This line has no such audio (it changed, or is not voiced yet).")
        response = FileResponse(voice.audio.audio.open("rb"), content_type="audio/wav")
        # The URL names the audio by its key: what it points at never changes.
        response["Cache-Control"] = "private, max-age=86400, immutable"
        return response
    context = {
        "drama": drama,
        "chapter": chapter,
        "line": dialog,
        "can_edit": can(request, Role.EDITOR),
    }
    return render(request, f"{DIALOG}#line-voice", context)


def _accepted_durations(request) -> dict[int, float]:
    """`scene-<id>=<seconds>` pairs of the lengthening form."""
    durations = {}
    for name, value in request.POST.items():
        scene_id = name.removeprefix("scene-")
        if scene_id == name or not scene_id.isdigit():
            continue
        try:
            durations[int(scene_id)] = float(value)
        except ValueError:
            raise ValidationError(f"{value!r} is not a number of seconds.") from None
    return durations


@drama_view()
@require_POST
def chapter_lengthen(request, drama, chapter_id: int):
    """Accept the proposal: lengthen the listed scenes to fit their dialog."""
    chapter = _chapter(drama, chapter_id)
    try:
        changed = services.chapter_scenes_lengthen(
            chapter=chapter, durations=_accepted_durations(request)
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        count = len(changed)
        messages.success(
            request, f"Lengthened {count} scene{'s' if count != 1 else ''} to fit their dialog."
        )
    return _scenes_changed(request, chapter, anchor="dialog-fit")
