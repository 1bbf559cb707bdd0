"""Storyboard keyframes: a few stills per scene, scored before any video is paid for.

A round asks the image service (IMAGE_API, or the offline composed still) for the drama's number
of candidates from the scene's prompt and its cast's references, in one job
(`keyframes.generate`, dramas/keyframe_jobs.py). Each candidate is scored by the face engine
exactly as a frame is (per character, verdict, boxes) and billed as an image. When the round
ends the studio picks the best consistent candidate, unless a producer picked one already; a
producer may pick another, or ask for a new round with an edited prompt. The chosen keyframe is
the scene's renders' first frame; with the drama's gate on, a scene whose chosen keyframe is not
consistent is not rendered unless a producer renders it anyway.

Every function is keyword-only and runs in one transaction; jobs and live events go out
after commit.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Prefetch, Q, Sum
from django.utils import timezone

from dramas.keyframe_gate import chosen_keyframes
from dramas.models import (
    KEYFRAME_ACTIVE,
    Drama,
    Keyframe,
    KeyframeRound,
    KeyframeStatus,
    Scene,
    Verdict,
)
from dramas.prompts import scene_prompt
from dramas.takes import drama_reserved_usd, drama_spent_usd
from studio import events
from studio.jobs.services import job_enqueue
from studio.media import local_path
from studio.providers import registry
from studio.providers.base import Usage
from studio.providers.ledger import cost_usd, price_at

GENERATE = "keyframes.generate"
CHANGED = "keyframes.changed"
ATTEMPTS = 6
PRIORITY = 1  # a producer is looking at the storyboard: ahead of batch renders
STILL = "First frame of the shot, as one still picture (no text, no captions)."


# --- Money ---------------------------------------------------------------------------------------


def image_estimate_usd(*, images: int) -> Decimal | None:
    """What `images` keyframes cost at the image service's price (None: no price known)."""
    provider = registry.image()
    price = price_at(
        provider=provider.name, model=provider.model, kind="image", when=timezone.now().date()
    )
    if price is None:
        return None
    return cost_usd(price=price, usage=Usage(), requests=images)


@dataclass(frozen=True)
class GateSavings:
    """What the storyboard cost a drama, and what its gate kept it from paying for."""

    keyframes_usd: Decimal  # booked for keyframe images
    videos_usd: Decimal  # booked for video renders
    rounds: int
    images: int
    renders_avoided: int  # rounds with no consistent candidate, under the gate
    saved_usd: Decimal  # those renders at their estimates when the rounds ended


def gate_savings(*, drama: Drama) -> GateSavings:
    """The costs page's storyboard figures, in three queries."""
    from studio.models import UsageRecord

    usage = UsageRecord.objects.filter(drama_id=drama.id)
    booked = {
        kind: usage.filter(operation__startswith=f"{kind}.").aggregate(total=Sum("cost_usd"))[
            "total"
        ]
        or Decimal(0)
        for kind in ("image", "video")
    }
    rounds = KeyframeRound.objects.filter(scene__chapter__drama=drama).aggregate(
        rounds=Count("id"),
        images=Sum("candidates"),
        avoided=Count("id", filter=Q(render_avoided_usd__isnull=False)),
        saved=Sum("render_avoided_usd"),
    )
    return GateSavings(
        keyframes_usd=booked["image"],
        videos_usd=booked["video"],
        rounds=rounds["rounds"],
        images=rounds["images"] or 0,
        renders_avoided=rounds["avoided"],
        saved_usd=rounds["saved"] or Decimal(0),
    )


@dataclass(frozen=True)
class KeyframeEstimate:
    scenes: int
    images: int
    cost_usd: Decimal | None
    remaining_usd: Decimal

    @property
    def fits(self) -> bool:
        return self.cost_usd is None or self.cost_usd <= self.remaining_usd

    def refusal(self) -> str:
        return (
            f"Not queued: {self.images} keyframe{'s' if self.images != 1 else ''} would cost "
            f"about ${self.cost_usd:.2f}, but only ${max(self.remaining_usd, Decimal(0)):.2f} "
            "of the budget is left. A producer can raise the budget in the drama's settings."
        )


def keyframes_estimate(
    *, drama: Drama, scenes: int, candidates: int | None = None
) -> KeyframeEstimate:
    images = scenes * (candidates or drama.keyframe_candidates)
    remaining = (
        drama.budget_usd
        - drama_spent_usd(drama_id=drama.id)
        - drama_reserved_usd(drama_id=drama.id)
    )
    return KeyframeEstimate(
        scenes=scenes,
        images=images,
        cost_usd=image_estimate_usd(images=images) if images else Decimal(0),
        remaining_usd=remaining,
    )


# --- Queueing ------------------------------------------------------------------------------------


def keyframe_prompt(*, scene: Scene) -> str:
    """The still's prompt: the scene's own prompt (action, setting, camera, style, cast),
    asked for as its first frame."""
    return f"{STILL}\n{scene_prompt(scene, max_refs=0).text}"


@transaction.atomic
def keyframes_enqueue(
    *,
    drama: Drama,
    scenes: Sequence[Scene],
    user=None,
    prompt: str = "",
    candidates: int | None = None,
) -> list[KeyframeRound]:
    """A round of keyframe candidates and its job per scene, if the budget allows them all."""
    scenes = [scene for scene in scenes if scene.chapter.drama_id == drama.id]
    if not scenes:
        raise ValidationError("No scene to make keyframes for.")
    limit = KeyframeRound._meta.get_field("prompt").max_length
    if len(prompt) > limit:  # a TextField's max_length is the form's to check, not the model's
        raise ValidationError(
            f"The prompt is {len(prompt)} characters long; keep it under {limit}.", code="prompt"
        )
    if any(scene.archived for scene in scenes):
        raise ValidationError(
            "This scene is archived (the chapter's script no longer has it).", code="archived"
        )
    drama = Drama.objects.select_for_update().get(id=drama.id)  # one spender at a time
    busy = set(
        KeyframeRound.objects.filter(scene__in=scenes, status__in=KEYFRAME_ACTIVE).values_list(
            "scene_id", flat=True
        )
    )
    if busy:
        orders = ", ".join(str(scene.order) for scene in scenes if scene.id in busy)
        raise ValidationError(
            f"Keyframes are already being made for scene {orders}: wait for them first.",
            code="busy",
        )
    count = candidates or drama.keyframe_candidates
    estimate = keyframes_estimate(drama=drama, scenes=len(scenes), candidates=count)
    if not estimate.fits:
        raise ValidationError(estimate.refusal(), code="budget")
    provider = registry.image()
    each = image_estimate_usd(images=count)
    rounds = []
    for scene in scenes:
        number = (scene.keyframe_rounds.aggregate(top=Max("number"))["top"] or 0) + 1
        try:
            with transaction.atomic():
                round_ = KeyframeRound.objects.create(
                    scene=scene,
                    number=number,
                    prompt=prompt.strip() or keyframe_prompt(scene=scene),
                    prompt_edited=bool(prompt.strip()),
                    candidates=count,
                    provider=provider.name,
                    model=provider.model,
                    estimate_usd=each,
                    created_by=user,
                )
        except IntegrityError:
            raise ValidationError(
                f"Keyframes are already being made for scene {scene.order}.", code="busy"
            ) from None
        Keyframe.objects.bulk_create(
            Keyframe(round=round_, scene=scene, index=index, seed=random.randrange(1, 2**31))
            for index in range(count)
        )
        job = job_enqueue(
            kind=GENERATE,
            payload={"round_id": round_.id, "scene_id": scene.id},
            drama_id=drama.id,
            label=f"Keyframes: scene {scene.order} of chapter {scene.chapter.number}",
            priority=PRIORITY,
            max_attempts=ATTEMPTS,
        )
        round_.job_id = job.id
        round_.save(update_fields=["job_id"])
        rounds.append(round_)
    events.publish(drama_id=drama.id, type=CHANGED, ids=[scene.id for scene in scenes])
    return rounds


def storyboard_scenes(*, scenes: Sequence[Scene]) -> list[Scene]:
    """The scenes of a storyboard request that need keyframes: those without a chosen one
    and without a round on its way (a chapter's "Make the storyboard")."""
    ids = [scene.id for scene in scenes]
    chosen = set(
        Keyframe.objects.filter(scene__in=ids, chosen=True).values_list("scene_id", flat=True)
    )
    busy = set(
        KeyframeRound.objects.filter(scene__in=ids, status__in=KEYFRAME_ACTIVE).values_list(
            "scene_id", flat=True
        )
    )
    return [scene for scene in scenes if scene.id not in chosen and scene.id not in busy]


@transaction.atomic
def keyframe_choose(*, keyframe: Keyframe, user) -> Keyframe:
    """A producer's pick: this candidate is the scene's keyframe for its next renders."""
    keyframe = (
        Keyframe.objects.select_for_update().select_related("scene__chapter").get(id=keyframe.id)
    )
    if keyframe.status != KeyframeStatus.DONE:
        raise ValidationError("Only a finished keyframe can be chosen.")
    Keyframe.objects.filter(scene_id=keyframe.scene_id, chosen=True).exclude(id=keyframe.id).update(
        chosen=False, chosen_by=None
    )
    keyframe.chosen, keyframe.chosen_by = True, user
    keyframe.save(update_fields=["chosen", "chosen_by", "updated_at"])
    events.publish(drama_id=keyframe.scene.chapter.drama_id, type=CHANGED, ids=[keyframe.scene_id])
    return keyframe


def scene_storyboard(*, scenes: Sequence[Scene], rounds: bool = True) -> dict[int, dict]:
    """What the storyboard shows of each scene, by scene id: its chosen keyframe and (with
    `rounds`) its latest round with the candidates, in three queries (one without)."""
    ids = [scene.id for scene in scenes]
    latest: dict[int, KeyframeRound] = {}
    if rounds:
        found = (
            KeyframeRound.objects.filter(scene_id__in=ids)
            .order_by("scene_id", "-number")
            .prefetch_related(Prefetch("keyframes", queryset=Keyframe.objects.order_by("index")))
        )
        for round_ in found:
            latest.setdefault(round_.scene_id, round_)
    chosen = chosen_keyframes(scene_ids=ids)
    return {
        scene_id: {"chosen": chosen.get(scene_id), "round": latest.get(scene_id)}
        for scene_id in ids
    }


def storyboard_png(*, chapter) -> bytes:
    """The chapter's storyboard sheet: one PNG page of its scenes' chosen keyframes with their
    scores, durations, cameras and dialog (dramas/storyboard_sheet.py draws it)."""
    from dramas.storyboard_sheet import SheetHeader, SheetPanel, storyboard_sheet

    scenes = list(chapter.scenes.prefetch_related("lines__speaker"))
    chosen = chosen_keyframes(scene_ids=[scene.id for scene in scenes])
    verdicts = {Verdict.ACCEPT: "pass", Verdict.REJECT: "fail"}
    panels = []
    for scene in scenes:
        keyframe = chosen.get(scene.id)
        lines = list(scene.lines.all())[:2]
        panels.append(
            SheetPanel(
                number=scene.order,
                duration_s=scene.duration_s,
                camera=scene.camera,
                location=scene.location,
                time_of_day=scene.get_time_of_day_display(),
                dialog=" / ".join(
                    f"{line.display_speaker or 'Narrator'}: {line.line}" for line in lines
                ),
                image_path=local_path(keyframe.image) if keyframe and keyframe.image else None,
                score=keyframe.score if keyframe else None,
                verdict=verdicts.get(keyframe.verdict, "") if keyframe else "",
                note="" if keyframe else "No keyframe yet",
            )
        )
    header = SheetHeader(
        drama_title=chapter.drama.title,
        chapter_number=chapter.number,
        chapter_title=chapter.title,
        aspect=chapter.drama.aspect,
        generated_on=timezone.localdate().isoformat(),
    )
    return storyboard_sheet(header, panels)
