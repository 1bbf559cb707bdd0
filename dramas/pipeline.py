"""The take pipeline: one job per take, each step a durable checkpoint.

    prompt -> preflight (budget) -> speech (each line in its character's voice, cached, placed
    on the timeline) -> submit (handle saved BEFORE polling) -> poll -> download -> mix (the
    dialog track muxed into the video as AAC) -> lipsync (video and track to the lip-sync
    service, its synced video replacing the take's; skipped visibly when not configured or
    silent) -> frames (2/s + first and last, from the synced video when there is one)
    -> score (every frame against the scene's characters) -> verdict (worst frame) -> done

A restarted worker starts at the last checkpoint: after `submit` it polls the stored handle,
so a take never makes a second vendor job (a POST cut off before its handle was saved is sent
again with the same idempotency key, and the vendor answers with the same job). Decoding and
face scoring run in the process pool. An open circuit breaker parks the take as "waiting for
provider": the job is deferred past the breaker's delay without spending an attempt, for up to
PROVIDER_OUTAGE_MAX_S in a row, then the take fails saying so.

A vendor job still not done VIDEO_MAX_RENDER_S after it was first submitted is cancelled at the
vendor and its take fails, saying so. The submit time is the database's clock, kept in the job's
checkpoint while the take polls (the checkpoint is what a restarted worker resumes from, and the
first submit is not repeated, so the deadline never restarts).
"""

import asyncio
import logging
import tempfile
import time
from datetime import datetime
from typing import NoReturn

import av
from asgiref.sync import sync_to_async
from django.conf import settings

from characters.consistency import score_frame
from dramas import pipeline_db as db
from dramas import speech
from dramas.dialog_audio import dialog_wav, mux_dialog, with_heard
from dramas.models import SpeechOwner, TakeStatus
from dramas.sampling import sample_frames
from dramas.takes import JOB_ATTEMPTS, RENDER, VENDOR_CANCEL, take_set, take_settled
from studio.jobs.registry import LeaseLost, PermanentError, Release, register
from studio.jobs.store import database_now
from studio.media import local_path
from studio.providers import registry
from studio.providers.base import JobHandle, JobState, LipSyncRequest, wait_for_news
from studio.providers.errors import CircuitOpen, JobFailed, MalformedResponse
from studio.providers.ledger import usage_scope
from studio.providers.local_animatic import LocalAnimatic

log = logging.getLogger(__name__)

STEPS = (
    "prompt",
    "preflight",
    "speech",
    "submit",
    "poll",
    "download",
    "mix",
    "lipsync",
    "frames",
    "score",
)
# Quick, free and safe to repeat: a worker that dies after them runs them again rather than
# the job writing a checkpoint for each (two writes less per take).
UNCHECKPOINTED = frozenset({"prompt", "preflight"})
# Share of the progress bar each stage ends at.
PROGRESS = {
    "speech": 0.04,
    "submit": 0.05,
    "poll": 0.6,
    "download": 0.63,
    "mix": 0.64,
    "lipsync": 0.76,
    "frames": 0.8,
}
LIPSYNC_OFF = "Skipped: no lip-sync provider is configured (set LIPSYNC_BASE_URL)."
TITLE_CARD = "Title card of the offline animatic: not a shot, not scored."
LIPSYNC_NO_AUDIO = "Skipped: this take has no dialog track to sync (no lines, or the video speaks)."
# A vendor's processing failure (FAILED, not REJECTED) is tried once more as a new job.
LIPSYNC_TRIES = 2
NATIVE_AUDIO = "The video service renders the dialog with the picture (its own voices)."


def _db(function):
    return sync_to_async(function, thread_sensitive=True)


class TakeRun:
    def __init__(self, ctx, info: db.TakeInfo) -> None:
        self.ctx = ctx
        self.info = info
        self.take_id = info.take_id
        self.video = registry.video()
        self._last_saved = -1.0
        self._last_saved_at = -1e9
        self.step = STEPS[0]
        # The vendor's job ended (done, failed, cancelled) or was cancelled by this run: failing
        # now needs no cancel at the vendor.
        self.vendor_ended = False
        checkpoint = ctx.checkpoint if isinstance(ctx.checkpoint, dict) else {}
        # When the vendor job was first submitted (ISO, database clock); the poll deadline.
        self.submitted_at: str | None = checkpoint.get("submitted_at")
        # The lip-sync job (handle, try, submit time), checkpointed while it is polled.
        self.lipsync_state: dict = {}
        self.lipsync_service = None

    async def set(self, **fields) -> None:
        await _db(take_set)(take_id=self.take_id, drama_id=self.info.drama_id, **fields)

    async def progress(self, fraction: float, note: str) -> None:
        await self.ctx.progress(fraction, note=note)
        # The take's row (and the board's event) moves by 5 % steps at most twice a second:
        # the job's own progress, throttled by the engine, carries the finer steps.
        now = time.monotonic()
        step = fraction - self._last_saved >= 0.05 and now - self._last_saved_at >= 0.5
        if step or fraction >= 1:
            self._last_saved, self._last_saved_at = fraction, now
            await self.set(progress=fraction, note=note)

    async def run(self) -> dict:
        checkpoint = self.ctx.checkpoint if isinstance(self.ctx.checkpoint, dict) else {}
        step = checkpoint.get("step", STEPS[0])
        # "done": the worker died after the last step's checkpoint, before `finish` marked the
        # take done; only `finish` is left to run.
        start = len(STEPS) if step == "done" else STEPS.index(step)
        with usage_scope(drama_id=self.info.drama_id, take_id=self.take_id):
            for index in range(start, len(STEPS)):
                if self.ctx.stopping:
                    raise Release()  # resume from this checkpoint on the next worker
                self.step = STEPS[index]
                await getattr(self, STEPS[index])()
                if STEPS[index] in UNCHECKPOINTED:
                    continue
                following = STEPS[index + 1] if index + 1 < len(STEPS) else "done"
                await self.ctx.save_checkpoint(self.checkpoint_at(following))
        return await self.finish()

    def checkpoint_at(self, step: str, **extra) -> dict:
        """The checkpoint for `step`: while polling it keeps the first submit's time."""
        data = {"step": step, **extra}
        if step == "poll" and self.submitted_at:
            data["submitted_at"] = self.submitted_at
        if step == "lipsync":
            data.update(self.lipsync_state)  # the lip-sync job being polled
        return data

    async def wait_for_provider(self, error: CircuitOpen) -> None:
        """The vendor's breaker is open: that is the vendor's state, not this take's fault, so
        the job is deferred until the breaker lets calls through again, without spending one
        of the take's attempts. After PROVIDER_OUTAGE_MAX_S of waiting in a row (at the same
        step) the take fails, saying why."""
        checkpoint = self.ctx.checkpoint if isinstance(self.ctx.checkpoint, dict) else {}
        now = time.time()
        since = checkpoint.get("waiting_since") if checkpoint.get("step") == self.step else None
        since = since or now
        waited, limit = now - since, settings.PROVIDER_OUTAGE_MAX_S
        name = self.lipsync_service.name if self.step == "lipsync" else self.video.name
        if waited >= limit:
            how_long = f"{waited:.0f} s" if waited < 120 else f"{waited / 60:.0f} min"
            text = (
                f"{name} kept failing for {how_long} (its circuit breaker stayed open), so the "
                f"take was given up. Last: {error}"
            )
            await self.set(status=TakeStatus.FAILED, error=text, note="Provider unavailable")
            raise PermanentError(text) from error
        wait = min(max(error.retry_after_s or 1.0, 1.0), limit - waited)
        await self.ctx.save_checkpoint(self.checkpoint_at(self.step, waiting_since=since))
        note = f"Waiting for {name}: it is failing, next try in {wait:.0f} s"
        await self.set(status=TakeStatus.WAITING, note=note)
        raise Release(note, after_s=wait) from error

    # --- steps ------------------------------------------------------------------------------
    async def prompt(self) -> None:
        await self.set(
            status=TakeStatus.RENDERING, started_at=_now(), note="Building the prompt", error=""
        )
        await _db(db.build_prompt)(
            take_id=self.take_id,
            max_refs=self.video.capabilities.max_reference_images,
            provider=self.video.name,
            model=self.video.model,
        )

    async def preflight(self) -> None:
        from django.core.exceptions import ValidationError

        try:
            await _db(db.preflight)(take_id=self.take_id)
        except ValidationError as error:
            raise PermanentError(" ".join(error.messages)) from None

    async def speech(self) -> None:
        """Who speaks: the video service (its capability says it renders audio) or the
        studio's dialog track, whose lines are spoken now (the offline animatic cuts its shots
        and subtitles to them)."""
        scene = await _db(db.scene_of)(take_id=self.take_id)
        lines = await _db(speech.scene_lines)(scene_id=scene.id)
        if not lines:
            await self.set(speech_owner="", dialog_track=[])
            return
        if self.video.capabilities.native_audio:
            await self.set(speech_owner=SpeechOwner.VIDEO, dialog_track=[], note=NATIVE_AUDIO)
            return
        await self.set(note=f"Speaking {len(lines)} lines")

        async def spoken(done: int, total: int) -> None:
            await self.ctx.progress(PROGRESS["speech"] * done / total, note=f"Spoke {done}/{total}")

        result = await speech.speak_scene(
            scene=scene,
            lines=lines,
            start_s=await self.title_card_end_s(),
            progress=spoken,
        )
        note = f"Dialog: {len(lines)} lines, {result['synthesised']} spoken now"
        if result["needed_s"] > scene.duration_s + 0.05:
            note = (
                f"The dialog needs {result['needed_s']:.1f} s and the scene is "
                f"{scene.duration_s:g} s: pauses are shortened, and speech past the end is cut. "
                "Lengthen the scene to hear every line."
            )
        await self.set(speech_owner=SpeechOwner.STUDIO, dialog_track=result["track"])
        await self.progress(PROGRESS["speech"], note)

    async def submit(self) -> None:
        info = await _db(db.load)(take_id=self.take_id)
        if info.remote_handle:
            return  # submitted before a restart: poll that job, never a second one
        request = await _db(db.video_request)(take_id=self.take_id)
        await self.set(note=f"Submitting to {self.video.name}")
        handle = await self.video.submit(request, info.idempotency_key)
        # Durable before the first poll: a restart finds the handle and resumes polling.
        await _db(db.save_handle)(take_id=self.take_id, handle=handle.to_json())
        self.submitted_at = (await _db(database_now)()).isoformat()  # checkpointed with "poll"
        await self.progress(PROGRESS["submit"], f"Submitted to {self.video.name}")

    async def poll(self) -> None:
        info = await _db(db.load)(take_id=self.take_id)
        handle = JobHandle.from_json(info.remote_handle)
        low, high = PROGRESS["submit"], PROGRESS["poll"]
        deadline = await self.render_deadline()
        while True:
            try:
                status = await self.video.poll(handle)
            except Exception as error:
                if time.monotonic() >= deadline:  # past it, nothing is worth waiting for
                    await self.give_up_rendering(handle, cause=error)
                raise
            # Checked after the poll: a render that finished late is still downloaded.
            if status.state is JobState.SUCCEEDED:
                break
            if status.state is JobState.FAILED and status.vendor_status == "lost":
                # The offline renderer lost its render with the process: render the same key
                # again (it is free, and the key keeps it one job).
                request = await _db(db.video_request)(take_id=self.take_id)
                handle = await self.video.submit(request, info.idempotency_key)
                continue
            if status.state.finished:
                self.vendor_ended = True
                raise JobFailed(
                    status.error or f"the provider ended the job: {status.state.value}",
                    provider=self.video.name,
                    retryable=False,  # a new take (new seed) is the way on, not a resubmit
                )
            percent = round(status.progress * 100)
            note = f"{self.video.name}: {status.vendor_status or status.state.value} {percent}%"
            if info.status != TakeStatus.RENDERING:  # back from "waiting for provider"
                info.status = TakeStatus.RENDERING
                await self.set(status=TakeStatus.RENDERING, note=note)
            await self.progress(low + (high - low) * status.progress, note)
            left = deadline - time.monotonic()
            if left <= 0:
                await self.give_up_rendering(handle)
            await wait_for_news(self.video, handle, max(0.05, min(status.poll_after_s, left)))

    async def render_deadline(self) -> float:
        """When polling gives up, on this process's monotonic clock: VIDEO_MAX_RENDER_S after
        the first submit, elapsed time read on the database clock (any worker, any restart)."""
        now = await _db(database_now)()
        if self.submitted_at is None:
            # The worker died between saving the handle and the checkpoint, or the render was
            # submitted before this deadline existed: it counts from now.
            self.submitted_at = now.isoformat()
            await self.ctx.save_checkpoint(self.checkpoint_at("poll"))
        elapsed = (now - datetime.fromisoformat(self.submitted_at)).total_seconds()
        return time.monotonic() + settings.VIDEO_MAX_RENDER_S - elapsed

    async def give_up_rendering(
        self, handle: JobHandle, *, cause: Exception | None = None
    ) -> NoReturn:
        """Past VIDEO_MAX_RENDER_S: cancel the vendor's job (it may bill until it stops) and
        fail the take without a retry; take_render records the reason on the take."""
        limit = settings.VIDEO_MAX_RENDER_S
        how_long = f"{limit / 60:.0f} min" if limit >= 120 else f"{limit:g} s"
        cancelled = await _cancel_remote(self, handle=handle)
        self.vendor_ended = True
        what = (
            "the render was cancelled there"
            if cancelled
            else "it did not confirm cancelling the render (check its dashboard for charges)"
        )
        raise PermanentError(
            f"The video service ({self.video.name}) had not finished after {how_long} "
            f"(VIDEO_MAX_RENDER_S); {what}. Render a new take to try again."
        ) from cause

    async def download(self) -> None:
        info = await _db(db.load)(take_id=self.take_id)
        handle = JobHandle.from_json(info.remote_handle)
        data = await self.video.fetch(handle)
        await _db(db.save_video)(take_id=self.take_id, data=data)
        await self.progress(PROGRESS["download"], f"Downloaded {len(data) // 1024} KB")

    async def mix(self) -> None:
        info = await _db(db.dialog_of)(take_id=self.take_id)
        if info["owner"] != SpeechOwner.STUDIO or not info["track"]:
            return
        path = await _db(db.video_path)(take_id=self.take_id)
        paths = await _db(speech.audio_paths)(track=info["track"])
        result = await self.ctx.run_cpu(mux_dialog, path, info["track"], paths)
        await self.set(dialog_track=with_heard(info["track"], result["duration_s"]))
        heard = result["lines_heard"]
        note = f"Dialog track: {heard} of {result['lines']} lines in {result['duration_s']:g} s"
        await self.progress(PROGRESS["mix"], note)

    async def lipsync(self) -> None:
        """The studio's dialog track sent with the video to the lip-sync service; the synced
        video replaces the take's video (the service's render is kept) and is what the frames
        are sampled and scored from. Without a service or a track the stage says why."""
        info = await _db(db.dialog_of)(take_id=self.take_id)
        service = registry.lipsync()
        if service is None or info["owner"] != SpeechOwner.STUDIO or not info["track"]:
            note = LIPSYNC_OFF if service is None else LIPSYNC_NO_AUDIO
            await self.set(status=TakeStatus.LIPSYNC, lipsync_note=note)
            await self.progress(PROGRESS["lipsync"], "Lip sync skipped")
            return
        self.lipsync_service = service
        await self.set(status=TakeStatus.LIPSYNC, note=f"Lip sync at {service.name}")
        checkpoint = self.ctx.checkpoint if isinstance(self.ctx.checkpoint, dict) else {}
        if checkpoint.get("step") == "lipsync":
            self.lipsync_state = {k: v for k, v in checkpoint.items() if k.startswith("lipsync_")}
        source = await _db(db.lipsync_source_path)(take_id=self.take_id)
        paths = await _db(speech.audio_paths)(track=info["track"])
        failure = await self.lipsync_job(service, source, info["track"], paths)
        if failure:
            text = f"Lip sync failed at {service.name}: {failure} The take plays its dialog "
            await self.set(lipsync_note=(text + "track over the unsynced video.")[:300])
            await self.progress(PROGRESS["lipsync"], "Lip sync failed: the take stays unsynced")

    async def lipsync_job(self, service, source: str, track: list, paths: dict) -> str:
        """Submit (or resume), poll and fetch one lip-sync job, trying a vendor's processing
        failure once more as a new job. Returns why it failed ("" once the synced video is
        saved)."""
        state = self.lipsync_state
        low, high = PROGRESS["mix"], PROGRESS["lipsync"]
        while True:
            if not state.get("lipsync_handle"):
                tries = state.get("lipsync_try", 0) + 1
                with open(source, "rb") as handle_file:
                    video = handle_file.read()
                audio = await self.ctx.run_cpu(dialog_wav, source, track, paths)
                key = f"{self.info.idempotency_key}:lipsync:{tries}"
                handle = await service.submit(LipSyncRequest(video=video, audio=audio), key)
                submitted = (await _db(database_now)()).isoformat()
                state.update(
                    lipsync_handle=handle.to_json(), lipsync_try=tries, lipsync_at=submitted
                )
                await self.ctx.save_checkpoint(self.checkpoint_at("lipsync"))
            handle = JobHandle.from_json(state["lipsync_handle"])
            elapsed = await _db(_seconds_since)(iso=state["lipsync_at"])
            deadline = time.monotonic() + settings.VIDEO_MAX_RENDER_S - elapsed
            while True:
                status = await service.poll(handle)
                if status.state.finished:
                    break
                if time.monotonic() >= deadline:
                    return f"it had not finished after {settings.VIDEO_MAX_RENDER_S:g} s."
                note = f"{service.name}: {status.vendor_status or status.state.value}"
                await self.progress(low + (high - low) * status.progress, note)
                await wait_for_news(service, handle, status.poll_after_s)
            if status.state is JobState.SUCCEEDED:
                break
            if status.retryable and state["lipsync_try"] < LIPSYNC_TRIES:
                state.pop("lipsync_handle")  # a new job, under a new key
                continue
            return f"{status.error or status.state.value}."
        try:
            synced = await service.fetch(handle)
        except (JobFailed, MalformedResponse) as error:
            return f"{error}."
        with tempfile.TemporaryDirectory(prefix="take-lipsync-") as folder:
            path = f"{folder}/synced.mp4"
            with open(path, "wb") as out:
                out.write(synced)
            try:
                # The studio's own track goes back in: its timings are the subtitles' timings.
                mixed = await self.ctx.run_cpu(mux_dialog, path, track, paths)
            except (av.error.FFmpegError, IndexError, ValueError) as error:
                return f"its video could not be read ({error})."
            with open(path, "rb") as done:
                data = done.read()
        note = f"Lip synced by {service.name} ({service.model}): {mixed['duration_s']:.1f} s"
        await _db(db.save_synced_video)(take_id=self.take_id, data=data, note=note)
        await self.set(dialog_track=with_heard(track, mixed["duration_s"]))
        await self.progress(PROGRESS["lipsync"], note)
        return ""

    async def frames(self) -> None:
        path = await _db(db.video_path)(take_id=self.take_id)
        await self.set(status=TakeStatus.SCORING, note="Sampling frames")
        with tempfile.TemporaryDirectory(prefix="take-frames-") as folder:
            sampled = await self.ctx.run_cpu(sample_frames, path, folder)
            await _db(db.save_frames)(take_id=self.take_id, frames=sampled)
        await self.progress(PROGRESS["frames"], f"Sampled {len(sampled)} frames")

    async def score(self) -> None:
        profiles, unprofiled = await _db(db.profiles)(take_id=self.take_id)
        rows = await _db(_frame_rows)(take_id=self.take_id)
        self.expected = [p.name for p in profiles]
        self.unprofiled = unprofiled
        if not profiles:
            return
        threshold = self.info.threshold
        title_end_s = await self.title_card_end_s()
        low = PROGRESS["frames"]
        scores: dict[int, dict] = {}

        async def one(frame_id: int, path: str, time_s: float) -> None:
            if time_s < title_end_s:
                scores[frame_id] = {"skipped": TITLE_CARD, "characters": [], "face_count": 0}
            else:
                result = await self.ctx.run_cpu(score_frame, path, profiles, threshold)
                scores[frame_id] = result.to_dict()
            done = len(scores)
            # The job's progress (throttled by the engine) follows every frame; the frames'
            # rows are written together once all are scored (a resumed attempt scores again).
            await self.ctx.progress(
                low + (0.99 - low) * done / len(rows), note=f"Scored {done} of {len(rows)} frames"
            )

        await asyncio.gather(*(one(*row) for row in rows))
        await _db(db.save_frame_scores)(scores=scores)
        await self.progress(0.99, f"Scored {len(rows)} frames")

    async def title_card_end_s(self) -> float:
        """Where the offline animatic's title card ends (0 for other providers): the card
        shows the cast blurred behind the scene title, which is not a shot to judge."""
        if not isinstance(self.video, LocalAnimatic):
            return 0.0
        request = await _db(db.video_request)(take_id=self.take_id)
        return self.video.title_card_s(request.duration_s)

    async def finish(self) -> dict:
        if not hasattr(self, "expected"):  # resumed after scoring: read the cast again
            profiles, self.unprofiled = await _db(db.profiles)(take_id=self.take_id)
            self.expected = [p.name for p in profiles]
        result = await _db(db.take_verdict)(
            take_id=self.take_id, expected=self.expected, unprofiled=self.unprofiled
        )
        # The working copies go first (the files are in storage): a take seen done has none
        # left, and a crash in between only means they are fetched again on resume.
        await _db(db.forget_local_media)(take_id=self.take_id)
        note = await _db(db.mark_done)(take_id=self.take_id)
        return {"take_id": self.take_id, **result, "note": note}


def _frame_rows(*, take_id: int) -> list[tuple[int, str, float]]:
    from dramas.models import Frame

    frames = Frame.objects.filter(take_id=take_id).order_by("index")
    return [(f.id, local_path(f.image), f.time_s) for f in frames]


def _seconds_since(*, iso: str) -> float:
    return (database_now() - datetime.fromisoformat(iso)).total_seconds()


def _cancel_requested(*, job_id: int) -> bool:
    from studio.jobs.models import Job

    return Job.objects.filter(id=job_id, cancel_requested=True).exists()


def _now():
    from django.utils import timezone

    return timezone.now()


@register(RENDER, max_attempts=JOB_ATTEMPTS, on_settled=take_settled)
async def take_render(ctx) -> dict:
    info = await _db(db.load)(take_id=ctx.payload["take_id"])
    if info is None:
        raise PermanentError("The take no longer exists.")
    if info.status in (TakeStatus.DONE, TakeStatus.CANCELLED):
        return {"take_id": info.take_id, "status": info.status}
    run = TakeRun(ctx, info)
    try:
        return await run.run()
    except asyncio.CancelledError:
        # A user's cancel is a flag on the job; shutdown or a lost lease keep the take going.
        # The take itself is cancelled with its job (take_settled); here the vendor is told.
        if await _db(_cancel_requested)(job_id=ctx.job_id):
            await _cancel_remote(run)
        raise
    except (Release, LeaseLost):
        raise
    except CircuitOpen as error:
        await run.wait_for_provider(error)
    except Exception as error:
        text = str(error) or type(error).__name__
        if not getattr(error, "retryable", True) or ctx.attempt >= ctx.max_attempts:
            # Its whole reason (the job's last error is a short line); take_settled covers
            # the ends this handler never sees (reaper, a queued cancel).
            if run.step == "poll" and not run.vendor_ended:
                await _cancel_remote(run)  # given up while the vendor may still be rendering
            await run.set(status=TakeStatus.FAILED, error=text[:2000], note="Failed")
        else:
            await run.set(note=f"Attempt {ctx.attempt} failed, retrying: {text[:200]}")
        raise


async def _cancel_remote(run: TakeRun, *, handle: JobHandle | None = None) -> bool:
    """Tell the vendor to stop the take's job (`handle`, else the saved one); True if it did."""
    try:
        if handle is None:
            info = await _db(db.load)(take_id=run.take_id)
            if not (info and info.remote_handle):
                return False
            handle = JobHandle.from_json(info.remote_handle)
        return bool(await run.video.cancel(handle))
    except Exception:  # the vendor may refuse; the take ends on our side regardless
        log.warning("Could not cancel the remote job of take %s", run.take_id, exc_info=True)
        return False


@register(VENDOR_CANCEL, max_attempts=5, timeout_s=120)
async def take_vendor_cancel(ctx) -> dict:
    """Stop a cancelled take's job at the vendor (take_settled queues this when no render
    handler was running to do it); a vendor error is retried, an unknown job is done."""
    handle = JobHandle.from_json(ctx.payload["handle"])
    video = registry.video()
    if handle.provider != video.name:
        return {"cancelled": False, "why": f"{handle.provider} is no longer the video service"}
    info = await _db(db.load)(take_id=ctx.payload["take_id"])
    drama_id = info.drama_id if info else ctx.drama_id
    with usage_scope(drama_id=drama_id, take_id=ctx.payload["take_id"]):
        return {"cancelled": bool(await video.cancel(handle))}
