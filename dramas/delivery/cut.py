"""A chapter's cut: for each scene, in order, the take it plays (the producer's choice, else the
scene's approved take), its in and out points and the transition into the next scene; scenes
with nothing to play are gaps. Read by the Cut page, the export and its input hash.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db.models import F

from dramas.dialog_audio import video_seconds
from dramas.models import Chapter, CutEntry, Frame, Scene, Take, TakeStatus, Transition
from studio.media import local_path

# Bumped when the export makes different files from the same inputs: old packages go stale.
EXPORT_VERSION = 1
MAX_TRANSITION_S = 2.0


@dataclass
class CutItem:
    scene: Scene
    take: Take | None  # None: a gap
    take_s: float  # the take's whole length (0 for a gap)
    in_s: float
    out_s: float
    transition: str
    transition_s: float
    chosen: bool  # picked by the producer (else the approved take)
    gap: str = ""  # why nothing plays here

    @property
    def length_s(self) -> float:
        return max(self.out_s - self.in_s, 0.0) if self.take else 0.0


def take_seconds(take: Take) -> float:
    """The rendered take's length, read from its video (0 when it has none)."""
    if not take.video:
        return 0.0
    try:
        return round(video_seconds(local_path(take.video)), 3)
    except (OSError, ValueError, IndexError):
        return 0.0


def playable_takes(scene: Scene) -> list[Take]:
    return [t for t in scene.takes.all() if t.status == TakeStatus.DONE and t.video]


def cut_of(*, chapter: Chapter) -> list[CutItem]:
    """The chapter's cut, scene by scene in order."""
    scenes = list(chapter.scenes.order_by("order", "id").prefetch_related("takes"))
    entries = {
        entry.scene_id: entry
        for entry in CutEntry.objects.filter(scene__in=scenes).select_related("take")
    }
    items = []
    for scene in scenes:
        entry = entries.get(scene.id)
        takes = playable_takes(scene)
        approved = next((t for t in sorted(takes, key=lambda t: -t.number) if t.locked), None)
        chosen = entry.take if entry and entry.take and entry.take in takes else None
        take = chosen or approved
        transition = entry.transition if entry else Transition.CUT
        transition_s = entry.transition_s if entry and transition != Transition.CUT else 0.0
        if take is None:
            gap = (
                "No approved take yet: approve one on the scene's take page, or pick a take here."
                if takes
                else "Not rendered yet: render the scene, then approve a take."
            )
            items.append(CutItem(scene, None, 0.0, 0.0, 0.0, transition, 0.0, False, gap))
            continue
        seconds = take_seconds(take)
        in_s = min(entry.in_s if entry else 0.0, seconds)
        out_s = entry.out_s if entry and entry.out_s is not None else seconds
        out_s = min(max(out_s, in_s), seconds)
        items.append(
            CutItem(scene, take, seconds, in_s, out_s, transition, transition_s, bool(chosen))
        )
    # A transition needs a clip on both sides and room in each: shortened where it would not fit.
    playing = [item for item in items if item.take]
    for before, after in itertools.pairwise(playing):
        room = min(before.length_s, after.length_s)
        before.transition_s = min(before.transition_s, room, MAX_TRANSITION_S)
    if playing:
        playing[-1].transition, playing[-1].transition_s = Transition.CUT, 0.0
    return items


def runtime_s(items: list[CutItem]) -> float:
    return round(sum(item.length_s for item in items), 3)


def gaps(items: list[CutItem]) -> list[CutItem]:
    return [item for item in items if item.take is None]


def cut_entry_set(
    *,
    scene: Scene,
    take: Take | None,
    in_s: float,
    out_s: float | None,
    transition: str,
    transition_s: float,
) -> CutEntry:
    """The producer's choice for a scene in the cut, checked against the take it names."""
    errors = []
    if take is not None and (take.scene_id != scene.id or take.status != TakeStatus.DONE):
        errors.append("Choose one of this scene's finished takes.")
    if transition not in Transition.values:
        errors.append(f"Unknown transition {transition!r}.")
    if not 0 <= transition_s <= MAX_TRANSITION_S:
        errors.append(f"A transition lasts 0 to {MAX_TRANSITION_S:g} s.")
    if in_s < 0:
        errors.append("The in point cannot be before the take's start.")
    if out_s is not None and out_s <= in_s:
        errors.append("The out point must come after the in point.")
    if take is not None and not errors:
        seconds = take_seconds(take)
        if in_s >= seconds:
            errors.append(f"The in point is past the take's end ({seconds:g} s).")
        if out_s is not None and out_s > seconds + 0.001:
            errors.append(f"The out point is past the take's end ({seconds:g} s).")
    if errors:
        raise ValidationError(errors)
    entry, _ = CutEntry.objects.update_or_create(
        scene=scene,
        defaults={
            "take": take,
            "in_s": in_s,
            "out_s": out_s,
            "transition": transition,
            "transition_s": transition_s,
        },
    )
    return entry


COVER_CHOICES = 8


def cover_candidates(*, items: list[CutItem]) -> list[Frame]:
    """The frames a cover may be cut from: the cut's takes' best-scoring frames first."""
    take_ids = [item.take.id for item in items if item.take]
    frames = Frame.objects.filter(take_id__in=take_ids).select_related("take")
    return list(
        frames.order_by(F("score").desc(nulls_last=True), "take_id", "index")[:COVER_CHOICES]
    )


def cover_frame(*, chapter: Chapter, items: list[CutItem]) -> Frame | None:
    """The producer's pick when it belongs to a take in the cut, else the best-scoring frame."""
    take_ids = {item.take.id for item in items if item.take}
    picked = chapter.cover_frame
    if picked is not None and picked.take_id in take_ids:
        return picked
    candidates = cover_candidates(items=items)
    return candidates[0] if candidates else None


def cover_set(*, chapter: Chapter, frame: Frame | None) -> None:
    if frame is not None and frame.take.scene.chapter_id != chapter.id:
        raise ValidationError("Pick a frame of one of this chapter's takes.")
    chapter.cover_frame = frame
    chapter.save(update_fields=["cover_frame", "updated_at"])


def cut_inputs(*, chapter: Chapter, items: list[CutItem], spec: dict) -> dict:
    """Everything an export is made of: the takes' media (by content), trims, transitions, the
    dialog each take carries, and the delivery settings."""
    clips = []
    for item in items:
        if item.take is None:
            clips.append({"scene": item.scene.id, "gap": True})
            continue
        clips.append(
            {
                "scene": item.scene.id,
                "take": item.take.id,
                "video": item.take.video.name,
                "provider": item.take.provider,
                "in_s": round(item.in_s, 3),
                "out_s": round(item.out_s, 3),
                "transition": item.transition,
                "transition_s": round(item.transition_s, 3),
                "dialog": [
                    [e.get("text", ""), e.get("speaker", ""), e["start_s"], e["end_s"]]
                    for e in item.take.dialog_track
                ],
            }
        )
    return {
        "version": EXPORT_VERSION,
        "chapter": chapter.id,
        "title": chapter.title,
        "clips": clips,
        "cover_frame": getattr(cover_frame(chapter=chapter, items=items), "id", None),
        "spec": spec,
    }


def input_hash(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
