"""The simulator's `ark` wire format (Seedance on BytePlus ModelArk / Volcengine Ark), mounted
under /ark (routes.py).

Tasks are created from JSON (`content`: a text item and image items as data URLs), move from
queued through running to their outcome like every simulated job, and on success link to an
MP4 served back from here, with the output tokens Ark would bill. A task given an
`execution_expires_after` shorter than the simulated job time ends `expired`. As at Ark, a
first (or last) frame mixed with reference images is refused; a first frame marked as the
scene's keyframe renders the clip from that picture (jobs.py). Ark itself has no
idempotency key; this simulator dedupes on the Idempotency-Key header the adapter sends, like
the other job routes.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time

from studio.providers.sim import jobs
from studio.providers.sim.http import Request, Response
from studio.providers.sim.state import SimState

RESOLUTIONS = {"480p": 480, "720p": 720, "1080p": 1080}
RATIOS = {
    "21:9": (21, 9),
    "16:9": (16, 9),
    "4:3": (4, 3),
    "1:1": (1, 1),
    "3:4": (3, 4),
    "9:16": (9, 16),
}
FPS = 24
FINISHED = ("succeeded", "failed", "cancelled", "expired")


def ark_error(status: int, code: str, message: str) -> Response:
    return Response.of_json({"error": {"code": code, "message": message, "type": code}}, status)


def frame_size(resolution: str, ratio: str) -> tuple[int, int]:
    """About a 16:9 frame's pixel count at this resolution, in this ratio, on even sides: how
    Ark sizes its outputs (720p 1:1 is 960x960)."""
    short = RESOLUTIONS[resolution]
    across, down = RATIOS[ratio]
    pixels = short * short * 16 / 9
    height = math.sqrt(pixels * down / across)
    return int(height * across / down) // 2 * 2, int(height) // 2 * 2


def _image(url: str) -> bytes | None:
    head, _, data = url.partition(",")
    if not head.startswith("data:image/") or not head.endswith(";base64"):
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def _state(sim: SimState, job: dict) -> str:
    if job["cancelled"]:
        return "cancelled"
    elapsed = time.monotonic() - job["created"]
    expires = job["expires_s"]
    if expires and expires < sim.config.job_s and elapsed >= expires:
        return "expired"
    phase = jobs._phase(sim, job)
    if phase < 0.2:
        return "queued"
    if phase < 1.0:
        return "running"
    return "failed" if job["outcome"] in ("fail", "reject") else "succeeded"


def _task_json(sim: SimState, job: dict) -> dict:
    status = _state(sim, job)
    data = {
        "id": job["id"],
        "model": job["model"],
        "status": status,
        "created_at": int(job["created_at"]),
        "updated_at": int(time.time()),
        "seed": job["seed"],
        "resolution": job["resolution"],
        "ratio": job["ratio"],
        "duration": int(job["seconds"]),
        "framespersecond": FPS,
        "generate_audio": job["generate_audio"],
    }
    if status == "failed":
        code, message = (
            ("OutputVideoSensitiveContentDetected", "simulated moderation block")
            if job["outcome"] == "reject"
            else ("InternalServiceError", "simulated generation failure")
        )
        data["error"] = {"code": code, "message": message}
    if status == "succeeded":
        width, height = frame_size(job["resolution"], job["ratio"])
        tokens = math.ceil(width * height * FPS * job["seconds"] / 1024)
        # With redirect_outputs the link names another host, as Ark's storage links do.
        host = sim.url.replace("127.0.0.1", "localhost") if sim.config.redirect_outputs else sim.url
        data["content"] = {"video_url": f"{host}/ark/_files/{job['id']}.mp4"}
        data["usage"] = {"completion_tokens": tokens, "total_tokens": tokens}
    return data


def _parse(body) -> tuple[dict, str]:
    """The task's values from a create body, or an error message."""
    if not isinstance(body, dict) or not isinstance(body.get("content"), list):
        return {}, "content must be a list of text and image_url items"
    texts = [
        i.get("text") for i in body["content"] if isinstance(i, dict) and i.get("type") == "text"
    ]
    images = [i for i in body["content"] if isinstance(i, dict) and i.get("type") == "image_url"]
    if not any(isinstance(text, str) and text.strip() for text in texts):
        return {}, "a text item with the prompt is required"
    references, roles = [], []
    for item in images:
        image = _image(str((item.get("image_url") or {}).get("url") or ""))
        if image is None:
            return {}, "image_url.url must be a base64 data URL of an image"
        if item.get("role") not in ("reference_image", "first_frame", "last_frame"):
            return {}, f"unknown image role {item.get('role')!r}"
        references.append(image)
        roles.append(item["role"])
    if "reference_image" in roles and {"first_frame", "last_frame"} & set(roles):
        return {}, (
            "The parameter `content` specified in the request is not valid: "
            "first/last frame content cannot be mixed with reference media content."
        )
    start = references[roles.index("first_frame")] if "first_frame" in roles else None
    ratio, resolution = body.get("ratio", "16:9"), body.get("resolution", "720p")
    duration = body.get("duration", 5)
    if ratio not in RATIOS or resolution not in RESOLUTIONS:
        return {}, f"ratio must be one of {', '.join(RATIOS)}; resolution 480p, 720p or 1080p"
    if not isinstance(duration, int) or not 2 <= duration <= 15:
        return {}, "duration must be a whole number of seconds from 2 to 15"
    return {
        "model": str(body.get("model") or "sim-seedance"),
        "prompt": "\n".join(texts),
        "reference": start or (references[0] if references else None),
        "start": start,
        "references": len(references),
        "ratio": ratio,
        "resolution": resolution,
        "seconds": float(duration),
        "generate_audio": bool(body.get("generate_audio", False)),
        "seed": body.get("seed", -1),
        "expires_s": float(body.get("execution_expires_after") or 0),
        "body": body,
    }, ""


async def ark_create(sim: SimState, request: Request, fault: str) -> Response:
    key, job = jobs._existing(sim, "video", request)
    if job is not None:
        return Response.of_json({"id": job["id"]})
    try:
        body = request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ark_error(400, "InvalidParameter", "the body is not JSON")
    values, problem = _parse(body)
    if problem:
        return ark_error(400, "InvalidParameter", problem)
    # Rendered small like every simulated clip; the billed tokens follow the requested size.
    size = frame_size(values["resolution"], values["ratio"])
    job = jobs._new_job(
        sim,
        "video",
        key,
        **jobs.first_frame_values(request, values.pop("start")),
        api="ark",
        size=size,
        cancelled=False,
        created_at=time.time(),
        outcome=fault if fault in ("fail", "reject") else "ok",
        **values,
    )
    return Response.of_json({"id": job["id"]})


def _ark_job(sim: SimState, task_id: str) -> dict | None:
    job = sim.jobs.get(task_id)
    return None if job is None or job.get("api") != "ark" or job["deleted"] else job


def _missing(task_id: str) -> Response:
    return ark_error(404, "ResourceNotFound", f"the task {task_id} was not found")


async def ark_get(sim: SimState, request: Request, fault: str, task_id: str) -> Response:
    job = _ark_job(sim, task_id)
    return Response.of_json(_task_json(sim, job)) if job else _missing(task_id)


async def ark_delete(sim: SimState, request: Request, fault: str, task_id: str) -> Response:
    """Ark's rules: a queued task is cancelled, a finished one deleted, a running one refused."""
    job = _ark_job(sim, task_id)
    if job is None:
        return _missing(task_id)
    status = _state(sim, job)
    if status == "running":
        return ark_error(400, "InvalidAction", "a running task cannot be cancelled")
    if status == "queued":
        job["cancelled"] = True
    else:
        job["deleted"] = True
    return Response.of_json({})


async def ark_file(sim: SimState, request: Request, fault: str, task_id: str) -> Response:
    job = _ark_job(sim, task_id)
    if job is None or _state(sim, job) != "succeeded":
        return ark_error(404, "ResourceNotFound", "no such file")
    if request.headers.get("authorization"):
        sim.stats.keyed_downloads += 1
    body = await jobs._content(sim, job, face=job["reference"])
    return Response(200, body, {"content-type": "video/mp4"})


# (method, path pattern below the /ark prefix, route name, handler)
ROUTES: list = [
    ("POST", r"/contents/generations/tasks", "ark_create", ark_create),
    ("GET", r"/contents/generations/tasks/(?P<task_id>[\w-]+)", "ark_get", ark_get),
    ("DELETE", r"/contents/generations/tasks/(?P<task_id>[\w-]+)", "ark_delete", ark_delete),
    ("GET", r"/_files/(?P<task_id>[\w-]+)\.mp4", "ark_file", ark_file),
]
