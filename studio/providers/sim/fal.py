"""The simulator's `fal` wire format, mounted under /fal (routes.py).

`POST /fal/{model_id}` queues a request and answers its URLs; `GET .../status` walks it from
IN_QUEUE (a queue position that counts down) through IN_PROGRESS (log lines with a
percentage) to COMPLETED; `GET /fal/requests/{id}` answers the model's output, a video URL on
another host name ("localhost", as fal.media is not the queue's host); `PUT .../cancel`
cancels a request still in the queue. A "fail" job is COMPLETED and its result answers 500
with fal's `detail`; a "reject" job says so in the status (`error`, `error_type`) and its
result answers 422. fal documents no idempotency header: the simulator dedupes by the
`Idempotency-Key` the adapter sends anyway, so a retried submission finds its first request.
A start image (not `image_urls`, a reference-to-video model's references) marked as the scene's
keyframe renders the clip from that picture (jobs.py).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math

from PIL import Image

from studio.providers.base import ASPECT_SIZES
from studio.providers.sim.http import Request, Response
from studio.providers.sim.jobs import _content, _existing, _new_job, _phase, first_frame_values
from studio.providers.sim.state import SimState

QUEUED_UNTIL = 0.3  # share of job_s spent in the queue
QUEUE_START = 3  # queue position when submitted
IMAGE_INPUTS = ("image_url", "start_image_url", "first_frame_url", "image_urls")
START_INPUTS = IMAGE_INPUTS[:3]  # the clip's first frame; image_urls are references


def _detail(status: int, message: str, kind: str = "") -> Response:
    detail = [{"loc": ["body"], "msg": message, "type": kind}] if kind else message
    return Response.of_json({"detail": detail}, status)


def _urls(sim: SimState, job: dict) -> dict:
    root = f"{sim.url}/fal/requests/{job['id']}"
    return {
        "request_id": job["id"],
        "response_url": root,
        "status_url": f"{root}/status",
        "cancel_url": f"{root}/cancel",
    }


def _seconds(body: dict) -> float:
    duration = body.get("duration")
    if duration is not None:
        try:
            return float(str(duration).removesuffix("s"))
        except ValueError:
            return 0.0
    if body.get("num_frames"):
        try:
            return float(body["num_frames"]) / float(body.get("frames_per_second") or 16)
        except (TypeError, ValueError):
            return 0.0
    return 5.0  # a fixed-length model


def _image(body: dict, names: tuple[str, ...] = IMAGE_INPUTS) -> bytes | None:
    for name in names:
        value = body.get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, str) and value.startswith("data:") and "," in value:
            try:
                return base64.b64decode(value.split(",", 1)[1], validate=True)
            except (binascii.Error, ValueError):
                return None
    return None


def _size(body: dict, image: bytes | None) -> tuple[int, int]:
    if body.get("aspect_ratio") in ASPECT_SIZES:
        return ASPECT_SIZES[body["aspect_ratio"]]
    if image:
        try:
            with Image.open(io.BytesIO(image)) as picture:
                return picture.size
        except OSError:
            pass
    return ASPECT_SIZES["9:16"]


def _status(sim: SimState, job: dict) -> dict:
    urls = _urls(sim, job)
    if job.get("cancelled"):
        return {
            "status": "COMPLETED",
            "response_url": urls["response_url"],
            "error": "the request was cancelled",
            "error_type": "request_cancelled",
        }
    phase = _phase(sim, job)
    if phase < QUEUED_UNTIL:
        position = max(math.ceil((QUEUED_UNTIL - phase) / QUEUED_UNTIL * QUEUE_START), 1)
        return {
            "status": "IN_QUEUE",
            "queue_position": position,
            "response_url": urls["response_url"],
        }
    if phase < 1.0:
        percent = int((phase - QUEUED_UNTIL) / (1.0 - QUEUED_UNTIL) * 100)
        return {
            "status": "IN_PROGRESS",
            "response_url": urls["response_url"],
            "logs": [{"message": f"Generating: {percent}%", "level": "INFO"}],
        }
    done = {"status": "COMPLETED", "response_url": urls["response_url"], "logs": []}
    if job["outcome"] == "reject":
        done |= {
            "error": "simulated content policy violation",
            "error_type": "content_policy_violation",
        }
    return done


def _job(sim: SimState, request_id: str) -> dict | None:
    job = sim.jobs.get(request_id)
    return job if job is not None and job.get("api") == "fal" else None


async def fal_submit(sim: SimState, request: Request, fault: str, model: str) -> Response:
    key, job = _existing(sim, "video", request)
    if job is not None:
        return Response.of_json(_urls(sim, job))
    try:
        body = request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return _detail(422, "the body must be a JSON object", "type_error")
    seconds = _seconds(body)
    if not str(body.get("prompt") or "").strip():
        return _detail(422, "field required: prompt", "missing")
    if not 1 <= seconds <= 60:
        return _detail(422, "the duration must be 1-60 seconds", "value_error")
    image = _image(body)
    job = _new_job(
        sim,
        "video",
        key,
        api="fal",
        model=model,
        input=body,
        authorization=request.headers.get("authorization", ""),
        prompt=body["prompt"],
        seconds=seconds,
        size=_size(body, image),
        reference=image,
        cancelled=False,
        outcome=fault if fault in ("fail", "reject") else "ok",
        **first_frame_values(request, _image(body, START_INPUTS)),
    )
    return Response.of_json(_urls(sim, job))


async def fal_status(sim: SimState, request: Request, fault: str, request_id: str) -> Response:
    job = _job(sim, request_id)
    if job is None:
        return _detail(404, "request not found")
    status = _status(sim, job)
    if request.query.get("logs") not in ("1", "true"):
        status.pop("logs", None)
    return Response.of_json(status)


async def fal_result(sim: SimState, request: Request, fault: str, request_id: str) -> Response:
    job = _job(sim, request_id)
    if job is None:
        return _detail(404, "request not found")
    status = _status(sim, job)
    if status["status"] != "COMPLETED":
        return _detail(400, "the request is still in progress")
    if job["cancelled"]:
        return _detail(400, "the request was cancelled")
    if job["outcome"] == "fail":
        return _detail(500, "simulated generation failure")
    if job["outcome"] == "reject":
        return _detail(422, status["error"], status["error_type"])
    # Another host name than the queue's, as fal's file host is.
    host = sim.url.replace("127.0.0.1", "localhost")
    video = {"url": f"{host}/fal/files/{job['id']}.mp4", "content_type": "video/mp4"}
    return Response.of_json({"video": video, "seed": 42})


async def fal_cancel(sim: SimState, request: Request, fault: str, request_id: str) -> Response:
    job = _job(sim, request_id)
    if job is None:
        return _detail(404, "request not found")
    if _status(sim, job)["status"] != "IN_QUEUE":
        return Response.of_json({"status": "ALREADY_COMPLETED"}, 400)
    job["cancelled"] = True
    return Response.of_json({"status": "CANCELLATION_REQUESTED"}, 202)


async def fal_file(sim: SimState, request: Request, fault: str, request_id: str) -> Response:
    job = _job(sim, request_id)
    if job is None or job["cancelled"] or job["outcome"] != "ok" or _phase(sim, job) < 1.0:
        return _detail(404, "no such file")
    if request.headers.get("authorization") or request.headers.get("x-api-key"):
        sim.stats.keyed_downloads += 1
    body = await _content(sim, job, face=job["reference"])
    return Response(200, body, {"content-type": "video/mp4"})


# (method, path pattern below the /fal prefix, route name, handler). The request routes come
# first; submit matches any model id (only by POST, which no other route takes).
ROUTES: list = [
    ("GET", r"/requests/(?P<request_id>[\w-]+)/status", "fal_status", fal_status),
    ("GET", r"/requests/(?P<request_id>[\w-]+)", "fal_result", fal_result),
    ("PUT", r"/requests/(?P<request_id>[\w-]+)/cancel", "fal_cancel", fal_cancel),
    ("GET", r"/files/(?P<request_id>[\w-]+)\.mp4", "fal_file", fal_file),
    # "_create": the server counts submissions per idempotency key on such routes.
    ("POST", r"/(?P<model>[\w.-]+(?:/[\w.-]+)*)", "fal_create", fal_submit),
]
