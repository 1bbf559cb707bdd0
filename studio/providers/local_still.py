"""The offline keyframe maker: a scene's still composed from its cast's reference images.

It is the offline animatic's look (the same crops, panels and time-of-day tint) without the
title card: what a producer sees on the storyboard with no image service configured. The
pictures are the references themselves, so the face engine finds the cast in them: offline
keyframes check the storyboard's framing and cast, not a model's drift. Composition runs in
the shared process pool; each still is booked in the ledger at the offline price (nothing).
"""

from __future__ import annotations

import io
import time

from studio.cpu import run_cpu
from studio.providers.animatic import still_plate
from studio.providers.base import (
    GeneratedImage,
    ImageCapabilities,
    ImageRequest,
    VideoRequest,
    frame_size,
)
from studio.providers.ledger import DbLedger, Recorder, UsageEntry

MODEL = "composed-still"


def compose_still(request: ImageRequest, size: tuple[int, int]) -> bytes:
    """The still as JPEG bytes of exactly `size` (runs in the process pool): a tenth of the
    PNG's size, and three candidates per scene are kept for every scene of a season."""
    scene = VideoRequest(
        prompt=request.prompt,
        aspect=request.aspect,
        time_of_day=request.time_of_day,
        camera=request.camera,
        cast=request.cast,
    )
    out = io.BytesIO()
    still_plate(scene, size, variant=request.variant).save(out, format="JPEG", quality=90)
    return out.getvalue()


class LocalStill:
    name = "local"
    model = MODEL
    label = "offline composed still"
    kind = "image"
    capabilities = ImageCapabilities(
        sizes={aspect: frame_size(aspect) for aspect in ("9:16", "16:9", "1:1")},
        max_reference_images=6,
    )

    def __init__(self, *, recorder: Recorder | None = None) -> None:
        self.recorder = recorder if recorder is not None else DbLedger()

    async def generate(self, request: ImageRequest, *, idempotency_key: str) -> GeneratedImage:
        size = self.capabilities.size_for(request.aspect)
        started = time.perf_counter()
        data = await run_cpu(compose_still, request, size)
        await self.recorder.record(
            UsageEntry(
                provider=self.name,
                model=self.model,
                kind=self.kind,
                operation="image.generate",
                requests=1,
                latency_ms=int((time.perf_counter() - started) * 1000),
                request_id=idempotency_key,
            )
        )
        return GeneratedImage(
            data=data,
            width=size[0],
            height=size[1],
            media_type="image/jpeg",
            request_id=idempotency_key,
        )
