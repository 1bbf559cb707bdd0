"""The keyframe round's job, `keyframes.generate` (registered through dramas.jobs): the image
service makes each candidate still missing, the face engine scores it in the process pool, and
the round ends with the studio's pick (dramas/keyframes.py queues the rounds). A retry makes
only the candidates still missing, under the same idempotency keys; a job that ends any other
way settles every candidate it was working on."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from characters.consistency import frame_judgement, score_frame
from characters.services import character_profile
from dramas.keyframes import ATTEMPTS, CHANGED, GENERATE
from dramas.models import KEYFRAME_ACTIVE, Keyframe, KeyframeRound, KeyframeStatus, Verdict
from dramas.pipeline_db import cast_members
from dramas.prompts import scene_prompt
from dramas.takes import render_estimate_usd
from studio import events
from studio.jobs.models import JobStatus
from studio.jobs.registry import PermanentError, Release, Settled, register
from studio.providers import registry
from studio.providers.base import CastMember, ImageRequest, Usage
from studio.providers.errors import CircuitOpen
from studio.providers.ledger import cost_usd, price_at, usage_scope


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
