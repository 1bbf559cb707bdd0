"""The simulator's job routes: video generation and lip sync.

A job moves from queued to done over `job_s` seconds; its outcome (ok, fail, reject) and its
identity drift are fixed when it is created, drift per idempotency key and seed, so a retried
submission gets the same answer. Videos are real MP4s rendered from the submitted reference
image, or for a drifted job from another person's face. A submission that starts from the
scene's keyframe (its start image marked with the studio's first-frame header, as each wire
format's image input looks the same for a keyframe and a portrait) renders its clip from that
picture, as image-to-video animates what it is given, and drifts only at
`first_frame_drift_rate`; the job records `first_frame` and the picture's decoded size.
A lip-sync job answers with the video it was sent (a drifted one: another person's face), its
sound replaced by the audio it was sent (AAC, cut to the video's length as sync.so's `cut_off`
mode does): what a real service returns, less the mouth movement.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import os
import random
import re
import tempfile
import time
from pathlib import Path

import av
from PIL import Image

from studio.providers.animatic import RenderOptions, render_animatic
from studio.providers.audio import NotAudio, decode_mono
from studio.providers.base import CastMember, VideoRequest
from studio.providers.sim.http import Request, Response, error_response
from studio.providers.sim.state import SimState
from studio.providers.video_http import FIRST_FRAME_HEADER

STRANGER = Path(__file__).resolve().parent / "sim_assets" / "stranger.jpg"


# --- jobs shared by video and lip sync ---------------------------------------------------------


def _new_job(sim: SimState, kind: str, key: str, **values) -> dict:
    job_id = f"{'video' if kind == 'video' else 'ls'}_{len(sim.jobs) + 1:06d}"
    rate = sim.config.first_frame_drift_rate if values.get("first_frame") else sim.config.drift_rate
    drift = random.Random(f"{sim.config.seed}:{key or job_id}").random() < rate
    job = {
        "id": job_id,
        "kind": kind,
        "created": time.monotonic(),
        "drift": drift,
        "deleted": False,
        "content": None,
        "lock": asyncio.Lock(),
        **values,
    }
    sim.jobs[job_id] = job
    if key:
        sim.jobs_by_key[(kind, key)] = job_id
        sim.stats.jobs_per_key[key] += 1
    return job


def first_frame_values(request: Request, image: bytes | None) -> dict:
    """What a video job records of its start image: a first frame when the submission marks
    it as the scene's keyframe and it decodes, with its size."""
    if image is None or not request.headers.get(FIRST_FRAME_HEADER.lower()):
        return {"first_frame": False}
    try:
        with Image.open(io.BytesIO(image)) as picture:
            size = picture.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return {"first_frame": False}
    return {"first_frame": True, "first_frame_size": size}


def _existing(sim: SimState, kind: str, request: Request) -> tuple[str, dict | None]:
    key = request.headers.get("idempotency-key", "")
    job_id = sim.jobs_by_key.get((kind, key)) if key else None
    return key, sim.jobs.get(job_id) if job_id else None


def _phase(sim: SimState, job: dict) -> float:
    return (time.monotonic() - job["created"]) / max(sim.config.job_s, 1e-6)


def _render_clip(
    sim: SimState,
    *,
    seconds: float,
    size: tuple[int, int],
    face: bytes | None,
    prompt: str,
    first_frame: bytes | None = None,
) -> bytes:
    scale = min(1.0, sim.config.video_max_side / max(size))
    width, height = (max(int(side * scale) // 2 * 2, 2) for side in size)
    request = VideoRequest(
        prompt=prompt,
        duration_s=seconds,
        camera="static",
        cast=(CastMember("subject", image=face),) if face else (),
        first_frame=first_frame,  # the one shot shows it
    )
    options = RenderOptions(
        fps=sim.config.video_fps,
        preset="ultrafast",
        size=(width, height),
        title_card=False,
        overlays=False,
    )
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "clip.mp4")
        render_animatic(request, path, options=options)
        return Path(path).read_bytes()


async def _content(sim: SimState, job: dict, *, face: bytes | None) -> bytes:
    """The job's clip: of `face` (its reference), of the drift face when it drifted, or of the
    picture itself when `face` is its first frame."""
    async with job["lock"]:
        if job["content"] is None:
            start = None
            if job["drift"]:
                face = Path(sim.config.drift_face or STRANGER).read_bytes()
            elif job.get("first_frame"):
                start, face = face, None  # image-to-video: the keyframe as it is
            # The clip shows the face or the keyframe, not the prompt (no title card, no
            # overlays): jobs that differ only in their prompt share one rendering.
            key = (job["seconds"], job["size"], hash(face), hash(start))
            if sim.config.cache_clips and key in sim.clips:
                job["content"] = sim.clips[key]
            else:
                job["content"] = await asyncio.to_thread(
                    _render_clip,
                    sim,
                    seconds=job["seconds"],
                    size=job["size"],
                    face=face,
                    prompt=job.get("prompt", ""),
                    first_frame=start,
                )
                if sim.config.cache_clips:
                    sim.clips[key] = job["content"]
    return job["content"]


# --- video -------------------------------------------------------------------------------------


def _video_json(sim: SimState, job: dict) -> dict:
    phase = _phase(sim, job)
    data = {
        "id": job["id"],
        "object": "video",
        "model": job["model"],
        "created_at": int(job["created"]),
        "seconds": f"{job['seconds']:g}",
        "size": "x".join(map(str, job["size"])),
    }
    if phase < 0.2:
        return data | {"status": "queued", "progress": 0}
    if phase < 1.0:
        return data | {"status": "in_progress", "progress": int(phase * 100)}
    if job["outcome"] == "fail":
        return data | {
            "status": "failed",
            "progress": 100,
            "error": {"code": "internal_error", "message": "simulated generation failure"},
        }
    if job["outcome"] == "reject":
        return data | {
            "status": "failed",
            "progress": 100,
            "error": {"code": "moderation_blocked", "message": "simulated moderation block"},
        }
    return data | {"status": "completed", "progress": 100}


async def video_create(sim: SimState, request: Request, fault: str) -> Response:
    key, job = _existing(sim, "video", request)
    if job is not None:
        return Response.of_json(_video_json(sim, job))
    values, files = request.form()
    size = re.fullmatch(r"(\d{2,4})x(\d{2,4})", values.get("size", "720x1280"))
    try:
        seconds = float(values.get("seconds", "4"))
    except ValueError:
        seconds = 0.0
    if not values.get("prompt") or not size or not 1 <= seconds <= 60:
        return error_response(400, "prompt, a size like 720x1280 and seconds (1-60) are required")
    reference = files.get("input_reference")
    job = _new_job(
        sim,
        "video",
        key,
        model=values.get("model", "sim-video"),
        prompt=values["prompt"],
        seconds=seconds,
        size=(int(size.group(1)), int(size.group(2))),
        reference=reference[1] if reference else None,
        outcome=fault if fault in ("fail", "reject") else "ok",
        **first_frame_values(request, reference[1] if reference else None),
    )
    return Response.of_json(_video_json(sim, job))


def _video_job(sim: SimState, video_id: str) -> dict | None:
    job = sim.jobs.get(video_id)
    return None if job is None or job["kind"] != "video" or job["deleted"] else job


async def video_get(sim: SimState, request: Request, fault: str, video_id: str) -> Response:
    job = _video_job(sim, video_id)
    return Response.of_json(_video_json(sim, job)) if job else error_response(404, "no such video")


async def video_content(sim: SimState, request: Request, fault: str, video_id: str):
    job = _video_job(sim, video_id)
    if job is None:
        return error_response(404, "no such video")
    if _video_json(sim, job)["status"] != "completed":
        return error_response(404, "the video is not ready")
    body = await _content(sim, job, face=job["reference"])
    return Response(200, body, {"content-type": "video/mp4"})


async def video_delete(sim: SimState, request: Request, fault: str, video_id: str):
    job = _video_job(sim, video_id)
    if job is None:
        return error_response(404, "no such video")
    job["deleted"] = True
    return Response.of_json({"id": video_id, "object": "video.deleted", "deleted": True})


# --- lip sync ----------------------------------------------------------------------------------


def _probe_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration or 0) / 1_000_000


def _synced(video: bytes, audio: bytes) -> bytes:
    """`video` with `audio` as its sound track: the video stream copied, the audio AAC."""
    samples, rate = decode_mono(audio, sample_rate=48_000)
    out = io.BytesIO()
    with (
        av.open(io.BytesIO(video)) as source,
        av.open(out, "w", format="mp4") as target,  # in memory: no +faststart rewrite
    ):
        stream = source.streams.video[0]
        seconds = float(stream.duration * stream.time_base) if stream.duration else 0.0
        seconds = seconds or float(source.duration or 0) / 1_000_000
        samples = samples[: round(seconds * rate)] if seconds else samples
        copied = target.add_stream_from_template(stream)
        sound = target.add_stream("aac", rate=rate, layout="mono")
        for packet in source.demux(stream):
            if packet.dts is not None:
                packet.stream = copied
                target.mux(packet)
        for offset in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(
                samples[None, offset : offset + 1024].copy(), format="flt", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, offset
            for packet in sound.encode(frame):
                target.mux(packet)
        for packet in sound.encode(None):
            target.mux(packet)
    return out.getvalue()


def _lipsync_json(sim: SimState, job: dict) -> dict:
    phase = _phase(sim, job)
    data = {
        "id": job["id"],
        "model": job["model"],
        "outputUrl": None,
        "outputDuration": None,
        "error": None,
        "createdAt": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    if phase < 0.2:
        return data | {"status": "PENDING"}
    if phase < 1.0:
        return data | {"status": "PROCESSING"}
    if job["outcome"] == "fail":
        return data | {"status": "FAILED", "error": "simulated processing failure"}
    if job["outcome"] == "reject":
        return data | {"status": "REJECTED", "error": "simulated rejection: no face found"}
    return data | {
        "status": "COMPLETED",
        "outputUrl": f"{sim.url}/_sim/{'redirect' if sim.config.redirect_outputs else 'files'}"
        f"/{job['id']}.mp4",
        "outputDuration": job["seconds"],
    }


async def lipsync_create(sim: SimState, request: Request, fault: str) -> Response:
    key, job = _existing(sim, "lipsync", request)
    if job is not None:
        return Response.of_json(_lipsync_json(sim, job))
    video, audio, urls = None, None, {}
    if request.headers.get("content-type", "").startswith("multipart/"):
        values, files = request.form()
        model = values.get("model", "sim-lipsync")
        video = files["video"][1] if "video" in files else None
        audio = files["audio"][1] if "audio" in files else None
        has = {
            "video": video is not None or "videoUrl" in values,
            "audio": "audio" in files or "audioUrl" in values,
        }
    else:
        try:
            body = request.json() or {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error_response(400, "the body is not JSON")
        model = body.get("model", "sim-lipsync")
        urls = {i.get("type"): i.get("url") for i in body.get("input", []) if isinstance(i, dict)}
        has = {"video": bool(urls.get("video")), "audio": bool(urls.get("audio"))}
    if not all(has.values()):
        return error_response(400, "a video and an audio input are required")
    seconds = 3.0
    if video is not None:
        try:
            seconds = await asyncio.to_thread(_probe_seconds, video)
        except Exception:
            return error_response(400, "the video could not be read")
    if audio is not None:
        try:
            await asyncio.to_thread(decode_mono, audio)
        except NotAudio as error:
            return error_response(400, f"the audio could not be read: {error}")
    job = _new_job(
        sim,
        "lipsync",
        key,
        model=model,
        video=video,
        audio=audio,
        seconds=seconds,
        size=(360, 640),
        prompt="lip sync",
        outcome=fault if fault in ("fail", "reject") else "ok",
    )
    return Response.of_json(_lipsync_json(sim, job))


async def lipsync_get(sim: SimState, request: Request, fault: str, job_id: str) -> Response:
    job = sim.jobs.get(job_id)
    if job is None or job["kind"] != "lipsync":
        return error_response(404, "no such job")
    return Response.of_json(_lipsync_json(sim, job))


async def lipsync_output(sim: SimState, request: Request, fault: str, job_id: str):
    job = sim.jobs.get(job_id)
    if job is None or _lipsync_json(sim, job)["status"] != "COMPLETED":
        return error_response(404, "no such output")
    if request.headers.get("x-api-key") or request.headers.get("authorization"):
        sim.stats.keyed_downloads += 1
    if job["video"] is None:
        return Response(200, await _content(sim, job, face=None), {"content-type": "video/mp4"})
    # Identity drift: the sync changed the face (another person's, over the same length).
    video = await _content(sim, job, face=None) if job["drift"] else job["video"]
    if job["audio"] is None:
        return Response(200, video, {"content-type": "video/mp4"})
    async with job["lock"]:
        if job.get("synced") is None:
            job["synced"] = await asyncio.to_thread(_synced, video, job["audio"])
    return Response(200, job["synced"], {"content-type": "video/mp4"})


async def output_redirect(sim: SimState, request: Request, fault: str, job_id: str):
    """Send the download on to "localhost": another host name than the API's 127.0.0.1."""
    target = sim.url.replace("127.0.0.1", "localhost") + f"/_sim/files/{job_id}.mp4"
    return Response(302, b"", {"location": target})
