"""The take pipeline's database side: plain synchronous functions, called off the event loop.

Kept apart from dramas/pipeline.py so the async steps read as the recipe they are.
"""

import os
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction

from characters.consistency import CharacterProfile, frame_judgement
from characters.models import ReferenceImage
from characters.services import character_profile
from dramas import takes as take_services
from dramas.models import Frame, Keyframe, Take, TakeStatus, Verdict
from dramas.prompts import scene_prompt
from dramas.sampling import SampledFrame
from studio.files import delete_after_commit
from studio.media import forget_local, local_path
from studio.providers.base import CastMember, DialogCue, VideoRequest


@dataclass
class TakeInfo:
    """What the async steps need of a take, read once per attempt."""

    take_id: int
    drama_id: int
    scene_id: int
    status: str
    prompt: str
    idempotency_key: str
    remote_handle: dict | None
    request: VideoRequest | None = None
    threshold: int = 65
    profiles: list[CharacterProfile] = field(default_factory=list)
    unprofiled: list[str] = field(default_factory=list)


def _take(take_id: int) -> Take:
    return Take.objects.select_related("scene__chapter__drama").get(id=take_id)


def load(*, take_id: int) -> TakeInfo | None:
    take = Take.objects.select_related("scene__chapter__drama").filter(id=take_id).first()
    if take is None:
        return None
    return TakeInfo(
        take_id=take.id,
        drama_id=take.scene.chapter.drama_id,
        scene_id=take.scene_id,
        status=take.status,
        prompt=take.prompt,
        idempotency_key=take.idempotency_key,
        remote_handle=take.remote_handle,
        threshold=take.scene.chapter.drama.consistency_threshold,
    )


def scene_of(*, take_id: int):
    return _take(take_id).scene


def dialog_of(*, take_id: int) -> dict:
    owner, track = Take.objects.values_list("speech_owner", "dialog_track").get(id=take_id)
    return {"owner": owner, "track": track or []}


def build_prompt(*, take_id: int, max_refs: int, provider: str, model: str) -> None:
    """The scene's prompt (unless the producer edited one) and the references to send."""
    take = _take(take_id)
    built = scene_prompt(take.scene, max_refs=max_refs)
    take.prompt = take.prompt if take.prompt_edited and take.prompt else built.text
    take.references = [
        {"character": ref.character_name, "reference_id": ref.reference_id, "quality": ref.quality}
        for ref in built.references
    ]
    take.provider, take.model = provider, model
    if take.keyframe_id is None:
        # Queued before its scene's storyboard was ready: it starts from the keyframe chosen
        # since, unless the gate would have held the scene for it.
        chosen = Keyframe.objects.filter(scene_id=take.scene_id, chosen=True).first()
        drama = take.scene.chapter.drama
        if chosen is not None and (chosen.verdict != Verdict.REJECT or not drama.keyframe_gate):
            take.keyframe = chosen
    take.save(update_fields=["prompt", "references", "provider", "model", "keyframe", "updated_at"])


def video_request(*, take_id: int) -> VideoRequest:
    """The take as a provider request: prompt, one reference per character, dialog."""
    take = _take(take_id)
    scene, drama = take.scene, take.scene.chapter.drama
    cast = cast_members(
        references=[(entry["character"], entry["reference_id"]) for entry in take.references]
    )
    # Where each line is heard, when the studio's dialog track placed it (the "speech" step).
    placed = {entry["line_id"]: entry for entry in take.dialog_track or []}
    dialog = [
        DialogCue(
            speaker=line.display_speaker,
            line=line.line,
            emotion=line.emotion,
            start_s=placed[line.id]["start_s"] if line.id in placed else None,
            end_s=placed[line.id]["end_s"] if line.id in placed else None,
        )
        for line in scene.lines.select_related("speaker")
    ]
    return VideoRequest(
        prompt=take.prompt,
        duration_s=scene.duration_s,
        aspect=drama.aspect,
        title=f"{scene.chapter.number}.{scene.order} {scene.location}",
        camera=scene.camera,
        location=scene.location,
        time_of_day=scene.get_time_of_day_display(),
        mood=scene.mood,
        cast=tuple(cast),
        dialog=tuple(dialog),
        seed=take.seed,
        first_frame=_first_frame(take),
    )


def _first_frame(take: Take) -> bytes | None:
    """The storyboard keyframe the take starts from (chosen when it was queued), if any."""
    keyframe = take.keyframe
    if keyframe is None or not keyframe.image:
        return None
    with keyframe.image.open("rb") as handle:
        return handle.read()


def cast_members(*, references: list[tuple[str, int]]) -> list[CastMember]:
    """The cast a provider is sent, from (character name, reference image id) pairs: one image
    per character (a second one would be drawn as a twin), with its detected face box."""
    found = {r.id: r for r in ReferenceImage.objects.filter(id__in=[i for _, i in references])}
    cast, seen = [], set()
    for name, reference_id in references:
        reference = found.get(reference_id)
        if reference is None or name in seen:
            continue
        seen.add(name)
        face = (reference.faces or [{}])[0].get("box")
        cast.append(
            CastMember(
                name=name,
                image_path=local_path(reference.image),
                face_box=tuple(face) if face else None,
            )
        )
    return cast


def preflight(*, take_id: int) -> None:
    """Refuse the render when its estimate no longer fits what is left of the budget."""
    take = _take(take_id)
    drama = take.scene.chapter.drama
    if take.estimate_usd is None:
        return  # no price known: the render goes ahead and its cost shows as unknown
    spent = take_services.drama_spent_usd(drama_id=drama.id)
    reserved = take_services.drama_reserved_usd(drama_id=drama.id, exclude_take_id=take.id)
    if spent + reserved + take.estimate_usd > drama.budget_usd:
        left = max(drama.budget_usd - spent - reserved, 0)
        raise ValidationError(
            f"Over budget: this render needs about ${take.estimate_usd:.2f} but only "
            f"${left:.2f} of ${drama.budget_usd:.2f} is left. Raise the budget and regenerate."
        )


def save_handle(*, take_id: int, handle: dict) -> None:
    take_services.take_set(take_id=take_id, remote_handle=handle, status=TakeStatus.RENDERING)


def save_video(*, take_id: int, data: bytes) -> None:
    take = _take(take_id)
    old = take.video.name
    take.video.save("video.mp4", ContentFile(data), save=False)
    take.cost_usd = take_services.take_cost_usd(take_id=take_id)
    take.save(update_fields=["video", "cost_usd", "updated_at"])
    # The replaced video follows the row: deleted only once the row names the new one.
    if old != take.video.name:
        delete_after_commit([old])


def video_path(*, take_id: int) -> str:
    return local_path(_take(take_id).video)


def lipsync_source_path(*, take_id: int) -> str:
    """The video lip sync starts from: the service's render (a resumed sync may already have
    replaced `video` with a synced copy)."""
    take = _take(take_id)
    return local_path(take.unsynced_video or take.video)


def save_synced_video(*, take_id: int, data: bytes, note: str) -> None:
    """The synced video becomes the take's video; the service's render is kept beside it."""
    take = _take(take_id)
    replaced = []
    if take.unsynced_video:
        replaced.append(take.video.name)  # an earlier sync of this take (a resumed attempt)
    else:
        take.unsynced_video.name = take.video.name
    take.video.save("synced.mp4", ContentFile(data), save=False)
    take.cost_usd = take_services.take_cost_usd(take_id=take_id)
    take.lipsync_note = note
    take.save(update_fields=["video", "unsynced_video", "cost_usd", "lipsync_note", "updated_at"])
    delete_after_commit([name for name in replaced if name and name != take.video.name])


def save_frames(*, take_id: int, frames: list[SampledFrame]) -> list[tuple[int, str]]:
    """Frame rows for the sampled JPEGs (replacing any from an interrupted attempt), written
    in one insert."""
    take = _take(take_id)
    with transaction.atomic():
        # Their images go once this commits (dramas.signals).
        take.frames.all().delete()
        rows = []
        for sampled in frames:
            frame = Frame(
                take=take,
                index=sampled.index,
                time_s=sampled.time_s,
                width=sampled.width,
                height=sampled.height,
            )
            with open(sampled.path, "rb") as handle:
                frame.image.save(f"{sampled.index:03d}.jpg", ContentFile(handle.read()), save=False)
            rows.append(frame)
        Frame.objects.bulk_create(rows)
        for sampled in frames:
            os.remove(sampled.path)
    return [(frame.id, local_path(frame.image)) for frame in rows]


def profiles(*, take_id: int) -> tuple[list[CharacterProfile], list[str]]:
    """Profiles of the scene's characters, and the names of those without one."""
    take = _take(take_id)
    found, missing = [], []
    for character in take.scene.characters.order_by("name"):
        profile = character_profile(character=character)
        (found.append(profile) if profile else missing.append(character.name))
    return found, missing


def save_frame_scores(*, scores: dict[int, dict]) -> None:
    """Each frame's scores and judgement, in one update."""
    frames = list(Frame.objects.filter(id__in=scores))
    for frame in frames:
        frame.scores = scores[frame.id]
        verdict, frame.score = frame_judgement(frame.scores["characters"])
        frame.verdict = str(verdict)
    Frame.objects.bulk_update(frames, ["scores", "verdict", "score"])


def take_verdict(*, take_id: int, expected: list[str], unprofiled: list[str]) -> dict:
    """The take's verdict from its frames (judged by `frame_judgement`): a rejected frame fails
    it, and so does a character never found in any frame. Its score is its worst scored
    frame's; a take with no scored frame has no score (None, never 0)."""
    take = _take(take_id)
    frames = list(take.frames.order_by("index"))
    per_character: dict[str, list[float]] = {name: [] for name in expected}
    for frame in frames:
        for entry in (frame.scores or {}).get("characters", []):
            if entry["score"] is not None:
                per_character.setdefault(entry["name"], []).append(entry["score"])
    scored = [f for f in frames if f.score is not None]
    threshold = take.scene.chapter.drama.consistency_threshold
    unseen = [name for name, values in per_character.items() if not values]
    summary = {
        "threshold": threshold,
        "frames": len(frames),
        "scored_frames": len(scored),
        "characters": {
            name: {
                "min": round(min(values), 1) if values else None,
                "mean": round(sum(values) / len(values), 1) if values else None,
                "frames": len(values),
            }
            for name, values in per_character.items()
        },
        "unseen": unseen,
        "unprofiled": unprofiled,
    }
    if not expected:
        verdict, score = Verdict.NONE, None
    else:
        score = min((f.score for f in scored), default=None)
        bad = any(f.verdict == Verdict.REJECT for f in frames) or bool(unseen)
        verdict = Verdict.REJECT if bad else Verdict.ACCEPT
    best = max(scored, key=lambda f: f.score, default=None) or (
        frames[len(frames) // 2] if frames else None
    )
    old_poster = take.poster.name
    if best is not None:
        with best.image.open("rb") as handle:
            take.poster.save("poster.jpg", ContentFile(handle.read()), save=False)
    take.consistency, take.verdict, take.score = summary, verdict, score
    take.cost_usd = take_services.take_cost_usd(take_id=take_id)
    take.save(update_fields=["poster", "consistency", "verdict", "score", "cost_usd"])
    if old_poster != take.poster.name:  # a replaced poster goes once the row names the new one
        delete_after_commit([old_poster])
    return {"verdict": verdict, "score": score}


def mark_done(*, take_id: int) -> str:
    """The take is done, and its auto-regenerated follow-up (if any) is queued, in one
    transaction: a worker killed in between leaves both undone, and the resumed job does both,
    so the follow-up is never lost nor queued twice. Returns the take's note."""
    with transaction.atomic():
        take_services.take_set(take_id=take_id, status=TakeStatus.DONE, progress=1.0, note="Done")
        follow_up = auto_regenerate(take_id=take_id)
        if follow_up:
            take_services.take_set(take_id=take_id, note=follow_up)
    return follow_up or "Done"


def auto_regenerate(*, take_id: int) -> str:
    """Queue the next attempt of a failing take when the drama allows it; say what happened."""
    take = _take(take_id)
    drama = take.scene.chapter.drama
    if take.verdict != Verdict.REJECT or not drama.auto_regenerate:
        return ""
    if take.scene.takes.filter(locked=True).exists():
        return ""
    if take.number >= drama.max_attempts:
        return f"Not regenerated: {drama.max_attempts} attempts is the drama's limit."
    try:
        [new] = take_services.take_enqueue(
            drama=drama, scenes=[take.scene], priority=take.priority, user=None
        )
    except ValidationError as error:
        return f"Not regenerated: {' '.join(error.messages)}"
    return f"Below the threshold: take {new.number} queued with a new seed."


def forget_local_media(*, take_id: int) -> None:
    """The finished take's video and frames are not read again by the pipeline."""
    take = _take(take_id)
    files = [frame.image for frame in take.frames.all()]
    forget_local([take.video, *files] if take.video else files)
