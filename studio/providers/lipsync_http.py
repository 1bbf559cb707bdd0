"""Lip sync on the generate-and-poll wire format (sync.so's /v2/generate and look-alikes).

`POST {base}/generate` with a video and an audio input (JSON with URLs, or multipart with the
files), `GET {base}/generate/{id}` until COMPLETED | FAILED | REJECTED (PENDING and PROCESSING
before), then download `outputUrl`. The key goes in `x-api-key`, and only to the base URL: the
output link (often a storage bucket) is fetched without it. There is no cancel endpoint: a
submitted job runs to the end, and `capabilities.can_cancel` says so.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from studio.providers.base import Capabilities, JobHandle, JobState, JobStatus, LipSyncRequest
from studio.providers.errors import BadRequest, JobFailed, MalformedResponse, parse_retry_after
from studio.providers.transport import (
    HttpConfig,
    HttpProvider,
    Outcome,
    looks_like_video,
    request_id_of,
)

logger = logging.getLogger(__name__)

# vendor status -> (our state, retryable when it is a failure)
STATES = {
    "PENDING": (JobState.QUEUED, False),
    "QUEUED": (JobState.QUEUED, False),
    "PROCESSING": (JobState.RUNNING, False),
    "COMPLETED": (JobState.SUCCEEDED, False),
    # FAILED is the vendor's processing failure: the same inputs may pass next time.
    "FAILED": (JobState.FAILED, True),
    # REJECTED is about the inputs (no face, bad audio, policy): sending them again cannot help.
    "REJECTED": (JobState.FAILED, False),
    "CANCELED": (JobState.CANCELLED, False),
    "CANCELLED": (JobState.CANCELLED, False),
}


@dataclass
class LipSyncConfig(HttpConfig):
    auth: str = "x-api-key"
    poll_s: float = 2.0
    max_duration_s: float = 300.0


class LipSyncHTTP(HttpProvider):
    kind = "lipsync"

    def __init__(self, config: LipSyncConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.config: LipSyncConfig = config
        self.label = config.model
        self.capabilities = Capabilities(
            max_reference_images=0,
            durations_s=None,
            max_duration_s=config.max_duration_s,
            can_cancel=False,
            lipsync=True,
        )

    def _check(self, handle: JobHandle) -> None:
        if handle.provider != self.name:
            raise BadRequest(
                f"this handle belongs to {handle.provider!r}, not {self.name!r}",
                provider=self.name,
            )

    async def submit(self, request: LipSyncRequest, idempotency_key: str) -> JobHandle:
        has_files = request.video is not None or request.audio is not None
        if not (request.video or request.video_url) or not (request.audio or request.audio_url):
            raise BadRequest("lip sync needs a video and an audio input", provider=self.name)
        url = self.url("generate")
        options = {"sync_mode": request.sync_mode}
        if has_files:
            files = []
            if request.video is not None:
                files.append(("video", ("clip.mp4", request.video, "video/mp4")))
            if request.audio is not None:
                files.append(("audio", ("speech.wav", request.audio, "audio/wav")))
            form = {"model": self.model, "options": json.dumps(options)}
            for key, value in (("videoUrl", request.video_url), ("audioUrl", request.audio_url)):
                if value:
                    form[key] = value
            payload = {"data": form, "files": files}
        else:
            payload = {
                "json": {
                    "model": self.model,
                    "input": [
                        {"type": "video", "url": request.video_url},
                        {"type": "audio", "url": request.audio_url},
                    ],
                    "options": options,
                }
            }

        async def attempt() -> Outcome:
            response = await self.send(
                "POST", url, headers=self.headers(url, idempotency_key=idempotency_key), **payload
            )
            body = self.json_of(response)
            job_id = str(body.get("id") or "")
            if not job_id:
                raise MalformedResponse(
                    "the job was accepted without an id",
                    provider=self.name,
                    request_id=request_id_of(response),
                )
            handle = JobHandle(provider=self.name, id=job_id, model=self.model, kind="lipsync")
            return Outcome(handle, request_id=job_id)

        return await self.call(operation="lipsync.submit", attempt=attempt)

    async def _job(self, handle: JobHandle, operation: str) -> tuple[dict, object]:
        self._check(handle)
        url = self.url(f"generate/{handle.id}")

        async def attempt() -> Outcome:
            response = await self.send("GET", url, headers=self.headers(url))
            return Outcome((self.json_of(response), response.headers), request_id=handle.id)

        return await self.call(operation=operation, attempt=attempt)

    async def poll(self, handle: JobHandle) -> JobStatus:
        body, headers = await self._job(handle, "lipsync.poll")
        vendor = str(body.get("status") or "").upper()
        state, retryable = STATES.get(vendor, (None, False))
        if state is None:
            logger.warning("%s: unknown lip-sync status %r, treated as running", self.name, vendor)
            state = JobState.RUNNING
        error = ""
        if state is JobState.FAILED:
            detail = body.get("error") or body.get("errorMessage") or vendor.lower()
            if isinstance(detail, dict):
                detail = detail.get("message") or detail.get("code") or vendor.lower()
            error = f"{self.clean(str(detail))} ({'retryable' if retryable else 'not retryable'})"
        if state is JobState.SUCCEEDED:
            seconds = body.get("outputDuration")
            if isinstance(seconds, int | float) and seconds > 0:
                await self.book(
                    operation="lipsync.generate",
                    kind=None,
                    started=None,
                    ok=True,
                    units=float(seconds),
                    request_id=handle.id,
                    once_per_request=True,
                )
        poll_after = parse_retry_after(headers, cap_s=self.config.retry_after_cap_s)
        return JobStatus(
            state=state,
            progress=1.0 if state is JobState.SUCCEEDED else (0.5 if vendor == "PROCESSING" else 0),
            error=error,
            retryable=retryable if state is JobState.FAILED else False,
            poll_after_s=poll_after if poll_after is not None else self.config.poll_s,
            vendor_status=vendor,
        )

    async def fetch(self, handle: JobHandle) -> bytes:
        body, _ = await self._job(handle, "lipsync.poll")
        output = str(body.get("outputUrl") or "")
        if str(body.get("status") or "").upper() != "COMPLETED" or not output:
            raise JobFailed("the lip-sync job has no output yet", provider=self.name)

        async def attempt() -> Outcome:
            content = await self.download(output)
            if not looks_like_video(content):
                raise MalformedResponse(
                    "the lip-sync output is not a video", provider=self.name, request_id=handle.id
                )
            return Outcome(content, request_id=handle.id)

        return await self.call(operation="lipsync.fetch", attempt=attempt)

    async def cancel(self, handle: JobHandle) -> bool:
        self._check(handle)
        return False
