"""What every HTTP adapter shares: one pooled httpx client, auth, typed errors, the ledger.

An adapter describes one try of an operation as a coroutine returning an `Outcome`; `_call`
runs it through the provider's guard (bucket, cap, breaker, retries) and books every try,
success or failure, in the ledger. The API key only ever appears in request headers sent to
the configured base URL: never in errors, logs or reprs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from studio.providers.base import Usage
from studio.providers.errors import (
    MalformedResponse,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    error_for_status,
    parse_retry_after,
    redact,
)
from studio.providers.ledger import DbLedger, Recorder, UsageEntry
from studio.providers.resilience import Guard

logger = logging.getLogger(__name__)


@dataclass
class HttpConfig:
    name: str  # provider name for prices, stats and logs, e.g. "deepseek"
    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    auth: str = "bearer"  # "bearer" (Authorization) or "x-api-key"
    retry_after_cap_s: float = 60.0


@dataclass
class Outcome:
    """The result of one successful try, with what the ledger needs to know about it."""

    value: Any
    usage: Usage = field(default_factory=Usage)
    units: float = 0.0
    request_id: str = ""
    ttft_ms: int | None = None
    characters: int = 0  # of text spoken (speech)


class HttpProvider:
    kind = "chat"  # the Price kind this provider's calls are booked under

    def __init__(
        self, config: HttpConfig, *, guard: Guard | None = None, recorder: Recorder | None = None
    ) -> None:
        self.config = config
        self.name = config.name
        self.model = config.model
        self.guard = guard or Guard(config.name)
        self.recorder = recorder if recorder is not None else DbLedger()
        self._http: httpx.AsyncClient | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.config.base_url!r})"

    # --- plumbing ---------------------------------------------------------------------------

    def client(self) -> httpx.AsyncClient:
        """The pooled client of the running event loop (a client cannot cross loops)."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._http_loop is not loop:
            limit = self.guard.concurrency or 100
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s),
                limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
                follow_redirects=False,
            )
            self._http_loop = loop
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + "/" + path.lstrip("/")

    def headers(self, url: str, *, idempotency_key: str = "") -> dict[str, str]:
        """Auth headers only for our own base URL: a download link elsewhere gets no key."""
        headers = {"Accept": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        key = self.config.api_key
        if key and urlsplit(url).netloc == urlsplit(self.config.base_url).netloc:
            if self.config.auth == "x-api-key":
                headers["x-api-key"] = key
            else:
                headers["Authorization"] = f"Bearer {key}"
        return headers

    def clean(self, text: str) -> str:
        return redact(str(text), self.config.api_key)[:500]

    def error_from_exception(self, error: Exception) -> ProviderError:
        if isinstance(error, ProviderError):
            return error
        kind = type(error).__name__
        if isinstance(error, httpx.TimeoutException):
            return ProviderTimeout(f"no answer within the time limit ({kind})", provider=self.name)
        if isinstance(error, httpx.TransportError):
            return ProviderConnectionError(
                f"connection failed: {kind}: {self.clean(error)}", provider=self.name
            )
        return ProviderError(f"unexpected {kind}: {self.clean(error)}", provider=self.name)

    def error_from_response(self, response: httpx.Response) -> ProviderError:
        """A typed error from a non-2xx answer: vendor message and type, Retry-After."""
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            body = None
        message, error_type = self.vendor_message(body)
        return error_for_status(
            response.status_code,
            provider=self.name,
            message=self.clean(message),
            error_type=error_type,
            retry_after_s=parse_retry_after(response.headers, cap_s=self.config.retry_after_cap_s),
            request_id=request_id_of(response),
        )

    def vendor_message(self, body) -> tuple[str, str]:
        """(message, error type) from an error answer's JSON: OpenAI's `{"error": {...}}`
        shape; an adapter whose vendor answers otherwise overrides this."""
        message, error_type = "", ""
        if isinstance(body, dict):
            detail = body.get("error", body)
            if isinstance(detail, dict):
                message = str(detail.get("message") or "")
                error_type = str(detail.get("type") or detail.get("code") or "")
            elif isinstance(detail, str):
                message = detail
        return message, error_type

    def json_of(self, response: httpx.Response) -> dict:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            body = None
        if not isinstance(body, dict):
            raise MalformedResponse(
                "the answer is not a JSON object",
                provider=self.name,
                status=response.status_code,
                request_id=request_id_of(response),
            )
        return body

    async def send(self, method: str, url: str, **kwargs) -> httpx.Response:
        """One HTTP exchange; non-2xx answers and transport failures become typed errors."""
        try:
            response = await self.client().request(method, url, **kwargs)
        except httpx.HTTPError as error:
            raise self.error_from_exception(error) from None
        if response.status_code >= 400:
            raise self.error_from_response(response)
        return response

    async def download(self, url: str) -> bytes:
        """GET a file, following up to 3 redirects by hand: the key goes to our own host
        only, never on to a storage link it redirects to."""
        for _hop in range(4):
            headers = {**self.headers(url), "Accept": "video/*, */*"}
            response = await self.send("GET", url, headers=headers)
            location = response.headers.get("location")
            if not (300 <= response.status_code < 400 and location):
                return response.content
            url = str(response.url.join(location))
        raise MalformedResponse("too many redirects for a download", provider=self.name)

    # --- one operation, through the guard and into the ledger ------------------------------

    async def call(
        self,
        *,
        operation: str,
        attempt: Callable[[], Awaitable[Outcome]],
        retry: bool = True,
        kind: str | None = None,
        once_per_request: bool = False,
    ):
        async def one_try():
            started = time.perf_counter()
            try:
                outcome = await attempt()
            except ProviderError as error:
                await self.book(
                    operation=operation,
                    kind=kind,
                    ok=False,
                    error=str(error),
                    request_id=error.request_id,
                    started=started,
                )
                raise
            await self.book(
                operation=operation,
                kind=kind,
                ok=True,
                usage=outcome.usage,
                units=outcome.units,
                characters=outcome.characters,
                request_id=outcome.request_id,
                ttft_ms=outcome.ttft_ms,
                started=started,
                once_per_request=once_per_request,
            )
            return outcome.value

        return await self.guard.call(one_try, retry=retry)

    async def book(
        self, *, operation: str, kind: str | None, started: float | None, **fields
    ) -> None:
        entry = UsageEntry(
            provider=self.name,
            model=self.model,
            kind=kind or self.kind,
            operation=operation,
            latency_ms=None if started is None else int((time.perf_counter() - started) * 1000),
            **fields,
        )
        await self.recorder.record(entry)


def request_id_of(response: httpx.Response) -> str:
    headers = response.headers
    return headers.get("x-request-id") or headers.get("request-id") or ""


def looks_like_video(content: bytes) -> bool:
    """An MP4/MOV (an `ftyp` box first) or a Matroska/WebM file (EBML header)."""
    return content[4:8] == b"ftyp" or content[:4] == b"\x1a\x45\xdf\xa3"
