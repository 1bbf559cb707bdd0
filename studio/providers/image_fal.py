"""Storyboard keyframes on fal.ai's queue (IMAGE_API=fal), for image models that take
reference images: FLUX.1 Kontext (the default), Seedream 4.0 edit, Nano Banana edit.

`POST {base}/{model_id}` with the model's own JSON input (its names are in MODELS: one
`image_url` or an `image_urls` list, `aspect_ratio` or `image_size`, a seed or none,
`num_images: 1`), then the returned status URL until COMPLETED and the response URL for
`{"images": [{"url", "width", "height", "content_type"}]}`; the first image is downloaded
(without the key: it is on fal's file host) and must decode as a picture. A scene with nobody
in it goes to the model's text-to-image sibling. The queue plumbing is video_fal's
`FalQueue`. Billed per image: the still is booked once ("image.generate", one request, the
fal request id); the submit, polls and result are booked too, as calls without a charge.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from studio.providers.base import GeneratedImage, ImageCapabilities, ImageRequest, JobState
from studio.providers.errors import JobFailed, MalformedResponse, ProviderTimeout
from studio.providers.image_openai import GENERATE, RemoteImages, image_seed
from studio.providers.transport import HttpConfig, Outcome
from studio.providers.video_fal import FalQueue, data_url

_MEGAPIXEL = {"9:16": (768, 1344), "16:9": (1344, 768), "1:1": (1024, 1024)}


@dataclass(frozen=True)
class FalImageModel:
    """How one fal image model takes its input. `image`: the reference input's name
    ("image_url" for one, "image_urls" for a list); `size`: "aspect_ratio" (the ratio as
    text) or "image_size" ({width, height}); `text_model`: the id a scene without references
    goes to."""

    image: str = "image_url"
    max_references: int = 1
    size: str = "aspect_ratio"
    seed: bool = True
    sizes: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(_MEGAPIXEL))
    text_model: str = ""
    fixed: dict = field(default_factory=dict)


_KONTEXT = dict(fixed={"output_format": "jpeg", "safety_tolerance": "2"})
_SEEDREAM = dict(
    image="image_urls",
    max_references=10,
    size="image_size",
    sizes={"9:16": (1440, 2560), "16:9": (2560, 1440), "1:1": (2048, 2048)},
    fixed={"enable_safety_checker": True},
)

# fal model id -> its input names (fal's model pages).
MODELS: dict[str, FalImageModel] = {
    "fal-ai/flux-pro/kontext": FalImageModel(
        text_model="fal-ai/flux-pro/kontext/text-to-image", **_KONTEXT
    ),
    "fal-ai/flux-pro/kontext/max": FalImageModel(
        text_model="fal-ai/flux-pro/kontext/max/text-to-image", **_KONTEXT
    ),
    "fal-ai/flux-pro/kontext/max/multi": FalImageModel(
        image="image_urls",
        max_references=4,
        text_model="fal-ai/flux-pro/kontext/max/text-to-image",
        **_KONTEXT,
    ),
    "fal-ai/bytedance/seedream/v4/edit": FalImageModel(
        text_model="fal-ai/bytedance/seedream/v4/text-to-image", **_SEEDREAM
    ),
    "fal-ai/nano-banana/edit": FalImageModel(
        image="image_urls",
        max_references=3,
        seed=False,
        text_model="fal-ai/nano-banana",
        fixed={"output_format": "jpeg"},
    ),
}
FALLBACK = FalImageModel()  # an id not in the table: Kontext's names


def model_info(model_id: str) -> FalImageModel:
    return MODELS.get(model_id.strip().strip("/"), FALLBACK)


@dataclass
class FalImageConfig(HttpConfig):
    poll_s: float = 2.0
    max_reference_images: int = 0  # 0: the model's table decides
    max_wait_s: float = 300.0  # queued and running, before the still counts as lost


class FalImages(FalQueue, RemoteImages):
    def __init__(self, config: FalImageConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.config: FalImageConfig = config
        self.label = config.model
        self.info = model_info(config.model)
        references = self.info.max_references
        if config.max_reference_images > 0:
            # One image_url carries one image, whatever the settings say.
            references = config.max_reference_images if references > 1 else 1
        self.capabilities = ImageCapabilities(
            sizes=dict(self.info.sizes), max_reference_images=references
        )

    def _submission(self, request: ImageRequest) -> tuple[str, dict]:
        """The model id to queue (the text-to-image sibling without references) and its
        input."""
        info = self.info
        size = self.capabilities.size_for(request.aspect)
        body: dict = {"prompt": request.prompt, "num_images": 1, **info.fixed}
        if info.size == "image_size":
            body["image_size"] = {"width": size[0], "height": size[1]}
        else:
            body["aspect_ratio"] = request.aspect
        seed = image_seed(request)
        if info.seed and seed is not None:
            body["seed"] = seed
        references = [data_url(image) for image in self.references(request, size)]
        if not references:
            return info.text_model or self.model, body
        body[info.image] = references if info.image == "image_urls" else references[0]
        return self.model, body

    async def generate(self, request: ImageRequest, *, idempotency_key: str) -> GeneratedImage:
        model, body = self._submission(request)
        url = self.url(model)

        async def submit() -> Outcome:
            answer = await self.queue_submit(url, body, idempotency_key=idempotency_key)
            return Outcome(answer, request_id=answer[0])

        request_id, given = await self.call(operation="image.submit", attempt=submit)
        urls = self.queue_urls(model, request_id, given)
        link = await self._wait(request_id, urls)

        async def fetch() -> Outcome:
            data = await self.download(link)  # fal's file host: no key goes there
            return Outcome(await self.still(data, request_id=request_id), request_id=request_id)

        return await self.call(operation=GENERATE, attempt=fetch, once_per_request=True)

    async def _wait(self, request_id: str, urls: dict[str, str]) -> str:
        """Poll until the request is done; the URL of its first image. A failed or cancelled
        request is a JobFailed (retryable as fal's error says), one past max_wait_s a
        timeout."""
        deadline = time.monotonic() + self.config.max_wait_s
        while True:
            status = await self.queue_poll(urls["status"], request_id, operation="image.poll")
            if status.state is JobState.SUCCEEDED:
                status, link = await self.queue_result(
                    urls["response"],
                    request_id,
                    status,
                    operation="image.result",
                    output=_image_url,
                )
                if status.state is JobState.SUCCEEDED:
                    return link
            if status.state.finished:
                raise JobFailed(
                    status.error or f"the request ended {status.state.value}",
                    provider=self.name,
                    retryable=status.retryable,
                    request_id=request_id,
                )
            if time.monotonic() > deadline:
                raise ProviderTimeout(
                    f"request {request_id} still {status.vendor_status or status.state.value} "
                    f"after {self.config.max_wait_s:g} s",
                    provider=self.name,
                    request_id=request_id,
                )
            await asyncio.sleep(status.poll_after_s)


def _image_url(body: dict, *, provider: str, request_id: str) -> str:
    images = body.get("images")
    first = images[0] if isinstance(images, list) and images else None
    link = first.get("url") if isinstance(first, dict) else None
    if not isinstance(link, str) or not link.startswith(("http://", "https://")):
        raise MalformedResponse(
            "the result has no image URL (`images[0].url`)",
            provider=provider,
            request_id=request_id,
        )
    return link
