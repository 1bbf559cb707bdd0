"""What the studio does to dramas, chapters and scenes. Views parse and check; this acts.

Every function is keyword-only and runs in one transaction, so a failure stores nothing.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from characters.models import Character
from dramas.dialog_fit import Lengthening, lengthenings, scene_needs
from dramas.models import (
    SCENE_KEY_LENGTH,
    TAKE_ACTIVE,
    Chapter,
    ChapterSource,
    ChapterVersion,
    DialogLine,
    Drama,
    Membership,
    Role,
    Scene,
    Take,
    new_scene_key,
)
from dramas.scripts import name_key
from dramas.takes import take_cancel
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
    """Take the scene out of the chapter. A scene with takes (paid work, perhaps approved) is
    archived with them, not deleted: the versions page lists it and a restore brings it back."""
    chapter = scene.chapter
    if scene.takes.exists():
        _scene_archive(scene=scene)
    else:
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


def scene_script(scene: Scene, *, keys: bool = True) -> dict:
    """One scene as plain script data (its cast and lines prefetched or not)."""
    data = {"key": scene.key} if keys else {}
    return data | {
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


def chapter_script(*, chapter: Chapter, keys: bool = True) -> dict:
    """The chapter's whole script as plain data (what a version keeps). Each scene carries its
    key, so a restored version finds its scenes again; `keys=False` for a writer's prompt."""
    scenes = chapter.scenes.prefetch_related("characters", "lines__speaker")
    return {
        "title": chapter.title,
        "synopsis": chapter.synopsis,
        "scenes": [scene_script(scene, keys=keys) for scene in scenes],
    }


@dataclass(frozen=True)
class ArchivedScene:
    scene: Scene
    takes: list  # the scene's takes, newest first
    versions: list[ChapterVersion]  # the versions that have it: restoring one brings it back


def chapter_archive(*, chapter: Chapter, versions: Sequence[ChapterVersion]) -> list[ArchivedScene]:
    """The chapter's archived scenes, newest first, each with its takes and the versions
    (among `versions`) that would bring it back."""
    scenes = (
        Scene.all_objects.filter(chapter=chapter, archived_at__isnull=False)
        .prefetch_related("takes")
        .order_by("-archived_at", "order")
    )
    keys_of = {
        version.id: {
            data.get("key") for data in version.script.get("scenes", []) if isinstance(data, dict)
        }
        for version in versions
    }
    return [
        ArchivedScene(
            scene=scene,
            takes=list(scene.takes.all()),
            versions=[version for version in versions if scene.key in keys_of[version.id]],
        )
        for scene in scenes
    ]


def chapter_approved_takes(*, chapter: Chapter) -> int:
    """Approved takes in the chapter's current scenes: what a new script would archive."""
    return Take.objects.filter(
        scene__chapter=chapter, scene__archived_at__isnull=True, locked=True
    ).count()


@transaction.atomic
def chapter_version_keep(
    *, chapter: Chapter, script: dict, user=None, note: str, source: str
) -> ChapterVersion:
    """Keep `script` as the chapter's next version without applying it (a restore applies it);
    one identical to the latest version is not piled up: the latest is returned."""
    latest = chapter.versions.select_for_update().order_by("-number").first()
    if latest is not None and latest.script == script:
        return latest
    return ChapterVersion.objects.create(
        chapter=chapter,
        number=(latest.number + 1) if latest else 1,
        source=source,
        note=note[:200],
        script=script,
        created_by=user,
    )


@transaction.atomic
def chapter_version_save(
    *, chapter: Chapter, user=None, note: str = "", source: str = ChapterSource.WRITTEN
) -> ChapterVersion:
    """Keep the chapter's current script as a version (unless the latest one has it)."""
    return chapter_version_keep(
        chapter=chapter,
        script=chapter_script(chapter=chapter),
        user=user,
        note=note,
        source=source,
    )


@dataclass(frozen=True)
class ScriptPlan:
    """What replacing a chapter's script would do to its scenes, worked out before doing it.

    `matches`: per scene of the new script, the scene it becomes (None: a new scene).
    `archive`: scenes of the current script the new one no longer has."""

    matches: list[tuple[dict, Scene | None]]
    archive: list[Scene]

    @property
    def archived_approved(self) -> int:
        """How many approved takes the replace would move to the archive."""
        return sum(1 for scene in self.archive for take in scene.takes.all() if take.locked)


def script_plan(*, chapter: Chapter, script: dict) -> ScriptPlan:
    """Match the new script's scenes to the chapter's scenes, live and archived: by key, and a
    scene without a key (a writer's answer, a version older than keys) to a scene whose content
    it repeats exactly, live scenes first."""
    scenes = list(
        Scene.all_objects.filter(chapter=chapter)
        .prefetch_related("characters", "lines__speaker", "takes")
        .order_by(F("archived_at").asc(nulls_first=True), "order", "id")
    )
    by_key = {scene.key: scene for scene in scenes}
    wanted = list(script.get("scenes", []))
    found: list[Scene | None] = []
    taken: set[int] = set()
    for data in wanted:
        scene = by_key.get(_key_of(data))
        if scene is not None and scene.id not in taken:
            taken.add(scene.id)
            found.append(scene)
        else:
            found.append(None)
    for index, data in enumerate(wanted):
        if found[index] is not None or _key_of(data):
            continue
        body = _without_key(data)
        for scene in scenes:
            if scene.id not in taken and scene_script(scene, keys=False) == body:
                taken.add(scene.id)
                found[index] = scene
                break
    archive = [scene for scene in scenes if not scene.archived and scene.id not in taken]
    return ScriptPlan(matches=list(zip(wanted, found, strict=True)), archive=archive)


def _key_of(data: dict) -> str:
    key = data.get("key") if isinstance(data, dict) else None
    return key if isinstance(key, str) and 0 < len(key) <= SCENE_KEY_LENGTH else ""


def _without_key(data: dict) -> dict:
    return {name: value for name, value in data.items() if name != "key"}


@transaction.atomic
def chapter_script_replace(
    *,
    chapter: Chapter,
    script: dict,
    user=None,
    note: str,
    source: str,
    archive_approved: bool = False,
) -> ChapterVersion:
    """Replace the chapter's script, keeping the current one as a version first.

    Scenes keep who they are (`script_plan`): a matching scene is updated in place with its
    takes (left untouched when nothing in it changed), new ones are added, and scenes the new
    script lacks are archived, never deleted: hidden with their takes, back when a version
    that has them is restored. Archiving approved takes needs `archive_approved` (the producer
    confirmed); otherwise the replace is refused with code "confirm"."""
    plan = script_plan(chapter=chapter, script=script)
    if plan.archived_approved and not archive_approved:
        raise ValidationError(
            f"This would archive {len(plan.archive)} scene{'s' if len(plan.archive) != 1 else ''}"
            f" with {plan.archived_approved} approved take"
            f"{'s' if plan.archived_approved != 1 else ''}. Confirm to go on: they stay in the "
            "chapter's archive, and restoring a version that has them brings them back.",
            code="confirm",
        )
    chapter_version_save(chapter=chapter, user=user, note="Before: " + note)
    by_name = {name_key(c.name): c for c in chapter.drama.characters.all()}
    title, synopsis = script["title"], script.get("synopsis", "")
    if (chapter.title, chapter.synopsis, chapter.source) != (title, synopsis, source):
        chapter.title, chapter.synopsis, chapter.source = title, synopsis, source
        chapter.full_clean()
        chapter.save()
    for scene in plan.archive:
        _scene_archive(scene=scene)
    used = set(Scene.all_objects.filter(chapter=chapter).values_list("key", flat=True))
    for order, (data, scene) in enumerate(plan.matches, start=1):
        if scene is None:
            # A key the chapter never had (its scene was deleted) is kept: the version says it.
            key = _key_of(data)
            if not key or key in used:
                key = new_scene_key()
            used.add(key)
            scene = Scene(chapter=chapter, order=order, key=key)
        elif not scene.archived and scene_script(scene, keys=False) == _without_key(data):
            if scene.order != order:
                Scene.all_objects.filter(id=scene.id).update(order=order)
            continue  # the same scene: its lines, cast and timestamps stay as they are
        scene.order, scene.archived_at = order, None
        scene_apply_script(scene=scene, data=data, by_name=by_name)
    return chapter_version_save(chapter=chapter, user=user, note=note, source=source)


def _scene_archive(*, scene: Scene) -> None:
    """Hide a scene the script no longer has, with its takes; its renders are cancelled (the
    vendor told where it allows), since nobody will review them."""
    scene.archived_at = timezone.now()
    Scene.all_objects.filter(id=scene.id).update(archived_at=scene.archived_at)
    for take in scene.takes.filter(status__in=TAKE_ACTIVE):
        take_cancel(take=take)


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
def chapter_version_restore(
    *, version: ChapterVersion, user=None, archive_approved: bool = False
) -> ChapterVersion:
    return chapter_script_replace(
        chapter=version.chapter,
        script=version.script,
        user=user,
        note=f"Restored version {version.number}",
        source=version.source,
        archive_approved=archive_approved,
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


# --- Scenes that hold their dialog -------------------------------------------------------------


def chapter_lengthenings(*, chapter: Chapter) -> list[Lengthening]:
    """The chapter's scenes too short for their dialog, each with the duration it could have
    (the proposal the chapter page shows; nothing changes until it is accepted)."""
    scenes = list(chapter.scenes.prefetch_related("lines__speaker", "characters"))
    return lengthenings(needs=scene_needs(scenes=scenes, language=chapter.drama.language))


@transaction.atomic
def chapter_scenes_lengthen(*, chapter: Chapter, durations: Mapping[int, float]) -> list[Scene]:
    """Give scenes the durations the producer accepted (scene id -> seconds), exactly as the
    chapter page proposed them. When a proposal no longer stands (the dialog, a voice or a
    duration changed since), nothing changes: the producer sees the new one and decides again."""
    Chapter.objects.select_for_update().filter(id=chapter.id).first()  # one request at a time
    if not durations:
        raise ValidationError("Choose the scenes to lengthen.")
    proposed = {item.scene.id: item for item in chapter_lengthenings(chapter=chapter)}
    changed = []
    for scene_id, seconds in durations.items():
        item = proposed.get(scene_id)
        if item is None or item.new_s is None or not math.isclose(item.new_s, seconds):
            raise ValidationError(
                "The scenes or their dialog changed since this proposal was shown; nothing was "
                "lengthened. Check the new proposal and accept it again.",
                code="stale",
            )
        item.scene.duration_s = item.new_s
        item.scene.full_clean()
        item.scene.save(update_fields=["duration_s", "updated_at"])
        changed.append(item.scene)
    return changed
