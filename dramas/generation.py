"""Chapter generation services: "Generate chapter" and "Rewrite scene" as jobs on the engine.

A service checks the request, prices it (generation_estimate: the prompts it would send, from
dramas/prompts.py, counted by a documented rule of thumb) and enqueues a job; the job
(dramas/generation_jobs.py) writes, checks and saves. A producer's script is never replaced
silently: each save keeps the script before it as a version, and a cancel or an error leaves it
as it was. Only one writing job per chapter runs at a time.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction

from dramas import services
from dramas.models import Chapter, Drama, Scene
from dramas.prompts import chapter_brief, chapter_messages, rewrite_messages
from studio.jobs.models import ACTIVE, Job
from studio.jobs.services import job_enqueue
from studio.providers import registry as providers
from studio.providers.base import Usage
from studio.providers.ledger import cost_usd, price_at

GENERATE = "chapter.generate"
REWRITE = "scene.rewrite"
KINDS = (GENERATE, REWRITE)
TARGET_S = (15, 300)  # seconds of screen time a chapter may ask for
PLOT_TURNS = (1, 5)

# Estimates. No tokenizer is bundled: about 4 characters a token for ASCII text (the rule of
# thumb of GPT and DeepSeek tokenizers for English and JSON) and one token a character for
# anything else (CJK scripts run about 1-1.5 a character). Output: the JSON frame plus screen
# time (a second of drama takes about 9 tokens of action and dialog in practice).
CHARS_PER_TOKEN = 4
OUTPUT_BASE_TOKENS = 250
OUTPUT_TOKENS_PER_S = 9
REWRITE_OUTPUT_TOKENS = 400


def count_tokens(text: str) -> int:
    ascii_chars = sum(1 for char in text if ord(char) < 128)
    return -(-ascii_chars // CHARS_PER_TOKEN) + (len(text) - ascii_chars)


@dataclass(frozen=True)
class Estimate:
    provider: str
    model: str
    label: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None  # None: the model has no price in the Price table

    @property
    def text(self) -> str:
        if self.cost_usd is None:
            return "cost unknown"
        if self.cost_usd == 0:
            return "free"
        return f"≈ ${self.cost_usd:.4f}" if self.cost_usd < 1 else f"≈ ${self.cost_usd:.2f}"

    def as_dict(self) -> dict:
        cost = None if self.cost_usd is None else str(self.cost_usd)
        return {**self.__dict__, "cost_usd": cost, "text": self.text}


def price_of(*, provider: str, model: str, usage: Usage) -> Decimal | None:
    price = price_at(provider=provider, model=model, kind="chat", when=datetime.date.today())
    return None if price is None else cost_usd(price=price, usage=usage)


def _estimate(messages: list[dict], output_tokens: int) -> Estimate:
    writer = providers.writer()
    input_tokens = sum(count_tokens(m["content"]) for m in messages)
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return Estimate(
        provider=writer.name,
        model=writer.model,
        label=getattr(writer, "label", "") or writer.model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=price_of(provider=writer.name, model=writer.model, usage=usage),
    )


def rewrite_estimate_from(chapter_estimate: Estimate) -> Estimate:
    """A scene rewrite's estimate from the chapter's, without building its prompt."""
    input_tokens = chapter_estimate.input_tokens + chapter_estimate.output_tokens
    usage = Usage(input_tokens=input_tokens, output_tokens=REWRITE_OUTPUT_TOKENS)
    return Estimate(
        provider=chapter_estimate.provider,
        model=chapter_estimate.model,
        label=chapter_estimate.label,
        input_tokens=input_tokens,
        output_tokens=REWRITE_OUTPUT_TOKENS,
        cost_usd=price_of(
            provider=chapter_estimate.provider, model=chapter_estimate.model, usage=usage
        ),
    )


def generation_estimate(
    *,
    chapter: Chapter,
    target_seconds: int = 60,
    plot_turns: int = 3,
    title_wish: str = "",
    scene: Scene | None = None,
) -> Estimate:
    """What generating the chapter (or rewriting `scene`) should cost, before asking."""
    if scene is not None:
        messages = rewrite_messages(scene=scene, instruction="x" * 120)
        return _estimate(messages, REWRITE_OUTPUT_TOKENS)
    brief = chapter_brief(
        chapter=chapter, target_seconds=target_seconds, plot_turns=plot_turns, title_wish=title_wish
    )
    messages = chapter_messages(chapter=chapter, brief=brief)
    return _estimate(messages, OUTPUT_BASE_TOKENS + OUTPUT_TOKENS_PER_S * target_seconds)


def active_generation(*, chapter: Chapter) -> Job | None:
    return (
        Job.objects.filter(kind__in=KINDS, status__in=ACTIVE, payload__chapter_id=chapter.id)
        .order_by("id")
        .first()
    )


def latest_generation(*, chapter: Chapter) -> Job | None:
    return (
        Job.objects.filter(kind__in=KINDS, payload__chapter_id=chapter.id).order_by("-id").first()
    )


def _refuse_if_busy(chapter: Chapter) -> None:
    if active_generation(chapter=chapter) is not None:
        raise ValidationError(
            "The writer is already working on this chapter: wait for it or cancel it first."
        )


@transaction.atomic
def chapter_generate(
    *,
    chapter: Chapter,
    user=None,
    target_seconds: int = 60,
    plot_turns: int = 3,
    title_wish: str = "",
    notes: str = "",
    archive_approved: bool = False,
) -> Job:
    """Queue writing the chapter's script; its current script is kept as a version. A new
    script archives the scenes it does not keep: with approved takes among them, only when
    the producer confirmed (`archive_approved`)."""
    if not TARGET_S[0] <= target_seconds <= TARGET_S[1]:
        raise ValidationError({"target_seconds": f"Between {TARGET_S[0]} and {TARGET_S[1]} s."})
    if not PLOT_TURNS[0] <= plot_turns <= PLOT_TURNS[1]:
        raise ValidationError({"plot_turns": f"Between {PLOT_TURNS[0]} and {PLOT_TURNS[1]}."})
    Chapter.objects.select_for_update().filter(id=chapter.id).first()  # one request at a time
    _refuse_if_busy(chapter)
    approved = services.chapter_approved_takes(chapter=chapter)
    if approved and not archive_approved:
        raise ValidationError(
            {
                "archive_approved": (
                    f"This chapter has {approved} approved take{'s' if approved != 1 else ''}. "
                    "A new script archives the scenes it replaces, with their takes (a restore "
                    "brings them back): tick the box to confirm."
                )
            },
            code="confirm",
        )
    estimate = generation_estimate(
        chapter=chapter, target_seconds=target_seconds, plot_turns=plot_turns, title_wish=title_wish
    )
    return job_enqueue(
        kind=GENERATE,
        drama_id=chapter.drama_id,
        label=f"Write chapter {chapter.number}",
        priority=1,  # a producer is watching
        payload={
            "chapter_id": chapter.id,
            "user_id": getattr(user, "id", None),
            "target_seconds": target_seconds,
            "plot_turns": plot_turns,
            "title_wish": title_wish.strip()[:200],
            "notes": notes.strip()[:1000],
            "estimate": estimate.as_dict(),
            "archive_approved": bool(archive_approved),
        },
    )


@transaction.atomic
def chapter_generate_new(*, drama: Drama, user=None, title: str, **options) -> Job:
    """A new chapter named `title` and the job that writes it."""
    chapter = services.chapter_create(drama=drama, title=title.strip() or "New chapter")
    return chapter_generate(chapter=chapter, user=user, title_wish=title, **options)


@transaction.atomic
def scene_rewrite(*, scene: Scene, user=None, instruction: str) -> Job:
    """Queue rewriting one scene from the producer's instruction."""
    instruction = " ".join(instruction.split())
    if not instruction:
        raise ValidationError({"instruction": "Say what should change in the scene."})
    if len(instruction) > 1000:
        raise ValidationError({"instruction": "Keep the instruction under 1000 characters."})
    chapter = scene.chapter
    Chapter.objects.select_for_update().filter(id=chapter.id).first()
    _refuse_if_busy(chapter)
    return job_enqueue(
        kind=REWRITE,
        drama_id=chapter.drama_id,
        label=f"Rewrite scene {scene.order} of chapter {chapter.number}",
        priority=1,
        payload={
            "chapter_id": chapter.id,
            "scene_id": scene.id,
            "user_id": getattr(user, "id", None),
            "instruction": instruction,
            "estimate": generation_estimate(chapter=chapter, scene=scene).as_dict(),
        },
    )
