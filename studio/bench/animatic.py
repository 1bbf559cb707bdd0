"""`python manage.py bench animatic [--quick] [--json]`: what composing the animatic costs.

A 10 s 720x1280 scene (2 s quick) with a title card, three dialog shots and a push-in (the
costliest camera move), rendered; then the very frames it encoded are encoded again with no
composition (the baseline, same run). Median of five runs (one quick), wall clock and CPU time.
"""

import os
import statistics
import tempfile
import time

import av

from studio.providers.animatic import RenderOptions, render_animatic
from studio.providers.base import CastMember, DialogCue, VideoRequest
from studio.providers.sim.jobs import STRANGER


def _bench_request(seconds: float):
    return VideoRequest(
        prompt="She slides the contract across the table; he reads the first page and goes pale.",
        duration_s=seconds,
        aspect="9:16",
        title="Scene 4: The Contract",
        camera="slow push-in, close-up",
        location="Boardroom",
        time_of_day="night",
        mood="cold",
        cast=(CastMember("Marcus Hale", image_path=str(STRANGER)), CastMember("Ada Quinn")),
        dialog=(
            DialogCue("Marcus Hale", "Read it. Every word is true.", "cold"),
            DialogCue("Ada Quinn", "You don't get to say that to me.", "angry"),
            DialogCue("", "The city lights flicker below them."),
        ),
    )


def _encode(frames, path: str, options) -> float:
    started = time.perf_counter()
    container = av.open(path, "w", format="mp4", options={"movflags": "+faststart"})
    stream = container.add_stream(
        "libx264", rate=options.fps, options={"preset": options.preset, "crf": str(options.crf)}
    )
    stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
    for index, frame in enumerate(frames):
        frame.pts = index
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return time.perf_counter() - started


def animatic(options: dict) -> dict:
    quick = bool(options.get("quick"))
    seconds, runs = (2.0, 1) if quick else (10.0, 5)
    request, settings = _bench_request(seconds), RenderOptions()
    load = os.getloadavg()[0]
    walls, cpus = [], []  # (render, bare) pairs
    with tempfile.TemporaryDirectory() as folder:
        render_animatic(_bench_request(1.0), os.path.join(folder, "warm.mp4"), options=settings)
        for run in range(runs):
            frames: list = []
            started, cpu = time.perf_counter(), time.process_time()
            result = render_animatic(
                request,
                os.path.join(folder, f"scene{run}.mp4"),
                options=settings,
                keep_frames=frames,
            )
            render = (time.perf_counter() - started, time.process_time() - cpu)
            cpu = time.process_time()
            bare_wall = _encode(frames, os.path.join(folder, f"bare{run}.mp4"), settings)
            walls.append((render[0], bare_wall))
            cpus.append((render[1], time.process_time() - cpu))
            del frames
    ratios = [render / bare for render, bare in walls]
    ratio = statistics.median(ratios)
    return {
        "duration_s": result.duration_s,
        "frames": result.frames,
        "size": f"{result.width}x{result.height}",
        "fps": result.fps,
        "preset": settings.preset,
        "camera": request.camera,
        "runs": runs,
        "load_average_1min_before": round(load, 2),
        "render_s": round(statistics.median(w[0] for w in walls), 3),
        "bare_encode_s": round(statistics.median(w[1] for w in walls), 3),
        "ratio": round(ratio, 3),
        "ratios": [round(r, 3) for r in ratios],
        # CPU seconds of this process (both threads): what composing costs, whatever else
        # the machine is doing.
        "render_cpu_s": round(statistics.median(c[0] for c in cpus), 3),
        "bare_encode_cpu_s": round(statistics.median(c[1] for c in cpus), 3),
        "cpu_ratio": round(statistics.median(r / b for r, b in cpus), 3),
        "mp4_bytes": result.bytes,
        "meets_target": ratio <= 1.3,
    }
