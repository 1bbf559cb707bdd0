"""Generate a chapter, rewrite a scene, cancel the writer: thin views over dramas.generation.

Each write answers htmx with the editor's live generation panel (the job then streams into it
over the drama's websocket) and a plain form post with a redirect to the editor.
"""

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Max
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dramas import generation, live, services
from dramas.models import Chapter, Role, Scene
from dramas.views.helpers import INVALID, add_errors, can, drama_view
from studio.jobs.models import Job
from studio.jobs.services import job_cancel

EDITOR = "dramas/chapter_editor.html"


class GenerateForm(forms.Form):
    title_wish = forms.CharField(
        label="Title wish", max_length=200, required=False, help_text="Optional."
    )
    target_seconds = forms.IntegerField(
        label="Target length (s)",
        initial=60,
        min_value=generation.TARGET_S[0],
        max_value=generation.TARGET_S[1],
    )
    plot_turns = forms.TypedChoiceField(
        label="Plot turns",
        coerce=int,
        initial=3,
        choices=[(n, n) for n in range(generation.PLOT_TURNS[0], generation.PLOT_TURNS[1] + 1)],
    )
    notes = forms.CharField(
        label="Notes for the writer",
        max_length=1000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    # Shown only when the chapter has approved takes (a new script archives their scenes).
    archive_approved = forms.BooleanField(
        label="Archive the scenes with approved takes", required=False
    )


class NewChapterForm(GenerateForm):
    title_wish = forms.CharField(label="Chapter title", max_length=200)


class RewriteForm(forms.Form):
    instruction = forms.CharField(max_length=1000, widget=forms.Textarea(attrs={"rows": 2}))


def editor_context(*, chapter: Chapter, can_edit: bool) -> dict:
    """What the chapter editor's generate panel and rewrite forms show (the estimates)."""
    context = live.generation_context(chapter=chapter, can_edit=can_edit)
    if can_edit:
        context["generate_form"] = GenerateForm(auto_id="gen-%s")
        context["approved_takes"] = services.chapter_approved_takes(chapter=chapter)
        estimate = generation.generation_estimate(chapter=chapter)
        context["estimate"] = estimate
        # A rewrite sends about a chapter's prompt plus the current script (about a chapter's
        # answer); the exact figure is computed when one is asked for.
        context["rewrite_estimate"] = generation.rewrite_estimate_from(estimate)
    return context


def _chapter(drama, chapter_id: int) -> Chapter:
    return get_object_or_404(Chapter.objects.select_related("drama"), drama=drama, id=chapter_id)


def _editor_url(chapter: Chapter, anchor: str = "generation-live") -> str:
    return reverse("chapter_editor", args=[chapter.drama_id, chapter.id]) + f"#{anchor}"


def _panel(request, chapter: Chapter, *, error: str = "", status: int = 200):
    """The live panel for htmx; a redirect to the editor (with a message) for a plain post."""
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect(_editor_url(chapter))
    context = live.generation_context(chapter=chapter, can_edit=can(request, Role.EDITOR))
    context["generation_error"] = error
    return render(request, f"{EDITOR}#generation-live", context, status=status)


@drama_view(read=Role.EDITOR)
@require_http_methods(["GET", "POST"])
def chapter_generate_new(request, drama):
    """A new chapter, written by the writer from a title and a target length."""
    form = NewChapterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            job = generation.chapter_generate_new(
                drama=drama,
                user=request.user,
                title=form.cleaned_data["title_wish"],
                target_seconds=form.cleaned_data["target_seconds"],
                plot_turns=form.cleaned_data["plot_turns"],
                notes=form.cleaned_data["notes"],
            )
        except ValidationError as error:
            add_errors(form, error)
        else:
            chapter = Chapter.objects.get(id=job.payload["chapter_id"])
            messages.success(request, f"Writing chapter {chapter.number}: watch it appear here.")
            return redirect(_editor_url(chapter))
    number = (drama.chapters.aggregate(last=Max("number"))["last"] or 0) + 1
    # Priced as the chapter it would be (unsaved: nothing is created before the post).
    estimate = generation.generation_estimate(chapter=Chapter(drama=drama, number=number))
    return render(
        request,
        "dramas/chapter_generate.html",
        {"drama": drama, "form": form, "number": number, "estimate": estimate},
        status=INVALID if form.errors else 200,
    )


@drama_view()
@require_POST
def chapter_generate(request, drama, chapter_id: int):
    chapter = _chapter(drama, chapter_id)
    form = GenerateForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(f"{form[f].label}: {' '.join(e)}" for f, e in form.errors.items())
        return _panel(request, chapter, error=errors, status=INVALID)
    try:
        generation.chapter_generate(chapter=chapter, user=request.user, **form.cleaned_data)
    except ValidationError as error:
        return _panel(request, chapter, error=" ".join(error.messages), status=INVALID)
    if not request.htmx:
        messages.success(request, "The writer is on it: the new script appears below.")
    return _panel(request, chapter)


@drama_view(read=Role.EDITOR)
@require_GET
def generation_estimate(request, drama, chapter_id: int):
    """The generate button with the estimate for the lengths in the form (htmx on change)."""
    chapter = _chapter(drama, chapter_id)
    form = GenerateForm(request.GET)
    values = form.cleaned_data if form.is_valid() else {}
    estimate = generation.generation_estimate(
        chapter=chapter,
        target_seconds=values.get("target_seconds", 60),
        plot_turns=values.get("plot_turns", 3),
        title_wish=values.get("title_wish", ""),
    )
    context = {"drama": drama, "chapter": chapter, "estimate": estimate}
    return render(request, f"{EDITOR}#generate-button", context)


@drama_view()
@require_POST
def generation_cancel(request, drama, chapter_id: int, job_id: int):
    chapter = _chapter(drama, chapter_id)
    job = get_object_or_404(
        Job, drama_id=drama.id, id=job_id, kind__in=generation.KINDS, payload__chapter_id=chapter.id
    )
    try:
        job_cancel(job=job)
    except ValidationError as error:
        return _panel(request, chapter, error=" ".join(error.messages), status=INVALID)
    if not request.htmx:
        messages.success(request, "Cancelled: the script stays as it was.")
    return _panel(request, chapter)


@drama_view()
@require_POST
def scene_rewrite(request, drama, scene_id: int):
    scene = get_object_or_404(
        Scene.objects.select_related("chapter__drama"), chapter__drama=drama, id=scene_id
    )
    form = RewriteForm(request.POST)
    if not form.is_valid():
        return _panel(request, scene.chapter, error="Say what should change.", status=INVALID)
    try:
        generation.scene_rewrite(
            scene=scene, user=request.user, instruction=form.cleaned_data["instruction"]
        )
    except ValidationError as error:
        return _panel(request, scene.chapter, error=" ".join(error.messages), status=INVALID)
    if not request.htmx:
        messages.success(request, f"Rewriting scene {scene.order}.")
    return _panel(request, scene.chapter)
