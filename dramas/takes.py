"""Takes: queue renders within the budget, review them, regenerate them.

Every function is keyword-only and runs in one transaction; the job and the live event go out
after commit, so a refused or rolled-back request queues nothing.
"""

import random
import uuid
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import (
    Case,
    Count,
    Exists,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    When,
)
from django.utils import timezone

from dramas.keyframe_gate import chosen_keyframes, gate_refusals, keyframes_reserved_usd
from dramas.models import (
    TAKE_ACTIVE,
    TAKE_FINISHED,
    Drama,
    Frame,
    Review,
    ReviewAction,
    ReviewState,
    Scene,
    Take,
    TakeStatus,
    Verdict,
)
from studio import events
from studio.jobs.models import ACTIVE, Job, JobStatus
from studio.jobs.registry import Settled
from studio.jobs.services import job_cancel, job_enqueue, job_retry
from studio.models import UsageRecord
from studio.providers import registry
from studio.providers.ledger import cost_usd, price_at

RENDER = "take.render"
# Tells the vendor to stop a take's job when the take ended with no handler running to do it.
VENDOR_CANCEL = "take.vendor_cancel"
CHANGED = "takes.changed"
# Waiting for an open breaker spends an attempt each time; leave room for a long outage.
JOB_ATTEMPTS = 12
PRIORITIES = [(-1, "Low"), (0, "Normal"), (1, "High"), (2, "Urgent")]


@dataclass(frozen=True)
class Estimate:
    """What a batch of renders would cost, and whether the budget allows it."""

    scenes: int
    seconds: float
    cost_usd: Decimal | None  # None: the provider has no price (unknown, not free)
    spent_usd: Decimal
    reserved_usd: Decimal
    budget_usd: Decimal
    skipped_locked: int = 0

    @property
    def remaining_usd(self) -> Decimal:
        return self.budget_usd - self.spent_usd - self.reserved_usd

    @property
    def fits(self) -> bool:
        return self.cost_usd is None or self.cost_usd <= self.remaining_usd

    def refusal(self) -> str:
        return (
            f"Not queued: {self.scenes} render{'s' if self.scenes != 1 else ''} would cost about "
            f"${self.cost_usd:.2f}, but only ${max(self.remaining_usd, Decimal(0)):.2f} of the "
            f"${self.budget_usd:.2f} budget is left (${self.spent_usd:.2f} spent, "
            f"${self.reserved_usd:.2f} reserved by queued takes). A producer can raise the "
            "budget in the drama's settings."
        )


# --- Money -----------------------------------------------------------------------------------


def drama_spent_usd(*, drama_id: int) -> Decimal:
    """What the usage ledger has booked to the drama (unknown costs count as nothing)."""
    return dramas_spent_usd(drama_ids=[drama_id])[drama_id][0]


def dramas_spent_usd(*, drama_ids: Sequence[int]) -> dict[int, tuple[Decimal, int]]:
    """Per drama: the booked spend and the number of calls booked without a price, in one
    query (the dashboard's cards); the budget gate reads the same sum."""
    rows = (
        UsageRecord.objects.filter(drama_id__in=drama_ids)
        .values("drama_id")
        .annotate(total=Sum("cost_usd"), unpriced=Count("id", filter=Q(cost_usd__isnull=True)))
    )
    found = {row["drama_id"]: (row["total"] or Decimal(0), row["unpriced"]) for row in rows}
    return {drama_id: found.get(drama_id, (Decimal(0), 0)) for drama_id in drama_ids}


def drama_reserved_usd(*, drama_id: int, exclude_take_id: int | None = None) -> Decimal:
    """Estimates of takes that are queued or rendering, and of keyframe rounds on their way:
    their usage is not booked yet."""
    takes = Take.objects.filter(scene__chapter__drama_id=drama_id, status__in=TAKE_ACTIVE)
    if exclude_take_id is not None:
        takes = takes.exclude(id=exclude_take_id)
    reserved = takes.aggregate(total=Sum("estimate_usd"))["total"] or Decimal(0)
    return reserved + keyframes_reserved_usd(drama_id=drama_id)


def render_estimate_usd(*, seconds: float) -> Decimal | None:
    """The configured video provider's price for one clip of about `seconds`."""
    return _clip_estimates_usd([seconds])[0]


def _clip_estimates_usd(seconds: Sequence[float]) -> list[Decimal | None]:
    """`render_estimate_usd` for each clip length, with one look-up of the price, in the
    vendor's unit (seconds, tokens or requests: `estimated_usage`)."""
    provider = registry.video()
    price = price_at(
        provider=provider.name, model=provider.model, kind="video", when=timezone.now().date()
    )
    if price is None:
        return [None for _ in seconds]
    estimates = []
    for clip in seconds:
        usage, units = provider.estimated_usage(clip)
        estimates.append(cost_usd(price=price, usage=usage, units=units, requests=1))
    return estimates


def takes_estimate(*, drama: Drama, scenes: Sequence[Scene], skipped_locked: int = 0) -> Estimate:
    clips = Counter(scene.duration_s for scene in scenes)
    [estimate] = takes_estimates(drama=drama, batches=[(clips, skipped_locked)])
    return estimate


def takes_estimates(
    *, drama: Drama, batches: Sequence[tuple[Mapping[float, int], int]]
) -> list[Estimate]:
    """`takes_estimate` for several batches (the drama board's chapter and drama buttons), each
    given as its clips' lengths (seconds -> how many clips) and its `skipped_locked` count:
    the price, the spend and the reservations are read once, each length is priced once."""
    spent_usd = drama_spent_usd(drama_id=drama.id)
    reserved_usd = drama_reserved_usd(drama_id=drama.id)
    lengths = sorted({seconds for clips, _ in batches for seconds in clips})
    clip_usd = dict(zip(lengths, _clip_estimates_usd(lengths), strict=True))
    estimates = []
    for clips, skipped_locked in batches:
        costs = [(clip_usd[seconds], count) for seconds, count in clips.items() if count]
        estimates.append(
            Estimate(
                scenes=sum(clips.values()),
                seconds=sum(seconds * count for seconds, count in clips.items()),
                cost_usd=None
                if any(cost is None for cost, _ in costs)
                else sum((cost * count for cost, count in costs), Decimal(0)),
                spent_usd=spent_usd,
                reserved_usd=reserved_usd,
                budget_usd=drama.budget_usd,
                skipped_locked=skipped_locked,
            )
        )
    return estimates


def take_cost_usd(*, take_id: int) -> Decimal | None:
    """The take's booked cost; None when nothing is booked or any call had no price."""
    booked = UsageRecord.objects.filter(take_id=take_id).aggregate(
        calls=Count("id"),
        unpriced=Count("id", filter=Q(cost_usd__isnull=True)),
        total=Sum("cost_usd"),
    )
    if not booked["calls"] or booked["unpriced"]:
        return None
    return booked["total"]


@dataclass(frozen=True)
class StageCost:
    stage: str  # the label a producer reads
    provider: str
    calls: int
    units: Decimal  # seconds of video or sync, or characters of text spoken
    unit: str
    cost_usd: Decimal | None  # None: some call had no price


# A take's calls by their operation's prefix, in the order the pipeline makes them.
STAGES = (("speech", "Speech", "characters"), ("video", "Video", "s"), ("lipsync", "Lip sync", "s"))


def take_stage_costs(*, take_id: int) -> list[StageCost]:
    """What each stage of the take cost, per provider (a stage with no call is left out; a
    line spoken for an earlier take was billed there and is reused here for nothing)."""
    rows = (
        UsageRecord.objects.filter(take_id=take_id)
        .values("operation", "provider", "units", "characters", "cost_usd")
        .order_by("id")
    )
    grouped: dict[tuple[str, str], dict] = {}
    for row in rows:
        prefix = row["operation"].split(".", 1)[0]
        entry = grouped.setdefault(
            (prefix, row["provider"]), {"calls": 0, "units": Decimal(0), "cost": Decimal(0)}
        )
        entry["calls"] += 1
        amount = row["characters"] if prefix == "speech" else (row["units"] or 0)
        entry["units"] += Decimal(amount)
        if entry["cost"] is not None:
            entry["cost"] = None if row["cost_usd"] is None else entry["cost"] + row["cost_usd"]
    costs = []
    for prefix, label, unit in STAGES:
        for (kind, provider), entry in grouped.items():
            if kind == prefix:
                costs.append(
                    StageCost(label, provider, entry["calls"], entry["units"], unit, entry["cost"])
                )
    return costs


# --- Queueing --------------------------------------------------------------------------------


def with_batch_flags(scenes: QuerySet[Scene]) -> QuerySet[Scene]:
    """The scenes, each with `batch_locked` (it has an approved take) and `batch_busy` (a take
    of it is queued or rendering): what `batch_scenes` skips, read in the same query."""
    takes = Take.objects.filter(scene=OuterRef("pk"))
    return scenes.annotate(
        batch_locked=Exists(takes.filter(locked=True)),
        batch_busy=Exists(takes.filter(status__in=TAKE_ACTIVE)),
    )


def batch_clips(
    *, scenes: QuerySet[Scene], among: Collection[int] = ()
) -> tuple[tuple[Counter, int], tuple[Counter, int]]:
    """What a batch render of `scenes` would queue, and one of those `among` of them (the
    board's drama and chapter buttons), as `takes_estimates` takes them: the clips' lengths
    (seconds -> how many) and how many scenes are skipped as approved. One grouped query,
    a row per length and flags, whatever the number of scenes."""
    rows = (
        with_batch_flags(scenes)
        .annotate(among=Case(When(id__in=list(among), then=True), default=False))
        .order_by()
        .values("duration_s", "batch_locked", "batch_busy", "among")
        .annotate(count=Count("id"))
    )
    clips = {"all": Counter(), "among": Counter()}
    locked = {"all": 0, "among": 0}
    for row in rows:
        for scope in ("all", "among") if row["among"] else ("all",):
            if row["batch_locked"]:
                locked[scope] += row["count"]
            elif not row["batch_busy"]:
                clips[scope][row["duration_s"]] += row["count"]
    return (clips["all"], locked["all"]), (clips["among"], locked["among"])


def batch_scenes(*, scenes: Sequence[Scene]) -> tuple[list[Scene], int]:
    """The scenes a batch render should touch: not those with an approved (locked) take, nor
    those already rendering. Returns (scenes, how many were skipped as approved)."""
    ids = [scene.id for scene in scenes]
    rows = with_batch_flags(Scene.objects.filter(id__in=ids))
    flags = {
        id_: (locked, busy)
        for id_, locked, busy in rows.values_list("id", "batch_locked", "batch_busy")
    }
    chosen = [scene for scene in scenes if not any(flags.get(scene.id, (False, False)))]
    return chosen, sum(1 for scene in scenes if flags.get(scene.id, (False, False))[0])


@transaction.atomic
def take_enqueue(
    *,
    drama: Drama,
    scenes: Sequence[Scene],
    priority: int = 0,
    user=None,
    prompt: str = "",
    seed: int | None = None,
    override_gate: bool = False,
) -> list[Take]:
    """A new take (the next attempt) and a render job per scene, if the budget allows all and
    the keyframe gate lets each scene through (or a producer overrides it); each take starts
    from its scene's chosen keyframe, when it has one."""

    scenes = [scene for scene in scenes if scene.chapter.drama_id == drama.id]
    if not scenes:
        raise ValidationError("Nothing to render: every scene is approved or already rendering.")
    if any(scene.archived for scene in scenes):
        raise ValidationError(
            "This scene is archived (the chapter's script no longer has it): restore a version "
            "that has it to render it again.",
            code="archived",
        )
    # Lock the drama row so two concurrent requests cannot both spend the last dollars, nor
    # both start a render of the same scene.
    drama = Drama.objects.select_for_update().get(id=drama.id)
    busy = _rendering(scenes)
    if busy:
        raise ValidationError(
            " ".join(
                f"Scene {scene.order} is already rendering (take {busy[scene.id]}): wait for it "
                "or cancel it first."
                for scene in scenes
                if scene.id in busy
            ),
            code="busy",
        )
    refusals = {} if override_gate else gate_refusals(drama=drama, scenes=scenes)
    if refusals:
        raise ValidationError(" ".join(refusals.values()), code="gated")
    estimate = takes_estimate(drama=drama, scenes=scenes)
    if not estimate.fits:
        raise ValidationError(estimate.refusal(), code="budget")
    keyframes = chosen_keyframes(scene_ids=[scene.id for scene in scenes])
    takes = []
    for scene in scenes:
        keyframe = keyframes.get(scene.id)
        number = (scene.takes.aggregate(top=Max("number"))["top"] or 0) + 1
        try:
            with transaction.atomic():  # the database's own guard: one active take a scene
                take = Take.objects.create(
                    scene=scene,
                    number=number,
                    priority=priority,
                    seed=seed if seed is not None else random.randrange(1, 2**31),
                    prompt=prompt.strip(),
                    prompt_edited=bool(prompt.strip()),
                    idempotency_key=f"take-{uuid.uuid4().hex}",
                    estimate_usd=render_estimate_usd(seconds=scene.duration_s),
                    keyframe=keyframe,
                    gate_override=override_gate
                    and keyframe is not None
                    and not keyframe.consistent,
                    note="Waiting for a worker",
                    created_by=user,
                )
        except IntegrityError:
            raise ValidationError(
                f"Scene {scene.order} is already rendering: wait for it or cancel it first.",
                code="busy",
            ) from None
        job = job_enqueue(
            kind=RENDER,
            payload={"take_id": take.id, "scene_id": scene.id},
            drama_id=drama.id,
            label=f"Render scene {scene.order}, take {number}",
            priority=priority,
            max_attempts=JOB_ATTEMPTS,
        )
        take.job_id = job.id
        take.save(update_fields=["job_id"])
        takes.append(take)
    events.publish(drama_id=drama.id, type=CHANGED, ids=[take.id for take in takes])
    return takes


def _rendering(scenes: Sequence[Scene]) -> dict[int, int]:
    """Scene id -> number of its active take, for those of `scenes` that have one."""
    rows = Take.objects.filter(scene__in=[scene.id for scene in scenes], status__in=TAKE_ACTIVE)
    return dict(rows.values_list("scene_id", "number"))


@dataclass(frozen=True)
class Batch:
    """What a batch render queued, and what it left alone."""

    takes: list[Take]
    skipped_approved: int
    skipped_busy: int
    skipped_gated: int = 0  # scenes whose chosen keyframe is not consistent (the gate)

    def summary(self) -> str:
        cost = sum((t.estimate_usd for t in self.takes if t.estimate_usd is not None), start=0)
        price = (
            "cost unknown (no price)"
            if any(t.estimate_usd is None for t in self.takes)
            else f"about ${cost:.2f}"
        )
        parts = [f"Queued {_count(len(self.takes), 'render')}, {price}."]
        if self.skipped_approved:
            parts.append(f"{_count(self.skipped_approved, 'approved scene')} skipped.")
        if self.skipped_busy:
            parts.append(f"{_count(self.skipped_busy, 'scene')} already rendering, left alone.")
        if self.skipped_gated:
            parts.append(
                f"{_count(self.skipped_gated, 'scene')} held by the keyframe gate (its keyframe "
                "is not consistent): pick or regenerate keyframes, or render it anyway."
            )
        return " ".join(parts)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' if number != 1 else ''}"


@transaction.atomic
def takes_render_batch(*, drama: Drama, scenes: Sequence[Scene], priority: int = 0, user=None):
    """ "Render chapter" / "Render drama": a take for every scene that is neither approved nor
    rendering, chosen under the drama's lock, so a double click or two producers at once queue
    each scene once. Returns a `Batch`; refuses (ValidationError) when nothing is left."""
    drama = Drama.objects.select_for_update().get(id=drama.id)
    scenes = [scene for scene in scenes if scene.chapter.drama_id == drama.id]
    busy = _rendering(scenes)
    chosen, approved = batch_scenes(scenes=scenes)
    gated = gate_refusals(drama=drama, scenes=chosen)
    idle_approved = sum(1 for scene in scenes if scene.id not in busy) - len(chosen)
    chosen = [scene for scene in chosen if scene.id not in gated]
    if not chosen:
        raise ValidationError(
            f"Nothing to render: {_count(approved, 'scene')} approved, "
            f"{_count(len(busy), 'scene')} already rendering"
            + (f", {_count(len(gated), 'scene')} held by the keyframe gate." if gated else "."),
            code="nothing",
        )
    takes = take_enqueue(drama=drama, scenes=chosen, priority=priority, user=user)
    return Batch(
        takes=takes,
        skipped_approved=idle_approved,
        skipped_busy=len(busy),
        skipped_gated=len(gated),
    )


def take_cancel(*, take: Take) -> Take:
    """Cancel the take's render: a queued one at once, a running one within a second (the
    take settles with its job, `take_settled`)."""
    job = Job.objects.filter(id=take.job_id).first() if take.job_id else None
    if job is None or job.status not in ACTIVE:
        raise ValidationError("This take is not rendering.")
    job_cancel(job=job)
    take.refresh_from_db()
    return take


@transaction.atomic
def take_render_retry(*, job: Job) -> Job:
    """Retry a failed or cancelled render (the queue page): its take goes back on the queue
    with it and resumes from its checkpoint (a job the vendor has is polled, not paid for
    again), unless the scene is archived, renders another take, or the budget is spent."""
    take = Take.objects.select_for_update().filter(job_id=job.id).first()
    if take is None:
        raise ValidationError("The take of this render no longer exists: render the scene again.")
    if take.status == TakeStatus.DONE:
        raise ValidationError("This take is finished: regenerate it for another try.")
    scene = Scene.all_objects.select_related("chapter__drama").get(id=take.scene_id)
    if scene.archived:
        raise ValidationError(
            "Its scene is archived (the chapter's script no longer has it): restore a version "
            "that has it first."
        )
    drama = Drama.objects.select_for_update().get(id=scene.chapter.drama_id)
    busy = _rendering([scene])
    if busy:
        raise ValidationError(
            f"Scene {scene.order} is already rendering (take {busy[scene.id]}): wait for it or "
            "cancel it first."
        )
    estimate = takes_estimate(drama=drama, scenes=[scene])
    if not estimate.fits:
        raise ValidationError(estimate.refusal(), code="budget")
    job = job_retry(job=job)
    take_set(
        take_id=take.id,
        status=TakeStatus.QUEUED,
        error="",
        note="Waiting for a worker (retried)",
        finished_at=None,
    )
    return job


def take_settled(job: Job, settled: Settled) -> None:
    """The render job of a take ended (the engine's settle hook, in the transaction that ends
    it): a take still on its way ends with it, saying why, whoever ended the job (its worker,
    the reaper, a user cancelling it from the queue page or the take)."""
    take_id = job.payload.get("take_id") if isinstance(job.payload, dict) else None
    take = Take.objects.filter(id=take_id).first() if isinstance(take_id, int) else None
    if take is None or not take.active:
        return
    if settled.status == JobStatus.CANCELLED:
        note = "Cancelled by a user."
        if take.scene.archived:
            note = "Cancelled: its scene is no longer in the chapter's script (archived)."
        take_set(take_id=take.id, status=TakeStatus.CANCELLED, note=note)
    elif settled.status == JobStatus.FAILED:
        reason = settled.error or "The render job failed."
        take_set(
            take_id=take.id, status=TakeStatus.FAILED, error=take.error or reason, note="Failed"
        )
    if settled.by != "worker" and take.remote_handle and not take.video:
        # Cancelled while queued again after its submit, or given up by the reaper: no handler
        # runs to tell the vendor, which would go on rendering, and billing, for nobody.
        job_enqueue(
            kind=VENDOR_CANCEL,
            payload={"take_id": take.id, "handle": take.remote_handle},
            drama_id=take.scene.chapter.drama_id,
            label=f"Stop take {take.number} of scene {take.scene.order} at the video service",
            priority=2,
        )


def take_set(*, take_id: int, drama_id: int | None = None, **fields) -> None:
    """Update a take from the pipeline and tell the browsers (after commit). A caller that
    knows the take's drama passes it: a take never changes drama, and the pipeline sets a
    take a dozen times per render."""
    if fields.get("status") in TAKE_FINISHED:
        fields.setdefault("finished_at", timezone.now())
    with transaction.atomic():
        Take.objects.filter(id=take_id).update(**fields, updated_at=timezone.now())
        if drama_id is None:
            drama_id = (
                Take.objects.filter(id=take_id).values_list("scene__chapter__drama_id", flat=True)
            ).first()
        events.publish(drama_id=drama_id, type=CHANGED, ids=[take_id])


# --- Review ----------------------------------------------------------------------------------


def _record(*, take: Take, user, action: str, comment: str, frame: Frame | None = None):
    limit = Review._meta.get_field("comment").max_length
    if len(comment) > limit:  # TextField's max_length is not checked by the model; callers are
        # atomic, so nothing of the review (the frame's copy of the comment included) is kept
        raise ValidationError(
            f"A comment can be at most {limit} characters; this one has {len(comment)}."
        )
    Review.objects.create(take=take, frame=frame, user=user, action=action, comment=comment)
    events.publish(drama_id=take.scene.chapter.drama_id, type=CHANGED, ids=[take.id])


@transaction.atomic
def take_approve(*, take: Take, user, comment: str = "") -> Take:
    """Approved takes are locked: batch renders skip their scene and nothing replaces them."""
    if take.status != TakeStatus.DONE:
        raise ValidationError("Only a finished take can be approved.")
    take.review_state, take.locked = ReviewState.APPROVED, True
    take.save(update_fields=["review_state", "locked", "updated_at"])
    _record(take=take, user=user, action=ReviewAction.APPROVE, comment=comment)
    return take


def awaiting_approval(take: Take | None) -> bool:
    """A scene's newest take is finished, judged Consistent, and not reviewed yet: the ones
    "Approve consistent takes" approves. A scene still rendering a newer take is left alone
    (someone asked for another try), and so is one with an approved take already."""
    return (
        take is not None
        and take.status == TakeStatus.DONE
        and take.verdict == Verdict.ACCEPT
        and not take.locked
        and take.review_state == ""
    )


@transaction.atomic
def takes_approve_consistent(*, chapter, user) -> list[Take]:
    """Approve, scene by scene, every take `awaiting_approval` in the chapter (the reviewer's
    bulk action for takes the consistency check already passed). Returns the approved takes."""
    newest = Take.objects.filter(scene=OuterRef("scene")).order_by("-number").values("id")[:1]
    candidates = (
        Take.objects.filter(
            scene__chapter=chapter, scene__archived_at__isnull=True, id=Subquery(newest)
        )
        .exclude(scene__takes__locked=True)
        .select_related("scene__chapter")
        .order_by("scene__order")
    )
    approved = []
    for take in candidates:
        if awaiting_approval(take):
            note = "Approved with the chapter's consistent takes."
            approved.append(take_approve(take=take, user=user, comment=note))
    return approved


@transaction.atomic
def take_reject(*, take: Take, user, comment: str = "") -> Take:
    take.review_state, take.locked = ReviewState.REJECTED, False
    take.save(update_fields=["review_state", "locked", "updated_at"])
    _record(take=take, user=user, action=ReviewAction.REJECT, comment=comment)
    return take


@transaction.atomic
def take_comment(*, take: Take, user, comment: str) -> Take:
    if not comment.strip():
        raise ValidationError("Write a comment first.")
    _record(take=take, user=user, action=ReviewAction.COMMENT, comment=comment.strip())
    return take


@transaction.atomic
def frame_review(*, frame: Frame, user, action: str, comment: str = "") -> Frame:
    """Approve, reject or comment on one sampled frame."""
    states = {ReviewAction.APPROVE: ReviewState.APPROVED, ReviewAction.REJECT: ReviewState.REJECTED}
    if action not in (*states, ReviewAction.COMMENT):
        raise ValidationError("Approve, reject or comment on a frame.")
    if action == ReviewAction.COMMENT and not comment.strip():
        raise ValidationError("Write a comment first.")
    if action in states:
        frame.review_state = states[action]
    if comment.strip():
        frame.comment = comment.strip()
    frame.save(update_fields=["review_state", "comment"])
    _record(take=frame.take, user=user, action=action, comment=comment.strip(), frame=frame)
    return frame


@transaction.atomic
def take_regenerate(
    *, take: Take, user, prompt: str = "", comment: str = "", override_gate: bool = False
) -> Take:
    """A new take of the same scene with a new seed; `prompt` replaces the built prompt when
    the producer edited it. The old take stays as it is (an approved one is never touched)."""
    edited = prompt.strip() if prompt.strip() and prompt.strip() != take.prompt.strip() else ""
    drama = take.scene.chapter.drama
    [new] = take_enqueue(
        drama=drama,
        scenes=[take.scene],
        priority=take.priority + 1,
        user=user,
        prompt=edited,
        override_gate=override_gate,
    )
    note = comment.strip() or (f"Prompt edited for take {new.number}." if edited else "")
    _record(take=take, user=user, action=ReviewAction.REGENERATE, comment=note)
    return new
