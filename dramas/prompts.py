"""The render prompt of a scene: its direction plus who is in it and what they look like.

`scene_prompt(scene, max_refs=...)` writes the text a video provider receives and picks the
reference images it may attach (a provider's `max_refs`): every present character's best
reference first, then their second best, and so on, so a small allowance still covers the
whole cast before anyone gets a second image.
"""

from dataclasses import dataclass, field

from characters.models import Character, ReferenceImage, ReferenceQuality
from dramas.models import Scene

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
