"""Face test data made in code from the shipped portraits (tests.factories.FACES_DIR).

- `portrait_scan(name)`: each portrait's faces, scanned once per test session.
- `build_eval_set(target=...)`: the consistency evaluation set, one folder per identity
  (obama.jpg and obama2.jpg are the same man); each portrait also gets the degradations a
  generated or re-encoded frame shows: crop, +-40 % light, JPEG q10-q30, blur r2, rotation
  8-15 degrees, scale 0.3-2x, grayscale, mirror.
- `side_by_side(...)`, `scaled(...)`: group photos and tiny faces for the quality flags.
"""

import functools
import io
import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from characters import faces
from characters.bench.consistency import compose_frame, head_and_shoulders
from tests.factories import FACES_DIR

IDENTITIES = {
    "obama": ["obama.jpg", "obama2.jpg"],
    "biden": ["biden.jpg"],
    "grace_hopper": ["grace_hopper.jpg"],
    "eileen_collins": ["astronaut.png"],
}
GREY = (128, 128, 128)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def _scale(image: Image.Image, factor: float) -> Image.Image:
    size = (round(image.width * factor), round(image.height * factor))
    return image.resize(size, Image.Resampling.LANCZOS)


def _crop(image: Image.Image, margin: float) -> Image.Image:
    dx, dy = round(image.width * margin), round(image.height * margin)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "crop": lambda image: _crop(image, 0.12),
    "light+40": lambda image: ImageEnhance.Brightness(image).enhance(1.4),
    "light-40": lambda image: ImageEnhance.Brightness(image).enhance(0.6),
    "jpeg-q10": lambda image: _jpeg(image, 10),
    "jpeg-q30": lambda image: _jpeg(image, 30),
    "blur-r2": lambda image: image.filter(ImageFilter.GaussianBlur(2)),
    "rotate+8": lambda image: image.rotate(8, expand=True, fillcolor=GREY),
    "rotate-15": lambda image: image.rotate(-15, expand=True, fillcolor=GREY),
    "scale-0.3": lambda image: _scale(image, 0.3),
    "scale-2": lambda image: _scale(image, 2.0),
    "grayscale": lambda image: ImageOps.grayscale(image).convert("RGB"),
    "mirror": ImageOps.mirror,
}


def build_eval_set(*, target: Path, source: Path = FACES_DIR) -> Path:
    """Write the portraits and their variants as PNG files, one folder per identity."""
    for identity, files in IDENTITIES.items():
        folder = target / identity
        folder.mkdir(parents=True, exist_ok=True)
        for name in files:
            stem = Path(name).stem
            with Image.open(source / name) as opened:
                original = opened.convert("RGB")
            original.save(folder / f"{stem}.png", compress_level=0)
            for variant, make in VARIANTS.items():
                make(original).save(folder / f"{stem}-{variant}.png", compress_level=0)
    return target


@functools.cache
def portrait_scan(name: str) -> faces.FaceScan:
    """The faces of a shipped portrait, computed once per test process (in this process)."""
    return faces.scan(FACES_DIR / name)


@functools.cache
def variant_scan(name: str, variant: str) -> faces.FaceScan:
    """The faces of a portrait's augmented variant (see VARIANTS), computed once."""
    with Image.open(FACES_DIR / name) as opened:
        return faces.scan(VARIANTS[variant](opened.convert("RGB")))


@functools.cache
def person(name: str, *, face_width: int = 200) -> Image.Image:
    """Head and shoulders of a shipped portrait, face `face_width` px wide."""
    return head_and_shoulders(FACES_DIR / name, face_width=face_width)


def frame_with(*names: str, seed: int = 1) -> Image.Image:
    """A 1280x720 frame with these portraits' people side by side, left to right."""
    return compose_frame([person(name) for name in names], rng=random.Random(seed))


def group(*people: tuple[str, int]) -> Image.Image:
    """People standing side by side on a grey set: (portrait name, face width in px) each."""
    figures = [person(name, face_width=face_width) for name, face_width in people]
    size = (sum(f.width for f in figures), max(f.height for f in figures))
    canvas = Image.new("RGB", size, GREY)
    x = 0
    for figure in figures:
        canvas.paste(figure, (x, size[1] - figure.height))
        x += figure.width
    return canvas


def scaled(name: str, factor: float) -> Image.Image:
    with Image.open(FACES_DIR / name) as opened:
        return _scale(opened.convert("RGB"), factor)


def encoded(image: Image.Image, *, format: str = "JPEG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=format, quality=92)
    return out.getvalue()
