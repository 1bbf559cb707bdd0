"""Face detection and embedding with dlib's models, offline.

- Detector: dlib's HOG frontal face detector, run on a copy whose long side is at most
  `detect_long_side` px (640 by default): detection cost grows with pixels, while the
  embedding only needs the landmarks, which come from the full-resolution image.
- Landmarks: the 5-point shape predictor, on the full-resolution image (boxes mapped back).
- Embedding: dlib's ResNet face-recognition model (128-d), from the aligned 150 px chip cut
  out of the full-resolution image, run with numpy (dlib_resnet.py: the same weights and the
  same values, 6 times quicker than dlib's BLAS-less wheel). Raw descriptors have a norm of
  about 1.4; consistency.py compares them by cosine, so their length does not matter.

The model files come from the `face_recognition_models` package. Its `__init__` imports
`pkg_resources` (gone from new setuptools), so the files are located with `find_spec` instead
of importing it. Models load once per process, on first use, and stay loaded: this module is
meant to run inside the studio's process pool (studio.cpu), one model set per worker. dlib is
imported lazily too, so importing this module (e.g. for the dataclasses) stays cheap.
"""

import functools
import importlib.util
import io
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from characters.dlib_resnet import CHIP_SIZE, FaceResNet
from studio.cpu import cpu_pool, cpu_workers

MODEL_ID = "dlib-resnet-v1 (hog detector, 5-point aligner)"
EMBEDDING_SIZE = 128
DETECT_LONG_SIDE = 640
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_PADDING = 0.25  # around the aligned face, as dlib's compute_face_descriptor cuts it

ImageInput = bytes | str | os.PathLike | np.ndarray | Image.Image


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # left, top, right, bottom in full-resolution pixels, clipped
    score: float  # the HOG detector's confidence; about 1-2 for a clear frontal face
    size: int  # box width in full-resolution pixels
    embedding: np.ndarray  # float32, 128 values, as the model returns them

    def to_dict(self) -> dict:
        return {"box": list(self.box), "score": round(self.score, 3), "size": self.size}


@dataclass(frozen=True)
class FaceScan:
    width: int
    height: int
    faces: list[Face]  # largest first

    @property
    def largest(self) -> Face | None:
        return self.faces[0] if self.faces else None


@dataclass(frozen=True)
class _Models:
    detector: object
    shape_predictor: object
    embedder: FaceResNet


def model_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "The face model files are missing: install the face-recognition-models package."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@functools.cache
def _models() -> _Models:
    import dlib  # imported here: only processes that analyse faces pay for it

    folder = model_dir()
    return _Models(
        detector=dlib.get_frontal_face_detector(),
        shape_predictor=dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
        embedder=FaceResNet((folder / RECOGNITION_MODEL).read_bytes()),
    )


def load_rgb(image: ImageInput) -> Image.Image:
    """Any supported input as an upright RGB PIL image."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, np.ndarray):
        return Image.fromarray(image).convert("RGB")
    with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as opened:
        opened.load()
        return ImageOps.exif_transpose(opened).convert("RGB")


def scan(
    image: ImageInput,
    *,
    detect_long_side: int = DETECT_LONG_SIDE,
    retry_upsampled: bool = True,
) -> FaceScan:
    """Every face in the image with its box, detector score, size and embedding.

    Runs in the calling process. From request (sync) code use `scan_in_pool`, which blocks only
    its thread; from async code `await studio.cpu.run_cpu(scan, ...)`, never on the loop.
    With `retry_upsampled`, an image where no face is found is searched once more with the
    small copy upsampled 2x, which finds faces down to about 40 px instead of about 80 px.
    """
    import dlib

    models = _models()
    rgb = load_rgb(image)
    full = np.asarray(rgb)
    scale = min(1.0, detect_long_side / max(rgb.size))
    if scale < 1.0:
        small_size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        small = np.asarray(rgb.resize(small_size, Image.Resampling.BILINEAR))
    else:
        small = full
    boxes, scores, _ = models.detector.run(small, 0, 0)
    if not boxes and retry_upsampled:
        boxes, scores, _ = models.detector.run(small, 1, 0)

    faces = []
    for box, score in zip(boxes, scores, strict=True):
        rect = dlib.rectangle(
            round(box.left() / scale),
            round(box.top() / scale),
            round(box.right() / scale),
            round(box.bottom() / scale),
        )
        shape = models.shape_predictor(full, rect)
        chip = np.asarray(dlib.get_face_chip(full, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
        clipped = (
            max(0, rect.left()),
            max(0, rect.top()),
            min(rgb.width, rect.right()),
            min(rgb.height, rect.bottom()),
        )
        faces.append(
            Face(
                box=clipped,
                score=float(score),
                size=int(rect.width()),
                embedding=models.embedder.embed(chip),
            )
        )
    faces.sort(key=lambda face: face.size, reverse=True)
    return FaceScan(width=rgb.width, height=rgb.height, faces=faces)


def warm_up(hold_s: float = 0.3) -> int:
    """Load the models in this process; returns its pid. Holding the process a moment lets a
    batch of warm-ups reach every worker of the pool rather than the first one free."""
    _models()
    time.sleep(hold_s)
    return os.getpid()


def warm_pool(*, attempts: int = 5) -> int:
    """Start every pool worker and load its models; returns how many are warm."""
    workers, pids = cpu_workers(), set()
    for _ in range(attempts):
        pids |= set(cpu_pool().map(warm_up, [0.3] * workers))
        if len(pids) >= workers:
            break
    return len(pids)


def scan_in_pool(image: bytes | str | os.PathLike) -> FaceScan:
    """`scan` in one of the shared pool's processes (blocks the calling thread only)."""
    if isinstance(image, os.PathLike):
        image = os.fspath(image)
    return cpu_pool().submit(scan, image).result()


def scan_many_in_pool(images: Sequence[bytes | str | os.PathLike]) -> list[FaceScan]:
    """`scan` for several images at once, spread over the pool's processes."""
    paths = [os.fspath(i) if isinstance(i, os.PathLike) else i for i in images]
    return list(cpu_pool().map(scan, paths))


def embedding_to_bytes(embedding: np.ndarray) -> bytes:
    return np.asarray(embedding, dtype=np.float32).tobytes()


def embedding_from_bytes(data: bytes | memoryview) -> np.ndarray:
    vector = np.frombuffer(bytes(data), dtype=np.float32)
    if vector.shape != (EMBEDDING_SIZE,):
        raise ValueError(f"an embedding has {EMBEDDING_SIZE} float32 values, not {vector.size}")
    return vector
