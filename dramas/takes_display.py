"""What the take pages show, computed once for views and live partials alike: score badges
(green at or above the threshold, red below, grey missing or unknown) and face boxes as
percentages of the frame, so the browser only places them."""

from dataclasses import dataclass

from django.db.models import OuterRef, Subquery

from dramas.models import Frame, Scene, Take, Verdict
from studio.jobs.models import Job


@dataclass(frozen=True)
class Badge:
    name: str
    score: float | None
    colour: str  # green | red | grey
    box: tuple[float, float, float, float] | None = None  # left, top, width, height in %

    @property
    def label(self) -> str:
        return f"{self.name} {round(self.score)}" if self.score is not None else f"{self.name} –"


def _box(box, width: int, height: int):
    if not box or not width or not height:
        return None
    left, top, right, bottom = box
    return (
        round(100 * left / width, 2),
        round(100 * top / height, 2),
        round(100 * (right - left) / width, 2),
        round(100 * (bottom - top) / height, 2),
    )


def score_colour(score: float | None, threshold: float) -> str:
    if score is None:
        return "grey"
    return "green" if score >= threshold else "red"


def frame_badges(frame: Frame, threshold: float) -> list[Badge]:
    scores = frame.scores or {}
    width, height = scores.get("width") or frame.width, scores.get("height") or frame.height
    badges = [
        Badge(
            entry["name"],
            entry["score"],
            score_colour(entry["score"], threshold),
            _box(entry.get("box"), width, height),
        )
        for entry in scores.get("characters", [])
    ]
    badges += [
        Badge("unknown", None, "grey", _box(box, width, height))
        for box in scores.get("unknown_faces", [])
    ]
    return badges


def decorate_frames(take: Take) -> list[Frame]:
    threshold = take.scene.chapter.drama.consistency_threshold
    frames = list(take.frames.order_by("index"))
    for frame in frames:
        frame.badges = frame_badges(frame, threshold)
        frame.colour = score_colour(frame.score, threshold) if frame.score is not None else "grey"
    return frames


def attach_jobs(takes: list[Take], *, known: dict[int, Job] | None = None) -> list[Take]:
    """Give each active take `live_job` (its job row: progress, attempts, last error).

    `known`: job rows the caller has read already, by id (only the others are read)."""
    ids = [take.job_id for take in takes if take.job_id and take.active]
    jobs = {id_: known[id_] for id_ in ids if id_ in known} if known else {}
    missing = [id_ for id_ in ids if id_ not in jobs]
    if missing:
        jobs.update((job.id, job) for job in Job.objects.filter(id__in=missing))
    for take in takes:
        take.live_job = jobs.get(take.job_id)
        take.threshold = take.scene.chapter.drama.consistency_threshold
        # A take rejected because a character never appeared can have a high score: the
        # verdict, not the score, decides its colour.
        rejected = take.verdict == Verdict.REJECT
        take.colour = "red" if rejected else score_colour(take.score, take.threshold)
        take.never_found = take.consistency.get("unseen", []) if rejected else []
    return takes


def latest_takes(scenes: list[Scene]) -> list[Scene]:
    """Give each scene `latest_take` (approved one first, else the newest) for the tiles.

    One query reads only those takes (not every attempt of every scene). The jobs of the ones
    still rendering are usually the scenes' `live_job` already (`live.attach_scene_jobs`);
    any other is read with one more query."""
    latest = Take.objects.filter(scene=OuterRef("scene")).order_by("-locked", "-number")
    takes = Take.objects.filter(scene__in=scenes, id=Subquery(latest.values("id")[:1]))
    by_scene = {take.scene_id: take for take in takes.select_related("scene__chapter__drama")}
    shown = (getattr(scene, "live_job", None) for scene in scenes)
    attach_jobs(list(by_scene.values()), known={job.id: job for job in shown if job})
    for scene in scenes:
        scene.latest_take = by_scene.get(scene.id)
    return scenes
