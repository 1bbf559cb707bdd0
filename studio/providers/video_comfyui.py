"""Video generation on a self-hosted ComfyUI server (no key), from a workflow template.

The workflow is ComfyUI's API format (the JSON "Save (API)" writes: `{node_id: {class_type,
inputs}}`) with the studio's placeholders as string values: `"{{prompt}}"`, `"{{negative_prompt}}"`,
`"{{seed}}"`, `"{{width}}"`, `"{{height}}"`, `"{{frames}}"`, `"{{fps}}"` and `"{{image}}"` (the
start image, in a LoadImage node: the scene's chosen keyframe when the request has a first
frame, else the first cast member's face-centred reference; a scene with neither drops the
nodes that load it). A value that is only a numeric placeholder becomes a number. One
template per model family ships in `comfyui_workflows/`; `config.workflow` names another file.

`POST /upload/image` for the start image, `POST /prompt` to queue the filled workflow, `GET
/history/{id}` (empty while queued or running) with `GET /queue` to tell queued from running,
`GET /view` for the saved file, `POST /interrupt` (running) or `POST /queue {"delete"}` (queued)
to cancel. While a prompt runs, its websocket (`/ws?clientId=`, see comfyui_socket.py) reports
the node running and its sampler steps, which become the take's progress and spare the HTTP
looks, and wakes the poller the moment the prompt ends; without the socket, polling over HTTP
alone works the same, with progress 0 until the end. While queued, `vendor_status` says how
many prompts are ahead. Billing: the first poll that sees the prompt succeed books
its seconds once ("video.generate"); a self-hosted server's price is 0 or absent. The server
side (workflows, queueing, status, the socket, /view, stopping) is comfyui_client.py, which the
keyframe adapter (image_comfyui.py) shares.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from studio.providers.base import (
    Capabilities,
    JobHandle,
    JobState,
    JobStatus,
    VideoRequest,
    frame_size,
)
from studio.providers.comfyui_client import (
    WORKFLOWS_DIR,
    ComfyClient,
    configured_workflow,
    executed_nodes,
    load_workflow,
    prompt_id_for,
    without_image,
)
from studio.providers.errors import BadRequest, ProviderError
from studio.providers.transport import Outcome
from studio.providers.video_http import RemoteVideo, VideoConfig, first_frame_header

logger = logging.getLogger(__name__)

PLACEHOLDERS = ("prompt", "negative_prompt", "seed", "width", "height", "frames", "fps", "image")
NEGATIVE_PROMPT = (
    "blurry, low quality, distorted face, deformed hands, extra limbs, flicker, watermark, "
    "text, subtitles, static frame, overexposed, jpeg artifacts"
)
# What a video workflow saves.
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov")


@dataclass(frozen=True)
class Family:
    """What a model family renders: its native frame rate, frame count rule and size grid."""

    workflow: str  # the shipped template's file name
    fps: int
    frame_step: int  # frame counts are step * n + 1
    max_frames: int
    size_step: int  # width and height are multiples of this

    @property
    def max_duration_s(self) -> float:
        return (self.max_frames - 1) / self.fps

    def frames(self, seconds: float) -> int:
        steps = max(1, round(seconds * self.fps / self.frame_step))
        return min(self.frame_step * steps + 1, self.max_frames)

    def size(self, aspect: str) -> tuple[int, int]:
        width, height = frame_size(aspect)
        return width // self.size_step * self.size_step, height // self.size_step * self.size_step


FAMILIES = {
    # Wan 2.2 14B image-to-video: 16 fps, 81 frames (about 5 s) at most.
    "wan2.2": Family("wan2.2.json", fps=16, frame_step=4, max_frames=81, size_step=16),
    # LTX-Video: 24 fps, frame counts of 8n + 1, about 10 s at most.
    "ltx": Family("ltx.json", fps=24, frame_step=8, max_frames=241, size_step=32),
}


def family_of(model: str) -> str | None:
    """The family of a model name: "wan2.2", "Wan2.2-I2V-A14B" -> "wan2.2"; "ltxv" -> "ltx"."""
    name = re.sub(r"[\s_-]", "", model.lower())
    return next((family for family in FAMILIES if name.startswith(family)), None)


@dataclass
class ComfyConfig(VideoConfig):
    """`workflow`: a workflow file in ComfyUI's API format; empty = the shipped one for the
    model family of `model`."""

    workflow: str = ""


class ComfyVideo(ComfyClient, RemoteVideo):
    output_kind, output_node, output_suffixes = "video", "SaveVideo", VIDEO_SUFFIXES

    def __init__(self, config: ComfyConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.config: ComfyConfig = config
        self.label = f"{config.model} (ComfyUI)"
        self.family_name = family_of(config.model)
        self.family = FAMILIES[self.family_name or "wan2.2"]
        durations = tuple(config.durations_s) or None
        try:
            workflow = load_workflow(
                self.workflow_path(), provider=self.name, placeholders=PLACEHOLDERS
            )
            starts_from_image = "image" in workflow.placeholders
        except BadRequest:
            starts_from_image = False  # submit says what is wrong with the workflow
        self.capabilities = Capabilities(
            max_reference_images=1,  # one LoadImage: the first cast member's reference
            durations_s=durations,
            min_duration_s=min(durations) if durations else 1.0,
            max_duration_s=max(durations) if durations else self.family.max_duration_s,
            aspects=config.aspects,
            can_cancel=True,
            first_frame=starts_from_image,  # the {{image}} LoadImage takes the keyframe
        )

    def workflow_path(self) -> Path:
        if self.config.workflow:
            return configured_workflow(self.config.workflow)
        if self.family_name is None:
            families = ", ".join(FAMILIES)
            raise BadRequest(
                f"no ComfyUI workflow ships for model {self.model!r} (families: {families}); "
                "set VIDEO_WORKFLOW to a workflow file in API format",
                provider=self.name,
            )
        return WORKFLOWS_DIR / self.family.workflow

    def _handle(self, prompt_id: str, data: dict) -> JobHandle:
        return JobHandle(
            provider=self.name, id=prompt_id, model=self.model, kind="video", data=data
        )

    # --- submit ------------------------------------------------------------------------------

    async def submit(self, request: VideoRequest, idempotency_key: str) -> JobHandle:
        seconds = self._offered(request)
        workflow = load_workflow(
            self.workflow_path(), provider=self.name, placeholders=PLACEHOLDERS
        )
        frames = self.family.frames(seconds)
        width, height = self.family.size(request.aspect)
        # The start image: the keyframe when there is one, else the first reference.
        start, keyframe = None, False
        if "image" in workflow.placeholders:
            start = self.start_frame(request, (width, height))
            keyframe = start is not None
            member = next((m for m in request.cast if m.image is not None or m.image_path), None)
            if start is None and member is not None:
                start = self.reference(member, (width, height))
        digest = hashlib.sha256(f"{self.name}:{idempotency_key}".encode()).digest()
        seed = request.seed if request.seed is not None else int.from_bytes(digest[:4], "big")
        # ComfyUI keeps no idempotency keys, so the key makes the prompt_id (a server that
        # takes one, as ComfyUI does since 2025, files the prompt under it) and rides in
        # client_id and extra_data, which /queue and /history show. Before queueing, each try
        # looks for a prompt already filed under that id or key (a lost answer, a retry, a
        # restarted worker) and follows it instead of queueing the scene twice.
        prompt_id = prompt_id_for(f"{self.name}:{idempotency_key}")
        client_id = f"studio-{prompt_id}"
        data = {
            "seconds": seconds,
            "frames": frames,
            "fps": self.family.fps,
            "size": f"{width}x{height}",
            "client_id": client_id,
            "nodes": executed_nodes(workflow.graph),  # for the progress the socket reports
        }
        values = {
            "prompt": request.prompt_text(),
            "negative_prompt": NEGATIVE_PROMPT,
            "seed": seed,
            "width": width,
            "height": height,
            "frames": frames,
            "fps": self.family.fps,
            "image": "",
        }

        async def attempt() -> Outcome:
            found = await self._existing(prompt_id, idempotency_key)
            if found:
                return Outcome(self._handle(found, data), request_id=found)
            graph = workflow.graph
            if start is not None:
                name = f"studio-{prompt_id}{'-first-frame' if keyframe else ''}.jpg"
                values["image"] = await self._upload(start, name)
            elif "image" in workflow.placeholders:
                graph = without_image(graph)
            data["nodes"] = executed_nodes(graph)
            queued = await self._queue_prompt(
                graph,
                values,
                prompt_id=prompt_id,
                client_id=client_id,
                key=idempotency_key,
                headers=first_frame_header(keyframe),
            )
            return Outcome(self._handle(queued, data), request_id=queued)

        return await self.call(operation="video.submit", attempt=attempt)

    # --- poll --------------------------------------------------------------------------------

    async def poll(self, handle: JobHandle) -> JobStatus:
        self._check(handle)
        status = await self._poll_prompt(handle, operation="video.poll")
        if status.state is JobState.SUCCEEDED:
            await self.book_generated(handle)
        return status

    # --- fetch and cancel --------------------------------------------------------------------

    async def fetch(self, handle: JobHandle) -> bytes:
        self._check(handle)

        async def attempt() -> Outcome:
            content = await self._download_output(handle.id)
            return Outcome(self._video(content, handle), request_id=handle.id)

        return await self.call(operation="video.fetch", attempt=attempt)

    async def cancel(self, handle: JobHandle) -> bool:
        self._check(handle)

        async def attempt() -> Outcome:
            return Outcome(await self._stop(handle.id), request_id=handle.id)

        await self._close_socket(handle.id)
        try:
            return await self.call(operation="video.cancel", attempt=attempt)
        except ProviderError as error:
            if error.status == 404:
                return False
            raise
