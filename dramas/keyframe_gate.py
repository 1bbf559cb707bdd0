"""The keyframe gate's reads: each scene's chosen keyframe, whether the gate holds a scene, and
what keyframe rounds on their way hold against the budget. Kept apart from dramas/keyframes.py
so the takes' budget and render checks read them without importing the keyframe jobs."""

from collections.abc import Sequence
from decimal import Decimal

from django.db.models import Sum

from dramas.models import KEYFRAME_ACTIVE, Drama, Keyframe, KeyframeRound, Scene, Verdict


def keyframes_reserved_usd(*, drama_id: int) -> Decimal:
    """Estimates of keyframe rounds still on their way (their images are not booked yet)."""
    rounds = KeyframeRound.objects.filter(
        scene__chapter__drama_id=drama_id, status__in=KEYFRAME_ACTIVE
    )
    return rounds.aggregate(total=Sum("estimate_usd"))["total"] or Decimal(0)


def chosen_keyframes(*, scene_ids: Sequence[int]) -> dict[int, Keyframe]:
    """Each scene's chosen keyframe, by scene id (one query)."""
    rows = Keyframe.objects.filter(scene_id__in=scene_ids, chosen=True).select_related("round")
    return {row.scene_id: row for row in rows}


def gate_refusals(
    *, drama: Drama, scenes: Sequence[Scene], chosen: dict[int, Keyframe] | None = None
) -> dict[int, str]:
    """Why the keyframe gate keeps each of `scenes` from rendering, by scene id (only those it
    keeps): the drama's gate is on and the scene's chosen keyframe is not consistent. Scenes
    without keyframes render from their references, as without a storyboard. `chosen`: the
    scenes' chosen keyframes when the caller has read them already."""
    if not drama.keyframe_gate:
        return {}
    if chosen is None:
        chosen = chosen_keyframes(scene_ids=[s.id for s in scenes])
    refusals = {}
    for scene_id, keyframe in chosen.items():
        if keyframe.verdict == Verdict.REJECT:
            order = next(s.order for s in scenes if s.id == scene_id)
            score = "" if keyframe.score is None else f" (score {keyframe.score:.0f})"
            refusals[scene_id] = (
                f"Scene {order}: its keyframe is not consistent{score}, so a video would likely "
                "fail the face check too. Pick or regenerate a consistent keyframe, or render "
                "it anyway."
            )
    return refusals
