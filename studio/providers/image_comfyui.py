"""Storyboard keyframes on a self-hosted ComfyUI server (IMAGE_API=comfyui), from a workflow.

The workflow is ComfyUI's API format with the studio's placeholders as string values, as for
video (video_comfyui.py): `"{{prompt}}"`, `"{{seed}}"`, `"{{width}}"` and `"{{height}}"`, which
every image workflow must have, and `"{{negative_prompt}}"` and `"{{image}}"` (the first cast
member's face-centred reference at the output size, in a LoadImage node; a scene with nobody
in it drops the nodes that load and encode it), which it may. The seed is the request's, moved
on by its variant, so each candidate of a scene draws anew (ComfyUI would answer an identical
graph from its cache). The shipped `comfyui_workflows/flux_kontext.json` is FLUX.1 Kontext dev
conditioned on the reference (ReferenceLatent) and saved by a SaveImage node;
`config.workflow` (IMAGE_WORKFLOW) names the user's own export instead, checked before
anything is sent: an unknown or missing placeholder, or no SaveImage, is a clear BadRequest.

`generate` uploads the reference, queues the prompt (its id made from the idempotency key:
a retry, a lost answer or another process follows the prompt already queued instead of
queueing it twice; a key whose prompt failed or was interrupted is queued again under the
next try's id), waits for it (the websocket wakes the wait when it starts and ends, /history
is the authority, every `poll_s`), downloads the SaveImage output through /view and decodes
it: anything that is not a picture is a MalformedResponse. Node errors fail at once, naming
the node. The server plumbing is comfyui_client.py. Billed per image: one "image.generate"
entry, one request, per still (a self-hosted server's price is usually 0).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from studio.providers.base import (
    GeneratedImage,
    ImageCapabilities,
    ImageRequest,
    JobHandle,
    JobState,
    JobStatus,
)
from studio.providers.comfyui_client import (
    WORKFLOWS_DIR,
    ComfyClient,
    Workflow,
    configured_workflow,
    executed_nodes,
    load_workflow,
    prompt_id_for,
    without_image,
)
from studio.providers.errors import BadRequest, JobFailed, ProviderTimeout
from studio.providers.image_openai import GENERATE, RemoteImages, image_seed
from studio.providers.transport import HttpConfig, Outcome

PLACEHOLDERS = ("prompt", "negative_prompt", "seed", "width", "height", "image")
REQUIRED = ("prompt", "seed", "width", "height")
# Nodes that save a picture /view serves (core SaveImage; WAS and the extended saver).
IMAGE_OUTPUT_NODES = frozenset({"SaveImage", "Image Save", "SaveImageExtended"})
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
NEGATIVE_PROMPT = (
    "blurry, low quality, distorted face, deformed hands, extra limbs, watermark, text, "
    "subtitles, overexposed, jpeg artifacts"
)
# Model name prefix -> the shipped workflow for it.
SHIPPED = {"flux": "flux_kontext.json"}
# About a megapixel, in multiples of 16, for each aspect (what Flux models are trained at).
SIZES = {"9:16": (768, 1344), "16:9": (1344, 768), "1:1": (1024, 1024)}
# How many times one key's prompt is queued again after failing (an out-of-memory GPU).
MAX_TRIES = 5


@dataclass
class ComfyImageConfig(HttpConfig):
    """`workflow`: an image workflow file in ComfyUI's API format; empty = the shipped one
    for the model (`flux-dev`, `flux-kontext`, ...). `max_wait_s`: how long one still may
    take, queue included."""

    workflow: str = ""
    poll_s: float = 2.0
    max_reference_images: int = 0  # the workflow decides: one {{image}} LoadImage, or none
    max_wait_s: float = 600.0


class ComfyImages(ComfyClient, RemoteImages):
    output_kind, output_node, output_suffixes = "image", "SaveImage", IMAGE_SUFFIXES

    def __init__(self, config: ComfyImageConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.config: ComfyImageConfig = config
        self.label = f"{config.model} (ComfyUI)"
        try:
            takes_reference = "image" in self.workflow().placeholders
        except BadRequest:
            takes_reference = True  # generate says what is wrong with the workflow
        self.capabilities = ImageCapabilities(
            sizes=dict(SIZES), max_reference_images=1 if takes_reference else 0
        )

    def workflow_path(self) -> Path:
        if self.config.workflow:
            return configured_workflow(self.config.workflow)
        name = re.sub(r"[\s_-]", "", self.model.lower())
        shipped = next((file for prefix, file in SHIPPED.items() if name.startswith(prefix)), "")
        if not shipped:
            raise BadRequest(
                f"no ComfyUI image workflow ships for model {self.model!r} (models: "
                f"{', '.join(SHIPPED)}); set IMAGE_WORKFLOW to a workflow file in API format",
                provider=self.name,
            )
        return WORKFLOWS_DIR / shipped

    def workflow(self) -> Workflow:
        return load_workflow(
            self.workflow_path(),
            provider=self.name,
            placeholders=PLACEHOLDERS,
            required=REQUIRED,
            output_nodes=IMAGE_OUTPUT_NODES,
        )

    async def generate(self, request: ImageRequest, *, idempotency_key: str) -> GeneratedImage:
        if not request.prompt.strip():
            raise BadRequest("an image needs a prompt", provider=self.name)
        workflow = self.workflow()  # read on every call: an edited file is used at once
        width, height = self.capabilities.size_for(request.aspect)
        references = []
        if "image" in workflow.placeholders:
            references = self.references(request, (width, height))  # one: the first
        seed = image_seed(request)
        if seed is None:
            digest = hashlib.sha256(f"{self.name}:{idempotency_key}".encode()).digest()
            seed = (int.from_bytes(digest[:4], "big") + request.variant) % 2**31
        values = {
            "prompt": request.prompt,
            "negative_prompt": NEGATIVE_PROMPT,
            "seed": seed,
            "width": width,
            "height": height,
            "image": "",
        }

        async def submit() -> Outcome:
            handle = await self._follow_or_queue(workflow, values, references, idempotency_key)
            return Outcome(handle, request_id=handle.id)

        handle = await self.call(operation="image.submit", attempt=submit)
        await self._wait(handle)

        async def fetch() -> Outcome:
            data = await self._download_output(handle.id)
            return Outcome(await self.still(data, request_id=handle.id), request_id=handle.id)

        return await self.call(operation=GENERATE, attempt=fetch, once_per_request=True)

    async def _follow_or_queue(
        self, workflow: Workflow, values: dict, references: list[bytes], key: str
    ) -> JobHandle:
        """The handle of this key's prompt: one queued, running or done already, else queued
        now; a try whose prompt failed or was interrupted is passed over for the next."""
        failed: JobStatus | None = None
        for attempt in range(MAX_TRIES):
            try_key = key if attempt == 0 else f"{key}#{attempt + 1}"
            prompt_id = prompt_id_for(f"{self.name}:image:{try_key}")
            found = await self._existing(prompt_id, try_key)
            if found:
                entry = await self._history(found)
                status = self._status(entry) if entry is not None else None
                if status is not None and status.state in (JobState.FAILED, JobState.CANCELLED):
                    failed = status
                    continue
                return self._handle(found, executed_nodes(workflow.graph))
            graph = workflow.graph
            if references:
                values["image"] = await self._upload(references[0], f"studio-{prompt_id}.jpg")
            elif "image" in workflow.placeholders:
                graph = without_image(graph)
            queued = await self._queue_prompt(
                graph, values, prompt_id=prompt_id, client_id=f"studio-{prompt_id}", key=try_key
            )
            return self._handle(queued, executed_nodes(graph))
        raise JobFailed(
            f"the prompt failed {MAX_TRIES} times: {failed.error if failed else ''}",
            provider=self.name,
            retryable=False,
        )

    def _handle(self, prompt_id: str, nodes: int) -> JobHandle:
        data = {"client_id": f"studio-{prompt_id}", "nodes": nodes}
        return JobHandle(
            provider=self.name, id=prompt_id, model=self.model, kind="image", data=data
        )

    async def _wait(self, handle: JobHandle) -> None:
        """Until the prompt succeeds; a failed or interrupted one is a JobFailed (retryable
        as its error says: the next call queues it again), one past max_wait_s a timeout."""
        deadline = time.monotonic() + self.config.max_wait_s
        while True:
            status = await self._poll_prompt(handle, operation="image.poll")
            if status.state is JobState.SUCCEEDED:
                return
            if status.state.finished:
                raise JobFailed(
                    status.error or f"the prompt ended {status.state.value}",
                    provider=self.name,
                    retryable=status.retryable or status.state is JobState.CANCELLED,
                    request_id=handle.id,
                )
            if time.monotonic() > deadline:
                await self._close_socket(handle.id)
                raise ProviderTimeout(
                    f"prompt {handle.id} still {status.vendor_status or status.state.value} "
                    f"after {self.config.max_wait_s:g} s",
                    provider=self.name,
                    request_id=handle.id,
                )
            await self.wait_for_news(handle, status.poll_after_s or self.config.poll_s)
