"""What the ComfyUI adapters share (video_comfyui.py for takes, image_comfyui.py for keyframes).

Workflows are ComfyUI's API format (`{node_id: {class_type, inputs}}`, what "Save (API)"
writes) with the studio's `{{placeholders}}` as string values; each adapter names the
placeholders it fills and the ones a workflow must have. `ComfyClient` is the server side:
the reference upload (`POST /upload/image`), the prompt queued under an id made from the
studio's idempotency key and found again before queueing (`/history`, `/queue`), node errors
named at once, the status of a prompt from its history entry, with progress from its
websocket (comfyui_socket.py) when one connects, the saved file through `/view`, and stopping a
prompt (`/interrupt` while it runs, `/queue {"delete"}` while it waits). Shapes:
../shared/research/comfyui_api.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from studio.providers.base import JobHandle, JobState, JobStatus
from studio.providers.comfyui_socket import PromptProgress, PromptSocket, socket_url
from studio.providers.errors import BadRequest, MalformedResponse
from studio.providers.transport import Outcome, request_id_of

WORKFLOWS_DIR = Path(__file__).resolve().parent / "comfyui_workflows"
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# Where the studio's idempotency key rides in a prompt's extra_data (kept in /queue, /history).
KEY_FIELD = "studio_idempotency_key"
# How many recent prompts the duplicate check reads from /history on a server that ignores
# the prompt_id we choose (ComfyUI before it accepted one).
HISTORY_SCAN = 100
# Output nodes that write a file (core SaveVideo / SaveWEBM / SaveImage / SaveAnimated*, VHS
# Video Combine).
SAVING_NODE_PREFIXES = ("Save", "VHS_VideoCombine")
# Nodes that only pass the loaded image on (scaled, encoded): without an image they go too.
IMAGE_PASSING_NODES = frozenset(
    {
        "CLIPVisionEncode",
        "FluxKontextImageScale",
        "ImageScale",
        "ImageScaleBy",
        "ImageScaleToTotalPixels",
        "VAEEncode",
    }
)
# Execution errors that may pass on another try (a busy GPU); anything else is the workflow's.
RETRYABLE_EXCEPTIONS = ("outofmemory", "out of memory", "timeout", "connection")
PROMPT_NAMESPACE = uuid.UUID("6f1c52c8-3d0e-4b8e-9a57-0c3f5d2e7b11")


@dataclass(frozen=True)
class Workflow:
    path: str
    graph: dict
    placeholders: frozenset[str]


def load_workflow(
    path: Path,
    *,
    provider: str,
    placeholders: tuple[str, ...],
    required: tuple[str, ...] = ("prompt",),
    output_nodes: frozenset[str] = frozenset(),
) -> Workflow:
    """The workflow at `path`, checked: a clear BadRequest when it cannot be used (unreadable,
    not API format, a placeholder not in `placeholders`, one of `required` missing, or, when
    `output_nodes` are named, none of them in the graph)."""

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
    unknown = sorted(names - set(placeholders))
    if unknown:
        known = ", ".join(f"{{{{{name}}}}}" for name in placeholders)
        raise bad(f"unknown placeholder {{{{{unknown[0]}}}}} (known: {known})")
    missing = [name for name in required if name not in names]
    if "prompt" in missing:
        raise bad("has no {{prompt}} placeholder for the scene's prompt")
    if missing:
        raise bad(f"has no {{{{{missing[0]}}}}} placeholder")
    if output_nodes and not any(node["class_type"] in output_nodes for node in graph.values()):
        raise bad(f"has no output node ({', '.join(sorted(output_nodes))}) saving the result")
    return Workflow(str(path), graph, names)


def configured_workflow(value: str) -> Path:
    """The workflow a setting names: a file's path, or the name of a shipped one."""
    path = Path(value).expanduser()
    shipped = WORKFLOWS_DIR / value
    return shipped if not path.exists() and shipped.is_file() else path


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
    """The graph without the nodes that load the reference image (and those that only pass it
    on: scaled, VAE-encoded), nor the inputs linked to them (a text-only scene: the image goes
    into an optional input, like Wan's start_image or ReferenceLatent's latent)."""
    dropped = {
        node_id
        for node_id, node in graph.items()
        if any(
            isinstance(v, str) and "image" in PLACEHOLDER.findall(v)
            for v in node["inputs"].values()
        )
    }
    while passing := {
        node_id
        for node_id, node in graph.items()
        if node_id not in dropped
        and node["class_type"] in IMAGE_PASSING_NODES
        and any(isinstance(v, list) and v and str(v[0]) in dropped for v in node["inputs"].values())
    }:
        dropped |= passing
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


def prompt_id_for(text: str) -> str:
    """The prompt_id a key makes (the same on every try and in every process)."""
    return str(uuid.uuid5(PROMPT_NAMESPACE, text))


def output_file(entry: dict, suffixes: tuple[str, ...]) -> dict | None:
    """The saved file of a finished prompt with one of `suffixes`: an
    outputs[node].videos|gifs|images item."""
    found = []
    for output in (entry.get("outputs") or {}).values():
        for key in ("videos", "gifs", "images"):
            for item in (output or {}).get(key) or []:
                name = str((item or {}).get("filename") or "") if isinstance(item, dict) else ""
                if name.lower().endswith(suffixes):
                    found.append(item)
    found.sort(key=lambda item: item.get("type") != "output")  # saved outputs before previews
    return found[0] if found else None


class ComfyClient:
    """The ComfyUI server's side of an adapter (mixed into an HttpProvider whose config has
    `poll_s`): what `output_suffixes` says it saves, `output_node` names the node to end a
    workflow with when it saved nothing of the kind."""

    output_kind: str  # "video", "image"
    output_node: str  # "SaveVideo", "SaveImage"
    output_suffixes: tuple[str, ...]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._sockets: dict[str, PromptSocket] = {}  # prompt_id -> its progress socket

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

    # --- queueing ----------------------------------------------------------------------------

    async def _queue_prompt(
        self,
        graph: dict,
        values: dict,
        *,
        prompt_id: str,
        client_id: str,
        key: str,
        headers: dict | None = None,
    ) -> str:
        """Queue the filled graph under `prompt_id`; the id ComfyUI filed it under. Node errors
        refuse it at once, naming the nodes (a prompt queued with only its valid outputs is
        taken back: the scene needs them all)."""
        body = {
            "prompt": fill(graph, values),
            "client_id": client_id,
            "prompt_id": prompt_id,
            "extra_data": {KEY_FIELD: key},
        }
        url = self.url("prompt")
        response = await self.send(
            "POST", url, json=body, headers=self.headers(url, idempotency_key=key) | (headers or {})
        )
        answer = self.json_of(response)
        queued = str(answer.get("prompt_id") or "")
        if answer.get("node_errors"):
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
        return queued

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
        """Upload an input image (overwriting, so a retry writes the same file); its name as
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

    # --- status ------------------------------------------------------------------------------

    async def _poll_prompt(self, handle: JobHandle, *, operation: str) -> JobStatus:
        """The prompt's state: from its socket alone while that is trusted, else from
        /history (and /queue, to tell queued from running); the socket closes at the end."""
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

        status = await self.call(operation=operation, attempt=attempt)
        if socket is not None:
            socket.checked(live_before=live_before, vendor_status=status.vendor_status)
            if status.state is JobState.RUNNING and socket.progress.started:
                status = self._running(socket.progress)
        if status.state.finished:
            await self._close_socket(handle.id)
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
            if output_file(entry, self.output_suffixes) is None:
                return JobStatus(
                    JobState.FAILED,
                    error=f"the workflow saved no {self.output_kind}: "
                    f"end it with a {self.output_node} node",
                    vendor_status=vendor or "success",
                )
            return done
        return self._waiting(JobState.RUNNING, vendor or "running")

    # --- the saved file ----------------------------------------------------------------------

    async def _download_output(self, prompt_id: str) -> bytes:
        """The prompt's saved file, through /view."""
        entry = await self._history(prompt_id)
        item = output_file(entry or {}, self.output_suffixes)
        if item is None:
            raise BadRequest(
                f"ComfyUI has no saved {self.output_kind} for this prompt",
                provider=self.name,
                request_id=prompt_id,
            )
        query = {
            "filename": item["filename"],
            "subfolder": item.get("subfolder") or "",
            "type": item.get("type") or "output",
        }
        return await self.download(self.url(f"view?{urlencode(query)}"))
