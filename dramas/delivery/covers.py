"""Episode covers from a frame image: platforms ask for a 9:16 and a 3:4 cover per episode.

Centre-cropped to the aspect, then resized (up if the frame is small): never stretched.
Django-free.
"""

from __future__ import annotations

import os

from PIL import Image, ImageOps

from dramas.delivery.master import MasterError

COVER_SIZES = {"cover.jpg": (1080, 1920), "cover_3x4.jpg": (1080, 1440)}
JPEG_QUALITY = 90


def write_covers(*, frame_path: str, out_dir: str) -> dict[str, str]:
    """{"cover.jpg": path (1080x1920), "cover_3x4.jpg": path (1080x1440)} written in `out_dir`."""
    if not os.path.isfile(frame_path):
        raise MasterError(f"The cover frame {frame_path} does not exist.")
    try:
        with Image.open(frame_path) as opened:
            frame = ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise MasterError(
            f"The cover frame {frame_path} is not a readable image ({error})."
        ) from error
    written = {}
    for name, size in COVER_SIZES.items():
        path = os.path.join(out_dir, name)
        cover = ImageOps.fit(frame, size, method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
        part = f"{path}.part"
        try:
            cover.save(part, format="JPEG", quality=JPEG_QUALITY, optimize=True)
            os.replace(part, path)
        finally:
            if os.path.exists(part):
                os.remove(part)
        written[name] = path
    return written
