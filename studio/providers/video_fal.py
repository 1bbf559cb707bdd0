"""Video generation on fal.ai's queue (Kling, Hailuo, Veo, Wan and LTX models, among others).

`POST {base}/{model_id}` (base `https://queue.fal.run`) with the model's own JSON input and
`Authorization: Key <key>` answers `{request_id, status_url, response_url, cancel_url}`. Those
returned URLs are kept in the handle and used as given (the model's subpath is part of the
submit URL only): `GET status_url` for IN_QUEUE (with queue_position) | IN_PROGRESS (logs) |
COMPLETED, `GET response_url` for the model's output (`{"video": {"url": ...}}`, downloaded
from there without the key), `PUT cancel_url` to cancel while the request is still queued.
A failed request is COMPLETED too: its error is in the status (`error`, `error_type`) or in
the answer of response_url (4xx/5xx with fal's `detail`).
Billing: the first poll that sees a request completed with a result books it once
("video.generate"): its seconds, and one request for models fal bills per generation.
The queue plumbing (auth, errors, submit, status, result) is `FalQueue`, shared with the
image adapter (image_fal.py).

A request with a first frame (the scene's chosen keyframe) sends it in the model's image input
(a data URL at the output size) in place of the face reference: an image-to-video model starts
its clip from that picture. Text-to-video models have no image input and ignore it, as do the
reference-to-video ones, whose images are references kept through the clip, not a start.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
from dataclasses import dataclass, field

import httpx

from studio.providers.base import (
    Capabilities,
    JobHandle,
    JobState,
    JobStatus,
    VideoRequest,
    frame_size,
)
from studio.providers.errors import (
    AuthError,
    BadRequest,
    MalformedResponse,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    error_for_status,
    parse_retry_after,
)
from studio.providers.transport import (
    Outcome,
    request_id_of,
)
from studio.providers.video_http import (
    RemoteVideo,
    VideoConfig,
    failure_retryable,
    first_frame_header,
)

logger = logging.getLogger(__name__)

STATES = {
    "IN_QUEUE": JobState.QUEUED,
    "IN_PROGRESS": JobState.RUNNING,
    "COMPLETED": JobState.SUCCEEDED,
    # Newer queue schemas name failures and cancellations outright.
    "FAILED": JobState.FAILED,
    "ERROR": JobState.FAILED,
    "CANCELED": JobState.CANCELLED,
    "CANCELLED": JobState.CANCELLED,
}
ALL_ASPECTS = ("9:16", "16:9", "1:1")
# A percentage or a step count in a log line ("Generating: 40%", "step 12/30").
LOG_PROGRESS = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%|(\d+)\s*/\s*(\d+)")


@dataclass(frozen=True)
class FalModel:
    """How one fal model takes its input and what it offers.

    `duration` is how the clip length is written: "string" ("5"), "suffixed" ("8s"),
    "integer" (6), "frames" (`num_frames` at `fps` frames a second) or "" (a fixed length,
    not sent). `image` is the input name of the first frame (a list of them when
    `max_references` > 1), "" for a text-only model; `aspect` the input name of the aspect
    ratio, "" when the model follows the image's. `audio` names the switch for the model's
    own soundtrack (speech included), "" for silent models. `per_request`: fal bills one
    generation whatever its length. `reference_only`: the image input holds references kept
    through the clip (reference-to-video), not its start, so no keyframe goes there."""

    family: str
    durations_s: tuple[float, ...]
    duration: str = "string"
    image: str = "image_url"
    max_references: int = 1
    aspect: str = ""
    aspects: tuple[str, ...] = ALL_ASPECTS
    negative_prompt: bool = False
    seed: bool = False
    audio: str = ""
    fps: int = 0
    per_request: bool = False
    fixed: dict = field(default_factory=dict)  # inputs sent as they are, e.g. a resolution
    reference_only: bool = False

    @property
    def image_to_video(self) -> bool:
        return bool(self.image)

    @property
    def first_frame(self) -> bool:
        return self.image_to_video and not self.reference_only


_KLING_I2V = FalModel("kling", (5.0, 10.0), negative_prompt=True, fixed={"cfg_scale": 0.5})
_KLING_T2V = FalModel(
    "kling",
    (5.0, 10.0),
    image="",
    aspect="aspect_ratio",
    negative_prompt=True,
    fixed={"cfg_scale": 0.5},
)
_HAILUO_I2V = FalModel("hailuo", (6.0, 10.0), fixed={"prompt_optimizer": True})
_VEO_T2V = FalModel(
    "veo",
    (4.0, 6.0, 8.0),
    duration="suffixed",
    image="",
    aspect="aspect_ratio",
    negative_prompt=True,
    seed=True,
    audio="generate_audio",
)
_WAN = dict(
    duration="frames",
    fps=16,
    aspect="aspect_ratio",
    negative_prompt=True,
    seed=True,
    per_request=True,
    fixed={"resolution": "720p"},
)
_LTX2 = dict(duration="integer", audio="generate_audio", fixed={"resolution": "1080p", "fps": 25})

# fal model id -> its inputs and capabilities (docs.fal.ai model pages, providers.md 2.7).
MODELS: dict[str, FalModel] = {
    "fal-ai/kling-video/v2.1/standard/image-to-video": _KLING_I2V,
    "fal-ai/kling-video/v2.1/pro/image-to-video": _KLING_I2V,
    "fal-ai/kling-video/v2.1/master/image-to-video": _KLING_I2V,
    "fal-ai/kling-video/v2.1/master/text-to-video": _KLING_T2V,
    "fal-ai/minimax/hailuo-02/standard/image-to-video": _HAILUO_I2V,
    "fal-ai/minimax/hailuo-02/pro/image-to-video": FalModel("hailuo", (6.0,)),
    # Hailuo renders text-only prompts in landscape.
    "fal-ai/minimax/hailuo-02/standard/text-to-video": FalModel(
        "hailuo", (6.0, 10.0), image="", aspects=("16:9",), fixed={"prompt_optimizer": True}
    ),
    "fal-ai/veo3/fast": _VEO_T2V,
    "fal-ai/veo3": _VEO_T2V,
    "fal-ai/veo3/fast/image-to-video": FalModel(
        "veo",
        (8.0,),
        duration="suffixed",
        aspect="aspect_ratio",
        aspects=("9:16", "16:9"),
        audio="generate_audio",
    ),
    # Up to three character or scene references, each kept in the clip.
    "fal-ai/veo3.1/reference-to-video": FalModel(
        "veo",
        (8.0,),
        duration="suffixed",
        image="image_urls",
        max_references=3,
        aspect="aspect_ratio",
        aspects=("9:16", "16:9"),
        audio="generate_audio",
        reference_only=True,
    ),
    # 81 frames at 16 a second: a five-second clip, billed per video.
    "fal-ai/wan-i2v": FalModel("wan", (5.0,), **_WAN),
    "fal-ai/wan-t2v": FalModel("wan", (5.0,), image="", **(_WAN | {"aspects": ("9:16", "16:9")})),
    "fal-ai/ltx-2/image-to-video": FalModel("ltx", (6.0, 8.0, 10.0), **_LTX2),
    "fal-ai/ltx-2/text-to-video": FalModel(
        "ltx", (6.0, 8.0, 10.0), image="", aspects=("16:9",), **_LTX2
    ),
    # LTX-Video 0.9: a fixed-length clip of about five seconds, billed per video.
    "fal-ai/ltx-video/image-to-video": FalModel(
        "ltx", (5.0,), duration="", negative_prompt=True, seed=True, per_request=True
    ),
    "fal-ai/ltx-video": FalModel(
        "ltx",
        (5.0,),
        duration="",
        image="",
        aspects=("16:9",),
        negative_prompt=True,
        seed=True,
        per_request=True,
    ),
}
# An id not in the table: the inputs most fal video models share.
FALLBACK = FalModel("other", (5.0, 10.0))
NEGATIVE_PROMPT = "blur, distortion, low quality, extra faces, text, watermark"


def model_info(model_id: str) -> FalModel:
    return MODELS.get(model_id.strip().strip("/"), FALLBACK)


def app_id(model_id: str) -> str:
    """The app part of a model id (`fal-ai/kling-video/v2.1/...` -> `fal-ai/kling-video`):
    the queue's status, result and cancel paths go under it, without the subpath."""
    return "/".join(model_id.strip("/").split("/")[:2])


def data_url(image: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


def fal_detail(body) -> tuple[str, str]:
    """(message, type) of a fal error body: `{"detail": "..."}` or a validation list
    `{"detail": [{"msg": ..., "type": ...}]}`."""
    if not isinstance(body, dict):
        return "", ""
    detail = body.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        return str(first.get("msg") or ""), str(first.get("type") or "")
    if isinstance(detail, str):
        return detail, str(body.get("error_type") or "")
    return "", ""


QUEUE_URLS = ("status_url", "response_url", "cancel_url")


class FalQueue:
    """fal's queue as every fal adapter speaks it (video here, images in image_fal.py): the
    `Key` scheme, errors in `detail`, a submission answered with its request URLs, the status
    of a queued request and the result of a completed one. Mixed into an HttpProvider whose
    config has `poll_s`."""

    def headers(self, url: str, *, idempotency_key: str = "") -> dict[str, str]:
        """fal's scheme is `Authorization: Key <key>`, for our own host only, as ever."""
        headers = super().headers(url, idempotency_key=idempotency_key)
        if "Authorization" in headers:
            headers["Authorization"] = f"Key {self.config.api_key}"
        return headers

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """fal puts its message in `detail`; other bodies go the shared way."""
        message, error_type = fal_detail(_json_or_none(response))
        if not message:
            return super().error_from_response(response)
        return error_for_status(
            response.status_code,
            provider=self.name,
            message=self.clean(message),
            error_type=error_type,
            retry_after_s=parse_retry_after(response.headers, cap_s=self.config.retry_after_cap_s),
            request_id=request_id_of(response),
        )

    async def queue_submit(
        self, url: str, body: dict, *, idempotency_key: str, extra_headers: dict | None = None
    ) -> tuple[str, dict[str, str]]:
        """POST a request to the queue: its id and the URLs the answer gave for it."""
        # fal's queue documents no idempotency header: a POST whose answer is lost may queue a
        # second (billed) request. The key is sent anyway, as the simulator and proxies in
        # front of fal dedupe by it, so a retry there returns the first request.
        headers = self.headers(url, idempotency_key=idempotency_key) | (extra_headers or {})
        response = await self.send("POST", url, headers=headers, json=body)
        answer = self.json_of(response)
        request_id = str(answer.get("request_id") or "")
        if not request_id:
            raise MalformedResponse(
                "the request was accepted without a request_id",
                provider=self.name,
                request_id=request_id_of(response),
            )
        return request_id, {name: str(answer[name]) for name in QUEUE_URLS if answer.get(name)}

    def queue_urls(self, model: str, request_id: str, given: dict) -> dict[str, str]:
        """The returned URLs, or the queue's documented paths when an answer lacked them."""
        root = self.url(f"{app_id(model)}/requests/{request_id}")
        return {
            "status": given.get("status_url") or f"{root}/status",
            "response": given.get("response_url") or root,
            "cancel": given.get("cancel_url") or f"{root}/cancel",
        }

    async def queue_poll(self, url: str, request_id: str, *, operation: str) -> JobStatus:
        """The request's status; a request fal no longer knows is a (retryable) failure."""

        async def attempt() -> Outcome:
            response = await self.send("GET", url, params={"logs": 1}, headers=self.headers(url))
            body = self.json_of(response)
            return Outcome(self._status(body, response.headers), request_id=request_id)

        try:
            return await self.call(operation=operation, attempt=attempt)
        except BadRequest as error:
            if error.status != 404:
                raise
            return JobStatus(
                JobState.FAILED,
                error="fal no longer has this request (expired or never queued)",
                retryable=True,
                vendor_status="missing",
            )

    async def queue_result(
        self, url: str, request_id: str, completed: JobStatus, *, operation: str, output
    ) -> tuple[JobStatus, object]:
        """COMPLETED says the request ran, not that it worked: the result tells. Returns the
        status and `output(body, provider=, request_id=)` of a result, or a failed status and
        None when fal answered the result with the model's error."""

        async def attempt() -> Outcome:
            try:
                response = await self.client().request("GET", url, headers=self.headers(url))
            except httpx.HTTPError as error:
                raise self.error_from_exception(error) from None
            if response.status_code < 400:
                value = output(self.json_of(response), provider=self.name, request_id=request_id)
                return Outcome((completed, value), request_id=request_id)
            message, error_type = fal_detail(_json_or_none(response))
            error = self.error_from_response(response)
            # fal answers a failed request's result with the model's `detail`; an answer
            # without one (an outage, a proxy) is retried like any other error.
            if not message or isinstance(error, AuthError | RateLimited | QuotaExceeded):
                raise error
            # A 4xx is the input's fault (validation, content policy): never worth a retry.
            kind = error_type if response.status_code >= 500 else error_type or "invalid"
            failed = self._failed(message, kind, "completed with an error")
            return Outcome((failed, None), request_id=request_id)

        return await self.call(operation=operation, attempt=attempt)

    def _status(self, body: dict, headers) -> JobStatus:
        vendor = str(body.get("status") or "").upper()
        state = STATES.get(vendor)
        if state is None:
            logger.warning("%s: unknown fal status %r, treated as running", self.name, vendor)
            state = JobState.RUNNING
        poll_after = parse_retry_after(headers, cap_s=self.config.retry_after_cap_s)
        poll_after = poll_after if poll_after is not None else self.config.poll_s
        error_text = str(body.get("error") or "")
        error_type = str(body.get("error_type") or "")
        if state is JobState.SUCCEEDED and (error_text or error_type):
            state = JobState.FAILED
        if "cancel" in f"{error_type} {error_text}".lower() and state is JobState.FAILED:
            state = JobState.CANCELLED
        progress, label = 0.0, vendor.lower().replace("_", " ")
        if state is JobState.QUEUED:
            position = body.get("queue_position")
            if isinstance(position, int) and not isinstance(position, bool):
                label = f"in queue (position {position})"
        elif state is JobState.RUNNING:
            progress = _log_progress(body.get("logs"))
        elif state is JobState.SUCCEEDED:
            progress = 1.0
        if state in (JobState.FAILED, JobState.CANCELLED):
            return self._failed(error_text or "the request failed", error_type, label, state)
        return JobStatus(
            state=state, progress=progress, poll_after_s=poll_after, vendor_status=label
        )

    def _failed(
        self, message: str, error_type: str, label: str, state: JobState = JobState.FAILED
    ) -> JobStatus:
        retryable = state is JobState.FAILED and failure_retryable(error_type or message)
        text = self.clean(message)
        if state is JobState.FAILED:
            text = f"{text} ({'retryable' if retryable else 'not retryable'})"
        return JobStatus(
            state=state,
            progress=1.0,
            error=text,
            retryable=retryable,
            poll_after_s=self.config.poll_s,
            vendor_status=label,
        )


@dataclass
class FalConfig(VideoConfig):
    """The video settings; the model id picks the inputs and capabilities from MODELS."""


class FalVideo(FalQueue, RemoteVideo):
    def __init__(self, config: FalConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.config: FalConfig = config
        self.label = config.model
        self.info = model_info(config.model)
        self.native_audio = bool(self.info.audio)
        # The settings win when given; a single image input carries one reference at most.
        durations = tuple(config.durations_s) or self.info.durations_s
        references = self.info.max_references if self.info.image_to_video else 0
        if config.max_reference_images > 0 and self.info.image_to_video:
            references = config.max_reference_images
            if self.info.max_references <= 1:
                references = 1
        self.capabilities = Capabilities(
            max_reference_images=references,
            durations_s=durations,
            min_duration_s=min(durations),
            max_duration_s=max(durations),
            aspects=tuple(a for a in self.info.aspects if a in config.aspects),
            can_cancel=True,
            native_audio=self.native_audio,
            first_frame=self.info.first_frame,
        )

    def _urls(self, handle: JobHandle) -> dict[str, str]:
        return self.queue_urls(handle.data.get("model") or self.model, handle.id, handle.data)

    # --- submit ----------------------------------------------------------------------------

    def _input(self, request: VideoRequest, seconds: float, keyframe: bytes | None) -> dict:
        info = self.info
        body: dict = {"prompt": request.prompt_text(), **info.fixed}
        if info.duration == "string":
            body["duration"] = f"{seconds:g}"
        elif info.duration == "suffixed":
            body["duration"] = f"{seconds:g}s"
        elif info.duration == "integer":
            body["duration"] = round(seconds)
        elif info.duration == "frames":
            body["num_frames"] = math.ceil(seconds * info.fps) + 1
            body["frames_per_second"] = info.fps
        if info.aspect:
            body[info.aspect] = request.aspect
        if info.negative_prompt:
            body["negative_prompt"] = NEGATIVE_PROMPT
        if info.seed and request.seed is not None:
            body["seed"] = int(request.seed)
        if info.audio:
            # The model voices the dialog itself; a scene without lines needs no soundtrack
            # (and costs less without one).
            body[info.audio] = bool(request.dialog)
        references = [m for m in request.cast if m.image is not None or m.image_path]
        if keyframe is not None:
            body[info.image] = data_url(keyframe)  # the clip starts from the keyframe
        elif info.image_to_video:
            if not references:
                raise BadRequest(
                    f"{self.model} animates a reference image; this shot has none",
                    provider=self.name,
                )
            images = [
                data_url(self.reference(member, frame_size(request.aspect)))
                for member in references[: max(self.capabilities.max_reference_images, 1)]
            ]
            body[info.image] = images if info.max_references > 1 else images[0]
        return body

    async def submit(self, request: VideoRequest, idempotency_key: str) -> JobHandle:
        seconds = self._offered(request)
        keyframe = self.start_frame(request, frame_size(request.aspect))
        body = self._input(request, seconds, keyframe)
        url = self.url(self.model)

        async def attempt() -> Outcome:
            # Against fal itself (no idempotency there) the saved handle keeps a restarted take
            # from resubmitting.
            request_id, urls = await self.queue_submit(
                url,
                body,
                idempotency_key=idempotency_key,
                extra_headers=first_frame_header(keyframe is not None),
            )
            data = {"seconds": seconds, "model": self.model, **urls}
            handle = JobHandle(
                provider=self.name, id=request_id, model=self.model, kind="video", data=data
            )
            return Outcome(handle, request_id=request_id)

        return await self.call(operation="video.submit", attempt=attempt)

    # --- poll ------------------------------------------------------------------------------

    async def poll(self, handle: JobHandle) -> JobStatus:
        self._check(handle)
        urls = self._urls(handle)
        status = await self.queue_poll(urls["status"], handle.id, operation="video.poll")
        if status.state is not JobState.SUCCEEDED:
            return status
        status, _ = await self.queue_result(
            urls["response"], handle.id, status, operation="video.result", output=_video_url
        )
        if status.state is JobState.SUCCEEDED:
            await self.book_generated(handle)
        return status

    # --- fetch and cancel ------------------------------------------------------------------

    async def fetch(self, handle: JobHandle) -> bytes:
        self._check(handle)
        url = self._urls(handle)["response"]

        async def attempt() -> Outcome:
            response = await self.send("GET", url, headers=self.headers(url))
            video_url = _video_url(self.json_of(response), provider=self.name, request_id=handle.id)
            # Usually on fal's file host: headers() sends the key to the queue's host only.
            content = await self.download(video_url)
            return Outcome(self._video(content, handle), request_id=handle.id)

        return await self.call(operation="video.fetch", attempt=attempt)

    async def cancel(self, handle: JobHandle) -> bool:
        """True when fal accepted the cancellation; False when the request had already left
        the queue (fal cancels queued requests only) or is gone."""
        self._check(handle)
        url = self._urls(handle)["cancel"]

        async def attempt() -> Outcome:
            await self.send("PUT", url, headers=self.headers(url))
            return Outcome(True, request_id=handle.id)

        try:
            return await self.call(operation="video.cancel", attempt=attempt, retry=False)
        except BadRequest as error:
            if error.status in (400, 404, 409, 422):
                return False  # already running, completed or gone
            raise


def _json_or_none(response: httpx.Response):
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None


def _video_url(body: dict, *, provider: str, request_id: str) -> str:
    video = body.get("video")
    url = video.get("url") if isinstance(video, dict) else video
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise MalformedResponse(
            "the result has no video URL", provider=provider, request_id=request_id
        )
    return url


def _log_progress(logs) -> float:
    """The share done, read from the newest log line that states one; 0 when none does."""
    if not isinstance(logs, list):
        return 0.0
    for entry in reversed(logs):
        message = entry.get("message") if isinstance(entry, dict) else entry
        match = LOG_PROGRESS.search(str(message or ""))
        if not match:
            continue
        if match.group(1) is not None:
            share = float(match.group(1)) / 100.0
        else:
            share = int(match.group(2)) / max(int(match.group(3)), 1)
        return min(max(share, 0.0), 0.99)
    return 0.0
