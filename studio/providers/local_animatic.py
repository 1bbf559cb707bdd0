"""LocalAnimatic: the offline video provider, on the same job protocol as remote ones.

`submit` starts a render in the shared process pool (never on the event loop) and returns at
once. The render reports through small files beside its output, so any process can poll:
`<id>.mp4` appears only when complete, `<id>.progress` holds the fraction done, `<id>.error`
the failure, `<id>.cancel` asks the renderer to stop. Submitting the same idempotency key
again returns the same job. Costs nothing, and says so in the ledger (price local/animatic).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path

from studio.cpu import run_cpu
from studio.providers.animatic import RenderCancelled, RenderOptions, render_animatic
from studio.providers.animatic import plan as animatic_plan
from studio.providers.base import (
    ASPECT_SIZES,
    Capabilities,
    JobHandle,
    JobState,
    JobStatus,
    ProgressCallback,
    Usage,
    VideoRequest,
)
from studio.providers.errors import BadRequest, JobFailed
from studio.providers.ledger import DbLedger, Recorder, UsageEntry

logger = logging.getLogger(__name__)


def render_job(request: VideoRequest, out_path: str, options: RenderOptions) -> dict:
    """Process-pool entry point: render, reporting progress and honouring cancel via files."""
    progress_path, cancel_path = f"{out_path}.progress", f"{out_path}.cancel"

    def progress(fraction: float) -> None:
        temporary = f"{progress_path}.tmp"
        with open(temporary, "w") as handle:
            handle.write(f"{fraction:.4f}")
        os.replace(temporary, progress_path)

    try:
        result = render_animatic(
            request,
            out_path,
            options=options,
            progress=progress,
            should_cancel=lambda: os.path.exists(cancel_path),
        )
    except RenderCancelled:
        return {"cancelled": True}
    except Exception as error:
        with open(f"{out_path}.error", "w") as handle:
            handle.write(f"{type(error).__name__}: {error}"[:500])
        raise
    finally:
        if os.path.exists(out_path):  # done: the file itself now says so
            with contextlib.suppress(OSError):
                os.remove(progress_path)
    return asdict(result)


class LocalAnimatic:
    name = "local"
    model = "animatic"
    label = "offline animatic"
    kind = "video"
    capabilities = Capabilities(
        max_reference_images=6,
        durations_s=None,
        min_duration_s=1.0,
        max_duration_s=60.0,
        aspects=tuple(ASPECT_SIZES),
        can_cancel=True,
        first_frame=True,  # the first shot after the title card is the keyframe
    )

    def __init__(
        self,
        *,
        output_dir: str | os.PathLike,
        options: RenderOptions | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.options = options or RenderOptions()
        self.recorder = recorder if recorder is not None else DbLedger()
        self._tasks: dict[str, asyncio.Task] = {}

    def __repr__(self) -> str:
        return f"LocalAnimatic(output_dir={str(self.output_dir)!r})"

    def title_card_s(self, duration_s: float) -> float:
        """How long the title card of a clip this long lasts (0 without one): the cast
        blurred behind the scene title, before the first shot and the first line."""
        if not self.options.title_card:
            return 0.0
        fps = self.options.fps
        request = VideoRequest(prompt="", duration_s=duration_s)
        shots = animatic_plan(request, fps=fps, title_card=True)
        return shots[0].frames / fps if shots and shots[0].kind == "title" else 0.0

    def estimated_usage(self, seconds: float) -> tuple[Usage, float]:
        return Usage(), self.capabilities.fit_duration(seconds)

    def path(self, job_id: str) -> Path:
        if not job_id.isalnum():
            raise BadRequest(f"not an animatic job id: {job_id!r}", provider=self.name)
        return self.output_dir / f"{job_id}.mp4"

    async def submit(self, request: VideoRequest, idempotency_key: str) -> JobHandle:
        if not idempotency_key:
            raise BadRequest("an idempotency key is required", provider=self.name)
        job_id = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
        handle = JobHandle(
            provider=self.name,
            id=job_id,
            model=self.model,
            kind="video",
            data={"seconds": float(request.duration_s)},
        )
        out = self.path(job_id)
        running = self._tasks.get(job_id)
        if out.exists() or (running is not None and not running.done()):
            return handle  # the same key never renders twice
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for suffix in (".error", ".cancel", ".progress", ".cancelled"):  # not ".crashes"
            Path(f"{out}{suffix}").unlink(missing_ok=True)
        self._tasks[job_id] = asyncio.create_task(self._run(request, out))
        return handle

    async def _run(self, request: VideoRequest, out: Path) -> None:
        started = time.perf_counter()
        try:
            result = await run_cpu(render_job, request, str(out), self.options)
        except Exception as error:
            message = f"{type(error).__name__}: {error}"[:500]
            error_file = Path(f"{out}.error")
            if isinstance(error, BrokenProcessPool) and _count_crash(out) <= POOL_CRASHES_RETRIED:
                # Its pool process died (killed, out of memory); the pool is rebuilt, and a
                # render with no output and no error reads as lost: the take renders it again.
                logger.warning("Animatic render lost with its pool process: %s", error)
                return
            if not error_file.exists():  # the pool itself failed, not the render
                error_file.write_text(message)
            await self._book(ok=False, error=message, started=started)
            logger.warning("Animatic render failed: %s", error)
            return
        if result.get("cancelled"):
            Path(f"{out}.cancelled").touch()
            return
        await self._book(ok=True, units=result["duration_s"], started=started, request_id=out.stem)

    async def _book(self, *, started: float, **fields) -> None:
        await self.recorder.record(
            UsageEntry(
                provider=self.name,
                model=self.model,
                kind="video",
                operation="video.generate",
                latency_ms=int((time.perf_counter() - started) * 1000),
                **fields,
            )
        )

    async def poll(self, handle: JobHandle) -> JobStatus:
        out = self.path(handle.id)
        task = self._tasks.get(handle.id)
        if out.exists():
            if task is not None and not task.done():
                # The file is written but its render is not booked yet: success is reported
                # only once the ledger holds it, so no finished take goes unbilled.
                return JobStatus(
                    JobState.RUNNING, progress=1.0, poll_after_s=0.1, vendor_status="booking"
                )
            return JobStatus(JobState.SUCCEEDED, progress=1.0, vendor_status="completed")
        error_file = Path(f"{out}.error")
        if error_file.exists():
            return JobStatus(
                JobState.FAILED,
                error=error_file.read_text()[:500],
                retryable=False,
                vendor_status="failed",
            )
        if Path(f"{out}.cancelled").exists():
            return JobStatus(JobState.CANCELLED, vendor_status="cancelled")
        if task is None or task.done():
            # Nobody renders it in this process: the studio restarted mid-render.
            return JobStatus(
                JobState.FAILED,
                error="the render was interrupted (the studio restarted); submit it again",
                retryable=True,
                vendor_status="lost",
            )
        return JobStatus(
            JobState.RUNNING,
            progress=self._progress(out),
            poll_after_s=0.5,
            vendor_status="rendering",
        )

    @staticmethod
    def _progress(out: Path) -> float:
        try:
            return min(max(float(Path(f"{out}.progress").read_text()), 0.0), 1.0)
        except (OSError, ValueError):
            return 0.0

    async def fetch(self, handle: JobHandle) -> bytes:
        out = self.path(handle.id)
        if not out.exists():
            raise JobFailed("the animatic is not rendered (yet)", provider=self.name)
        return await asyncio.to_thread(out.read_bytes)

    async def cancel(self, handle: JobHandle) -> bool:
        out = self.path(handle.id)
        task = self._tasks.get(handle.id)
        if task is None or task.done() or out.exists():
            return False
        Path(f"{out}.cancel").touch()
        return True

    async def render(
        self,
        request: VideoRequest,
        *,
        idempotency_key: str,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Submit, follow the progress, and return the finished MP4's path."""
        handle = await self.submit(request, idempotency_key)
        while True:
            status = await self.poll(handle)
            if progress is not None:
                progress(status.progress)
            if status.state is JobState.SUCCEEDED:
                return self.path(handle.id)
            if status.state.finished:
                raise JobFailed(
                    status.error or f"render {status.state.value}",
                    provider=self.name,
                    retryable=status.retryable,
                )
            await asyncio.sleep(status.poll_after_s / 2)


# A render whose pool process died is tried again this many times; then it fails, saying why
# (a clip that kills its process every time is not worth a loop).
POOL_CRASHES_RETRIED = 2


def _count_crash(out: Path) -> int:
    crashes = Path(f"{out}.crashes")
    try:
        count = int(crashes.read_text()) + 1
    except (OSError, ValueError):
        count = 1
    crashes.write_text(str(count))
    return count
