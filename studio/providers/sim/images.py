"""The simulator's image routes: OpenAI's images wire format and fal's image models.

`POST /v1/images/generations` (JSON; Seedream's `image` list of data URLs too) and
`POST /v1/images/edits` (multipart, `image[]` parts) answer at once with `data[0].b64_json`,
or with `data[0].url` when `response_format` is "url" (a file on "localhost", another host
name than the API's). fal image models (ids with kontext, seedream or nano-banana, and no
"video") queue under /fal like the video models: status and result under
`/fal/{app}/requests/{id}`, the result `{"images": [{url, width, height, content_type}]}`.

Every still is a real PNG or JPEG of the size asked for: the first reference image sent,
face-centred, or with none a plain composed picture. Identity drift (`drift_rate`) is decided
per idempotency key, seed and prompt, so a retried POST gets the same still and other
candidates draw anew; a drifted still shows the stranger's face. What each still was sent is
in `sim.images` (model, size, references, seed, drift). Faults: the server's (5xx, 429, hang,
malformed, ...) plus "fail" (a 500, or a failed fal request), "reject" (content policy),
"not_image" (the image is an HTML page) and "no_image" (an answer without an image).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import random
import re
import time
from pathlib import Path

from PIL import ImageDraw, ImageEnhance

from studio.providers.frames import backdrop, decode_image, face_crop
from studio.providers.sim import fal
from studio.providers.sim.http import Request, Response, error_response
from studio.providers.sim.jobs import STRANGER
from studio.providers.sim.state import SimState

NOT_AN_IMAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
SIZE = re.compile(r"(\d{2,5})x(\d{2,5})")
NAMED_SIZES = {"1K": (1024, 1024), "2K": (2048, 2048), "4K": (4096, 4096)}
FAL_ASPECTS = {"9:16": (768, 1344), "16:9": (1344, 768), "1:1": (1024, 1024)}
FAL_OUTCOMES = ("fail", "reject", "not_image", "no_image")
MIME = {"PNG": "image/png", "JPEG": "image/jpeg"}


# --- stills shared by both wire formats --------------------------------------------------------


def _existing(sim: SimState, request: Request) -> tuple[str, dict | None]:
    key = request.headers.get("idempotency-key", "")
    image_id = sim.jobs_by_key.get(("image", key)) if key else None
    return key, sim.images.get(image_id) if image_id else None


def _new_image(sim: SimState, key: str, *, references: list[bytes], **values) -> dict:
    image_id = f"img_{len(sim.images) + 1:06d}"
    # Per key, seed and prompt: a retry draws the same, another candidate anew.
    basis = f"{sim.config.seed}:{key or image_id}:{values.get('seed')}:{values.get('prompt')}"
    record = {
        "id": image_id,
        "key": key,
        "references": len(references),
        "reference": references[0] if references else None,
        "drift": random.Random(basis).random() < sim.config.drift_rate,
        "created": time.monotonic(),
        "cancelled": False,
        "outcome": "ok",
        "data": None,
        "lock": asyncio.Lock(),
        **values,
    }
    sim.images[image_id] = record
    if key:
        sim.jobs_by_key[("image", key)] = image_id
        sim.stats.jobs_per_key[key] += 1
    return record


def _compose(size: tuple[int, int], face: bytes | None, salt: str, image_format: str) -> bytes:
    """The still: the face picture cropped around the face, or a plain scene; a candidate's
    salt shifts its brightness a little, as two generations never match to the pixel."""
    picture = decode_image(face)
    if picture is not None:
        still = face_crop(picture, size)
    else:
        still = backdrop(size, "dusk", None)
        width, height = size
        draw = ImageDraw.Draw(still)
        radius, x, y = min(size) // 8, width * 0.7, height * 0.3
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(250, 200, 120))
        draw.rectangle((0, int(height * 0.7), width, height), fill=(30, 34, 40))
    shift = random.Random(salt).uniform(0.94, 1.06)
    still = ImageEnhance.Brightness(still).enhance(shift)
    out = io.BytesIO()
    # Quick to encode (a simulator shares the cores with the studio it serves).
    options = {"quality": 90} if image_format == "JPEG" else {"compress_level": 1}
    still.save(out, format=image_format, **options)
    return out.getvalue()


async def _picture(sim: SimState, record: dict) -> bytes:
    async with record["lock"]:
        if record["data"] is None:
            face = record["reference"]
            if record["drift"]:
                face = Path(sim.config.drift_face or STRANGER).read_bytes()
            record["data"] = await asyncio.to_thread(
                _compose,
                record["size"],
                face,
                f"{record['key'] or record['id']}:{record.get('seed')}",
                record["format"],
            )
    return record["data"]


def _data_urls(value) -> list[bytes] | None:
    """The images of a data URL or a list of them; None when one is not a base64 data URL
    (the simulator fetches no links)."""
    values = value if isinstance(value, list) else [value] if value else []
    images = []
    for item in values:
        if not isinstance(item, str) or not item.startswith("data:") or "," not in item:
            return None
        try:
            images.append(base64.b64decode(item.split(",", 1)[1], validate=True))
        except (binascii.Error, ValueError):
            return None
    return images


def _file_url(sim: SimState, record: dict) -> str:
    # Another host name than the API's, as a CDN or fal's file host is.
    host = sim.url.replace("127.0.0.1", "localhost")
    return f"{host}/_sim/images/{record['id']}.{'png' if record['format'] == 'PNG' else 'jpg'}"


async def image_file(sim: SimState, request: Request, fault: str, image_id: str) -> Response:
    record = sim.images.get(image_id)
    if record is None or record["outcome"] in ("fail", "reject"):
        return error_response(404, "no such image")
    if request.headers.get("authorization") or request.headers.get("x-api-key"):
        sim.stats.keyed_downloads += 1
    if record["outcome"] == "not_image":
        return Response(200, NOT_AN_IMAGE, {"content-type": "text/html"})
    data = await _picture(sim, record)
    return Response(200, data, {"content-type": MIME[record["format"]]})


# --- OpenAI: /images/generations and /images/edits ---------------------------------------------


async def image_generations(sim: SimState, request: Request, fault: str) -> Response:
    key, record = _existing(sim, request)
    if record is not None:
        return await _openai_answer(sim, record, "ok")
    try:
        body = request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return error_response(400, "the body must be a JSON object")
    references = _data_urls(body.get("image"))
    if references is None:
        return error_response(400, "`image` must be base64 data URLs")
    return await _openai_image(sim, key, fault, body, references)


async def image_edits(sim: SimState, request: Request, fault: str) -> Response:
    key, record = _existing(sim, request)
    if record is not None:
        return await _openai_answer(sim, record, "ok")
    values: dict = {}
    references = []
    for name, filename, content in request.parts():
        if name in ("image", "image[]") and filename is not None:
            references.append(content)
        elif filename is None:
            values[name] = content.decode("utf-8", "replace")
    if not references:
        return error_response(400, "an edit needs at least one `image` part")
    if any(decode_image(image) is None for image in references):
        return error_response(400, "an `image` part is not a PNG, JPEG or WebP picture")
    return await _openai_image(sim, key, fault, values, references)


async def _openai_image(
    sim: SimState, key: str, fault: str, values: dict, references: list[bytes]
) -> Response:
    prompt = str(values.get("prompt") or "").strip()
    size_text = str(values.get("size") or "1024x1024")
    size = NAMED_SIZES.get(size_text.upper())
    match = SIZE.fullmatch(size_text)
    if match:
        size = (int(match.group(1)), int(match.group(2)))
    if not prompt or size is None:
        return error_response(400, "a prompt and a size like 1024x1536 are required")
    if str(values.get("n", 1)) != "1":
        return error_response(400, "the simulator makes one image a request (n=1)")
    try:
        seed = None if values.get("seed") is None else int(values["seed"])
    except (TypeError, ValueError):
        return error_response(400, "the seed must be an integer")
    if fault == "fail":
        return error_response(500, "simulated generation failure", "server_error")
    if fault == "reject":
        return Response.of_json(
            {
                "error": {
                    "message": "simulated moderation block: the request was rejected",
                    "type": "image_generation_user_error",
                    "code": "moderation_blocked",
                }
            },
            400,
        )
    model = str(values.get("model") or "gpt-image-1")
    record = _new_image(
        sim,
        key,
        api="openai",
        model=model,
        prompt=prompt,
        size=size,
        seed=seed,
        references=references,
        response_format=str(values.get("response_format") or ""),
        format="JPEG" if "seedream" in model else "PNG",
        input={name: value for name, value in values.items() if name != "image"},
    )
    return await _openai_answer(sim, record, fault)


async def _openai_answer(sim: SimState, record: dict, fault: str) -> Response:
    answer: dict = {"created": int(time.time())}
    width, height = record["size"]
    if "seedream" in record["model"]:
        tokens = width * height // 256
        answer["usage"] = {"generated_images": 1, "output_tokens": tokens, "total_tokens": tokens}
    else:
        prompt_tokens = len(record["prompt"].split()) + 258 * record["references"]
        output = width * height // 1500
        answer["usage"] = {
            "input_tokens": prompt_tokens,
            "output_tokens": output,
            "total_tokens": prompt_tokens + output,
        }
    if fault == "no_image":
        return Response.of_json(answer | {"data": []})
    item: dict = {}
    if fault == "not_image":
        item["b64_json"] = base64.b64encode(NOT_AN_IMAGE).decode("ascii")
    elif record["response_format"] == "url":
        item["url"] = _file_url(sim, record)
    else:
        item["b64_json"] = base64.b64encode(await _picture(sim, record)).decode("ascii")
    if "dall-e-3" in record["model"]:
        item["revised_prompt"] = f"A cinematic film still. {record['prompt']}"
    return Response.of_json(answer | {"data": [item]})


# --- fal: image models on the queue ------------------------------------------------------------


def _fal_root(sim: SimState, record: dict) -> str:
    app = "/".join(record["model"].split("/")[:2])
    return f"{sim.url}/fal/{app}/requests/{record['id']}"


def _fal_urls(sim: SimState, record: dict) -> dict:
    root = _fal_root(sim, record)
    return {
        "request_id": record["id"],
        "response_url": root,
        "status_url": f"{root}/status",
        "cancel_url": f"{root}/cancel",
    }


def _fal_size(body: dict, reference: bytes | None) -> tuple[int, int] | None:
    size = body.get("image_size")
    if isinstance(size, dict):
        try:
            return int(size["width"]), int(size["height"])
        except (KeyError, TypeError, ValueError):
            return None
    if body.get("aspect_ratio") in FAL_ASPECTS:
        return FAL_ASPECTS[body["aspect_ratio"]]
    picture = decode_image(reference)
    return picture.size if picture is not None else FAL_ASPECTS["1:1"]


async def fal_image_submit(sim: SimState, request: Request, fault: str, model: str) -> Response:
    key, record = _existing(sim, request)
    if record is not None:
        return Response.of_json(_fal_urls(sim, record))
    try:
        body = request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return fal._detail(422, "the body must be a JSON object", "type_error")
    if not str(body.get("prompt") or "").strip():
        return fal._detail(422, "field required: prompt", "missing")
    if body.get("num_images", 1) != 1:
        return fal._detail(422, "the simulator makes one image a request", "value_error")
    references = _data_urls(body.get("image_urls") or body.get("image_url"))
    if references is None:
        return fal._detail(422, "images must be base64 data URLs", "value_error")
    size = _fal_size(body, references[0] if references else None)
    if size is None:
        return fal._detail(422, "image_size needs a width and a height", "value_error")
    record = _new_image(
        sim,
        key,
        api="fal",
        model=model,
        prompt=body["prompt"],
        size=size,
        seed=body.get("seed"),
        references=references,
        format="PNG" if body.get("output_format") == "png" else "JPEG",
        input=body,
        authorization=request.headers.get("authorization", ""),
    )
    record["outcome"] = fault if fault in FAL_OUTCOMES else "ok"
    return Response.of_json(_fal_urls(sim, record))


def _fal_record(sim: SimState, request_id: str) -> dict | None:
    record = sim.images.get(request_id)
    return record if record is not None and record["api"] == "fal" else None


async def fal_image_status(
    sim: SimState, request: Request, fault: str, app: str, request_id: str
) -> Response:
    record = _fal_record(sim, request_id)
    if record is None:
        return fal._detail(404, "request not found")
    status = fal._status(sim, record) | {"response_url": _fal_root(sim, record)}
    if request.query.get("logs") not in ("1", "true"):
        status.pop("logs", None)
    return Response.of_json(status)


async def fal_image_result(
    sim: SimState, request: Request, fault: str, app: str, request_id: str
) -> Response:
    record = _fal_record(sim, request_id)
    if record is None:
        return fal._detail(404, "request not found")
    status = fal._status(sim, record)
    if status["status"] != "COMPLETED":
        return fal._detail(400, "the request is still in progress")
    if record["outcome"] == "fail":
        return fal._detail(500, "simulated generation failure")
    if record["outcome"] == "reject":
        return fal._detail(422, status["error"], status["error_type"])
    if record["outcome"] == "no_image":
        return Response.of_json({"images": [], "seed": record["seed"]})
    width, height = record["size"]
    image = {
        "url": _file_url(sim, record),
        "width": width,
        "height": height,
        "content_type": MIME[record["format"]],
    }
    return Response.of_json(
        {"images": [image], "seed": record["seed"], "has_nsfw_concepts": [False]}
    )


# A fal image model: an id naming an image family, never a video model's.
FAL_IMAGE_MODEL = r"(?![\w./-]*video)[\w./-]*(?:kontext|seedream|nano-banana)[\w./-]*"
FAL_REQUEST = r"/fal/(?P<app>[\w.-]+/[\w.-]+)/requests/(?P<request_id>[\w-]+)"

# (method, path pattern, route name, handler), mounted ahead of the video routes (fal's
# video submit takes any other model id). "_create": submissions are counted per key.
ROUTES: list = [
    *(
        route
        for prefix in ("/v1", "/openai")
        for route in (
            ("POST", rf"{prefix}/images/generations", "image_create", image_generations),
            ("POST", rf"{prefix}/images/edits", "image_edit_create", image_edits),
        )
    ),
    ("GET", r"/_sim/images/(?P<image_id>[\w-]+)\.(?:png|jpg)", "image_file", image_file),
    ("POST", rf"/fal/(?P<model>{FAL_IMAGE_MODEL})", "fal_image_create", fal_image_submit),
    ("GET", rf"{FAL_REQUEST}/status", "fal_image_status", fal_image_status),
    ("GET", FAL_REQUEST, "fal_image_result", fal_image_result),
]
