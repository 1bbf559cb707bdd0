"""Storyboard keyframes on OpenAI's images wire format (IMAGE_API=openai).

Without reference images: `POST {base}/images/generations`, JSON `{model, prompt, size: "WxH",
n: 1, ...}`. With the cast's references the model's table entry decides how they travel:
`POST {base}/images/edits` as multipart `image[]` parts (gpt-image-1 takes several), or a JSON
`image` list of data URLs in the generations body (Seedream on BytePlus ModelArk / Volcengine
Ark, `/api/v3/images/generations`). The answer is `data[0].b64_json` or `data[0].url` (then
downloaded: the key goes to our own host only). Whatever comes back must decode as a picture
(Pillow) or the answer is malformed. Billed per image: each generated still is booked once
("image.generate", one request), with the answer's tokens when it reports them.

`RemoteImages` is what every remote image adapter shares (image_fal.py too): the ledger entry
per image, the reference images sent, and the decoding of what comes back.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from studio.providers.base import (
    CastMember,
    GeneratedImage,
    ImageCapabilities,
    ImageRequest,
    Usage,
)
from studio.providers.errors import BadRequest, MalformedResponse
from studio.providers.frames import reference_frame
from studio.providers.transport import HttpConfig, HttpProvider, Outcome, request_id_of
from studio.providers.video_fal import data_url

GENERATE = "image.generate"  # the billed operation: one request per image
MAX_PIXELS = 40_000_000  # a still larger than this is not a keyframe


@dataclass(frozen=True)
class ImageModel:
    """What one line of models takes on this wire format.

    `references` is how reference images travel: "edits" (multipart `image[]` parts to
    /images/edits) or "json" (an `image` list of data URLs in the generations body).
    `response_format` is sent when not empty ("b64_json" or "url"); gpt-image models always
    answer in base64 and refuse the field. `seed`: the model takes one. `fixed`: inputs sent
    as they are."""

    sizes: dict[str, tuple[int, int]]
    max_references: int
    references: str = "edits"
    response_format: str = ""
    seed: bool = False
    fixed: dict = field(default_factory=dict)


_GPT_IMAGE = ImageModel(
    sizes={"9:16": (1024, 1536), "16:9": (1536, 1024), "1:1": (1024, 1024)}, max_references=16
)
_SEEDREAM_SIZES = {"9:16": (1440, 2560), "16:9": (2560, 1440), "1:1": (2048, 2048)}
_SEEDREAM_FIXED = {"watermark": False, "sequential_image_generation": "disabled"}

# Matched in this order against the model id (Ark ids carry a date: seedream-4-0-250828).
MODELS: tuple[tuple[str, ImageModel], ...] = (
    ("gpt-image", _GPT_IMAGE),
    (
        "dall-e-3",
        ImageModel(
            sizes={"9:16": (1024, 1792), "16:9": (1792, 1024), "1:1": (1024, 1024)},
            max_references=0,
            response_format="b64_json",
        ),
    ),
    (
        "seedream-4-5",
        ImageModel(
            sizes=_SEEDREAM_SIZES,
            max_references=14,
            references="json",
            response_format="url",
            fixed=_SEEDREAM_FIXED,
        ),
    ),
    (
        "seedream-4",
        ImageModel(
            sizes=_SEEDREAM_SIZES,
            max_references=10,
            references="json",
            response_format="url",
            fixed=_SEEDREAM_FIXED,
        ),
    ),
    # Seedream 3.0 draws from text alone and is the line that takes a seed.
    (
        "seedream-3",
        ImageModel(
            sizes={"9:16": (720, 1280), "16:9": (1280, 720), "1:1": (1024, 1024)},
            max_references=0,
            references="json",
            response_format="url",
            seed=True,
            fixed={"watermark": False},
        ),
    ),
)
FALLBACK = _GPT_IMAGE  # an unknown id (a proxy's alias): OpenAI's own shape


def model_info(model: str) -> ImageModel:
    model = model.lower()
    for marker, info in MODELS:
        if marker in model:
            return info
    return FALLBACK


def image_seed(request: ImageRequest) -> int | None:
    """The request's seed moved on by its variant: each candidate of a scene draws anew."""
    if request.seed is None:
        return None
    return (int(request.seed) + request.variant) % 2**31


def decode_still(
    data: bytes, *, provider: str, request_id: str = "", revised_prompt: str = ""
) -> GeneratedImage:
    """The still as a GeneratedImage, or MalformedResponse when the bytes are no picture."""
    if not data:
        raise MalformedResponse("the image is empty", provider=provider, request_id=request_id)
    try:
        with Image.open(io.BytesIO(data)) as picture:
            width, height = picture.size
            if width * height > MAX_PIXELS:
                raise MalformedResponse(
                    f"the image is {width}x{height}, too large for a keyframe",
                    provider=provider,
                    request_id=request_id,
                )
            media_type = Image.MIME.get(picture.format or "", "")
            picture.load()  # a truncated file fails here, not in the face engine later
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        start = data[:24].decode("utf-8", "replace").strip()
        raise MalformedResponse(
            f"the answer is not an image ({len(data)} bytes starting {start!r})",
            provider=provider,
            request_id=request_id,
        ) from None
    if media_type not in ("image/png", "image/jpeg", "image/webp"):
        raise MalformedResponse(
            f"the image is {media_type or 'of an unknown type'}, not PNG, JPEG or WebP",
            provider=provider,
            request_id=request_id,
        )
    return GeneratedImage(
        data=data,
        width=width,
        height=height,
        media_type=media_type,
        request_id=request_id,
        revised_prompt=revised_prompt,
    )


class RemoteImages(HttpProvider):
    """What every remote image adapter shares: the ledger entry per image, the references
    sent (face-centred JPEGs at the output size, as many as the model takes) and the still
    decoded from what comes back."""

    kind = "image"
    capabilities: ImageCapabilities

    async def book(
        self, *, operation: str, kind: str | None, started: float | None, **fields
    ) -> None:
        # Billed per image: a generated still is one request at a per-request price.
        if operation == GENERATE and fields.get("ok"):
            fields["requests"] = 1
        await super().book(operation=operation, kind=kind, started=started, **fields)

    def references(self, request: ImageRequest, size: tuple[int, int]) -> list[bytes]:
        members: list[CastMember] = [m for m in request.cast if m.image is not None or m.image_path]
        frames = []
        for member in members[: self.capabilities.max_reference_images]:
            try:
                frames.append(reference_frame(member, size))
            except (OSError, ValueError) as error:
                raise BadRequest(str(error), provider=self.name) from None
        return frames

    async def still(
        self, data: bytes, *, request_id: str = "", revised_prompt: str = ""
    ) -> GeneratedImage:
        """Decoded off the event loop: a full decode of a 2K still takes tens of ms."""
        return await asyncio.to_thread(
            decode_still,
            data,
            provider=self.name,
            request_id=request_id,
            revised_prompt=revised_prompt,
        )


@dataclass
class ImageConfig(HttpConfig):
    # More than the model's table offers (or fewer); 0 leaves it to the table.
    max_reference_images: int = 0


class OpenAIImages(RemoteImages):
    def __init__(self, config: ImageConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.config: ImageConfig = config
        self.label = f"OpenAI-compatible images ({config.model})"
        self.info = model_info(config.model)
        references = self.info.max_references
        if config.max_reference_images > 0:
            references = config.max_reference_images
        self.capabilities = ImageCapabilities(
            sizes=dict(self.info.sizes), max_reference_images=references
        )

    def _fields(self, request: ImageRequest, size: tuple[int, int]) -> dict:
        fields: dict = {
            "model": self.model,
            "prompt": request.prompt,
            "size": f"{size[0]}x{size[1]}",
            "n": 1,
            **self.info.fixed,
        }
        if self.info.response_format:
            fields["response_format"] = self.info.response_format
        seed = image_seed(request)
        if self.info.seed and seed is not None:
            fields["seed"] = seed
        return fields

    def _request(self, request: ImageRequest) -> tuple[str, dict]:
        """The URL and httpx arguments of the call: JSON, or multipart for edits."""
        size = self.capabilities.size_for(request.aspect)
        fields = self._fields(request, size)
        references = self.references(request, size)
        if references and self.info.references == "edits":
            parts = [(name, (None, str(value))) for name, value in fields.items()]
            parts += [
                ("image[]", (f"reference-{n}.jpg", image, "image/jpeg"))
                for n, image in enumerate(references, 1)
            ]
            return self.url("images/edits"), {"files": parts}
        if references:
            fields["image"] = [data_url(image) for image in references]
        return self.url("images/generations"), {"json": fields}

    async def generate(self, request: ImageRequest, *, idempotency_key: str) -> GeneratedImage:
        if not request.prompt.strip():
            raise BadRequest("an image needs a prompt", provider=self.name)
        url, body = self._request(request)

        async def attempt() -> Outcome:
            headers = self.headers(url, idempotency_key=idempotency_key)
            response = await self.send("POST", url, headers=headers, **body)
            request_id = request_id_of(response)
            answer = self.json_of(response)
            item = _first_item(answer, provider=self.name, request_id=request_id)
            image = await self.still(
                await self._image_bytes(item, request_id),
                request_id=request_id or idempotency_key,
                revised_prompt=str(item.get("revised_prompt") or ""),
            )
            return Outcome(image, usage=usage_of(answer), request_id=request_id)

        # Retrying with the same Idempotency-Key is safe where the vendor dedupes by it.
        return await self.call(operation=GENERATE, attempt=attempt, once_per_request=True)

    async def _image_bytes(self, item: dict, request_id: str) -> bytes:
        encoded = item.get("b64_json")
        if isinstance(encoded, str) and encoded:
            try:
                return base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise MalformedResponse(
                    "the image's b64_json is not base64", provider=self.name, request_id=request_id
                ) from None
        link = item.get("url")
        if isinstance(link, str) and link.startswith(("http://", "https://")):
            return await self.download(link)  # the key goes to our own host only
        raise MalformedResponse(
            "the answer's image has neither b64_json nor a url",
            provider=self.name,
            request_id=request_id,
        )


def _first_item(answer: dict, *, provider: str, request_id: str) -> dict:
    data = answer.get("data")
    if not isinstance(data, list) or not data:
        raise MalformedResponse(
            "the answer has no image (empty `data`)", provider=provider, request_id=request_id
        )
    if not isinstance(data[0], dict):
        raise MalformedResponse(
            "the answer's `data` holds no image object", provider=provider, request_id=request_id
        )
    return data[0]


def usage_of(answer: dict) -> Usage:
    """Tokens where the answer reports them (gpt-image: input and output, Seedream: output)."""
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return Usage()

    def count(name: str) -> int:
        try:
            return max(int(usage.get(name) or 0), 0)
        except (TypeError, ValueError):
            return 0

    return Usage(input_tokens=count("input_tokens"), output_tokens=count("output_tokens"))
