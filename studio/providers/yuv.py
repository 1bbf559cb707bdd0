"""yuv420p pictures as numpy planes: plates to take windows from, and text layers blended in.

The renderer composes in the encoder's own pixel format, so no frame is converted from RGB:
plates and layers are converted once, frames only copy, scale and blend.
"""

from __future__ import annotations

import av
import numpy as np
from PIL import Image


class Yuv:
    """A yuv420p image as three numpy planes (even width and height)."""

    def __init__(self, image: Image.Image) -> None:
        width, height = image.size
        data = av.VideoFrame.from_image(image).reformat(format="yuv420p").to_ndarray()
        self.size = (width, height)
        self.y = data[:height]
        chroma = data[height:].reshape(2, height // 2, width // 2)
        self.u, self.v = chroma[0], chroma[1]

    def window(self, x: int, y: int, width: int, height: int) -> av.VideoFrame:
        """A new frame holding the window at (x, y) (x and y rounded down to even)."""
        x, y = x & ~1, y & ~1
        frame = av.VideoFrame(width, height, "yuv420p")
        planes = frame_planes(frame)
        planes[0][:] = self.y[y : y + height, x : x + width]
        planes[1][:] = self.u[y // 2 : (y + height) // 2, x // 2 : (x + width) // 2]
        planes[2][:] = self.v[y // 2 : (y + height) // 2, x // 2 : (x + width) // 2]
        return frame


def frame_planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """Writable numpy views of a frame's planes (without the row padding)."""
    return [
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        for plane in frame.planes
    ]


class Overlay:
    """An RGBA layer cut to its visible box, converted to YUV and pre-multiplied once."""

    def __init__(self, layer: Image.Image) -> None:
        box = layer.getchannel("A").getbbox()
        self.box = None
        if box is None:
            return
        left, top = box[0] & ~1, box[1] & ~1
        right, bottom = min((box[2] + 1) & ~1, layer.width), min((box[3] + 1) & ~1, layer.height)
        self.box = (left, top, right, bottom)
        part = layer.crop(self.box)
        yuv = Yuv(part.convert("RGB"))
        alpha = np.asarray(part.getchannel("A"), dtype=np.uint16) + 1  # 1..256
        alpha[alpha == 1] = 0
        small = alpha.reshape(alpha.shape[0] // 2, 2, alpha.shape[1] // 2, 2).mean(axis=(1, 3))
        small = small.astype(np.uint16)
        self.planes = [
            (yuv.y * alpha, 256 - alpha),
            (yuv.u * small, 256 - small),
            (yuv.v * small, 256 - small),
        ]

    def apply(self, planes: list[np.ndarray]) -> None:
        if self.box is None:
            return
        left, top, right, bottom = self.box
        for index, (pre, inverse) in enumerate(self.planes):
            scale = 1 if index == 0 else 2
            region = planes[index][top // scale : bottom // scale, left // scale : right // scale]
            mixed = region * inverse
            mixed += pre
            mixed >>= 8
            region[:] = mixed
