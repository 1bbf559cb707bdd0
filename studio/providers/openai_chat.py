"""OpenAI-compatible chat completions: DeepSeek, OpenAI, Gemini's OpenAI endpoint, Ollama, vLLM,
llama.cpp. `POST {base_url}/chat/completions`, JSON or SSE streaming, usage with cached tokens.

A stream is retried only before its first piece of text reached the caller: after that the
caller holds a partial answer and must decide (the job engine restarts the whole step).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx

from studio.providers.base import ChatChunk, ChatResult, Message, Usage
from studio.providers.errors import (
    QUOTA_ERROR_TYPES,
    CircuitOpen,
    MalformedResponse,
    ProviderError,
    QuotaExceeded,
    StreamError,
)
from studio.providers.transport import HttpConfig, HttpProvider, Outcome, request_id_of

# Error types inside a stream that sending the same request again cannot fix.
PERMANENT_STREAM_ERRORS = frozenset({"invalid_request_error", "invalid_request", "bad_request"})


def response_format_for(json_output: bool | dict, *, mode: str) -> dict:
    """The request's `response_format`: a schema where the server takes one, else JSON mode.

    `json_output` is True for "any JSON" or a JSON schema (a dict) the answer must follow.
    """
    if mode == "json_schema" and isinstance(json_output, dict):
        schema = {"name": "answer", "schema": json_output, "strict": False}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    if mode in ("json_schema", "json_object"):
        return {"response_format": {"type": "json_object"}}
    return {}


@dataclass
class ChatConfig(HttpConfig):
    # How JSON output is asked for: "json_schema" sends the caller's schema (OpenAI, vLLM,
    # llama.cpp), "json_object" only asks for JSON (DeepSeek, Gemini), "none" sends nothing.
    json_mode: str = "json_object"
    # Ask for usage in the final stream chunk (stream_options.include_usage).
    stream_usage: bool = True


def usage_from(data: dict | None) -> Usage:
    """Usage from an OpenAI-style block, incl. cached tokens (OpenAI and DeepSeek spellings)."""
    if not isinstance(data, dict):
        return Usage()
    details = data.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or data.get("prompt_cache_hit_tokens") or 0)
    prompt = data.get("prompt_tokens")
    if prompt is None:
        prompt = int(data.get("prompt_cache_hit_tokens") or 0) + int(
            data.get("prompt_cache_miss_tokens") or 0
        )
    return Usage(
        input_tokens=int(prompt or 0),
        cached_tokens=cached,
        output_tokens=int(data.get("completion_tokens") or 0),
    )


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs from SSE lines: comments and blank keep-alives skipped, multi-line
    data joined, a last event without its blank line still delivered."""
    event, data = "", []
    async for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield event or "message", "\n".join(data)


class OpenAICompatibleChat(HttpProvider):
    kind = "chat"

    def __init__(self, config: ChatConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.config: ChatConfig = config
        self.label = config.model

    def _body(self, messages, *, json_output, temperature, max_tokens, stream) -> dict:
        body: dict = {"model": self.model, "messages": [dict(m) for m in messages]}
        if json_output:
            body.update(response_format_for(json_output, mode=self.config.json_mode))
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if stream:
            body["stream"] = True
            if self.config.stream_usage:
                body["stream_options"] = {"include_usage": True}
        return body

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        json_output: bool | dict = False,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ChatResult:
        url = self.url("chat/completions")
        body = self._body(
            messages,
            json_output=json_output,
            temperature=temperature,
            max_tokens=max_tokens,
            stream=False,
        )

        async def attempt() -> Outcome:
            response = await self.send("POST", url, json=body, headers=self.headers(url))
            data = self.json_of(response)
            request_id = request_id_of(response) or str(data.get("id") or "")
            if data.get("error") and not data.get("choices"):
                raise self._stream_error(data["error"], request_id)
            choices = data.get("choices")
            if not isinstance(choices, list) or not choices:
                raise MalformedResponse(
                    "the answer has no choices", provider=self.name, request_id=request_id
                )
            message = choices[0].get("message") or {}
            usage = usage_from(data.get("usage"))
            result = ChatResult(
                text=str(message.get("content") or ""),
                usage=usage,
                model=str(data.get("model") or self.model),
                request_id=request_id,
                finish_reason=str(choices[0].get("finish_reason") or ""),
                label=self.label,
            )
            return Outcome(result, usage=usage, request_id=request_id)

        return await self.call(operation="chat.complete", attempt=attempt)

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        json_output: bool | dict = False,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> AsyncIterator[ChatChunk]:
        url = self.url("chat/completions")
        body = self._body(
            messages,
            json_output=json_output,
            temperature=temperature,
            max_tokens=max_tokens,
            stream=True,
        )
        failures = 0
        while True:
            state = _StreamState()
            try:
                async with self.guard.attempt():
                    state.started = time.perf_counter()
                    async for text in self._stream_once(url, body, state):
                        state.delivered = True
                        yield ChatChunk(text=text)
            except CircuitOpen:
                raise
            except GeneratorExit:
                # The caller stopped reading: the call happened, its usage is unknown.
                await self.book(
                    operation="chat.stream",
                    kind=None,
                    ok=False,
                    error="stream closed by the caller before its end",
                    request_id=state.request_id,
                    started=state.started,
                    usage=state.usage or Usage(),
                    ttft_ms=state.ttft_ms,
                )
                raise
            except ProviderError as error:
                await self.book(
                    operation="chat.stream",
                    kind=None,
                    ok=False,
                    error=str(error),
                    request_id=error.request_id or state.request_id,
                    started=state.started,
                    usage=state.usage or Usage(),
                    ttft_ms=state.ttft_ms,
                )
                failures += 1
                if (
                    state.delivered
                    or not error.retryable
                    or failures >= self.guard.retry.max_attempts
                ):
                    raise
                await asyncio.sleep(self.guard.retry.delay(failures, error))
                continue
            usage = state.usage or Usage()
            await self.book(
                operation="chat.stream",
                kind=None,
                ok=True,
                usage=usage,
                request_id=state.request_id,
                ttft_ms=state.ttft_ms,
                started=state.started,
            )
            yield ChatChunk(usage=usage, finish_reason=state.finish_reason)
            return

    async def _stream_once(self, url: str, body: dict, state: _StreamState):
        try:
            async with self.client().stream(
                "POST", url, json=body, headers=self.headers(url)
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self.error_from_response(response)
                state.request_id = request_id_of(response)
                done = False
                async for event, data in sse_data(response.aiter_lines()):
                    if data.strip() == "[DONE]":
                        done = True
                        break
                    try:
                        payload = json.loads(data)
                    except json.JSONDecodeError:
                        raise MalformedResponse(
                            "a stream event is not JSON",
                            provider=self.name,
                            request_id=state.request_id,
                        ) from None
                    if not isinstance(payload, dict):
                        raise MalformedResponse(
                            "a stream event is not a JSON object",
                            provider=self.name,
                            request_id=state.request_id,
                        )
                    if event == "error" or payload.get("error"):
                        raise self._stream_error(payload.get("error", payload), state.request_id)
                    state.request_id = state.request_id or str(payload.get("id") or "")
                    if payload.get("usage"):
                        state.usage = usage_from(payload["usage"])
                    for choice in payload.get("choices") or []:
                        state.finish_reason = choice.get("finish_reason") or state.finish_reason
                        text = (choice.get("delta") or {}).get("content") or ""
                        if text:
                            if state.ttft_ms is None:
                                state.ttft_ms = int((time.perf_counter() - state.started) * 1000)
                            yield text
                # Some servers end with the finish reason and no [DONE]; no ending at all means
                # the stream was cut and the text may be incomplete.
                if not done and not state.finish_reason:
                    raise StreamError(
                        "the stream ended before its end marker",
                        provider=self.name,
                        request_id=state.request_id,
                    )
        except httpx.HTTPError as error:
            raise self.error_from_exception(error) from None

    def _stream_error(self, detail, request_id: str) -> ProviderError:
        if not isinstance(detail, dict):
            detail = {"message": str(detail)}
        kind = str(detail.get("type") or detail.get("code") or "")
        message = self.clean(str(detail.get("message") or "error inside the answer"))
        if kind in QUOTA_ERROR_TYPES:
            return QuotaExceeded(message, provider=self.name, code=kind, request_id=request_id)
        return StreamError(
            message,
            provider=self.name,
            code=kind,
            request_id=request_id,
            retryable=kind not in PERMANENT_STREAM_ERRORS,
        )


@dataclass
class _StreamState:
    started: float = 0.0
    request_id: str = ""
    usage: Usage | None = None
    ttft_ms: int | None = None
    finish_reason: str = ""
    delivered: bool = False
