"""Reference-image uploads: decode for real, reject with a reason, store a normalised copy.

Nothing here trusts the file name, the browser's content type or the declared size: the
bytes are read (up to the limit), decoded by Pillow, and re-encoded.
"""

import hashlib
import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP"}
# Phones save multi-picture JPEGs (MPO); they are JPEGs to the producer and the first frame is
# the photo.
ACCEPTED_FORMATS = {**ALLOWED_FORMATS, "MPO": "JPEG"}


class UploadRejected(ValueError):
    """The upload cannot become a reference image; the message says why, for the producer."""


@dataclass(frozen=True)
class NormalisedImage:
    content: bytes  # JPEG, EXIF orientation applied, RGB, no metadata
    sha256: str  # of the bytes the user uploaded
    original_bytes: int
    original_format: str
    width: int
    height: int


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def read_limited(upload, *, max_bytes: int) -> bytes:
    """Read an uploaded file, refusing as soon as it passes the limit."""
    declared = getattr(upload, "size", None)
    if declared is not None and declared > max_bytes:
        raise UploadRejected(
            f"The file is {_megabytes(declared)}; the limit is {_megabytes(max_bytes)}."
        )
    upload.seek(0)
    data = upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UploadRejected(f"The file is larger than the {_megabytes(max_bytes)} limit.")
    if not data:
        raise UploadRejected("The file is empty.")
    return data


def normalise_image(data: bytes) -> NormalisedImage:
    """Decode, check and re-encode an image, or raise UploadRejected with the reason."""
    max_pixels = settings.UPLOAD_MAX_PIXELS
    allowed = ", ".join(ALLOWED_FORMATS.values())
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; we want a refusal.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                image_format = probe.format
                width, height = probe.size
        except (
            UnidentifiedImageError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ) as error:
            if isinstance(error, UnidentifiedImageError):
                raise UploadRejected(
                    f"This is not an image we can read. Upload a {allowed} file."
                ) from None
            raise UploadRejected(
                f"The image is too large to open safely; the limit is "
                f"{max_pixels / 1e6:.0f} megapixels."
            ) from None
        except Exception:
            raise UploadRejected(
                f"This file could not be read as an image. Upload a {allowed} file."
            ) from None
        if image_format not in ACCEPTED_FORMATS:
            raise UploadRejected(
                f"{image_format or 'This'} images are not accepted. Upload a {allowed} file."
            )
        # Checked from the header, before any pixel is decoded: bombs never reach memory.
        if width * height > max_pixels:
            raise UploadRejected(
                f"The image is {width}×{height} ({width * height / 1e6:.0f} megapixels); "
                f"the limit is {max_pixels / 1e6:.0f} megapixels."
            )
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                upright = ImageOps.exif_transpose(image)
                rgb = _to_rgb(upright)
        except Exception:
            raise UploadRejected(
                "The image is damaged or incomplete (it could not be decoded to the end). "
                "Export it again and re-upload."
            ) from None

    max_side = settings.REFERENCE_MAX_SIDE
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    rgb.info.clear()  # no comment, ICC or EXIF rides along into the stored copy
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=92, optimize=True)
    return NormalisedImage(
        content=out.getvalue(),
        sha256=hashlib.sha256(data).hexdigest(),
        original_bytes=len(data),
        original_format=image_format,
        width=rgb.width,
        height=rgb.height,
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas become white rather than the black a plain convert gives.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
