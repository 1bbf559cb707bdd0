"""The simulator's `comfyui` wire format (a self-hosted ComfyUI, no key), under /comfyui.

`POST /upload/image` keeps an input image; `POST /prompt` checks the workflow as ComfyUI does
(every node a class_type with inputs, links to nodes that exist, an output node, numbers where
numbers go, a LoadImage naming an uploaded image) and, stricter, that no `{{placeholder}}` is
left; an unknown class_type such as "Broken" is named in `node_errors` (a 400, or a 200 when
another output still validates and is queued alone, as ComfyUI does). Like ComfyUI it
keeps no idempotency keys and takes the client's prompt_id. One executor runs the queue in
order, `job_s` per prompt; `GET /queue`, `GET /history[/{id}]`, `POST /queue {"delete"}`, `POST
/interrupt` and `GET /view` (a real MP4 of the uploaded reference's face, or of the LoadImage'd
picture itself when the prompt is marked as starting from the scene's keyframe) follow it. Faults
"fail" and "reject" on the prompt make its execution fail (out of memory; an invalid input).

A graph saved by SaveImage (a keyframe workflow) makes a still instead, as the image routes
do (sim/images.py, kept in `sim.images`): a real PNG of the EmptyLatentImage's width and height,
the uploaded reference face-centred, or with identity drift (`drift_rate`, drawn per
idempotency key, seed and prompt) the stranger's face; /history lists it under `images` and
/view serves it, or with the fault "not_image" on /view an HTML page instead.

`GET /ws?clientId=` is ComfyUI's websocket: `status` on connect, then for each prompt queued
with that client_id, as it runs, `execution_start`, `execution_cached`, `progress_state` and
`executing` per node, `progress` per sampler step, and `executed` + `execution_success` (or
`execution_error`, `execution_interrupted`) and `executing` with node null at the end, in the
shapes a real ComfyUI sent (../shared/research/comfyui_api.md). The fault "cut_stream" drops
the socket after its first prompt event, as a proxy or a restart would.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
import weakref
from dataclasses import dataclass, field

from studio.providers.sim import websocket
from studio.providers.sim.http import Request, Response
from studio.providers.sim.images import NOT_AN_IMAGE, _new_image, _picture
from studio.providers.sim.jobs import _content, _new_job, first_frame_values
from studio.providers.sim.state import SimState

KNOWN_NODES = frozenset(
    {
        "CheckpointLoaderSimple",
        "CLIPLoader",
        "CLIPTextEncode",
        "CLIPVisionEncode",
        "CLIPVisionLoader",
        "ConditioningZeroOut",
        "CreateVideo",
        "DualCLIPLoader",
        "EmptyHunyuanLatentVideo",
        "EmptyLatentImage",
        "EmptyLTXVLatentVideo",
        "EmptySD3LatentImage",
        "FluxGuidance",
        "FluxKontextImageScale",
        "ImageScale",
        "KSampler",
        "KSamplerAdvanced",
        "LoadImage",
        "LTXVConditioning",
        "LTXVImgToVideo",
        "ModelSamplingSD3",
        "ReferenceLatent",
        "SaveImage",
        "SaveVideo",
        "SaveWEBM",
        "UNETLoader",
        "VAEDecode",
        "VAEEncode",
        "VAELoader",
        "VHS_VideoCombine",
        "Wan22ImageToVideoLatent",
        "WanImageToVideo",
    }
)
IMAGE_OUTPUT_NODES = frozenset({"SaveImage"})
OUTPUT_NODES = frozenset({"SaveVideo", "SaveWEBM", "VHS_VideoCombine"}) | IMAGE_OUTPUT_NODES
SAMPLERS = frozenset({"KSampler", "KSamplerAdvanced"})
NUMBER_INPUTS = frozenset(
    {"seed", "noise_seed", "width", "height", "length", "fps", "frame_rate", "steps", "batch_size"}
)
PLACEHOLDER = re.compile(r"\{\{\s*\w+\s*\}\}")
MAX_STEP_EVENTS = 30  # a sampler's `progress` events, whatever its step count
SOCKET_TICK_S = 0.025


@dataclass
class Comfy:
    """One simulated ComfyUI server: its input images, its prompts in queue order."""

    stats: object  # the SimState.stats this belongs to: a reset replaces it, and so this
    uploads: dict[str, bytes] = field(default_factory=dict)
    prompts: dict[str, dict] = field(default_factory=dict)
    by_client: dict[str, list] = field(default_factory=dict)  # client_id -> its prompts
    number: int = 0
    free_at: float = 0.0  # when the executor finished its last prompt


_SERVERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _comfy(sim: SimState) -> Comfy:
    server = _SERVERS.get(sim)
    if server is None or server.stats is not sim.stats:
        server = _SERVERS[sim] = Comfy(stats=sim.stats)
    return server


def _advance(sim: SimState, server: Comfy) -> None:
    """Run the executor up to now: prompts one at a time, in order, job_s each."""
    now = time.monotonic()
    for job in server.prompts.values():
        if job["finished"] is not None or job["deleted"]:
            continue
        if job["started"] is None:
            job["started"] = max(server.free_at, job["created"])
        end = job["started"] + sim.config.job_s
        if now < end:
            return  # this one runs; the rest wait
        job["finished"] = end
        job["result"] = "error" if job["outcome"] in ("fail", "reject") else "success"
        server.free_at = end


def _comfy_error(kind: str, message: str, node_errors=None, details: str = "") -> Response:
    body = {
        "error": {"type": kind, "message": message, "details": details, "extra_info": {}},
        "node_errors": node_errors or {},
    }
    return Response.of_json(body, 400)


def _item(job: dict) -> list:
    return [job["number"], job["prompt_id"], job["graph"], job["extra_data"], job["outputs"]]


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _node_problems(server: Comfy, graph: dict, node_id: str, node: dict) -> list[dict]:
    class_type = node["class_type"]
    if class_type not in KNOWN_NODES:
        return [
            {
                "type": "invalid_node",
                "message": f"Cannot execute because node {class_type} does not exist.",
                "details": f"Node ID '#{node_id}'",
            }
        ]
    problems = []
    for name, value in node["inputs"].items():
        if isinstance(value, list):
            if len(value) != 2 or str(value[0]) not in graph:
                problems.append(
                    {"type": "bad_linked_input", "message": "Bad linked input", "details": name}
                )
        elif isinstance(value, str) and PLACEHOLDER.search(value):
            problems.append(
                {
                    "type": "placeholder_left",
                    "message": "Unsubstituted placeholder",
                    "details": f"{name}: {value[:80]!r}",
                }
            )
        elif name in NUMBER_INPUTS and not _is_number(value):
            problems.append(
                {
                    "type": "invalid_input_type",
                    "message": "Failed to convert an input value to a number",
                    "details": f"{name}: {value!r}",
                }
            )
    if class_type == "LoadImage" and node["inputs"].get("image") not in server.uploads:
        problems.append(
            {
                "type": "value_not_in_list",
                "message": "Value not in list",
                "details": f"image: {node['inputs'].get('image')!r} not in the input images",
            }
        )
    return problems


def _upstream(graph: dict, node_id: str) -> set[str]:
    """The node and every node it reads from, through its links."""
    seen, todo = set(), [node_id]
    while todo:
        current = todo.pop()
        if current in seen or current not in graph:
            continue
        seen.add(current)
        todo += [str(v[0]) for v in graph[current]["inputs"].values() if isinstance(v, list) and v]
    return seen


def _text(graph: dict, link, depth: int = 0) -> str:
    """The text at the end of a conditioning link (through nodes that pass it on)."""
    if not isinstance(link, list) or depth > 8:
        return ""
    node = graph.get(str(link[0])) or {}
    inputs = node.get("inputs") or {}
    if isinstance(inputs.get("text"), str):
        return inputs["text"]
    return _text(graph, inputs.get("positive") or inputs.get("conditioning"), depth + 1)


def _scene(graph: dict) -> dict:
    """What the simulated render shows: the prompt, the size, the frames and their rate."""
    values = {"prompt": "", "frames": 33, "fps": 16, "size": (720, 1280), "seed": 0}
    for node in graph.values():
        inputs = node["inputs"]
        if node["class_type"] in SAMPLERS and not values["prompt"]:
            values["prompt"] = _text(graph, inputs.get("positive"))
            values["seed"] = inputs.get("seed", inputs.get("noise_seed", 0))
        if _is_number(inputs.get("length")):
            values["frames"] = int(inputs["length"])
            if _is_number(inputs.get("width")) and _is_number(inputs.get("height")):
                values["size"] = (int(inputs["width"]), int(inputs["height"]))
        rate = inputs.get("fps", inputs.get("frame_rate"))
        if _is_number(rate) and rate > 0:
            values["fps"] = rate
    return values


def _still_size(graph: dict) -> tuple[int, int]:
    """The size of an image graph's empty latent (a latent without a frame count)."""
    for node in graph.values():
        inputs = node["inputs"]
        if not _is_number(inputs.get("length")) and all(
            _is_number(inputs.get(side)) for side in ("width", "height")
        ):
            return int(inputs["width"]), int(inputs["height"])
    return 1024, 1024


def _saves_image(job: dict) -> bool:
    return job["graph"][job["outputs"][0]]["class_type"] in IMAGE_OUTPUT_NODES


def _reference(server: Comfy, graph: dict) -> bytes | None:
    for node in graph.values():
        if node["class_type"] == "LoadImage":
            return server.uploads.get(node["inputs"].get("image"))
    return None


def _saved(job: dict) -> dict:
    """The history `outputs` of a successful prompt: one saved MP4 per output node."""
    outputs = {}
    for node_id in job["outputs"]:
        node = job["graph"][node_id]
        prefix = str(node["inputs"].get("filename_prefix") or "ComfyUI")
        subfolder, _, base = prefix.rpartition("/")
        suffix = "png" if node["class_type"] in IMAGE_OUTPUT_NODES else "mp4"
        item = {
            "filename": f"{base}_{job['number']:05d}_.{suffix}",
            "subfolder": subfolder,
            "type": "output",
        }
        if node["class_type"] in IMAGE_OUTPUT_NODES:
            outputs[node_id] = {"images": [item]}
        elif node["class_type"] == "VHS_VideoCombine":
            outputs[node_id] = {"gifs": [item]}
        else:
            outputs[node_id] = {"images": [item], "animated": [True]}
    return outputs


def _end_event(job: dict) -> tuple[str, dict]:
    """How a finished prompt ended, as the message its history and its socket both carry."""
    prompt_id = job["prompt_id"]
    if job["result"] == "success":
        return "execution_success", {"prompt_id": prompt_id, "timestamp": 0}
    node = {
        "prompt_id": prompt_id,
        "node_id": job["sampler"],
        "node_type": job["graph"].get(job["sampler"], {}).get("class_type", ""),
        "executed": [],
    }
    if job["result"] == "interrupted":
        return "execution_interrupted", node
    oom = job["outcome"] == "fail"
    return "execution_error", {
        **node,
        "exception_type": "torch.OutOfMemoryError" if oom else "ValueError",
        "exception_message": "Allocation on device (simulated)"
        if oom
        else "simulated invalid input for this model",
        "traceback": [],
    }


def _history_entry(job: dict) -> dict:
    started = ["execution_start", {"prompt_id": job["prompt_id"], "timestamp": 0}]
    success = job["result"] == "success"
    status = {
        "status_str": "success" if success else "error",
        "completed": success,
        "messages": [started, list(_end_event(job))],
    }
    outputs = _saved(job) if success else {}
    return {"prompt": _item(job), "outputs": outputs, "status": status, "meta": {}}


def _order(graph: dict) -> list[str]:
    """The nodes in an order ComfyUI could run them: each after the nodes it reads from."""
    done: list[str] = []

    def visit(node_id: str, depth: int = 0) -> None:
        if node_id in done or node_id not in graph or depth > len(graph):
            return
        for value in graph[node_id]["inputs"].values():
            if isinstance(value, list) and value:
                visit(str(value[0]), depth + 1)
        if node_id not in done:
            done.append(node_id)

    for node_id in graph:
        visit(node_id)
    return done


def _timeline(sim: SimState, server: Comfy, job: dict) -> list[tuple[float, dict]]:
    """The socket events of a started prompt, each with the monotonic time it is due: the
    nodes before the sampler in the first tenth of job_s, its steps until nine tenths, the
    rest after, the end when the executor finished it (events due later are never sent)."""
    start, span = job["started"], sim.config.job_s
    prompt_id = job["prompt_id"]
    order = _order(job["graph"])
    sampler = job["sampler"] if job["sampler"] in order else order[0]
    before = order[: order.index(sampler)]
    after = order[order.index(sampler) + 1 :]
    steps = job["graph"][sampler]["inputs"].get("steps")
    steps = min(int(steps), MAX_STEP_EVENTS) if _is_number(steps) and steps >= 1 else 20

    def node(at: float, node_id: str, value: int = 0, top: int = 1) -> list:
        state = {
            "value": value,
            "max": top,
            "state": "running",
            "node_id": node_id,
            "prompt_id": prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        events = [
            (
                at,
                {
                    "type": "progress_state",
                    "data": {"prompt_id": prompt_id, "nodes": {node_id: state}},
                },
            )
        ]
        if value == 0:
            events.append(
                (
                    at,
                    {
                        "type": "executing",
                        "data": {"node": node_id, "display_node": node_id, "prompt_id": prompt_id},
                    },
                )
            )
        return events

    events = [
        (start, {"type": "execution_start", "data": {"prompt_id": prompt_id, "timestamp": 0}}),
        (
            start,
            {
                "type": "execution_cached",
                "data": {"nodes": [], "prompt_id": prompt_id, "timestamp": 0},
            },
        ),
    ]
    for n, node_id in enumerate(before):
        events += node(start + 0.1 * span * n / max(len(before), 1), node_id)
    events += node(start + 0.1 * span, sampler, 0, steps)
    for step in range(1, steps + 1):
        at = start + span * (0.1 + 0.8 * step / steps)
        data = {"value": step, "max": steps, "prompt_id": prompt_id, "node": sampler}
        events.append((at, {"type": "progress", "data": data}))
        events += node(at, sampler, step, steps)[:1]
    for n, node_id in enumerate(after):
        events += node(start + span * (0.9 + 0.1 * n / max(len(after), 1)), node_id)
    end = job["finished"]
    if end is None:
        return events
    events = [(at, event) for at, event in events if at < end]
    name, data = _end_event(job)
    if name == "execution_success":
        for node_id, output in _saved(job).items():
            executed = {
                "node": node_id,
                "display_node": node_id,
                "output": output,
                "prompt_id": prompt_id,
            }
            events.append((end, {"type": "executed", "data": executed}))
    events.append((end, {"type": name, "data": data}))
    events.append((end, _status_event(server)))
    events.append((end, {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}))
    return events


def _status_event(server: Comfy, sid: str | None = None) -> dict:
    waiting = sum(
        1 for job in server.prompts.values() if job["finished"] is None and not job["deleted"]
    )
    data = {"status": {"exec_info": {"queue_remaining": waiting}}}
    return {"type": "status", "data": {**data, "sid": sid} if sid else data}


# --- routes ------------------------------------------------------------------------------------


async def upload_image(sim: SimState, request: Request, fault: str) -> Response:
    values, files = request.form()
    if "image" not in files:
        return Response(400, b"", {"content-type": "text/plain"})
    server = _comfy(sim)
    filename, content = files["image"]
    subfolder = values.get("subfolder", "").strip("/")
    name = filename.rsplit("/", 1)[-1] or "image.png"
    stem, dot, suffix = name.rpartition(".")
    overwrite = values.get("overwrite", "").lower() in ("true", "1")
    n = 1
    while not overwrite and (f"{subfolder}/{name}" if subfolder else name) in server.uploads:
        name = f"{stem} ({n}){dot}{suffix}" if dot else f"{suffix} ({n})"
        n += 1
    server.uploads[f"{subfolder}/{name}" if subfolder else name] = content
    return Response.of_json({"name": name, "subfolder": subfolder, "type": "input"})


async def prompt(sim: SimState, request: Request, fault: str) -> Response:
    try:
        body = request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    graph = body.get("prompt") if isinstance(body, dict) else None
    if not isinstance(graph, dict) or not graph:
        return _comfy_error("no_prompt", "No prompt provided")
    for node_id, node in graph.items():
        if not (
            isinstance(node, dict)
            and isinstance(node.get("class_type"), str)
            and isinstance(node.get("inputs"), dict)
        ):
            return _comfy_error(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                details=f"Node ID '#{node_id}'",
            )
    server = _comfy(sim)
    node_errors = {}
    for node_id, node in graph.items():
        problems = _node_problems(server, graph, node_id, node)
        if problems:
            node_errors[node_id] = {
                "errors": problems,
                "dependent_outputs": [],
                "class_type": node["class_type"],
            }
    outputs = [node_id for node_id, node in graph.items() if node["class_type"] in OUTPUT_NODES]
    if not outputs:
        return _comfy_error("prompt_no_outputs", "Prompt has no outputs")
    # As ComfyUI does, queue the outputs that validate and name the failing nodes beside them.
    outputs = [node_id for node_id in outputs if not _upstream(graph, node_id) & set(node_errors)]
    if not outputs:
        return _comfy_error(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", node_errors
        )
    extra_data = body.get("extra_data") if isinstance(body.get("extra_data"), dict) else {}
    extra_data = {**extra_data, "client_id": str(body.get("client_id") or "")}
    prompt_id = str(body.get("prompt_id") or uuid.uuid4())
    scene = _scene(graph)
    server.number += 1
    sampler = next((i for i, n in graph.items() if n["class_type"] in SAMPLERS), outputs[0])
    key = str(extra_data.get("studio_idempotency_key") or "")
    prompt_values = dict(
        model="comfyui",
        prompt=scene["prompt"],
        outcome=fault if fault in ("fail", "reject") else "ok",
        prompt_id=prompt_id,
        number=server.number,
        graph=graph,
        extra_data=extra_data,
        client_id=extra_data["client_id"],
        outputs=outputs,
        sampler=sampler,
        started=None,
        finished=None,
        result=None,
    )
    reference = _reference(server, graph)
    if graph[outputs[0]]["class_type"] in IMAGE_OUTPUT_NODES:
        job = _new_image(
            sim,
            key,
            references=[reference] if reference is not None else [],
            seed=scene["seed"],
            size=_still_size(graph),
            format="PNG",
            deleted=False,
            **prompt_values,
        )
    else:
        job = _new_job(
            sim,
            "video",
            key,
            seconds=scene["frames"] / scene["fps"],
            size=scene["size"],
            reference=reference,
            **first_frame_values(request, reference),
            **prompt_values,
        )
    _advance(sim, server)
    server.prompts[prompt_id] = job  # like ComfyUI, a prompt_id sent twice is queued twice
    server.by_client.setdefault(job["client_id"], []).append(job)
    answer = {"prompt_id": prompt_id, "number": job["number"], "node_errors": node_errors}
    return Response.of_json(answer)


async def queue_get(sim: SimState, request: Request, fault: str) -> Response:
    server = _comfy(sim)
    _advance(sim, server)
    waiting = [
        job for job in server.prompts.values() if job["finished"] is None and not job["deleted"]
    ]
    running = [_item(job) for job in waiting if job["started"] is not None]
    pending = [_item(job) for job in waiting if job["started"] is None]
    return Response.of_json({"queue_running": running, "queue_pending": pending})


async def queue_post(sim: SimState, request: Request, fault: str) -> Response:
    server = _comfy(sim)
    _advance(sim, server)
    try:
        body = request.json() or {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = {}
    for job in server.prompts.values():
        pending = job["started"] is None and not job["deleted"]
        if pending and (body.get("clear") or job["prompt_id"] in (body.get("delete") or [])):
            job["deleted"] = True
    return Response(200, b"", {"content-type": "text/plain"})


async def interrupt(sim: SimState, request: Request, fault: str) -> Response:
    server = _comfy(sim)
    _advance(sim, server)
    try:
        body = request.json() or {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = {}
    wanted = body.get("prompt_id") if isinstance(body, dict) else None
    for job in server.prompts.values():
        running = job["started"] is not None and job["finished"] is None and not job["deleted"]
        if running and wanted in (None, job["prompt_id"]):
            now = time.monotonic()
            job["finished"], job["result"] = now, "interrupted"
            server.free_at = now
    return Response(200, b"", {"content-type": "text/plain"})


async def history_list(sim: SimState, request: Request, fault: str) -> Response:
    server = _comfy(sim)
    _advance(sim, server)
    done = [job for job in server.prompts.values() if job["finished"] is not None]
    try:
        limit = int(request.query.get("max_items") or len(done))
    except ValueError:
        limit = len(done)
    recent = done[-limit:] if limit > 0 else []
    return Response.of_json({job["prompt_id"]: _history_entry(job) for job in recent})


async def history_get(sim: SimState, request: Request, fault: str, prompt_id: str) -> Response:
    server = _comfy(sim)
    _advance(sim, server)
    job = server.prompts.get(prompt_id)
    if job is None or job["finished"] is None:
        return Response.of_json({})  # ComfyUI's answer while queued, running or unknown
    return Response.of_json({prompt_id: _history_entry(job)})


async def view(sim: SimState, request: Request, fault: str) -> Response:
    server = _comfy(sim)
    _advance(sim, server)
    filename = request.query.get("filename", "")
    subfolder = request.query.get("subfolder", "")
    if request.query.get("type") == "input":
        content = server.uploads.get(f"{subfolder}/{filename}" if subfolder else filename)
        if content is None:
            return Response(404, b"", {"content-type": "text/plain"})
        return Response(200, content, {"content-type": "image/jpeg"})
    for job in server.prompts.values():
        if job["result"] != "success":
            continue
        for output in _saved(job).values():
            for item in output.get("images", []) + output.get("gifs", []):
                if (item["filename"], item["subfolder"]) != (filename, subfolder):
                    continue
                if _saves_image(job) and fault == "not_image":
                    return Response(200, NOT_AN_IMAGE, {"content-type": "text/html"})
                if _saves_image(job):
                    return Response(200, await _picture(sim, job), {"content-type": "image/png"})
                body = await _content(sim, job, face=job["reference"])
                return Response(200, body, {"content-type": "video/mp4"})
    return Response(404, b"", {"content-type": "text/plain"})


async def socket(sim: SimState, request: Request, fault: str) -> Response:
    if not websocket.is_upgrade(request):
        return Response(400, b"Expected a websocket upgrade", {"content-type": "text/plain"})
    server = _comfy(sim)
    client_id = request.query.get("clientId") or uuid.uuid4().hex

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent: dict[str, int] = {}  # prompt_id -> how many of its timeline's events went out
        client = asyncio.create_task(websocket.serve_client_frames(reader, writer))
        try:
            await websocket.send_text(writer, json.dumps(_status_event(server, client_id)))
            while not client.done():
                _advance(sim, server)
                now = time.monotonic()
                for job in server.by_client.get(client_id, []):
                    if job["started"] is None or job["deleted"]:
                        continue
                    due = [event for at, event in _timeline(sim, server, job) if at <= now]
                    for event in due[sent.get(job["prompt_id"], 0) :]:
                        await websocket.send_text(writer, json.dumps(event))
                        if fault == "cut_stream" and event["type"] != "status":
                            writer.transport.abort()
                            return
                    sent[job["prompt_id"]] = len(due)
                await asyncio.wait({client}, timeout=SOCKET_TICK_S)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            client.cancel()
            await asyncio.gather(client, return_exceptions=True)

    return Response(101, upgrade=stream)


# (method, path pattern below the /comfyui prefix, route name, handler)
ROUTES: list = [
    ("POST", r"/upload/image", "comfyui_upload", upload_image),
    ("POST", r"/prompt", "comfyui_prompt", prompt),
    ("GET", r"/queue", "comfyui_queue", queue_get),
    ("POST", r"/queue", "comfyui_queue_change", queue_post),
    ("POST", r"/interrupt", "comfyui_interrupt", interrupt),
    ("GET", r"/history", "comfyui_history_list", history_list),
    ("GET", r"/history/(?P<prompt_id>[\w-]+)", "comfyui_history", history_get),
    ("GET", r"/view", "comfyui_view", view),
    ("GET", r"/ws", "comfyui_ws", socket),
]
