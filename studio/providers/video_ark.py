"""Video generation on the `ark` wire format: Seedance on BytePlus ModelArk / Volcengine Ark.

`POST {base}/contents/generations/tasks` (JSON: model, a `content` list of one text item and
image items with a role, ratio, resolution, duration, generate_audio, seed) answers `{id}`;
`GET .../tasks/{id}` gives the status (queued | running | succeeded | failed | cancelled |
expired), `content.video_url` and `usage.completion_tokens`; `DELETE .../tasks/{id}` cancels a
queued task. The video URL expires after about a day, so `fetch` reads the task again for the
current URL and downloads it at once. Billing is per output token: the first poll that sees a
task succeeded books its `completion_tokens` once ("video.generate").

A request with a first frame (the scene's chosen keyframe) sends it as the one image item with
role `first_frame`, and drops the cast's references: Seedance refuses a first (or last) frame
mixed with reference images ("first/last frame content cannot be mixed with reference media
content", a 400), and the keyframe, which already shows the cast, is the one to keep. Every
line but the text-only 1.0 lite t2v takes a first frame; that one ignores it.
"""

from __future__ import annotations

import logging
import math
from base64 import b64encode
from dataclasses import dataclass

from studio.providers.base import (
    Capabilities,
    JobHandle,
    JobState,
    JobStatus,
    Usage,
    VideoRequest,
)
from studio.providers.errors import (
    AuthError,
    BadRequest,
    MalformedResponse,
    parse_retry_after,
)
from studio.providers.transport import (
    Outcome,
)
from studio.providers.video_http import PERMANENT_CODES, RemoteVideo, VideoConfig

logger = logging.getLogger(__name__)

STATES = {
    "queued": JobState.QUEUED,
    "running": JobState.RUNNING,
    "succeeded": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
    "expired": JobState.FAILED,  # never ran: retryable, see _status
}
# Ark has no progress figure: a fixed share per state keeps the take's bar honest.
PROGRESS = {JobState.QUEUED: 0.0, JobState.RUNNING: 0.5}
# Ark's moderation codes say "SensitiveContentDetected"; the rest as for every video API.
ARK_PERMANENT_CODES = (*PERMANENT_CODES, "sensitive", "privacy", "copyright")

# Output frame sizes per resolution and ratio (Ark's table: about the same pixel count for
# every ratio of one resolution). Tokens, references and the estimate all use these.
FRAME_SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "480p": {
        "16:9": (864, 480),
        "4:3": (736, 544),
        "1:1": (640, 640),
        "3:4": (544, 736),
        "9:16": (480, 864),
        "21:9": (960, 416),
    },
    "720p": {
        "16:9": (1280, 720),
        "4:3": (1112, 834),
        "1:1": (960, 960),
        "3:4": (834, 1112),
        "9:16": (720, 1280),
        "21:9": (1470, 630),
    },
    "1080p": {
        "16:9": (1920, 1080),
        "4:3": (1664, 1248),
        "1:1": (1440, 1440),
        "3:4": (1248, 1664),
        "9:16": (1080, 1920),
        "21:9": (2520, 1080),
    },
}
RATIOS = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
FPS = 24  # every Seedance model renders 24 frames a second
TOKEN_PIXELS = 1024  # tokens = width * height * fps * seconds / 1024 (Ark's billing formula)


@dataclass(frozen=True)
class Family:
    """What one line of Seedance models accepts (Ark's model pages, 2026)."""

    min_s: int
    max_s: int
    resolutions: tuple[str, ...]
    max_reference_images: int
    # 2.0 and lite i2v keep a person from "reference_image"s; the pro 1.x models only start
    # from a "first_frame".
    reference_role: str
    audio: bool
    first_frame: bool = True  # starts from a keyframe (role first_frame)


FAMILIES: tuple[tuple[str, Family], ...] = (
    # Matched in this order against the model id, so the longer names come first.
    ("seedance-2-0", Family(4, 15, ("480p", "720p"), 9, "reference_image", True)),
    ("seedance-1-5-pro", Family(4, 12, ("480p", "720p", "1080p"), 1, "first_frame", True)),
    ("seedance-1-0-pro", Family(2, 12, ("480p", "720p", "1080p"), 1, "first_frame", False)),
    ("seedance-1-0-lite-i2v", Family(2, 12, ("480p", "720p"), 4, "reference_image", False)),
    (
        "seedance-1-0-lite-t2v",
        Family(2, 12, ("480p", "720p"), 0, "reference_image", False, first_frame=False),
    ),
)
DEFAULT_FAMILY = FAMILIES[0][1]  # an unknown id is taken for the newest line


def family_of(model: str) -> Family:
    model = model.lower()
    for marker, family in FAMILIES:
        if marker in model:
            return family
    return DEFAULT_FAMILY


def failure_retryable(code: str) -> bool:
    code = code.lower()
    return not any(word in code for word in ARK_PERMANENT_CODES)


@dataclass
class ArkConfig(VideoConfig):
    resolution: str = "720p"
    generate_audio: bool = True  # Seedance 2.0 speaks the dialog in the prompt itself
    # Ark's execution_expires_after (s): 0 leaves it to the vendor (48 h).
    expires_after_s: int = 0


class ArkVideo(RemoteVideo):
    def __init__(self, config: ArkConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.config: ArkConfig = config
        self.label = config.model
        self.family = family_of(config.model)
        # Ark takes whole seconds: listing them makes fit_duration round up to one.
        durations = tuple(config.durations_s) or tuple(
            float(s) for s in range(self.family.min_s, self.family.max_s + 1)
        )
        references = config.max_reference_images or self.family.max_reference_images
        self.capabilities = Capabilities(
            max_reference_images=references,
            durations_s=durations,
            min_duration_s=min(durations),
            max_duration_s=max(durations),
            aspects=RATIOS,
            can_cancel=True,
            lipsync=self.family.audio and config.generate_audio,
            native_audio=self.family.audio and config.generate_audio,
            first_frame=self.family.first_frame,
        )
        self.resolution = (
            config.resolution
            if config.resolution in self.family.resolutions
            else self.family.resolutions[-1]
        )
        if self.resolution != config.resolution:
            logger.warning(
                "%s renders %s, not %s: VIDEO_RESOLUTION is used as %s",
                config.model,
                "/".join(self.family.resolutions),
                config.resolution,
                self.resolution,
            )

    def frame_size(self, aspect: str) -> tuple[int, int]:
        return FRAME_SIZES[self.resolution].get(aspect, FRAME_SIZES[self.resolution]["9:16"])

    def estimated_usage(self, seconds: float, *, aspect: str = "9:16") -> tuple[Usage, float]:
        """What a clip of about `seconds` would be billed: output tokens by Ark's formula
        (width * height * 24 fps * seconds / 1024, at the configured resolution), no
        per-second units."""
        billed = self.capabilities.fit_duration(seconds)
        width, height = self.frame_size(aspect)
        tokens = math.ceil(width * height * FPS * billed / TOKEN_PIXELS)
        return Usage(output_tokens=tokens), 0.0

    def _handle(self, job_id: str, *, seconds: float, ratio: str) -> JobHandle:
        return JobHandle(
            provider=self.name,
            id=job_id,
            model=self.model,
            kind="video",
            data={"seconds": seconds, "ratio": ratio, "resolution": self.resolution},
        )

    def _body(self, request: VideoRequest, seconds: float, keyframe: bytes | None) -> dict:
        content: list[dict] = [{"type": "text", "text": request.prompt_text()}]
        if keyframe is not None:
            images = [(keyframe, "first_frame")]  # alone: Ark refuses it beside references
        else:
            references = [m for m in request.cast if m.image is not None or m.image_path]
            size = self.frame_size(request.aspect)
            images = [
                (self.reference(member, size), self.family.reference_role)
                for member in references[: self.capabilities.max_reference_images]
            ]
        for image, role in images:
            url = "data:image/jpeg;base64," + b64encode(image).decode("ascii")
            content.append({"type": "image_url", "image_url": {"url": url}, "role": role})
        body = {
            "model": self.model,
            "content": content,
            "ratio": request.aspect,
            "resolution": self.resolution,
            "duration": int(seconds),
        }
        if self.family.audio:
            body["generate_audio"] = self.config.generate_audio
        if request.seed is not None:
            body["seed"] = request.seed
        if self.config.expires_after_s:
            body["execution_expires_after"] = self.config.expires_after_s
        return body

    async def submit(self, request: VideoRequest, idempotency_key: str) -> JobHandle:
        seconds = self._offered(request)
        keyframe = self.start_frame(request, self.frame_size(request.aspect))
        body = self._body(request, seconds, keyframe)
        url = self.url("contents/generations/tasks")

        async def attempt() -> Outcome:
            # Ark documents no idempotency key (providers.md: "Submit is not idempotent at the
            # providers"). The key goes along anyway, as the Idempotency-Key other job APIs
            # read: a gateway in front of Ark, and our simulator, answer a retried POST with the
            # first task. Against Ark itself a retry after a lost answer may start a second
            # task; the pipeline keeps that rare by saving the handle before it polls.
            job_id, _ = await self.post_job(
                url,
                idempotency_key=idempotency_key,
                json=body,
                what="the task",
                first_frame=keyframe is not None,
            )
            return Outcome(
                self._handle(job_id, seconds=seconds, ratio=body["ratio"]), request_id=job_id
            )

        return await self.call(operation="video.submit", attempt=attempt)

    async def _task(self, handle: JobHandle):
        url = self.url(f"contents/generations/tasks/{handle.id}")
        response = await self.send("GET", url, headers=self.headers(url))
        return self.json_of(response), response.headers

    async def poll(self, handle: JobHandle) -> JobStatus:
        self._check(handle)
        tokens = 0

        async def attempt() -> Outcome:
            nonlocal tokens
            body, headers = await self._task(handle)
            tokens = completion_tokens(body)
            return Outcome(self._status(body, headers), request_id=handle.id)

        try:
            status = await self.call(operation="video.poll", attempt=attempt)
        except BadRequest as error:
            if error.status != 404:
                raise
            # Deleted, or past Ark's 7 days of task history: a new submission is the way on.
            return JobStatus(
                JobState.FAILED,
                error="the vendor no longer has this task (deleted or expired)",
                retryable=True,
                vendor_status="missing",
            )
        if status.state is JobState.SUCCEEDED:
            if not tokens:
                # A bill of 0 would hide the clip's cost: book what the formula says instead.
                logger.warning(
                    "%s: task %s reported no usage, booked the estimate", self.name, handle.id
                )
                tokens = self.estimated_usage(
                    float(handle.data.get("seconds") or 0), aspect=handle.data.get("ratio", "9:16")
                )[0].output_tokens
            await self.book_generated(handle, usage=Usage(output_tokens=tokens), units=0)
        return status

    def _status(self, body: dict, headers) -> JobStatus:
        vendor = str(body.get("status") or "").lower()
        state = STATES.get(vendor)
        if state is None:
            logger.warning("%s: unknown task status %r, treated as running", self.name, vendor)
            state = JobState.RUNNING
        error, retryable = "", False
        if vendor == "expired":
            # It timed out in Ark's queue without a result: nothing wrong with the request.
            error, retryable = "the task expired at the vendor before it finished (retryable)", True
        elif state is JobState.FAILED:
            detail = body.get("error") or {}
            if not isinstance(detail, dict):
                detail = {"message": str(detail)}
            code = str(detail.get("code") or detail.get("type") or "")
            retryable = failure_retryable(code)
            error = self.clean(str(detail.get("message") or code or "the video task failed"))
            error = f"{error} ({'retryable' if retryable else 'not retryable'})"
        poll_after = parse_retry_after(headers, cap_s=self.config.retry_after_cap_s)
        return JobStatus(
            state=state,
            progress=PROGRESS.get(state, 1.0),
            error=error,
            retryable=retryable,
            poll_after_s=poll_after if poll_after is not None else self.config.poll_s,
            vendor_status=vendor,
        )

    async def fetch(self, handle: JobHandle) -> bytes:
        self._check(handle)

        async def attempt() -> Outcome:
            # The URL a poll saw may have expired since: read the task for the current one.
            body, _ = await self._task(handle)
            vendor = str(body.get("status") or "")
            if vendor != "succeeded":
                raise BadRequest(
                    f"the task is {vendor or 'unknown'}: there is no video to fetch",
                    provider=self.name,
                    request_id=handle.id,
                )
            content = body.get("content") or {}
            video_url = str(content.get("video_url") or "") if isinstance(content, dict) else ""
            if not video_url:
                raise MalformedResponse(
                    "the task succeeded without a video_url",
                    provider=self.name,
                    request_id=handle.id,
                )
            try:
                data = await self.download(video_url)
            except (AuthError, BadRequest) as error:
                if error.status not in (403, 404):
                    raise
                # Signed storage links answer 403/404 once they expire (about 24 h).
                raise BadRequest(
                    "the video link no longer works (Ark keeps results about 24 h): "
                    + error.message,
                    provider=self.name,
                    status=error.status,
                    request_id=handle.id,
                ) from None
            return Outcome(self._video(data, handle), request_id=handle.id)

        return await self.call(operation="video.fetch", attempt=attempt)

    async def cancel(self, handle: JobHandle) -> bool:
        self._check(handle)
        url = self.url(f"contents/generations/tasks/{handle.id}")

        async def attempt() -> Outcome:
            await self.send("DELETE", url, headers=self.headers(url))
            return Outcome(True, request_id=handle.id)

        try:
            return await self.call(operation="video.cancel", attempt=attempt)
        except BadRequest as error:
            # 404: already gone. Ark refuses to cancel a task that is already running: it runs
            # to the end (and bills), which the caller must be told.
            logger.info("%s: task %s not cancelled: %s", self.name, handle.id, error.message)
            return False


def completion_tokens(body: dict) -> int:
    usage = body.get("usage") or {}
    if not isinstance(usage, dict):
        return 0
    try:
        return max(int(usage.get("completion_tokens") or 0), 0)
    except (TypeError, ValueError):
        return 0
