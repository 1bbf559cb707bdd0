"""What the writer is asked, and what asking should cost.

The prompts are Django templates under dramas/templates/dramas/prompts/ (plain text, autoescape
off): a screenwriter system prompt built from the drama and its registered characters, and a
user prompt with the chapter's brief (target length, plot turns, the previous chapters'
synopses). The user prompt ends with the brief as JSON: the offline writer and the provider
simulator read it back out (studio.providers.writer.brief_from_messages).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from decimal import Decimal

from django.template.loader import render_to_string

from dramas import services
from dramas.models import Chapter, Drama, Scene
from dramas.scripts import SCHEMA, TIMES, duration_range
from studio.providers import registry as providers
from studio.providers.base import Usage
from studio.providers.ledger import cost_usd, price_at
from studio.providers.writer import BRIEF_MARKER, ChapterBrief, CharacterNote

PREVIOUS_CHAPTERS = 8  # synopses sent for continuity, most recent last
# Estimates. No tokenizer is bundled: about 4 characters a token for ASCII text (the rule of
# thumb of GPT and DeepSeek tokenizers for English and JSON) and one token a character for
# anything else (CJK scripts run about 1-1.5 a character). Output: the JSON frame plus screen
# time (a second of drama takes about 9 tokens of action and dialog in practice).
CHARS_PER_TOKEN = 4
OUTPUT_BASE_TOKENS = 250
OUTPUT_TOKENS_PER_S = 9
REWRITE_OUTPUT_TOKENS = 400
PROMPTS = "dramas/prompts/"


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


# --- Prompts -----------------------------------------------------------------------------------


def render_prompt(name: str, context: dict) -> str:
    return render_to_string(PROMPTS + name, context).strip()


def _system_prompt(drama: Drama, brief: ChapterBrief) -> str:
    low, high = duration_range(providers.video().capabilities)
    return render_prompt(
        "chapter_system.txt",
        {
            "drama": drama,
            "characters": brief.characters,
            "schema_json": json.dumps(SCHEMA, separators=(",", ":")),
            "times": ", ".join(TIMES),
            "min_s": low,
            "max_s": high,
        },
    )


def chapter_brief(
    *, chapter: Chapter, target_seconds: int, plot_turns: int, title_wish: str = "", notes: str = ""
) -> ChapterBrief:
    drama = chapter.drama
    previous = drama.chapters.filter(number__lt=chapter.number).exclude(synopsis="")
    synopses = [c.synopsis for c in reversed(previous.order_by("-number")[:PREVIOUS_CHAPTERS])]
    return ChapterBrief(
        drama_title=drama.title,
        title_wish=title_wish,
        genre=drama.genre,
        style=drama.style,
        language=drama.language,
        logline=drama.logline,
        characters=tuple(
            CharacterNote(c.name, c.appearance_notes) for c in drama.characters.order_by("name")
        ),
        previous_synopses=tuple(synopses),
        chapter_number=chapter.number,
        target_seconds=target_seconds,
        plot_turns=plot_turns,
        notes=notes,
    )


def _brief_json(brief: ChapterBrief) -> str:
    return json.dumps(brief.to_dict(), ensure_ascii=False, indent=1)


def chapter_messages(*, chapter: Chapter, brief: ChapterBrief) -> list[dict]:
    """System and user prompt; the user prompt ends with the brief as JSON (the offline writer
    and the simulator read it back out, see studio.providers.writer)."""
    first = brief.chapter_number - len(brief.previous_synopses)
    user = render_prompt(
        "chapter_user.txt",
        {
            "brief": brief,
            "scene_hint": "4 to 8",
            "previous": [
                {"number": first + i, "text": text}
                for i, text in enumerate(brief.previous_synopses)
            ],
            "marker": BRIEF_MARKER,
            "brief_json": _brief_json(brief),
        },
    )
    return [
        {"role": "system", "content": _system_prompt(chapter.drama, brief)},
        {"role": "user", "content": user},
    ]


def rewrite_messages(*, scene: Scene, instruction: str) -> list[dict]:
    chapter = scene.chapter
    script = services.chapter_script(chapter=chapter)
    brief = chapter_brief(
        chapter=chapter,
        target_seconds=max(1, round(scene.duration_s)),
        plot_turns=1,
        title_wish=chapter.title,
        notes=f"Rewrite scene {scene.order}: {instruction}",
    )
    user = render_prompt(
        "scene_rewrite_user.txt",
        {
            "brief": brief,
            "chapter": chapter,
            "number": scene.order,
            "instruction": instruction,
            "duration": scene.duration_s,
            "script_json": json.dumps(script, ensure_ascii=False, indent=1),
            "marker": BRIEF_MARKER,
            "brief_json": _brief_json(brief),
        },
    )
    return [
        {"role": "system", "content": _system_prompt(chapter.drama, brief)},
        {"role": "user", "content": user},
    ]


# --- Estimates and requests --------------------------------------------------------------------


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
