"""`python manage.py bench consistency`: frames per second scoring 1280x720 frames, two faces.

The frames are composed from the public-domain portraits shipped with the demo drama (two
people side by side on a dark set, a little jitter in position and light per frame) and sent
to the shared process pool as JPEG bytes, as the render pipeline will. The same frames are then
scored in this one process for the baseline. Both runs are warmed up first (models loaded).
"""

import io
import os
import random
import time
from itertools import repeat
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from characters import faces
from characters.consistency import SHIPPED_THRESHOLD, CharacterProfile, mean_profile, score_frame
from studio.cpu import cpu_pool, cpu_workers

# The portraits ship once, with the demo drama; this only reads the files.
PORTRAITS = Path(__file__).resolve().parents[2] / "dramas" / "demo" / "faces"
FRAME_SIZE = (1280, 720)
FACE_WIDTH = 200  # px in the full frame: 100 px in the 640 px detection copy
CAST = {"Marcus": ["obama.jpg", "obama2.jpg"], "Ada": ["grace_hopper.jpg"]}
TARGET_FRAMES_PER_S = 6.0


def head_and_shoulders(path: Path, *, face_width: int = FACE_WIDTH) -> Image.Image:
    """The portrait cropped around its face and scaled so the face is `face_width` px wide."""
    image = faces.load_rgb(path)
    face = faces.scan(image).largest
    left, top, right, bottom = face.box
    width = right - left
    crop = image.crop(
        (
            max(0, left - width),
            max(0, top - int(0.9 * width)),
            min(image.width, right + width),
            min(image.height, bottom + int(1.4 * width)),
        )
    )
    scale = face_width / width
    return crop.resize((round(crop.width * scale), round(crop.height * scale)))


def compose_frame(people: list[Image.Image], *, rng: random.Random) -> Image.Image:
    """A 1280x720 dark set with the people standing side by side, light varied a little."""
    ramp = np.linspace(20, 70, FRAME_SIZE[0], dtype=np.float32)
    noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 6, FRAME_SIZE[::-1])
    plane = np.clip(ramp[None, :] + noise, 0, 255).astype(np.uint8)
    frame = Image.fromarray(np.dstack([plane, plane, plane + 10]), "RGB")
    slot = FRAME_SIZE[0] // max(1, len(people))
    for index, person in enumerate(people):
        lit = ImageEnhance.Brightness(person).enhance(rng.uniform(0.75, 1.2))
        x = index * slot + max(0, (slot - lit.width) // 2) + rng.randrange(-40, 40)
        y = FRAME_SIZE[1] - lit.height + rng.randrange(0, 40)
        frame.paste(lit, (max(0, x), max(0, y)))
    return frame


def make_frames(count: int, *, seed: int = 7) -> list[bytes]:
    """`count` different 1280x720 JPEG frames, each with Marcus on the left and Ada right."""
    rng = random.Random(seed)
    people = [head_and_shoulders(PORTRAITS / name) for name in ("obama2.jpg", "grace_hopper.jpg")]
    frames = []
    for _ in range(count):
        out = io.BytesIO()
        compose_frame(people, rng=rng).save(out, format="JPEG", quality=88)
        frames.append(out.getvalue())
    return frames


def make_profiles() -> list[CharacterProfile]:
    profiles = []
    for number, (name, files) in enumerate(CAST.items(), start=1):
        embeddings = [faces.scan(PORTRAITS / f).largest.embedding for f in files]
        profiles.append(CharacterProfile(number, name, mean_profile(embeddings)))
    return profiles


def consistency(options: dict) -> dict:
    count = 8 if options.get("quick") else 48
    load = os.getloadavg()[0]  # before we start: other processes skew both figures
    stdout = options.get("stdout")
    frames = make_frames(count)
    profiles = make_profiles()  # also loads the models in this process for the baseline
    threshold = SHIPPED_THRESHOLD
    workers = cpu_workers()
    pool = cpu_pool()

    faces.warm_pool()  # every worker started, models loaded, before the clock runs
    if stdout:
        stdout.write(f"scoring {count} frames of 1280x720 with {workers} processes...")
    started = time.perf_counter()
    pooled = list(pool.map(score_frame, frames, repeat(profiles), repeat(threshold)))
    pooled_s = time.perf_counter() - started

    if stdout:
        stdout.write("...and in one process for the baseline...")
    score_frame(frames[0], profiles, threshold)
    started = time.perf_counter()
    single = [score_frame(frame, profiles, threshold) for frame in frames]
    single_s = time.perf_counter() - started

    scores = [c.score for result in pooled for c in result.characters if c.score is not None]
    return {
        "frames": count,
        "frame_size": "1280x720",
        "faces_per_frame": 2,
        "processes": workers,
        "frames_per_s": round(count / pooled_s, 2),
        "baseline_frames_per_s": round(count / single_s, 2),
        "speedup": round(single_s / pooled_s, 2),
        "ms_per_frame_one_process": round(1000 * single_s / count, 1),
        "target_frames_per_s": TARGET_FRAMES_PER_S,
        "consistent_frames": sum(result.consistent for result in pooled),
        "same_verdicts_in_both_runs": [r.to_dict() for r in pooled]
        == [r.to_dict() for r in single],
        "lowest_score": round(min(scores), 1) if scores else None,
        "threshold": threshold,
        "load_average_1min_before": round(load, 2),
    }
