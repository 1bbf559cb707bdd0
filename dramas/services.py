"""What the studio does to dramas, chapters and scenes. Views parse and check; this acts.

Every function is keyword-only and runs in one transaction, so a failure stores nothing.
"""

from collections.abc import Sequence

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max

from characters.models import Character
from dramas.models import (
    Chapter,
    ChapterSource,
    ChapterVersion,
    DialogLine,
    Drama,
    Membership,
    Role,
    Scene,
)
from dramas.scripts import name_key
from studio.jobs.services import jobs_forget_drama

User = get_user_model()


# --- Dramas and members ----------------------------------------------------------------------


@transaction.atomic
def drama_create(*, creator, **fields) -> Drama:
    """A new drama whose creator is its producer."""
    drama = Drama(created_by=creator, **fields)
    drama.full_clean()
    drama.save()
    Membership.objects.create(drama=drama, user=creator, role=Role.PRODUCER)
    return drama


def drama_delete(*, drama: Drama) -> None:
    """Delete the drama with everything in it. Its stored files (takes' videos, posters and
    frames, references' images) follow their rows once this commits (dramas.signals)."""
    with transaction.atomic():
        jobs_forget_drama(drama_id=drama.id)
        drama.delete()


@transaction.atomic
def membership_set(*, drama: Drama, username: str, role: Role) -> Membership:
    """Add a member, or change the role of one already there."""
    user = User.objects.filter(username__iexact=username.strip(), is_active=True).first()
    if user is None:
        raise ValidationError({"username": f"No active user called “{username.strip()}”."})
    membership, created = Membership.objects.get_or_create(
        drama=drama, user=user, defaults={"role": role}
    )
    if not created and membership.role != role:
        _keep_a_producer(drama=drama, leaving=membership, new_role=role)
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, drama: Drama, membership_id: int) -> None:
    membership = Membership.objects.select_for_update().get(drama=drama, id=membership_id)
    _keep_a_producer(drama=drama, leaving=membership, new_role=None)
    membership.delete()


def _keep_a_producer(*, drama: Drama, leaving: Membership, new_role: Role | None) -> None:
    if leaving.role != Role.PRODUCER or new_role == Role.PRODUCER:
        return
    others = drama.memberships.filter(role=Role.PRODUCER).exclude(id=leaving.id)
    if not others.exists():
        raise ValidationError("A drama needs at least one producer; add another one first.")


# --- Chapters ----------------------------------------------------------------------------------


@transaction.atomic
def chapter_create(*, drama: Drama, title: str, synopsis: str = "") -> Chapter:
    # Lock the drama row so two editors adding chapters at once get distinct numbers.
    Drama.objects.select_for_update().filter(id=drama.id).first()
    last = drama.chapters.aggregate(last=Max("number"))["last"] or 0
    chapter = Chapter(drama=drama, number=last + 1, title=title, synopsis=synopsis)
    chapter.full_clean()
    chapter.save()
    return chapter


@transaction.atomic
def chapter_delete(*, chapter: Chapter) -> None:
    drama = chapter.drama
    number = chapter.number
    chapter.delete()
    # Keep chapter numbers contiguous; update in ascending order so the unique key holds.
    for later in drama.chapters.filter(number__gt=number).order_by("number"):
        Chapter.objects.filter(id=later.id).update(number=F("number") - 1)


# --- Scenes ------------------------------------------------------------------------------------


def _next_order(queryset) -> int:
    return (queryset.aggregate(last=Max("order"))["last"] or 0) + 1


@transaction.atomic
def scene_create(*, chapter: Chapter, characters: Sequence[Character] = (), **fields) -> Scene:
    scene = Scene(chapter=chapter, order=_next_order(chapter.scenes), **fields)
    scene.full_clean()
    scene.save()
    scene.characters.set(_characters_of(chapter.drama, characters))
    return scene


@transaction.atomic
def scene_update(*, scene: Scene, characters: Sequence[Character] | None = None, **fields) -> Scene:
    for name, value in fields.items():
        setattr(scene, name, value)
    scene.full_clean()
    scene.save()
    if characters is not None:
        scene.characters.set(_characters_of(scene.chapter.drama, characters))
    return scene


def _characters_of(drama: Drama, characters: Sequence[Character]) -> list[Character]:
    foreign = [c for c in characters if c.drama_id != drama.id]
    if foreign:
        raise ValidationError({"characters": "Characters must belong to this drama."})
    return list(characters)


@transaction.atomic
def scene_delete(*, scene: Scene) -> None:
    chapter = scene.chapter
    scene.delete()
    _renumber(chapter.scenes.all())


@transaction.atomic
def scene_move(*, scene: Scene, offset: int) -> None:
    """Move a scene up (negative) or down (positive) within its chapter."""
    _move(list(scene.chapter.scenes.all()), scene, offset)


@transaction.atomic
def scenes_reorder(*, chapter: Chapter, scene_ids: Sequence[int]) -> None:
    """Put the chapter's scenes in the given order (the drag-and-drop result)."""
    scenes = {scene.id: scene for scene in chapter.scenes.all()}
    if sorted(scene_ids) != sorted(scenes) or len(set(scene_ids)) != len(scene_ids):
        raise ValidationError("The new order must list each scene of this chapter exactly once.")
    _renumber([scenes[scene_id] for scene_id in scene_ids])


# --- Dialog lines ------------------------------------------------------------------------------


@transaction.atomic
def line_create(
    *, scene: Scene, line: str, speaker: Character | None = None, emotion: str = ""
) -> DialogLine:
    dialog = DialogLine(
        scene=scene,
        order=_next_order(scene.lines),
        speaker=_speaker_of(scene, speaker),
        speaker_name=speaker.name if speaker else "",
        line=line,
        emotion=emotion,
    )
    dialog.full_clean()
    dialog.save()
    return dialog


@transaction.atomic
def line_update(
    *, dialog: DialogLine, line: str, speaker: Character | None, emotion: str = ""
) -> DialogLine:
    dialog.speaker = _speaker_of(dialog.scene, speaker)
    dialog.speaker_name = speaker.name if speaker else ""
    dialog.line = line
    dialog.emotion = emotion
    dialog.full_clean()
    dialog.save()
    return dialog


def _speaker_of(scene: Scene, speaker: Character | None) -> Character | None:
    if speaker is not None and speaker.drama_id != scene.chapter.drama_id:
        raise ValidationError({"speaker": "The speaker must be a character of this drama."})
    return speaker


@transaction.atomic
def line_delete(*, dialog: DialogLine) -> None:
    scene = dialog.scene
    dialog.delete()
    _renumber(scene.lines.all())


@transaction.atomic
def line_move(*, dialog: DialogLine, offset: int) -> None:
    _move(list(dialog.scene.lines.all()), dialog, offset)


def _move(siblings: list, item, offset: int) -> None:
    index = next(i for i, sibling in enumerate(siblings) if sibling.id == item.id)
    target = max(0, min(len(siblings) - 1, index + offset))
    siblings.insert(target, siblings.pop(index))
    _renumber(siblings)


def _renumber(items) -> None:
    for order, item in enumerate(items, start=1):
        if item.order != order:
            type(item).objects.filter(id=item.id).update(order=order)


# --- Script versions ---------------------------------------------------------------------------


def chapter_script(*, chapter: Chapter) -> dict:
    """The chapter's whole script as plain data (what a version keeps)."""
    scenes = chapter.scenes.prefetch_related("characters", "lines__speaker")
    return {
        "title": chapter.title,
        "synopsis": chapter.synopsis,
        "scenes": [
            {
                "location": scene.location,
                "time_of_day": scene.time_of_day,
                "action": scene.action,
                "camera": scene.camera,
                "duration_s": scene.duration_s,
                "mood": scene.mood,
                "characters": [character.name for character in scene.characters.all()],
                "dialog": [
                    {
                        "speaker": line.speaker.name if line.speaker_id else line.speaker_name,
                        "line": line.line,
                        "emotion": line.emotion,
                    }
                    for line in scene.lines.all()
                ],
            }
            for scene in scenes
        ],
    }


@transaction.atomic
def chapter_version_save(
    *, chapter: Chapter, user=None, note: str = "", source: str = ChapterSource.WRITTEN
) -> ChapterVersion:
    script = chapter_script(chapter=chapter)
    latest = chapter.versions.order_by("-number").first()
    if latest is not None and latest.script == script:
        return latest  # nothing changed since the last version: do not pile up copies
    return ChapterVersion.objects.create(
        chapter=chapter,
        number=(latest.number + 1) if latest else 1,
        source=source,
        note=note[:200],
        script=script,
        created_by=user,
    )


@transaction.atomic
def chapter_script_replace(
    *, chapter: Chapter, script: dict, user=None, note: str, source: str
) -> ChapterVersion:
    """Replace the chapter's script, keeping the current one as a version first (each scene
    is built by `scene_apply_script`)."""
    chapter_version_save(chapter=chapter, user=user, note="Before: " + note)
    by_name = {name_key(c.name): c for c in chapter.drama.characters.all()}
    chapter.title = script["title"]
    chapter.synopsis = script.get("synopsis", "")
    chapter.source = source
    chapter.full_clean()
    chapter.save()
    chapter.scenes.all().delete()
    for order, data in enumerate(script.get("scenes", []), start=1):
        scene_apply_script(scene=Scene(chapter=chapter, order=order), data=data, by_name=by_name)
    return chapter_version_save(chapter=chapter, user=user, note=note, source=source)


@transaction.atomic
def scene_apply_script(
    *, scene: Scene, data: dict, by_name: dict[str, Character] | None = None
) -> Scene:
    """Make the scene (saved or new) what one scene of a script says (the shape
    `chapter_script` writes): its fields, its cast and its dialog lines, which replace the
    old ones. Names are matched to the drama's characters (case and spacing tolerant,
    `by_name` when the caller has them keyed already); a speaker that matches nobody keeps
    its name on the line."""
    if by_name is None:
        by_name = {name_key(c.name): c for c in scene.chapter.drama.characters.all()}
    scene.location = data["location"]
    scene.time_of_day = data.get("time_of_day", "day")
    scene.action = data["action"]
    scene.camera = data.get("camera", "")
    scene.duration_s = data.get("duration_s", 5.0)
    scene.mood = data.get("mood", "")
    scene.full_clean()
    scene.save()
    scene.characters.set(
        [by_name[key] for key in map(name_key, data.get("characters", [])) if key in by_name]
    )
    scene.lines.all().delete()
    for order, line in enumerate(data.get("dialog", []), start=1):
        speaker = by_name.get(name_key(line.get("speaker", "")))
        dialog = DialogLine(
            scene=scene,
            order=order,
            speaker=speaker,
            speaker_name=speaker.name if speaker else line.get("speaker", "")[:100],
            line=line["line"],
            emotion=line.get("emotion", ""),
        )
        dialog.full_clean()
        dialog.save()
    return scene


@transaction.atomic
def chapter_version_restore(*, version: ChapterVersion, user=None) -> ChapterVersion:
    return chapter_script_replace(
        chapter=version.chapter,
        script=version.script,
        user=user,
        note=f"Restored version {version.number}",
        source=version.source,
    )


def scripts_side_by_side(*, left: dict, right: dict) -> list[dict]:
    """Rows of (section, left text, right text, changed) for comparing two scripts."""
    left_sections, right_sections = _script_sections(left), _script_sections(right)
    keys = list(dict.fromkeys([*left_sections, *right_sections]))
    return [
        {
            "section": key,
            "left": left_sections.get(key, ""),
            "right": right_sections.get(key, ""),
            "changed": left_sections.get(key) != right_sections.get(key),
        }
        for key in keys
    ]


def _script_sections(script: dict) -> dict[str, str]:
    sections = {"Title": script.get("title", ""), "Synopsis": script.get("synopsis", "")}
    for number, scene in enumerate(script.get("scenes", []), start=1):
        details = [
            f"{scene.get('location', '')} · {scene.get('time_of_day', '')} · "
            f"{scene.get('duration_s', '')} s",
            f"Camera: {scene.get('camera', '')}" if scene.get("camera") else "",
            f"Mood: {scene.get('mood', '')}" if scene.get("mood") else "",
            "With: " + ", ".join(scene.get("characters", [])) if scene.get("characters") else "",
            scene.get("action", ""),
        ]
        sections[f"Scene {number}"] = "\n".join(line for line in details if line)
        sections[f"Scene {number} dialog"] = "\n".join(
            f"{line.get('speaker') or 'Narrator'}"
            f"{' (' + line['emotion'] + ')' if line.get('emotion') else ''}: {line.get('line', '')}"
            for line in scene.get("dialog", [])
        )
    return sections
