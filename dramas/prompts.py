"""Every prompt the studio writes: what a video model is asked for a scene, and what the script
writer is asked for a chapter, a scene rewrite, or a repair of a broken answer.

- `scene_prompt(scene, max_refs=...)`: the text a video provider receives for a scene, and the
  reference images it may attach (a provider's `max_refs`): every present character's best
  reference first, then their second best, and so on, so a small allowance still covers the
  whole cast before anyone gets a second image.
- `chapter_messages`, `rewrite_messages`, `repair_messages`: chat messages for the writer. The
  text lives in Django templates under dramas/templates/dramas/prompts/ (plain text, autoescape
  off): a screenwriter system prompt built from the drama and its registered characters, and a
  user prompt with the chapter's brief (target length, plot turns, the previous chapters'
  synopses). The user prompt ends with the brief as JSON: the offline writer and the provider
  simulator read it back out (studio.providers.writer.brief_from_messages).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.template.loader import render_to_string

from characters.models import Character, ReferenceImage, ReferenceQuality
from dramas import services
from dramas.models import Chapter, Drama, Scene
from dramas.scripts import SCHEMA, TIMES, duration_range
from studio.providers import registry as providers
from studio.providers.writer import BRIEF_MARKER, ChapterBrief, CharacterNote

PROMPTS = "dramas/prompts/"
PREVIOUS_CHAPTERS = 8  # synopses sent for continuity, most recent last
REPAIR_ERRORS_SHOWN = 20

# Which references may go to a provider, best first. A photo without a usable face, with
# several people or of possibly someone else would teach the model the wrong face.
REFERENCE_TIERS = {
    ReferenceQuality.GOOD: 0,
    ReferenceQuality.PENDING: 1,  # not analysed (yet): better than nothing
    ReferenceQuality.TOO_SMALL: 2,
}


@dataclass(frozen=True)
class PromptReference:
    character_id: int
    character_name: str
    reference_id: int
    image_name: str  # storage name of the normalised JPEG
    quality: str


@dataclass(frozen=True)
class ScenePrompt:
    text: str
    characters: list[str]  # names of the characters present, in prompt order
    references: list[PromptReference] = field(default_factory=list)


def rank_references(references: list[ReferenceImage]) -> list[ReferenceImage]:
    """Usable references best first: quality tier, then resemblance to the others, then face
    size (a larger face carries more detail)."""
    usable = [r for r in references if r.quality in REFERENCE_TIERS]

    def key(reference: ReferenceImage):
        resemblance = reference.profile_similarity if reference.profile_similarity else 0.0
        size = max((face["size"] for face in reference.faces or []), default=0)
        return (REFERENCE_TIERS[reference.quality], -resemblance, -size, reference.id)

    return sorted(usable, key=key)


def scene_prompt(scene: Scene, *, max_refs: int) -> ScenePrompt:
    if max_refs < 0:
        raise ValueError("max_refs cannot be negative")
    drama = scene.chapter.drama
    characters: list[Character] = list(scene.characters.prefetch_related("references"))
    ranked = {c.id: rank_references(list(c.references.all())) for c in characters}

    chosen: list[PromptReference] = []
    for depth in range(max((len(r) for r in ranked.values()), default=0)):
        for character in characters:
            if len(chosen) < max_refs and depth < len(ranked[character.id]):
                reference = ranked[character.id][depth]
                chosen.append(
                    PromptReference(
                        character.id,
                        character.name,
                        reference.id,
                        reference.image.name,
                        reference.quality,
                    )
                )

    lines = [scene.action.strip()]
    setting = f"Setting: {scene.location}, {scene.get_time_of_day_display().lower()}."
    if scene.camera:
        setting += f" Camera: {scene.camera}."
    if scene.mood:
        setting += f" Mood: {scene.mood}."
    lines.append(setting)
    look = f"Aspect ratio {drama.aspect}, {scene.duration_s:g} s."
    if drama.style:
        look = f"Style: {drama.style}. " + look
    lines.append(look)
    if characters:
        lines.append("Characters:")
        for character in characters:
            numbers = [
                str(i) for i, ref in enumerate(chosen, 1) if ref.character_id == character.id
            ]
            notes = character.appearance_notes.strip() or "no appearance notes"
            label = "reference image" if len(numbers) == 1 else "reference images"
            pictured = f" ({label} {', '.join(numbers)})" if numbers else ""
            lines.append(f"- {character.name}: {notes}{pictured}")
    dialog = list(scene.lines.select_related("speaker"))
    if dialog:
        lines.append("Dialog:")
        for line in dialog:
            emotion = f" ({line.emotion})" if line.emotion else ""
            lines.append(f'- {line.display_speaker}{emotion}: "{line.line}"')
    return ScenePrompt(
        text="\n".join(lines), characters=[c.name for c in characters], references=chosen
    )


# --- The script writer -------------------------------------------------------------------------


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


def repair_messages(*, messages: list[dict], answer: str, errors: list[str]) -> list[dict]:
    """The conversation so far, the writer's unusable answer, and what to fix in it."""
    repair = render_prompt("repair_user.txt", {"errors": errors[:REPAIR_ERRORS_SHOWN]})
    answered = {"role": "assistant", "content": answer}
    return [*messages, answered, {"role": "user", "content": repair}]


def rewrite_messages(*, scene: Scene, instruction: str) -> list[dict]:
    chapter = scene.chapter
    script = services.chapter_script(chapter=chapter, keys=False)
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
