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
its seconds once ("video.generate"); a self-hosted server's price is 0 or absent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from studio.providers.base import (
    Capabilities,
    JobHandle,
    JobState,
    JobStatus,
    VideoRequest,
    frame_size,
)
from studio.providers.comfyui_socket import PromptProgress, PromptSocket, socket_url
from studio.providers.errors import BadRequest, MalformedResponse, ProviderError
from studio.providers.transport import (
    Outcome,
    request_id_of,
)
from studio.providers.video_http import RemoteVideo, VideoConfig, first_frame_header

logger = logging.getLogger(__name__)

WORKFLOWS_DIR = Path(__file__).resolve().parent / "comfyui_workflows"
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
PLACEHOLDERS = ("prompt", "negative_prompt", "seed", "width", "height", "frames", "fps", "image")
NEGATIVE_PROMPT = (
    "blurry, low quality, distorted face, deformed hands, extra limbs, flicker, watermark, "
    "text, subtitles, static frame, overexposed, jpeg artifacts"
)
# Where the studio's idempotency key rides in a prompt's extra_data (kept in /queue, /history).
KEY_FIELD = "studio_idempotency_key"
# How many recent prompts the duplicate check reads from /history on a server that ignores
# the prompt_id we choose (ComfyUI before it accepted one).
HISTORY_SCAN = 100
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov")
# Output nodes that write a video (core SaveVideo / SaveWEBM / SaveAnimated*, VHS Video Combine).
SAVING_NODE_PREFIXES = ("Save", "VHS_VideoCombine")
# Execution errors that may pass on another try (a busy GPU); anything else is the workflow's.
RETRYABLE_EXCEPTIONS = ("outofmemory", "out of memory", "timeout", "connection")
PROMPT_NAMESPACE = uuid.UUID("6f1c52c8-3d0e-4b8e-9a57-0c3f5d2e7b11")


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


@dataclass(frozen=True)
class Workflow:
    path: str
    graph: dict
    placeholders: frozenset[str]


def load_workflow(path: Path, *, provider: str) -> Workflow:
    """The workflow at `path`, checked: a clear BadRequest when it cannot be used."""

    def bad(message: str) -> BadRequest:
        return BadRequest(f"ComfyUI workflow {path}: {message}", provider=provider)

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise bad(f"cannot be read ({getattr(error, 'strerror', None) or error})") from None
    try:
        graph = json.loads(text)
    except json.JSONDecodeError as error:
        raise bad(f"is not JSON (line {error.lineno}: {error.msg})") from None
    if isinstance(graph, dict) and isinstance(graph.get("nodes"), list) and "links" in graph:
        raise bad("is in ComfyUI's UI format; export it with Save (API)")
    if not isinstance(graph, dict) or not graph:
        raise bad("is not a workflow in API format ({node_id: {class_type, inputs}})")
    for node_id, node in graph.items():
        if not (
            isinstance(node, dict)
            and isinstance(node.get("class_type"), str)
            and isinstance(node.get("inputs"), dict)
        ):
            raise bad(f"node {node_id} has no class_type and inputs")
    names = frozenset(PLACEHOLDER.findall(text))
    unknown = sorted(names - set(PLACEHOLDERS))
    if unknown:
        known = ", ".join(f"{{{{{name}}}}}" for name in PLACEHOLDERS)
        raise bad(f"unknown placeholder {{{{{unknown[0]}}}}} (known: {known})")
    if "prompt" not in names:
        raise bad("has no {{prompt}} placeholder for the scene's prompt")
    return Workflow(str(path), graph, names)


def fill(value, values: dict):
    """`value` with every placeholder replaced; a string that is one placeholder takes the
    value as it is (so "{{seed}}" becomes a number)."""
    if isinstance(value, dict):
        return {key: fill(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, values) for item in value]
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value.strip())
        if whole:
            return values[whole.group(1)]
        return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), value)
    return value


def without_image(graph: dict) -> dict:
    """The graph without the nodes that load the reference image, nor the inputs linked to
    them (a text-only scene: the image goes into an optional input, like Wan's start_image)."""
    dropped = {
        node_id
        for node_id, node in graph.items()
        if any(
            isinstance(v, str) and "image" in PLACEHOLDER.findall(v)
            for v in node["inputs"].values()
        )
    }
    kept = {}
    for node_id, node in graph.items():
        if node_id in dropped:
            continue
        inputs = {
            name: value
            for name, value in node["inputs"].items()
            if not (isinstance(value, list) and value and str(value[0]) in dropped)
        }
        kept[node_id] = {**node, "inputs": inputs}
    return kept


def executed_nodes(graph: dict) -> int:
    """How many nodes ComfyUI will run: those the graph's saving nodes read from, through
    their links (a node nothing saves is never run); every node when none is recognised."""
    todo = [
        node_id
        for node_id, node in graph.items()
        if str(node.get("class_type", "")).startswith(SAVING_NODE_PREFIXES)
    ]
    seen: set[str] = set()
    while todo:
        node_id = todo.pop()
        if node_id in seen or node_id not in graph:
            continue
        seen.add(node_id)
        inputs = graph[node_id].get("inputs") or {}
        todo += [str(v[0]) for v in inputs.values() if isinstance(v, list) and v]
    return len(seen) or len(graph)


def comfy_error_text(body: dict, graph: dict | None = None) -> str:
    """One line from ComfyUI's `{error, node_errors}`, naming each failing node and class."""
    parts = []
    for node_id, detail in (body.get("node_errors") or {}).items():
        detail = detail if isinstance(detail, dict) else {}
        class_type = detail.get("class_type") or ((graph or {}).get(node_id) or {}).get(
            "class_type", "?"
        )
        errors = [
            ": ".join(str(e[k]) for k in ("message", "details") if e.get(k))
            for e in detail.get("errors") or []
            if isinstance(e, dict)
        ]
        parts.append(f"node {node_id} ({class_type}): {'; '.join(errors) or 'invalid'}")
    error = body.get("error")
    if isinstance(error, dict):
        head = ": ".join(str(error[k]) for k in ("message", "details") if error.get(k))
    else:
        head = str(error or "")
    return " - ".join(part for part in (head, "; ".join(parts)) if part) or "rejected"


def key_of(extra_data) -> str:
    return str(extra_data.get(KEY_FIELD) or "") if isinstance(extra_data, dict) else ""


def output_file(entry: dict) -> dict | None:
    """The saved video of a finished prompt: an outputs[node].videos|gifs|images item."""
    found = []
    for output in (entry.get("outputs") or {}).values():
        for key in ("videos", "gifs", "images"):
            for item in (output or {}).get(key) or []:
                name = str((item or {}).get("filename") or "") if isinstance(item, dict) else ""
                if name.lower().endswith(VIDEO_SUFFIXES):
                    found.append(item)
    found.sort(key=lambda item: item.get("type") != "output")  # saved outputs before previews
    return found[0] if found else None


class ComfyVideo(RemoteVideo):
    def __init__(self, config: ComfyConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.config: ComfyConfig = config
        self.label = f"{config.model} (ComfyUI)"
        self.family_name = family_of(config.model)
        self.family = FAMILIES[self.family_name or "wan2.2"]
        durations = tuple(config.durations_s) or None
        try:
            workflow = load_workflow(self.workflow_path(), provider=self.name)
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
        self._sockets: dict[str, PromptSocket] = {}  # prompt_id -> its progress socket

    def workflow_path(self) -> Path:
        if self.config.workflow:
            path = Path(self.config.workflow).expanduser()
            shipped = WORKFLOWS_DIR / self.config.workflow
            return shipped if not path.exists() and shipped.is_file() else path
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

    def error_from_response(self, response):
        """ComfyUI's 400 for a workflow it refuses carries `node_errors`: name the nodes."""
        error = super().error_from_response(response)
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            return error
        if not (isinstance(body, dict) and ("node_errors" in body or "error" in body)):
            return error
        return type(error)(
            self.clean(comfy_error_text(body)),
            provider=self.name,
            status=error.status,
            code=error.code or "node_errors",
            request_id=error.request_id,
            retry_after_s=error.retry_after_s,
        )

    # --- submit ------------------------------------------------------------------------------

    async def submit(self, request: VideoRequest, idempotency_key: str) -> JobHandle:
        seconds = self._offered(request)
        workflow = load_workflow(self.workflow_path(), provider=self.name)
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
        prompt_id = str(uuid.uuid5(PROMPT_NAMESPACE, f"{self.name}:{idempotency_key}"))
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
        url = self.url("prompt")

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
            body = {
                "prompt": fill(graph, values),
                "client_id": client_id,
                "prompt_id": prompt_id,
                "extra_data": {KEY_FIELD: idempotency_key},
            }
            response = await self.send(
                "POST",
                url,
                json=body,
                headers=self.headers(url, idempotency_key=idempotency_key)
                | first_frame_header(keyframe),
            )
            answer = self.json_of(response)
            queued = str(answer.get("prompt_id") or "")
            if answer.get("node_errors"):
                # Queued with only its valid outputs: take it back, the scene needs them all.
                if queued:
                    await self._stop(queued)
                raise BadRequest(
                    self.clean(comfy_error_text(answer, graph)),
                    provider=self.name,
                    code="node_errors",
                    request_id=queued,
                )
            if not queued:
                raise MalformedResponse(
                    "the prompt was accepted without a prompt_id",
                    provider=self.name,
                    request_id=request_id_of(response),
                )
            return Outcome(self._handle(queued, data), request_id=queued)

        return await self.call(operation="video.submit", attempt=attempt)

    async def _existing(self, prompt_id: str, key: str) -> str:
        """The id of a prompt already queued or done for this key, or ""."""
        if await self._history(prompt_id) is not None:
            return prompt_id
        running, pending = await self._queue()
        for item in running + pending:
            if item[1] == prompt_id or key_of(item[3]) == key:
                return item[1]
        url = self.url(f"history?{urlencode({'max_items': HISTORY_SCAN})}")
        response = await self.send("GET", url, headers=self.headers(url))
        for found_id, entry in self.json_of(response).items():
            prompt = entry.get("prompt") if isinstance(entry, dict) else None
            if isinstance(prompt, list) and len(prompt) > 3 and key_of(prompt[3]) == key:
                return str(found_id)
        return ""

    async def _upload(self, image: bytes, filename: str) -> str:
        """Upload the start image (overwriting, so a retry writes the same file); its name as
        LoadImage reads it."""
        url = self.url("upload/image")
        files = [
            ("image", (filename, image, "image/jpeg")),
            ("overwrite", (None, "true")),
            ("type", (None, "input")),
        ]
        response = await self.send("POST", url, files=files, headers=self.headers(url))
        body = self.json_of(response)
        name = str(body.get("name") or "")
        if not name:
            raise MalformedResponse("the image upload returned no name", provider=self.name)
        subfolder = str(body.get("subfolder") or "")
        return f"{subfolder}/{name}" if subfolder else name

    async def _stop(self, prompt_id: str) -> bool:
        """Interrupt the prompt if it runs, take it out of the queue if it waits; False when
        it is neither (finished or gone)."""
        running, pending = await self._queue()
        if any(item[1] == prompt_id for item in running):
            # Interrupt stops whatever runs; the prompt_id asks a recent ComfyUI to stop only
            # this prompt, should another one have started since /queue answered.
            url = self.url("interrupt")
            await self.send("POST", url, json={"prompt_id": prompt_id}, headers=self.headers(url))
            return True
        if any(item[1] == prompt_id for item in pending):
            url = self.url("queue")
            await self.send("POST", url, json={"delete": [prompt_id]}, headers=self.headers(url))
            return True
        return False

    async def _history(self, prompt_id: str) -> dict | None:
        """The prompt's history entry, or None while it is queued or running (or unknown)."""
        url = self.url(f"history/{prompt_id}")
        response = await self.send("GET", url, headers=self.headers(url))
        entry = self.json_of(response).get(prompt_id)
        return entry if isinstance(entry, dict) else None

    async def _queue(self) -> tuple[list, list]:
        """(running, pending) queue items `[number, prompt_id, prompt, extra_data, ...]`,
        pending in the order they will run."""
        url = self.url("queue")
        response = await self.send("GET", url, headers=self.headers(url))
        body = self.json_of(response)

        def items(name: str) -> list:
            found = [
                [item[0], str(item[1]), *item[2:]]
                for item in body.get(name) or []
                if isinstance(item, list) and len(item) > 3
            ]
            return sorted(found, key=lambda item: float(item[0] or 0))

        return items("queue_running"), items("queue_pending")

    # --- poll --------------------------------------------------------------------------------

    async def poll(self, handle: JobHandle) -> JobStatus:
        self._check(handle)
        socket = self._socket(handle)
        if socket is not None and socket.trusted():
            socket.read_changes = socket.changes
            if not socket.progress.started:
                return self._waiting(JobState.QUEUED, socket.vendor_status or "queued")
            return self._running(socket.progress)
        live_before = socket is not None and socket.live

        async def attempt() -> Outcome:
            entry = await self._history(handle.id)
            if entry is None:
                running, pending = await self._queue()
                if any(item[1] == handle.id for item in running):
                    return Outcome(self._waiting(JobState.RUNNING, "running"))
                ahead = next((n for n, item in enumerate(pending) if item[1] == handle.id), None)
                if ahead is not None:
                    ahead += len(running)
                    return Outcome(self._waiting(JobState.QUEUED, f"queued ({ahead} ahead)"))
                # Not queued: it finished since the first look, or the server lost it.
                entry = await self._history(handle.id)
            if entry is None:
                status = JobStatus(
                    JobState.FAILED,
                    error="ComfyUI no longer has this prompt (restarted or history cleared)",
                    retryable=True,
                    vendor_status="missing",
                )
            else:
                status = self._status(entry)
            return Outcome(status, request_id=handle.id)

        status = await self.call(operation="video.poll", attempt=attempt)
        if socket is not None:
            socket.checked(live_before=live_before, vendor_status=status.vendor_status)
            if status.state is JobState.RUNNING and socket.progress.started:
                status = self._running(socket.progress)
        if status.state.finished:
            await self._close_socket(handle.id)
        if status.state is JobState.SUCCEEDED:
            await self.book_generated(handle)
        return status

    async def wait_for_news(self, handle: JobHandle, seconds: float) -> None:
        """The pause before the next poll, cut short when the socket says the prompt started
        or ended."""
        socket = self._sockets.get(handle.id)
        if socket is None or not socket.usable():
            await asyncio.sleep(seconds)
        else:
            await socket.wait_for_news(seconds)

    def _socket(self, handle: JobHandle) -> PromptSocket | None:
        """This prompt's progress socket, opened on its first poll (in this process)."""
        client_id = str(handle.data.get("client_id") or "")
        if not client_id:
            return None
        for prompt_id, idle in list(self._sockets.items()):
            gone = idle.task is None or idle.task.done()
            if not idle.usable() or (
                gone and time.monotonic() - idle.used_at > 2 * self.config.poll_s + 60
            ):
                self._sockets.pop(prompt_id)
        socket = self._sockets.get(handle.id)
        if socket is not None:
            socket.touch()
            return socket
        progress = PromptProgress(handle.id, nodes_total=int(handle.data.get("nodes") or 0))
        url = socket_url(self.config.base_url, client_id)
        socket = PromptSocket(url, progress, self.headers(self.config.base_url))
        self._sockets[handle.id] = socket
        return socket

    async def _close_socket(self, prompt_id: str) -> None:
        socket = self._sockets.pop(prompt_id, None)
        if socket is not None and socket.usable():
            await socket.close()

    async def aclose(self) -> None:
        for prompt_id in list(self._sockets):
            await self._close_socket(prompt_id)
        await super().aclose()

    def _running(self, progress: PromptProgress) -> JobStatus:
        return dataclasses.replace(
            self._waiting(JobState.RUNNING, progress.vendor_status()),
            progress=progress.fraction(),
        )

    def _waiting(self, state: JobState, vendor: str) -> JobStatus:
        return JobStatus(state=state, poll_after_s=self.config.poll_s, vendor_status=vendor)

    def _status(self, entry: dict) -> JobStatus:
        status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
        events = {
            message[0]: message[1] if isinstance(message[1], dict) else {}
            for message in status.get("messages") or []
            if isinstance(message, list) and len(message) == 2
        }
        vendor = str(status.get("status_str") or "")
        done = JobStatus(JobState.SUCCEEDED, progress=1.0, vendor_status=vendor or "success")
        if "execution_interrupted" in events:
            return JobStatus(JobState.CANCELLED, error="interrupted", vendor_status="interrupted")
        if vendor == "error" or "execution_error" in events:
            detail = events.get("execution_error") or {}
            kind = str(detail.get("exception_type") or "")
            message = str(detail.get("exception_message") or "").strip() or "execution failed"
            retryable = any(word in f"{kind} {message}".lower() for word in RETRYABLE_EXCEPTIONS)
            node = f"node {detail.get('node_id', '?')} ({detail.get('node_type') or '?'})"
            error = self.clean(f"{node}: {message}" + (f" [{kind}]" if kind else ""))
            return JobStatus(
                JobState.FAILED,
                progress=1.0,
                error=f"{error} ({'retryable' if retryable else 'not retryable'})",
                retryable=retryable,
                vendor_status="error",
            )
        if status.get("completed") or vendor == "success" or (not status and entry.get("outputs")):
            if output_file(entry) is None:
                return JobStatus(
                    JobState.FAILED,
                    error="the workflow saved no video: end it with a SaveVideo node",
                    vendor_status=vendor or "success",
                )
            return done
        return self._waiting(JobState.RUNNING, vendor or "running")

    # --- fetch and cancel --------------------------------------------------------------------

    async def fetch(self, handle: JobHandle) -> bytes:
        self._check(handle)

        async def attempt() -> Outcome:
            entry = await self._history(handle.id)
            item = output_file(entry or {})
            if item is None:
                raise BadRequest(
                    "ComfyUI has no saved video for this prompt",
                    provider=self.name,
                    request_id=handle.id,
                )
            query = {
                "filename": item["filename"],
                "subfolder": item.get("subfolder") or "",
                "type": item.get("type") or "output",
            }
            content = await self.download(self.url(f"view?{urlencode(query)}"))
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
