"""Video generation on the job-style videos wire format (OpenAI's /v1/videos and look-alikes).

`POST {base}/videos` (multipart: model, prompt, seconds, size, input_reference) with an
Idempotency-Key; `input_reference` is the scene's keyframe when the request has one (the clip
starts from it), else the first cast member's face-centred reference, at the output size.
`GET {base}/videos/{id}` for status (queued | in_progress | completed | failed) and progress;
`GET {base}/videos/{id}/content` for the MP4; `DELETE` to cancel.
Billing: the first poll that sees a job completed books its seconds once ("video.generate").
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from dataclasses import dataclass, field

from PIL import Image, ImageOps

from studio.providers import frames as stills
from studio.providers.base import (
    ASPECT_SIZES,
    Capabilities,
    CastMember,
    JobHandle,
    JobState,
    JobStatus,
    Usage,
    VideoRequest,
    frame_size,
)
from studio.providers.errors import (
    BadRequest,
    JobFailed,
    MalformedResponse,
    parse_retry_after,
)
from studio.providers.frames import reference_frame
from studio.providers.transport import (
    HttpConfig,
    HttpProvider,
    Outcome,
    looks_like_video,
    request_id_of,
)

logger = logging.getLogger(__name__)

STATES = {
    "queued": JobState.QUEUED,
    "pending": JobState.QUEUED,
    "in_progress": JobState.RUNNING,
    "processing": JobState.RUNNING,
    "running": JobState.RUNNING,
    "completed": JobState.SUCCEEDED,
    "succeeded": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
    "canceled": JobState.CANCELLED,
}
SORA_DURATIONS_S = (4.0, 8.0, 12.0)
# Failure codes that say "this prompt or reference will never pass": do not try again.
PERMANENT_CODES = ("moderation", "policy", "invalid", "blocked", "unsupported", "rejected")
# Sent with a submission whose start image is the scene's keyframe. Vendors ignore it; the
# simulator, which cannot tell a keyframe from a portrait in one and the same image input,
# animates a picture so marked as it is, without its identity-drift draw.
FIRST_FRAME_HEADER = "X-Studio-First-Frame"


@dataclass
class VideoConfig(HttpConfig):
    """What every remote video adapter is configured with. Empty durations and 0 references
    mean: the adapter's own table for the model decides."""

    durations_s: tuple[float, ...] = ()
    max_reference_images: int = 0
    poll_s: float = 2.0
    aspects: tuple[str, ...] = field(default_factory=lambda: tuple(ASPECT_SIZES))


def failure_retryable(code: str) -> bool:
    code = code.lower()
    return not any(word in code for word in PERMANENT_CODES)


def first_frame_header(sent: bool) -> dict[str, str]:
    """The mark of a submission that starts from the scene's keyframe (see FIRST_FRAME_HEADER)."""
    return {FIRST_FRAME_HEADER: "keyframe"} if sent else {}


class RemoteVideo(HttpProvider):
    """What every remote video adapter shares: handles of its own provider only, the aspects
    it offers, one bill per finished job, downloads that must be videos, and estimates in its
    billed seconds (adapters billed otherwise override `estimated_usage`)."""

    kind = "video"
    capabilities: Capabilities

    def estimated_usage(self, seconds: float) -> tuple[Usage, float]:
        return Usage(), self.capabilities.fit_duration(seconds)

    def _check(self, handle: JobHandle) -> None:
        if handle.provider != self.name:
            raise BadRequest(
                f"this handle belongs to {handle.provider!r}, not {self.name!r}",
                provider=self.name,
            )

    def reference(self, member: CastMember, size: tuple[int, int]) -> bytes:
        """The member's face-centred reference, a JPEG of exactly `size`."""
        try:
            return reference_frame(member, size)
        except (OSError, ValueError) as error:
            raise BadRequest(str(error), provider=self.name) from None

    def start_frame(self, request: VideoRequest, size: tuple[int, int]) -> bytes | None:
        """The request's first frame (its keyframe) as a JPEG of exactly `size`, cover-cropped
        about its centre; None without one, or when the model takes no start image."""
        if request.first_frame is None or not self.capabilities.first_frame:
            return None
        picture = stills.decode_image(request.first_frame)
        if picture is None:
            raise BadRequest(
                "the first frame (the scene's keyframe) is not a readable image",
                provider=self.name,
            )
        if picture.size != tuple(size):
            picture = ImageOps.fit(picture, tuple(size), Image.Resampling.BICUBIC)
        out = io.BytesIO()
        picture.save(out, format="JPEG", quality=90)
        return out.getvalue()

    def _offered(self, request: VideoRequest) -> float:
        """The request's duration as the service bills it; refuses an aspect it lacks."""
        if request.aspect not in self.capabilities.aspects:
            raise BadRequest(f"aspect {request.aspect} is not offered", provider=self.name)
        return self.capabilities.fit_duration(request.duration_s)

    async def book_generated(
        self, handle: JobHandle, *, usage: Usage | None = None, units: float | None = None
    ) -> None:
        """Bill the finished job once, however often it is polled: its seconds (the handle's)
        or tokens, and the request itself for a price billed per request."""
        await self.book(
            operation="video.generate",
            kind=None,
            started=None,
            ok=True,
            usage=usage or Usage(),
            units=float(handle.data.get("seconds") or 0) if units is None else units,
            requests=1,
            request_id=handle.id,
            once_per_request=True,
        )

    async def post_job(
        self,
        url: str,
        *,
        idempotency_key: str,
        id_field: str = "id",
        what: str,
        first_frame: bool = False,
        **body,
    ) -> tuple[str, dict]:
        """POST a new job (`json=` or `files=`) with its idempotency key (and the first-frame
        mark when it starts from a keyframe); returns the job's id (the answer's `id_field`)
        and the whole answer. An answer without one is malformed."""
        headers = self.headers(url, idempotency_key=idempotency_key) | first_frame_header(
            first_frame
        )
        response = await self.send("POST", url, headers=headers, **body)
        answer = self.json_of(response)
        job_id = str(answer.get(id_field) or "")
        if not job_id:
            raise MalformedResponse(
                f"{what} was accepted without {'an id' if id_field == 'id' else 'a ' + id_field}",
                provider=self.name,
                request_id=request_id_of(response),
            )
        return job_id, answer

    def _video(self, content: bytes, handle: JobHandle) -> bytes:
        if not looks_like_video(content):
            raise MalformedResponse(
                "the downloaded file is not a video", provider=self.name, request_id=handle.id
            )
        return content


class VideoJobsHTTP(RemoteVideo):
    def __init__(self, config: VideoConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.config: VideoConfig = config
        self.label = config.model
        # What /v1/videos (Sora 2) takes, unless the settings say otherwise for a look-alike.
        durations = tuple(config.durations_s) or SORA_DURATIONS_S
        self.capabilities = Capabilities(
            max_reference_images=config.max_reference_images or 1,
            durations_s=durations,
            min_duration_s=min(durations),
            max_duration_s=max(durations),
            aspects=config.aspects,
            can_cancel=True,
            first_frame=True,  # input_reference is the clip's first frame
        )

    def _handle(self, job_id: str, *, seconds: float, size: str) -> JobHandle:
        return JobHandle(
            provider=self.name,
            id=job_id,
            model=self.model,
            kind="video",
            data={"seconds": seconds, "size": size},
        )

    async def submit(self, request: VideoRequest, idempotency_key: str) -> JobHandle:
        seconds = self._offered(request)
        width, height = frame_size(request.aspect)
        size = f"{width}x{height}"
        form = {
            "model": self.model,
            "prompt": request.prompt_text(),
            "seconds": f"{seconds:g}",
            "size": size,
        }
        # Every field as a part, so the body is multipart even without a reference image.
        files = [(name, (None, value)) for name, value in form.items()]
        keyframe = self.start_frame(request, (width, height))
        if keyframe is not None:
            # The clip starts from the keyframe: it takes the place of the references.
            files.append(("input_reference", ("first-frame.jpg", keyframe, "image/jpeg")))
        else:
            references = [m for m in request.cast if m.image is not None or m.image_path]
            for n, member in enumerate(references[: self.capabilities.max_reference_images], 1):
                image = self.reference(member, (width, height))
                files.append(("input_reference", (f"reference-{n}.jpg", image, "image/jpeg")))
        url = self.url("videos")

        async def attempt() -> Outcome:
            job_id, _ = await self.post_job(
                url,
                idempotency_key=idempotency_key,
                files=files,
                what="the job",
                first_frame=keyframe is not None,
            )
            return Outcome(self._handle(job_id, seconds=seconds, size=size), request_id=job_id)

        # Retrying with the same Idempotency-Key is safe: the vendor returns the first job.
        return await self.call(operation="video.submit", attempt=attempt)

    async def poll(self, handle: JobHandle) -> JobStatus:
        self._check(handle)
        url = self.url(f"videos/{handle.id}")

        async def attempt() -> Outcome:
            response = await self.send("GET", url, headers=self.headers(url))
            body = self.json_of(response)
            return Outcome(self._status(body, response.headers), request_id=handle.id)

        try:
            status = await self.call(operation="video.poll", attempt=attempt)
        except BadRequest as error:
            if error.status != 404:
                raise
            # Deleted, expired or never created there: a new submission is the way on.
            return JobStatus(
                JobState.FAILED,
                error="the vendor no longer has this job (deleted or expired)",
                retryable=True,
                vendor_status="missing",
            )
        if status.state is JobState.SUCCEEDED:
            await self.book_generated(handle)
        return status

    def _status(self, body: dict, headers) -> JobStatus:
        vendor = str(body.get("status") or "").lower()
        state = STATES.get(vendor)
        if state is None:
            logger.warning("%s: unknown video status %r, treated as running", self.name, vendor)
            state = JobState.RUNNING
        try:
            progress = min(max(float(body.get("progress") or 0) / 100.0, 0.0), 1.0)
        except (TypeError, ValueError):
            progress = 0.0
        if state is JobState.SUCCEEDED:
            progress = 1.0
        error, retryable = "", False
        if state is JobState.FAILED:
            detail = body.get("error") or {}
            if not isinstance(detail, dict):
                detail = {"message": str(detail)}
            code = str(detail.get("code") or detail.get("type") or "")
            retryable = failure_retryable(code)
            error = self.clean(str(detail.get("message") or code or "the video job failed"))
            error = f"{error} ({'retryable' if retryable else 'not retryable'})"
        poll_after = parse_retry_after(headers, cap_s=self.config.retry_after_cap_s)
        return JobStatus(
            state=state,
            progress=progress,
            error=error,
            retryable=retryable,
            poll_after_s=poll_after if poll_after is not None else self.config.poll_s,
            vendor_status=vendor,
        )

    async def fetch(self, handle: JobHandle) -> bytes:
        self._check(handle)
        url = self.url(f"videos/{handle.id}/content")

        async def attempt() -> Outcome:
            return Outcome(self._video(await self.download(url), handle), request_id=handle.id)

        return await self.call(operation="video.fetch", attempt=attempt)

    async def cancel(self, handle: JobHandle) -> bool:
        self._check(handle)
        url = self.url(f"videos/{handle.id}")

        async def attempt() -> Outcome:
            await self.send("DELETE", url, headers=self.headers(url))
            return Outcome(True, request_id=handle.id)

        try:
            return await self.call(operation="video.cancel", attempt=attempt)
        except BadRequest as error:
            if error.status == 404:
                return False  # already gone
            raise


async def wait_for(provider, handle: JobHandle, *, timeout_s: float = 600.0) -> JobStatus:
    """Poll until the job finishes (for shells and tests; the job engine polls on its own)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = await provider.poll(handle)
        if status.state.finished:
            return status
        if time.monotonic() > deadline:
            raise JobFailed(f"still {status.state.value} after {timeout_s:g} s", retryable=True)
        await asyncio.sleep(min(status.poll_after_s, 5.0))
