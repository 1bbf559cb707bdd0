from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Prefetch, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from characters.models import ReferenceImage
from dramas import live, services
from dramas.costs import dramas_spend
from dramas.delivery.export import with_export_stage
from dramas.forms import DramaForm, MemberForm
from dramas.models import Drama, Membership, Role
from dramas.page_parts import board_tile_key
from dramas.stages import chapter_stage, chapters_with_stage
from dramas.views.helpers import INVALID, add_errors, can, done, drama_view


@require_http_methods(["GET"])
def dashboard(request):
    dramas = (
        Drama.objects.filter(memberships__user=request.user)
        .annotate(
            chapter_count=Count("chapters", distinct=True),
            scene_count=Count(
                "chapters__scenes",
                filter=Q(chapters__scenes__archived_at__isnull=True),
                distinct=True,
            ),
            character_count=Count("characters", distinct=True),
        )
        .order_by("-updated_at", "-id")
    )
    roles = dict(Membership.objects.filter(user=request.user).values_list("drama_id", "role"))
    cards = [(drama, Role(roles[drama.id])) for drama in dramas]
    # Producers see each drama's spend bar: one query for all the cards.
    produced = [drama for drama, role in cards if role == Role.PRODUCER]
    spends = dramas_spend(dramas=produced)
    for drama in produced:
        drama.spend = spends[drama.id]
    return render(request, "dramas/dashboard.html", {"cards": cards})


@require_http_methods(["GET", "POST"])
def drama_create(request):
    form = DramaForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        drama = services.drama_create(creator=request.user, **form.cleaned_data)
        messages.success(request, f"“{drama.title}” is ready. Add its characters next.")
        return done(request, reverse("drama_board", args=[drama.id]))
    status = INVALID if form.errors else 200
    return render(request, "dramas/drama_form.html", {"form": form}, status=status)


@drama_view(read=Role.PRODUCER, write=Role.PRODUCER)
@require_http_methods(["GET", "POST"])
def drama_edit(request, drama):
    form = DramaForm(request.POST or None, instance=drama)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Drama settings saved.")
        return done(request, reverse("drama_board", args=[drama.id]))
    status = INVALID if form.errors else 200
    return render(request, "dramas/drama_form.html", {"form": form, "drama": drama}, status=status)


@drama_view(write=Role.PRODUCER)
@require_POST
def drama_delete(request, drama):
    title = drama.title
    services.drama_delete(drama=drama)
    messages.success(request, f"“{title}” was deleted.")
    return done(request, reverse("dashboard"))


@drama_view()
@require_http_methods(["GET"])
def drama_board(request, drama):
    chapters = list(chapters_with_stage(drama.chapters.order_by("number")))
    for chapter in chapters:
        chapter.stage = with_export_stage(chapter=chapter, stage=chapter_stage(chapter))
    selected = None
    chapter_id = request.GET.get("chapter", "")
    if chapter_id.isdigit():
        selected = next((c for c in chapters if c.id == int(chapter_id)), None)
    if selected is None and chapters:
        selected = chapters[0]
    scenes = []
    if selected is not None:
        scenes = list(
            selected.scenes.annotate(line_count=Count("lines")).prefetch_related("characters")
        )
    characters = drama.characters.annotate(
        reference_count=Count("references"),
        good_count=Count("references", filter=Q(references__quality="good")),
    ).prefetch_related(
        Prefetch("references", queryset=ReferenceImage.objects.order_by("created_at", "id"))
    )
    context = {
        "drama": drama,
        "chapters": chapters,
        "selected": selected,
        "scenes": scenes,
        "characters": characters,
        "can_edit": can(request, Role.EDITOR),
        "can_produce": can(request, Role.PRODUCER),
        # The queue summary and each scene's running job (also pushed live, dramas/live.py).
        **live.board_context(drama=drama, scenes=scenes),
    }
    for scene in context["scenes"]:  # each tile is drawn once per state of what it shows
        scene.tile_key = board_tile_key(scene=scene, drama=drama, can_edit=context["can_edit"])
    if request.htmx and request.htmx.target == "board-body":
        return render(request, "dramas/board.html#board-body", context)
    return render(request, "dramas/board.html", context)


@drama_view(write=Role.PRODUCER)
@require_http_methods(["GET", "POST"])
def drama_members(request, drama):
    form = MemberForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                membership = services.membership_set(drama=drama, **form.cleaned_data)
            except ValidationError as error:
                add_errors(form, error)
            else:
                messages.success(
                    request, f"{membership.user.username} is now {membership.role} on this drama."
                )
                return done(request, reverse("drama_members", args=[drama.id]))
        status = INVALID
    memberships = drama.memberships.select_related("user").order_by("user__username")
    return render(
        request,
        "dramas/members.html",
        {
            "drama": drama,
            "form": form,
            "memberships": memberships,
            "can_produce": can(request, Role.PRODUCER),
        },
        status=status,
    )


@drama_view(write=Role.PRODUCER)
@require_POST
def drama_member_remove(request, drama, membership_id: int):
    membership = get_object_or_404(Membership, drama=drama, id=membership_id)
    try:
        services.membership_remove(drama=drama, membership_id=membership.id)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"{membership.user.username} was removed from this drama.")
    if membership.user_id == request.user.id:
        return redirect("dashboard")
    return done(request, reverse("drama_members", args=[drama.id]))
