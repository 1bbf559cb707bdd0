"""The simulator's chat completions: JSON answers and SSE streams, with stream faults.

A chapter brief (writer.brief_from_messages) is answered with the offline writer's script, so
the LLM path can be exercised end to end; anything else with an echo. Scripted replies
(`SimState.queue_replies`) come first: fenced or chatty JSON, broken scripts, empty answers or
answers cut at max_tokens (finish reason "length"), as real models send them. Usage counts
about four characters a token, and a system prompt seen before counts as cached (prompt
caching).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

from studio.providers.local_writer import draft_script
from studio.providers.sim.http import Request, Response, error_response
from studio.providers.sim.state import SimState
from studio.providers.writer import brief_from_messages

PIECE_CHARS = 24


# --- chat --------------------------------------------------------------------------------------


def _reply(messages: list, body: dict) -> str:
    brief = brief_from_messages(messages)
    if brief is not None:
        return json.dumps(draft_script(brief), ensure_ascii=False)
    last = next(
        (str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
    if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        return json.dumps({"reply": f"simulated answer to: {last[:80]}"})
    return f"Simulated answer to: {last[:200]}"


def _usage(sim: SimState, messages: list, text: str) -> dict:
    prompt = max(1, sum(len(str(m.get("content", ""))) for m in messages) // 4)
    system = next((str(m.get("content", "")) for m in messages if m.get("role") == "system"), "")
    cached = 0
    if system:
        key = hashlib.sha256(system.encode()).hexdigest()
        if key in sim.seen_prompts:
            cached = min(prompt, len(system) // 4)
        sim.seen_prompts.add(key)
    completion = max(1, len(text) // 4)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if sim.config.usage_style == "deepseek":
        usage |= {"prompt_cache_hit_tokens": cached, "prompt_cache_miss_tokens": prompt - cached}
    else:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


async def chat(sim: SimState, request: Request, fault: str) -> Response:
    try:
        body = request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error_response(400, "the body is not JSON")
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        return error_response(400, "messages must be a non-empty list")
    model = str(body.get("model") or "sim-chat")
    scripted = sim.replies.popleft() if sim.replies else None
    text = scripted["content"] if scripted else _reply(messages, body)
    finish = scripted["finish_reason"] if scripted else "stop"
    usage = _usage(sim, messages, text)
    request_id = f"chatcmpl-{sim.stats.requests['chat']:06d}"
    if not body.get("stream"):
        return Response.of_json(
            {
                "id": request_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                ],
                "usage": usage,
            }
        )
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    stream = _sse(sim, request_id, model, text, usage if include_usage else None, fault, finish)
    return Response(
        200,
        headers={"content-type": "text/event-stream", "cache-control": "no-cache"},
        stream=stream,
    )


async def _sse(sim: SimState, request_id, model, text, usage, fault, finish="stop"):
    base = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def event(data: dict) -> bytes:
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    def delta(content: dict, finish=None) -> bytes:
        return event({**base, "choices": [{"index": 0, "delta": content, "finish_reason": finish}]})

    yield delta({"role": "assistant", "content": ""})
    if sim.config.keepalive:
        yield b": keep-alive\n\n"
    pieces = [text[i : i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS)] or [""]
    cut_at = min(2, len(pieces) - 1)
    for index, piece in enumerate(pieces):
        if index == cut_at and fault == "stream_error":
            yield event(
                {"error": {"message": "simulated overload mid-stream", "type": "server_error"}}
            )
            return
        if index == cut_at and fault == "cut_stream":
            yield None  # the server drops the connection mid-answer
            return
        if index == cut_at and fault == "no_done":
            return  # a clean end with neither finish reason nor [DONE]
        if fault == "slow_stream":
            await asyncio.sleep(sim.config.slow_stream_s)
            yield b": still thinking\n\n"
        yield delta({"content": piece})
        if sim.config.keepalive and index % 8 == 3:
            yield b"\n"
    yield delta({}, finish)
    if usage is not None:
        yield event({**base, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"
