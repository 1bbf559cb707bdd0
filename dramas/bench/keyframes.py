"""`manage.py bench keyframes`: what the keyframe gate saves on a season whose images and
videos drift.

A 20-scene season (`--quick`: 4) of one character against the provider simulator: images on
its OpenAI images route (gpt-image-1, $0.04 an image), videos on its `/v1/videos` route
(sora-2, 8 s clips at $0.10 a second), identity drift at 30 % on both. Every scene is taken
until it has a consistent take, by the studio's own jobs and a real worker:

- **gated**: rounds of the drama's 3 keyframe candidates until the round has a consistent
  one (the studio chooses the best), then renders from the chosen keyframe (the simulator
  animates the keyframe: `first_frame_drift_rate`, 5 %, is the share of such clips that still
  drift; `{"first_frame_drift": 0.3}` from `manage.py shell` tries the case where a first frame
  helps nothing), regenerated until the take is consistent;
- **ungated** (the baseline, same run, same simulator): renders from the references only,
  regenerated until the take is consistent, as the studio did before keyframes.

Reported: `spend_gated_usd` (images and videos apart), `spend_ungated_usd`, `saving`
(1 - gated / ungated), the renders and keyframe rounds each needed, wall time, and the
saving the studio records itself (rounds that stopped a render, times its estimate).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Sum

from dramas import keyframes as keyframe_services
from dramas.bench.render import one_actor_drama
from dramas.keyframe_gate import chosen_keyframes
from dramas.models import TAKE_ACTIVE, Drama, KeyframeRound, Scene, Take, Verdict
from dramas.takes import take_enqueue
from studio.bench.harness import scratch_database
from studio.jobs.worker import Worker, WorkerConfig
from studio.models import Price, UsageRecord
from studio.providers import registry
from studio.providers.sim.server import Simulator
from studio.providers.sim.state import SimConfig

FACES = Path(__file__).resolve().parents[1] / "demo" / "faces"
DRIFT = 0.30
FIRST_FRAME_DRIFT = 0.05
IMAGE_USD = Decimal("0.04")  # per image (gpt-image-1, medium quality, 1024x1536)
VIDEO_USD_PER_S = Decimal("0.10")  # sora-2, 720p
SCENE_S = 8.0  # a short drama's shot: 5-10 s (sora-2 takes 4, 8 or 12)
MAX_TRIES = 12  # rounds or renders per scene before the bench gives up on it (reported)


def keyframes(options: dict) -> dict:
    scenes = 4 if options.get("quick") else 20
    with scratch_database() as database, ExitStack() as stack:
        stack.callback(registry.forget)
        for name in ("PROVIDER_VIDEO", "PROVIDER_IMAGE"):
            stack.callback(setattr, settings, name, getattr(settings, name))
        first_frame_drift = float(options.get("first_frame_drift", FIRST_FRAME_DRIFT))
        figures = asyncio.run(_measure(scenes, first_frame_drift))
    return {"database": database, "scenes": scenes, **figures}


async def _measure(count: int, first_frame_drift: float) -> dict:
    sim = Simulator(
        SimConfig(
            job_s=0.5,
            seed=11,
            drift_rate=DRIFT,
            first_frame_drift_rate=first_frame_drift,
            video_max_side=320,
            cache_clips=True,  # the vendor renders elsewhere: not on the studio's cores
        )
    )
    await sim.start()
    try:
        _use_the_simulator(sim.url)
        await sync_to_async(_prices)()
        gated_id, gated_scenes = await sync_to_async(_season)("gated", count, gate=True)
        ungated_id, ungated_scenes = await sync_to_async(_season)("ungated", count, gate=False)
        config = WorkerConfig(concurrency=8)
        worker = Worker(name="bench-keyframes", config=config)
        task = asyncio.create_task(worker.run())
        try:
            started = time.perf_counter()
            rounds, gated_renders, gated_unfinished = await _gated(gated_id, gated_scenes)
            gated_s = time.perf_counter() - started
            started = time.perf_counter()
            ungated_renders, ungated_unfinished = await _until_consistent(
                ungated_id, ungated_scenes
            )
            ungated_s = time.perf_counter() - started
        finally:
            worker.request_stop(grace_s=0)
            await task
    finally:
        await sim.stop()
    gated = await sync_to_async(_spend)(gated_id)
    ungated = await sync_to_async(_spend)(ungated_id)
    recorded = await sync_to_async(_recorded_saving)(gated_id)
    total_gated = gated["image"] + gated["video"]
    total_ungated = ungated["image"] + ungated["video"]
    saving = 1 - total_gated / total_ungated if total_ungated else Decimal(0)
    # What the rates make of it on average (a 20-scene run draws its own luck): a round of 3
    # finds a consistent candidate with 1 - drift^3, a clip is consistent with 1 - its drift.
    clip = float(VIDEO_USD_PER_S) * SCENE_S
    rounds_per_scene = 1 / (1 - DRIFT**3)
    expected_gated = count * (
        rounds_per_scene * 3 * float(IMAGE_USD) + clip / (1 - first_frame_drift)
    )
    expected_ungated = count * clip / (1 - DRIFT)
    return {
        "spend_gated_usd": float(round(total_gated, 2)),
        "spend_gated_images_usd": float(round(gated["image"], 2)),
        "spend_gated_videos_usd": float(round(gated["video"], 2)),
        "spend_ungated_usd": float(round(total_ungated, 2)),
        "saving": float(round(saving, 3)),
        "expected_spend_gated_usd": round(expected_gated, 2),
        "expected_spend_ungated_usd": round(expected_ungated, 2),
        "expected_saving": round(1 - expected_gated / expected_ungated, 3),
        "renders_gated": gated_renders,
        "renders_ungated": ungated_renders,
        "keyframe_rounds": rounds,
        "keyframe_images": rounds * 3,
        "gate_recorded_renders_avoided": recorded["rounds"],
        "gate_recorded_saving_usd": float(round(recorded["usd"], 2)),
        "wall_gated_s": round(gated_s, 2),
        "wall_ungated_s": round(ungated_s, 2),
        "unfinished_scenes": {"gated": gated_unfinished, "ungated": ungated_unfinished},
        "drift_rate": DRIFT,
        "first_frame_drift_rate": first_frame_drift,
        "prices": {
            "image_usd": float(IMAGE_USD),
            "video_usd_per_s": float(VIDEO_USD_PER_S),
            "scene_s": SCENE_S,
        },
    }


def _use_the_simulator(url: str) -> None:
    limits = {"rate_per_s": 200.0, "burst": 200, "concurrency": 16, "timeout_s": 10.0}
    settings.PROVIDER_VIDEO = {
        **settings.PROVIDER_VIDEO,
        **limits,
        "api": "openai_videos",
        "base_url": f"{url}/openai_videos",
        "provider": "openai",
        "model": "sora-2",
        "api_key": "",
        "durations_s": [SCENE_S],
        "max_reference_images": 1,
        "poll_s": 0.2,
    }
    settings.PROVIDER_IMAGE = {
        **settings.PROVIDER_IMAGE,
        **limits,
        "api": "openai",
        "base_url": f"{url}/v1",
        "provider": "openai",
        "model": "gpt-image-1",
        "api_key": "",
    }
    registry.forget()


def _prices() -> None:
    Price.objects.update_or_create(
        provider="openai",
        model="sora-2",
        kind="video",
        effective_date="2000-01-01",
        defaults={"per_second": VIDEO_USD_PER_S, "source": "bench"},
    )
    Price.objects.update_or_create(
        provider="openai",
        model="gpt-image-1",
        kind="image",
        effective_date="2000-01-01",
        defaults={"per_request": IMAGE_USD, "source": "bench"},
    )


def _season(name: str, count: int, *, gate: bool) -> tuple[int, list[int]]:
    return one_actor_drama(name=name, scenes=count, seconds=SCENE_S, keyframe_gate=gate)


async def _gated(drama_id: int, scene_ids: list[int]) -> tuple[int, int, int]:
    """Keyframe rounds until each scene has a consistent one, then renders from it."""
    rounds = 0
    waiting = list(scene_ids)
    for _ in range(MAX_TRIES):
        if not waiting:
            break
        queued = await sync_to_async(_keyframes)(drama_id, waiting)
        rounds += len(queued)
        await _settled(KeyframeRound, queued)
        waiting = await sync_to_async(_without_consistent_keyframe)(waiting)
    ready = [scene_id for scene_id in scene_ids if scene_id not in waiting]
    renders, unfinished = await _until_consistent(drama_id, ready)
    return rounds, renders, unfinished + len(waiting)


async def _until_consistent(drama_id: int, scene_ids: list[int]) -> tuple[int, int]:
    """Renders until each scene's latest take is consistent: (renders, scenes left)."""
    renders = 0
    waiting = list(scene_ids)
    for _ in range(MAX_TRIES):
        if not waiting:
            break
        queued = await sync_to_async(_render)(drama_id, waiting)
        renders += len(queued)
        await _settled(Take, queued)
        waiting = await sync_to_async(_inconsistent)(queued)
    return renders, len(waiting)


async def _settled(model, ids: list[int]) -> None:
    active = TAKE_ACTIVE if model is Take else ("queued", "generating")
    while await model.objects.filter(id__in=ids, status__in=active).aexists():
        await asyncio.sleep(0.1)


def _scenes(ids: list[int]) -> list[Scene]:
    return list(Scene.objects.filter(id__in=ids).select_related("chapter").order_by("id"))


def _keyframes(drama_id: int, scene_ids: list[int]) -> list[int]:
    drama = Drama.objects.get(id=drama_id)
    rounds = keyframe_services.keyframes_enqueue(drama=drama, scenes=_scenes(scene_ids))
    return [round_.id for round_ in rounds]


def _without_consistent_keyframe(scene_ids: list[int]) -> list[int]:
    chosen = chosen_keyframes(scene_ids=scene_ids)
    return [s for s in scene_ids if s not in chosen or chosen[s].verdict != Verdict.ACCEPT]


def _render(drama_id: int, scene_ids: list[int]) -> list[int]:
    drama = Drama.objects.get(id=drama_id)
    return [take.id for take in take_enqueue(drama=drama, scenes=_scenes(scene_ids))]


def _inconsistent(take_ids: list[int]) -> list[int]:
    takes = Take.objects.filter(id__in=take_ids).exclude(verdict=Verdict.ACCEPT)
    return list(takes.values_list("scene_id", flat=True))


def _spend(drama_id: int) -> dict[str, Decimal]:
    usage = UsageRecord.objects.filter(drama_id=drama_id)
    return {
        kind: usage.filter(operation__startswith=f"{kind}.").aggregate(total=Sum("cost_usd"))[
            "total"
        ]
        or Decimal(0)
        for kind in ("image", "video")
    }


def _recorded_saving(drama_id: int) -> dict:
    rounds = KeyframeRound.objects.filter(
        scene__chapter__drama_id=drama_id, render_avoided_usd__isnull=False
    )
    return {
        "rounds": rounds.count(),
        "usd": rounds.aggregate(total=Sum("render_avoided_usd"))["total"] or Decimal(0),
    }
