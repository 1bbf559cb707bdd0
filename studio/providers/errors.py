"""Typed provider errors: every failure says whether trying again can help.

`retryable` drives both the in-call retry loop (resilience.py) and the job engine's retries;
`retry_after_s` carries the server's own hint (already capped). Messages never contain an API
key: adapters pass vendor text through `redact` before building an error.
"""

from __future__ import annotations

import email.utils
import time

# Error types vendors put in a 429 body when the account, not the moment, is the problem.
QUOTA_ERROR_TYPES = frozenset(
    {"insufficient_quota", "billing_hard_limit_reached", "quota_exceeded"}
)


class ProviderError(Exception):
    """A generation service call failed. Safe to show: no secrets, one line."""

    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        retryable: bool | None = None,
        retry_after_s: float | None = None,
        code: str = "",
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after_s = retry_after_s
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        where = f"{self.provider}: " if self.provider else ""
        status = f" (HTTP {self.status})" if self.status else ""
        hint = "retryable" if self.retryable else "not retryable"
        return f"{where}{self.message}{status} [{hint}]"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class ProviderTimeout(ProviderError):
    default_retryable = True


class ProviderConnectionError(ProviderError):
    default_retryable = True


class ServerError(ProviderError):
    """5xx, 408 and 409: the vendor's side or a race; the same request may succeed later."""

    default_retryable = True


class RateLimited(ProviderError):
    default_retryable = True


class QuotaExceeded(ProviderError):
    """A 429 about money or quota: waiting does not help, a human must act."""


class BadRequest(ProviderError):
    """400, 404, 422: our request is wrong; sending it again gives the same answer."""


class AuthError(ProviderError):
    """401, 403: a missing, wrong or unauthorised key."""


class MalformedResponse(ProviderError):
    """The vendor answered 2xx with a body we cannot read (often a proxy or a truncated body)."""

    default_retryable = True


class StreamError(ProviderError):
    """An error event inside a stream, or a stream cut before its end."""

    default_retryable = True


class CircuitOpen(ProviderError):
    """The breaker is open: fail fast; `retry_after_s` says when a trial call is allowed."""

    default_retryable = True


class JobFailed(ProviderError):
    """A remote job ended in failure; `retryable` follows the vendor's status or error code."""


def redact(text: str, *secrets: str | None) -> str:
    """`text` with each secret (API keys) replaced; vendors sometimes echo keys in errors."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


def parse_retry_after(headers, *, cap_s: float, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or HTTP date), capped."""
    value: float | None = None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000.0
        except ValueError:
            value = None
    raw = headers.get("retry-after")
    if value is None and raw:
        try:
            value = float(raw)
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                parsed = None  # neither seconds nor a date: ignore the hint
            if parsed is not None:
                value = parsed.timestamp() - (time.time() if now is None else now)
    if value is None:
        return None
    return min(max(value, 0.0), cap_s)


def error_for_status(
    status: int,
    *,
    provider: str,
    message: str,
    error_type: str = "",
    retry_after_s: float | None = None,
    request_id: str = "",
) -> ProviderError:
    """The typed error for an HTTP status, per the vendors' documented retry advice."""
    fields = dict(
        provider=provider,
        status=status,
        code=error_type,
        request_id=request_id,
        retry_after_s=retry_after_s,
    )
    if status == 429:
        if error_type in QUOTA_ERROR_TYPES:
            return QuotaExceeded(
                message or "quota exhausted; add credit or raise the limit", **fields
            )
        return RateLimited(message or "rate limited", **fields)
    if status in (401, 403):
        return AuthError(message or "not authorised: check the API key", **fields)
    if status in (408, 409) or status >= 500:
        return ServerError(message or f"server error {status}", **fields)
    return BadRequest(message or f"request rejected with {status}", **fields)
