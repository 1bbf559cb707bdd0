"""Storyboard keyframes: a few stills per scene, scored before any video is paid for.

A round asks the image service (IMAGE_API, or the offline composed still) for the drama's
number of candidates from the scene's prompt and its cast's references, in one job
(`keyframes.generate`). Each candidate is scored by the face engine exactly as a frame is
(per character, verdict, boxes) and billed as an image. When the round ends the studio picks
the best consistent candidate, unless a producer picked one already; a producer may pick
another, or ask for a new round with an edited prompt. The chosen keyframe is the scene's
renders' first frame; with the drama's gate on, a scene whose chosen keyframe is not
consistent is not rendered unless a producer renders it anyway.

Every function is keyword-only and runs in one transaction; jobs and live events go out
after commit.
"""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Prefetch, Q, Sum
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from characters.consistency import frame_judgement, score_frame
from characters.services import character_profile
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
from dramas.pipeline_db import cast_members
from dramas.prompts import scene_prompt
from dramas.takes import drama_reserved_usd, drama_spent_usd, render_estimate_usd
from studio import events
from studio.jobs.models import JobStatus
from studio.jobs.registry import PermanentError, Release, Settled, register
from studio.jobs.services import job_enqueue
from studio.media import local_path
from studio.providers import registry
from studio.providers.base import CastMember, ImageRequest, Usage
from studio.providers.errors import CircuitOpen
from studio.providers.ledger import cost_usd, price_at, usage_scope

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


# --- The job -------------------------------------------------------------------------------------


@dataclass
class RoundWork:
    round_id: int
    drama_id: int
    scene_id: int
    threshold: int
    prompt: str
    aspect: str
    time_of_day: str
    camera: str
    cast: tuple[CastMember, ...]
    profiles: list
    pending: list[tuple[int, int, int]]  # (keyframe id, index, seed) still to make


def _load_round(*, round_id: int, max_refs: int) -> RoundWork | None:
    round_ = (
        KeyframeRound.objects.select_related("scene__chapter__drama").filter(id=round_id).first()
    )
    if round_ is None:
        return None
    scene, drama = round_.scene, round_.scene.chapter.drama
    built = scene_prompt(scene, max_refs=max_refs)
    cast = cast_members(
        references=[(entry.character_name, entry.reference_id) for entry in built.references]
    )
    profiles = [
        profile
        for character in scene.characters.order_by("name")
        if (profile := character_profile(character=character)) is not None
    ]
    pending = list(
        round_.keyframes.exclude(status=KeyframeStatus.DONE).values_list("id", "index", "seed")
    )
    if round_.status == KeyframeStatus.QUEUED:
        round_.status = KeyframeStatus.GENERATING
        round_.save(update_fields=["status"])
        events.publish(drama_id=drama.id, type=CHANGED, ids=[scene.id])
    return RoundWork(
        round_id=round_.id,
        drama_id=drama.id,
        scene_id=scene.id,
        threshold=drama.consistency_threshold,
        prompt=round_.prompt,
        aspect=drama.aspect,
        time_of_day=scene.get_time_of_day_display(),
        camera=scene.camera,
        cast=tuple(cast),
        profiles=profiles,
        pending=pending,
    )


def _keyframe_verdict(scores: dict, expected: Sequence[str]) -> tuple[str, float | None]:
    """A keyframe's verdict: a frame's (`frame_judgement`), and a still that leaves out one of
    the scene's cast is not consistent either (it is the shot's first frame)."""
    verdict, score = frame_judgement(scores.get("characters", []))
    found = {c["name"] for c in scores.get("characters", []) if c.get("score") is not None}
    if expected and any(name not in found for name in expected):
        return Verdict.REJECT, score
    return str(verdict), score


def _save_keyframe(
    *,
    keyframe_id: int,
    data: bytes,
    width: int,
    height: int,
    extension: str,
    scores: dict,
    expected: Sequence[str],
    provider: str,
    model: str,
) -> None:
    keyframe = Keyframe.objects.select_related("round__scene__chapter").get(id=keyframe_id)
    verdict, score = _keyframe_verdict(scores, expected) if expected else ("", None)
    price = price_at(provider=provider, model=model, kind="image", when=timezone.now().date())
    with transaction.atomic():
        keyframe.image.save(
            f"keyframe-{keyframe.index + 1}.{extension}", ContentFile(data), save=False
        )
        keyframe.width, keyframe.height = width, height
        keyframe.scores, keyframe.verdict, keyframe.score = scores, verdict, score
        keyframe.cost_usd = (
            None if price is None else cost_usd(price=price, usage=Usage(), requests=1)
        )
        keyframe.status, keyframe.error = KeyframeStatus.DONE, ""
        keyframe.save()
        events.publish(
            drama_id=keyframe.round.scene.chapter.drama_id, type=CHANGED, ids=[keyframe.scene_id]
        )


def _set_keyframe(*, keyframe_id: int, **fields) -> None:
    Keyframe.objects.filter(id=keyframe_id).update(**fields, updated_at=timezone.now())


def image_size(data: bytes) -> tuple[int, int, str]:
    """(width, height, file extension) of an image the service returned; ValueError when the
    bytes are not a picture (nothing is stored)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            kind = (image.format or "").lower()
            return image.width, image.height, {"jpeg": "jpg"}.get(kind, kind or "png")
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
        raise ValueError(
            f"the image service returned {len(data)} bytes that are not a picture"
        ) from None


@transaction.atomic
def round_finish(*, round_id: int) -> dict:
    """The round has ended: record whether it found a consistent keyframe (and, under the gate,
    the render it saved), pick the best candidate unless a producer picked one, and say so."""
    round_ = (
        KeyframeRound.objects.select_for_update()
        .select_related("scene__chapter__drama")
        .get(id=round_id)
    )
    scene, drama = round_.scene, round_.scene.chapter.drama
    done = list(round_.keyframes.filter(status=KeyframeStatus.DONE))
    expected = scene.characters.exists()
    round_.status = KeyframeStatus.DONE if done else KeyframeStatus.FAILED
    round_.finished_at = timezone.now()
    round_.consistent = any(k.consistent for k in done) if (expected and done) else None
    if round_.consistent is False and drama.keyframe_gate:
        round_.render_avoided_usd = render_estimate_usd(seconds=scene.duration_s)
    round_.save(update_fields=["status", "finished_at", "consistent", "render_avoided_usd"])
    picked = Keyframe.objects.filter(scene=scene, chosen=True).first()
    best = max(
        done, key=lambda k: (k.consistent, k.score if k.score is not None else -1), default=None
    )
    # The studio's pick follows the newest round; a producer's pick stays until they change it.
    if best is not None and (picked is None or picked.chosen_by_id is None):
        if picked is not None:
            picked.chosen = False
            picked.save(update_fields=["chosen", "updated_at"])
        best.chosen = True
        best.save(update_fields=["chosen", "updated_at"])
    events.publish(drama_id=drama.id, type=CHANGED, ids=[scene.id])
    return {
        "round_id": round_.id,
        "keyframes": len(done),
        "consistent": round_.consistent,
        "chosen": best.id if best is not None else None,
    }


def round_settled(job, settled: Settled) -> None:
    """The round's job ended (in the transaction that ends it): candidates still on their way
    end with it, saying why, and the round is finished with what it has."""
    round_id = job.payload.get("round_id") if isinstance(job.payload, dict) else None
    round_ = (
        KeyframeRound.objects.filter(id=round_id).first() if isinstance(round_id, int) else None
    )
    if round_ is None or not round_.active:
        return
    status = (
        KeyframeStatus.CANCELLED if settled.status == JobStatus.CANCELLED else KeyframeStatus.FAILED
    )
    reason = settled.error or (
        "Cancelled by a user." if status == KeyframeStatus.CANCELLED else "The keyframe job failed."
    )
    round_.keyframes.filter(status__in=KEYFRAME_ACTIVE).update(
        status=status, error=reason[:2000], updated_at=timezone.now()
    )
    round_.error = reason[:2000]
    round_.save(update_fields=["error"])
    round_finish(round_id=round_.id)
    if status == KeyframeStatus.CANCELLED:
        KeyframeRound.objects.filter(id=round_.id).update(status=KeyframeStatus.CANCELLED)


@register(GENERATE, max_attempts=ATTEMPTS, on_settled=round_settled)
async def keyframes_generate(ctx) -> dict:
    provider = registry.image()
    work = await sync_to_async(_load_round)(
        round_id=ctx.payload["round_id"], max_refs=provider.capabilities.max_reference_images
    )
    if work is None:
        raise PermanentError("The keyframe round no longer exists.")
    expected = [profile.name for profile in work.profiles]
    total = len(work.pending)
    made = 0

    async def one(keyframe_id: int, index: int, seed: int) -> None:
        nonlocal made
        await sync_to_async(_set_keyframe)(
            keyframe_id=keyframe_id, status=KeyframeStatus.GENERATING
        )
        request = ImageRequest(
            prompt=work.prompt,
            aspect=work.aspect,
            time_of_day=work.time_of_day,
            camera=work.camera,
            cast=work.cast,
            seed=seed,
            variant=index,
        )
        image = await provider.generate(request, idempotency_key=f"keyframe-{keyframe_id}")
        try:
            width, height, extension = image_size(image.data)
        except ValueError as error:
            raise PermanentError(str(error)) from None
        scores: dict = {}
        if work.profiles:
            result = await ctx.run_cpu(score_frame, image.data, work.profiles, work.threshold)
            scores = result.to_dict()
        await sync_to_async(_save_keyframe)(
            keyframe_id=keyframe_id,
            data=image.data,
            width=width,
            height=height,
            extension=extension,
            scores=scores,
            expected=expected,
            provider=provider.name,
            model=provider.model,
        )
        made += 1
        await ctx.progress(made / max(total, 1), note=f"Keyframe {made} of {total}")

    with usage_scope(drama_id=work.drama_id):
        outcomes = await asyncio.gather(
            *(one(*pending) for pending in work.pending), return_exceptions=True
        )
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    for outcome in failures:
        if isinstance(outcome, asyncio.CancelledError):
            raise outcome
    retry = [
        error
        for error in failures
        if getattr(error, "retryable", True) and not isinstance(error, PermanentError)
    ]
    if retry and ctx.attempt < ctx.max_attempts:
        first = retry[0]
        if isinstance(first, CircuitOpen):
            raise Release(str(first), after_s=max(first.retry_after_s or 1.0, 1.0)) from first
        # The candidates made so far are kept; the next attempt makes only the others.
        raise first
    for (keyframe_id, _index, _seed), outcome in zip(work.pending, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            text = str(outcome) or type(outcome).__name__
            await sync_to_async(_set_keyframe)(
                keyframe_id=keyframe_id, status=KeyframeStatus.FAILED, error=text[:2000]
            )
    result = await sync_to_async(round_finish)(round_id=work.round_id)
    if failures and not result["keyframes"]:
        raise PermanentError(f"No keyframe could be made: {failures[0]}")
    return result
