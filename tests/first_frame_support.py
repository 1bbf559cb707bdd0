"""Builders for the first-frame tests: a keyframe no face looks like, and pixel comparisons."""

import io

import av
import numpy as np
from PIL import Image

from studio.providers.video_http import wait_for

QUADRANTS = ((220, 40, 40), (40, 200, 60), (40, 70, 220), (235, 215, 40))


def keyframe(size: tuple[int, int] = (720, 1280), *, format: str = "PNG") -> bytes:
    """A storyboard still in four saturated quadrants (red, green, blue, yellow)."""
    width, height = size
    picture = Image.new("RGB", size)
    for index, colour in enumerate(QUADRANTS):
        row, col = divmod(index, 2)
        box = (col * width // 2, row * height // 2, (col + 1) * width // 2, (row + 1) * height // 2)
        picture.paste(colour, box)
    out = io.BytesIO()
    picture.save(out, format=format)
    return out.getvalue()


def picture(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel (0-255) of the two pictures at one small size."""
    size = (72, 128) if a.height >= a.width else (128, 72)
    small = [np.asarray(i.convert("RGB").resize(size), dtype=np.float32) for i in (a, b)]
    return float(np.abs(small[0] - small[1]).mean())


def frame_at(video: bytes, seconds: float = 0.0) -> Image.Image:
    """The first decoded frame at or after `seconds`."""
    with av.open(io.BytesIO(video)) as container:
        for frame in container.decode(video=0):
            if frame.time is None or frame.time >= seconds:
                return frame.to_image()
    raise AssertionError(f"no frame at {seconds} s")


async def rendered_frame(video, handle, seconds: float = 1.0) -> Image.Image:
    """The finished clip's frame at `seconds` (waits for the job, then downloads it)."""
    await wait_for(video, handle, timeout_s=5)
    return frame_at(await video.fetch(handle), seconds)
