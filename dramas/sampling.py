"""Frame sampling for review: 2 frames a second plus the first and the last, decoded with PyAV.

Pure CPU and Django-free, so it runs in the shared process pool (studio.cpu), never on the
event loop. Frames are streamed: only the chosen ones are converted, so a long clip never sits
in memory decoded.
"""

import io
import os
from dataclasses import dataclass

import av

PER_SECOND = 2
JPEG_QUALITY = 85


@dataclass(frozen=True)
class SampledFrame:
    index: int
    time_s: float
    path: str
    width: int
    height: int


def sample_times(duration_s: float, *, per_second: int = PER_SECOND) -> list[float]:
    """0, 0.5, 1.0, ... up to (not including) the end; the last frame is added when decoded."""
    step = 1.0 / per_second
    count = max(1, int(duration_s * per_second - 1e-9) + 1)
    return [round(i * step, 3) for i in range(count) if i * step < duration_s]


def _jpeg(frame: av.VideoFrame) -> bytes:
    out = io.BytesIO()
    frame.to_image().save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def sample_frames(video_path: str, out_dir: str) -> list[SampledFrame]:
    """Write the sampled frames as JPEGs into `out_dir`; return them in time order."""
    os.makedirs(out_dir, exist_ok=True)
    chosen: list[tuple[float, bytes, int, int]] = []
    with av.open(video_path) as container:
        stream = container.streams.video[0]
        duration = float(stream.duration * stream.time_base) if stream.duration else None
        if duration is None and container.duration:
            duration = container.duration / 1_000_000
        targets = sample_times(duration or 0.5)
        rate = float(stream.average_rate or 24)
        half_frame = 0.5 / rate
        last = None
        last_taken = False
        for frame in container.decode(stream):
            time_s = float(frame.time or 0.0)
            last, last_taken = frame, False
            if targets and time_s >= targets[0] - half_frame:
                while targets and time_s >= targets[0] - half_frame:
                    targets.pop(0)  # one frame may cover several targets of a choppy clip
                chosen.append((time_s, _jpeg(frame), frame.width, frame.height))
                last_taken = True
        if last is not None and not last_taken:
            chosen.append((float(last.time or 0.0), _jpeg(last), last.width, last.height))
    if not chosen:
        raise ValueError("the video has no decodable frames")
    result = []
    for index, (time_s, data, width, height) in enumerate(chosen):
        path = os.path.join(out_dir, f"frame-{index:03d}.jpg")
        with open(path, "wb") as handle:
            handle.write(data)
        result.append(SampledFrame(index, round(time_s, 3), path, width, height))
    return result
