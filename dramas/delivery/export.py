"""A chapter's cut exported as a delivery package: `chapter.export`, one job per export.

The package (research: voice_delivery_api_drift.md section 2): `episode.mp4` (captions burned
in), `episode_clean.mp4` (textless), `episode.srt` / `episode.vtt`, editor timelines
(`episode.otio`, `.fcpxml`, `.xml`, `.edl`) over the clean take media shipped in `media/`,
`cover.jpg` and `cover_3x4.jpg`, `manifest.json` (every file's sha256 and size, the measured
loudness, the input hash) and `episode.zip` of all of it. An export is identified by the hash of
everything that went in (dramas/delivery/cut.py): asking again for an unchanged cut returns the
package already made (or on its way) instead of making another.

The media work runs in the CPU pool (dramas/delivery/package.py, Django-free): the job hands it
a plain plan, follows its progress file, then stores what it wrote.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from dramas.delivery.cut import cut_inputs, cut_of, gaps, input_hash
from dramas.models import (
    Chapter,
    ChapterStatus,
    Export,
    ExportStatus,
    Frame,
    Take,
    export_folder,
)
from studio.jobs.models import Job
from studio.jobs.registry import PermanentError, register
from studio.jobs.services import job_enqueue
from studio.media import local_path

EXPORT = "chapter.export"
EXPORT_ATTEMPTS = 2
LOUDNESS_PRESETS = (-14.0, -16.0, -23.0)
SIZES = {"9:16": (1080, 1920), "16:9": (1920, 1080), "1:1": (1080, 1080)}


def export_spec(*, chapter: Chapter, loudness_lufs: float, allow_gaps: bool) -> dict:
    width, height = SIZES.get(chapter.drama.aspect, SIZES["9:16"])
    return {
        "width": width,
        "height": height,
        "loudness_lufs": float(loudness_lufs),
        "true_peak_dbtp": -1.0,
        "allow_gaps": bool(allow_gaps),
        # Part of the input hash: another preset makes other files.
        "x264_preset": settings.EXPORT_X264_PRESET,
    }


def export_request(
    *,
    chapter: Chapter,
    user=None,
    loudness_lufs: float = -14.0,
    allow_gaps: bool = False,
    queue: bool = True,
) -> tuple[Export, bool]:
    """The export of the chapter's current cut: the one already made or on its way for the
    same inputs, else a new one (queued as a job, or with `queue=False` left for the caller
    to make with `export_now`). Returns (export, made now)."""
    if float(loudness_lufs) not in LOUDNESS_PRESETS:
        raise ValidationError(
            f"Choose a delivery loudness of {', '.join(f'{v:g}' for v in LOUDNESS_PRESETS)} LUFS."
        )
    items = cut_of(chapter=chapter)
    if not any(item.take for item in items):
        raise ValidationError("Nothing to export: no scene of this chapter has a take to play.")
    missing = gaps(items)
    if missing and not allow_gaps:
        names = ", ".join(f"scene {item.scene.order}" for item in missing)
        raise ValidationError(
            f"{len(missing)} scene{'s have' if len(missing) != 1 else ' has'} no take to play "
            f"({names}): approve a take for each, or allow gaps to export without them."
        )
    spec = export_spec(chapter=chapter, loudness_lufs=loudness_lufs, allow_gaps=allow_gaps)
    inputs = cut_inputs(chapter=chapter, items=items, spec=spec)
    digest = input_hash(inputs)
    existing = current_export(chapter=chapter, digest=digest)
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            export = Export.objects.create(
                chapter=chapter,
                input_hash=digest,
                inputs=inputs,
                loudness_target_lufs=float(loudness_lufs),
                folder=export_folder(chapter, digest),
                created_by=user if getattr(user, "is_authenticated", False) else None,
            )
            if not queue:
                return export, True
            job = job_enqueue(
                kind=EXPORT,
                drama_id=chapter.drama_id,
                label=f"Export chapter {chapter.number}",
                payload={"export_id": export.id, "chapter_id": chapter.id},
                priority=1,
            )
            export.job_id = job.id
            export.save(update_fields=["job_id"])
    except IntegrityError:
        # Two requests for the same cut at once: the other one queued it.
        return current_export(chapter=chapter, digest=digest), False
    return export, True


def current_export(*, chapter: Chapter, digest: str) -> Export | None:
    return (
        Export.objects.filter(chapter=chapter, input_hash=digest)
        .exclude(status=ExportStatus.FAILED)
        .first()
    )


def latest_export(*, chapter: Chapter) -> Export | None:
    return Export.objects.filter(chapter=chapter, status=ExportStatus.DONE).first()


def export_is_current(*, export: Export) -> bool:
    """Whether the export is still what the chapter's cut would export now (same inputs)."""
    items = cut_of(chapter=export.chapter)
    spec = export_spec(
        chapter=export.chapter,
        loudness_lufs=export.loudness_target_lufs,
        allow_gaps=bool(export.inputs.get("spec", {}).get("allow_gaps")),
    )
    return input_hash(cut_inputs(chapter=export.chapter, items=items, spec=spec)) == (
        export.input_hash
    )


def with_export_stage(*, chapter: Chapter, stage: str) -> str:
    """The chapter's stage counting its export: an approved chapter whose current cut has an
    export is Exported. Sets `chapter.latest_export` and `chapter.export_current` (whether it
    is what the cut would export now) for the pages that link the package."""
    # `latest_export_id` from dramas.stages.chapters_with_stage saves a query when it is None.
    known = getattr(chapter, "latest_export_id", ...)
    if known is None:
        export = None
    elif known is ...:
        export = latest_export(chapter=chapter)
    else:
        export = Export.objects.filter(id=known).first()
    chapter.latest_export = export
    chapter.export_current = export is not None and export_is_current(export=export)
    if stage == ChapterStatus.APPROVED and chapter.export_current:
        return ChapterStatus.EXPORTED
    return stage


# --- the job ----------------------------------------------------------------------------------


def _plan(*, export_id: int) -> dict:
    """The export as plain data for the pool: clips with local media paths, captions on the
    episode's timeline, the cover frame, names."""
    export = Export.objects.select_related("chapter__drama").get(id=export_id)
    chapter = export.chapter
    takes = Take.objects.in_bulk(
        [clip["take"] for clip in export.inputs["clips"] if not clip.get("gap")]
    )
    clips, captions, markers, at = [], [], [], 0.0
    for clip in export.inputs["clips"]:
        if clip.get("gap"):
            continue
        take = takes.get(clip["take"])
        if take is None or not take.video:
            raise PermanentError(
                f"Take {clip['take']} of scene {clip['scene']} is gone: export the cut again."
            )
        in_s, out_s = clip["in_s"], clip["out_s"]
        for text, speaker, start, end in clip["dialog"]:
            start, end = max(start, in_s), min(end, out_s)
            if end - start >= 0.05 and text.strip():
                captions.append(
                    {
                        "start_s": round(at + start - in_s, 3),
                        "end_s": round(at + end - in_s, 3),
                        "text": text,
                        "speaker": speaker,
                    }
                )
        markers.append((round(at, 3), f"Scene {take.scene.order}: {take.scene.location}"))
        clips.append(
            {
                "take_id": take.id,
                "name": f"Scene {take.scene.order} · take {take.number}",
                "path": local_path(take.video),
                "clean_from": _clean_source(take),
                "in_s": in_s,
                "out_s": out_s,
                "transition": clip["transition"],
                "transition_s": clip["transition_s"],
                "metadata": {
                    "scene_id": clip["scene"],
                    "take_id": take.id,
                    "score": take.score,
                    "provider": take.provider,
                    "model": take.model,
                },
            }
        )
        at += out_s - in_s
    cover = Frame.objects.filter(id=export.inputs.get("cover_frame")).first()
    return {
        "name": f"{chapter.drama.title} · {chapter.number}. {chapter.title}",
        "spec": export.inputs["spec"],
        "clips": clips,
        "captions": captions,
        "markers": markers,
        "cover": local_path(cover.image) if cover else "",
        "input_hash": export.input_hash,
    }


def _clean_source(take: Take) -> dict | None:
    """How to make the take's textless picture: the offline animatic draws its subtitles into
    the picture, so its takes are drawn again without them (free, deterministic); other
    services' takes are clean as they came."""
    if take.provider != "local":
        return None
    from dramas import speech
    from dramas.pipeline_db import video_request

    request = video_request(take_id=take.id)
    return {
        "request": request,
        "track": take.dialog_track,
        "audio_paths": speech.audio_paths(track=take.dialog_track),
    }


def _store(*, export_id: int, work_dir: str, result: dict) -> None:
    """The package into the media storage, then the export marked done with its figures."""
    export = Export.objects.get(id=export_id)
    work = Path(work_dir)
    for name in result["files"]:
        with (work / name).open("rb") as handle:
            target = f"{export.folder}/{name}"
            if default_storage.exists(target):  # a resumed attempt: its files are replaced
                default_storage.delete(target)
            default_storage.save(target, File(handle))
    figures = result["figures"]
    Export.objects.filter(id=export_id).update(
        status=ExportStatus.DONE,
        files=result["files"],
        duration_s=figures["duration_s"],
        width=figures["width"],
        height=figures["height"],
        loudness_lufs=figures["loudness_lufs"],
        true_peak_dbtp=figures["true_peak_dbtp"],
        progress=1.0,
        note=_done_note(figures),
        error="",
        finished_at=timezone.now(),
    )


def _done_note(figures: dict) -> str:
    loudness = figures["loudness_lufs"]
    at = f" at {loudness:.1f} LUFS" if loudness is not None else " (silent)"
    return f"Exported {figures['duration_s']:.1f} s{at}"


def _set(*, export_id: int, **fields) -> None:
    Export.objects.filter(id=export_id).update(**fields)


def export_settled(job: Job, settled) -> None:
    """The export's job ended: an export still on its way ends with it, saying why."""
    export_id = job.payload.get("export_id") if isinstance(job.payload, dict) else None
    if settled.status != "succeeded" and export_id:
        Export.objects.filter(id=export_id).exclude(status=ExportStatus.DONE).update(
            status=ExportStatus.FAILED,
            error=(settled.error or settled.status)[:2000],
            note="Export failed",
            finished_at=timezone.now(),
        )


@register(EXPORT, max_attempts=EXPORT_ATTEMPTS, on_settled=export_settled)
async def chapter_export(ctx) -> dict:
    from dramas.delivery.package import package_in_pool
    from studio.cpu import run_cpu

    export_id = ctx.payload["export_id"]
    db = sync_to_async
    if not await Export.objects.filter(id=export_id).aexists():
        raise PermanentError("The export no longer exists.")
    await db(_set)(export_id=export_id, status=ExportStatus.RUNNING, note="Preparing the cut")
    plan = await db(_plan)(export_id=export_id)
    with tempfile.TemporaryDirectory(prefix="export-") as work_dir:
        task = asyncio.ensure_future(run_cpu(package_in_pool, plan, work_dir))
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            fraction = _read_progress(work_dir)
            note = "Mastering the episode" if fraction < 0.9 else "Writing timelines and covers"
            await ctx.progress(fraction * 0.95, note=note)
            await db(_set)(export_id=export_id, progress=fraction * 0.95, note=note)
        try:
            result = task.result()
        except ValueError as error:  # the master's refusal (MasterError): a readable reason
            raise PermanentError(str(error)) from error
        await ctx.progress(0.97, note="Storing the package")
        await db(_store)(export_id=export_id, work_dir=work_dir, result=result)
    return {"export_id": export_id, **result["figures"]}


def _read_progress(work_dir: str) -> float:
    try:
        return min(max(float(Path(work_dir, ".progress").read_text()), 0.0), 1.0)
    except (OSError, ValueError):
        return 0.0


def export_now(*, export: Export) -> Export:
    """Make the package in this process (the command line), without a worker."""
    from dramas.delivery.package import package_in_pool

    plan = _plan(export_id=export.id)
    _set(export_id=export.id, status=ExportStatus.RUNNING, note="Exporting")
    with tempfile.TemporaryDirectory(prefix="export-") as work_dir:
        try:
            result = package_in_pool(plan, work_dir)
        except Exception as error:
            _set(export_id=export.id, status=ExportStatus.FAILED, error=str(error)[:2000])
            raise
        _store(export_id=export.id, work_dir=work_dir, result=result)
    export.refresh_from_db()
    return export
