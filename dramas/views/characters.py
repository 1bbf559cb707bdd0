"""Character pages: details, reference gallery, multi-file upload, delete.

They live with the drama views because they check drama membership; the characters app
itself stays free of drama imports (DESIGN.md §2).
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from characters import services as character_services
from characters.forms import CharacterForm, ReferenceUploadForm
from characters.models import Character, ReferenceImage
from dramas import speech
from dramas.models import Role
from dramas.views.helpers import INVALID, add_errors, can, done, drama_view
from studio.providers.errors import ProviderError

DETAIL = "dramas/character_detail.html"


def _character(drama, character_id: int) -> Character:
    return get_object_or_404(Character, drama=drama, id=character_id)


def _character_url(character: Character) -> str:
    return reverse("character_detail", args=[character.drama_id, character.id])


def _detail_context(request, character: Character, **extra) -> dict:
    context = {
        "drama": character.drama,
        "character": character,
        "references": character.references.all(),
        "can_edit": can(request, Role.EDITOR),
        "form": CharacterForm(instance=character),
        "upload_form": ReferenceUploadForm(),
        "voice_plan": speech.voice_plan(character),
    }
    context.update(extra)
    return context


@drama_view(read=Role.EDITOR)
@require_http_methods(["GET", "POST"])
def character_create(request, drama):
    form = CharacterForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            character = character_services.character_create(drama=drama, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"{character.name} added. Upload reference images next.")
            return done(request, _character_url(character))
    return render(
        request,
        "dramas/character_form.html",
        {"form": form, "drama": drama},
        status=INVALID if form.errors else 200,
    )


@drama_view()
@require_http_methods(["GET"])
def character_detail(request, drama, character_id: int):
    return render(request, DETAIL, _detail_context(request, _character(drama, character_id)))


@drama_view()
@require_http_methods(["GET"])
def character_voice_preview(request, drama, character_id: int):
    """A line in the character's voice (WAV), made once per voice profile and then cached."""
    character = _character(drama, character_id)
    try:
        audio = speech.voice_preview(character=character)
    except ProviderError as error:
        return HttpResponse(
            f"The voice could not be previewed: {error}", status=502, content_type="text/plain"
        )
    response = FileResponse(audio.audio.open("rb"), content_type="audio/wav")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@drama_view(read=Role.EDITOR)
@require_http_methods(["GET", "POST"])
def character_edit(request, drama, character_id: int):
    character = _character(drama, character_id)
    form = CharacterForm(request.POST or None, request.FILES or None, instance=character)
    if request.method == "POST" and form.is_valid():
        try:
            character_services.character_update(character=character, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, "Character saved.")
            return done(
                request,
                _character_url(character),
                partial=f"{DETAIL}#character-info",
                context=_detail_context(request, character),
            )
    if form.errors:
        character.refresh_from_db()
    template = f"{DETAIL}#character-info" if request.htmx else DETAIL
    return render(
        request,
        template,
        _detail_context(request, character, form=form, editing=True),
        status=INVALID if form.errors else 200,
    )


@drama_view()
@require_POST
def character_delete(request, drama, character_id: int):
    character = _character(drama, character_id)
    character_services.character_delete(character=character)
    messages.success(request, f"{character.name} was deleted.")
    return done(request, reverse("drama_board", args=[drama.id]))


@drama_view()
@require_POST
def reference_upload(request, drama, character_id: int):
    character = _character(drama, character_id)
    form = ReferenceUploadForm(request.POST, request.FILES)
    results = []
    if form.is_valid():
        try:
            results = character_services.reference_images_add(
                character=character, files=form.cleaned_data["images"]
            )
        except ValidationError as error:
            add_errors(form, error)
    if results and not request.htmx:
        for result in results:
            if result.error:
                messages.error(request, f"{result.filename}: {result.error}")
            elif result.duplicate:
                messages.info(request, f"{result.filename}: already a reference.")
            else:
                messages.success(request, f"{result.filename}: added.")
        return done(request, _character_url(character))
    nothing_stored = form.errors or all(result.error for result in results)
    template = f"{DETAIL}#gallery" if request.htmx else DETAIL
    return render(
        request,
        template,
        _detail_context(request, character, upload_form=form, upload_results=results),
        status=INVALID if nothing_stored else 200,
    )


@drama_view()
@require_http_methods(["GET"])
def reference_image(request, drama, character_id: int, reference_id: int):
    """The stored copy, streamed after the membership check (media is never public)."""
    reference = get_object_or_404(
        ReferenceImage, character__drama=drama, character_id=character_id, id=reference_id
    )
    try:
        handle = reference.image.open("rb")
    except FileNotFoundError:
        raise Http404("The image file is missing from storage.") from None
    response = FileResponse(handle, content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@drama_view()
@require_POST
def reference_delete(request, drama, character_id: int, reference_id: int):
    reference = get_object_or_404(
        ReferenceImage, character__drama=drama, character_id=character_id, id=reference_id
    )
    character = reference.character
    character_services.reference_image_delete(reference=reference)
    return done(
        request,
        _character_url(character),
        partial=f"{DETAIL}#gallery",
        context=_detail_context(request, character),
    )
