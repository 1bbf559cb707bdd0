"""Usage ledger: one UsageRecord per provider call, priced from the Price table.

Adapters describe each call as a `UsageEntry` and hand it to a recorder: `DbLedger` (the
default) prices and saves it; `MemoryLedger` keeps entries in a list (benchmarks, tests).
The drama and take a call belongs to travel in a context variable (`usage_scope`), so
providers never take domain arguments. Recording never fails a call: a ledger error is logged.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from studio.providers.base import Usage

logger = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)

_scope: ContextVar[tuple[int | None, int | None]] = ContextVar(
    "provider_usage_scope", default=(None, None)
)


@contextlib.contextmanager
def usage_scope(*, drama_id: int | None = None, take_id: int | None = None):
    """Calls made inside this block are booked to this drama and take."""
    token = _scope.set((drama_id, take_id))
    try:
        yield
    finally:
        _scope.reset(token)


@dataclass
class UsageEntry:
    provider: str
    model: str
    kind: str  # chat | video | lipsync | speech (the Price kind)
    operation: str
    usage: Usage = field(default_factory=Usage)
    units: float = 0.0
    requests: int = 0  # billed as such only by a price with a per-request rate
    characters: int = 0  # of text spoken (speech)
    latency_ms: int | None = None
    ttft_ms: int | None = None
    ok: bool = True
    error: str = ""
    request_id: str = ""
    drama_id: int | None = None
    take_id: int | None = None
    # Book the units of this request id once (a completed video polled twice is billed once).
    once_per_request: bool = False

    def __post_init__(self) -> None:
        if self.drama_id is None and self.take_id is None:
            self.drama_id, self.take_id = _scope.get()


class Recorder(Protocol):
    async def record(self, entry: UsageEntry) -> None: ...


class PriceLike(Protocol):
    input_per_mtok: Decimal | None
    cached_input_per_mtok: Decimal | None
    output_per_mtok: Decimal | None
    per_second: Decimal | None
    per_request: Decimal | None
    per_mchar: Decimal | None


def cost_usd(
    *,
    price: PriceLike,
    usage: Usage,
    units: float | Decimal = 0,
    requests: int = 0,
    characters: int = 0,
) -> Decimal | None:
    """Input (uncached), cached input and output tokens priced apart, plus output seconds, plus
    requests for a price billed per request.

    `usage.input_tokens` includes the cached ones. A price without a cached-input figure (the
    Gemini rows list none) prices cached tokens at the input price. A rate the call needs but
    the price lacks makes the whole cost unknown (None), never a silent 0; a price with a
    per-request rate bills the request, and seconds (tokens) only if it also has a per-second
    (per-token) rate.
    """
    per_request = getattr(price, "per_request", None)
    if per_request is not None:
        if price.per_second is None:
            units = 0  # billed by the request, not by its length
        if price.input_per_mtok is None and price.output_per_mtok is None:
            # An image priced per image: the tokens a service reports with it (gpt-image-1)
            # are recorded, not billed a second time.
            usage = Usage()
        request_cost = Decimal(requests) * Decimal(per_request)
    else:
        request_cost = Decimal(0)
    cached = max(min(usage.cached_tokens, usage.input_tokens), 0)
    uncached = max(usage.input_tokens - cached, 0)
    cached_rate = (
        price.cached_input_per_mtok
        if price.cached_input_per_mtok is not None
        else price.input_per_mtok
    )
    parts = [
        (uncached, price.input_per_mtok, MILLION),
        (cached, cached_rate, MILLION),
        (usage.output_tokens, price.output_per_mtok, MILLION),
        (Decimal(str(units)), price.per_second, Decimal(1)),
        (characters, getattr(price, "per_mchar", None), MILLION),
    ]
    total = request_cost
    for quantity, rate, per in parts:
        if not quantity:
            continue
        if rate is None:
            return None
        total += Decimal(quantity) * Decimal(rate) / per
    return total


def price_at(*, provider: str, model: str, kind: str, when: datetime.date):
    """The Price row in force on `when` (latest effective date not after it), or None."""
    # Models are imported late: the animatic's pool processes import this module without
    # setting Django up.
    from studio.models import Price

    return (
        Price.objects.filter(
            provider__iexact=provider, model__iexact=model, kind=kind, effective_date__lte=when
        )
        .order_by("-effective_date", "-id")
        .first()
    )


def record_usage(entry: UsageEntry):
    """Price and save one entry (sync; call from a thread in async code). Returns the record,
    or None for a `once_per_request` entry already booked."""
    from django.db import IntegrityError, transaction
    from django.utils import timezone

    from studio.models import UsageRecord

    now = timezone.now()
    units = entry.units
    once = entry.once_per_request and bool(entry.request_id)
    key = dict(
        provider=entry.provider[:50],
        operation=entry.operation[:50],
        request_id=entry.request_id[:200],
    )
    if once and UsageRecord.objects.filter(once_per_request=True, **key).exists():
        return None  # billed when it was first seen finished
    billable = (
        units
        or entry.requests
        or entry.characters
        or entry.usage.input_tokens
        or entry.usage.output_tokens
    )
    if billable:
        price = price_at(
            provider=entry.provider, model=entry.model, kind=entry.kind, when=now.date()
        )
        cost = (
            cost_usd(
                price=price,
                usage=entry.usage,
                units=units,
                requests=entry.requests,
                characters=entry.characters,
            )
            if price
            else None
        )
    else:
        # A poll, a status check, a failed try: nothing a vendor bills, whatever its prices.
        price, cost = None, Decimal(0)
    if cost is None:
        logger.warning(
            "No usable %s price for %s/%s on %s: cost recorded as unknown. "
            "Add a price in the admin (Studio platform > Prices).",
            entry.kind,
            entry.provider,
            entry.model,
            now.date().isoformat(),
        )
    fields = dict(
        **key,
        model=entry.model[:100],
        drama_id=entry.drama_id,
        take_id=entry.take_id,
        input_tokens=entry.usage.input_tokens,
        cached_tokens=entry.usage.cached_tokens,
        output_tokens=entry.usage.output_tokens,
        units=Decimal(str(round(units, 3))),
        characters=entry.characters,
        cost_usd=cost,
        price=price,
        latency_ms=entry.latency_ms,
        ttft_ms=entry.ttft_ms,
        ok=entry.ok,
        error=entry.error[:500],
        once_per_request=once,
        created_at=now,
    )
    if not once:
        return UsageRecord.objects.create(**fields)
    try:
        # A savepoint: on PostgreSQL a failed insert would otherwise break the caller's
        # transaction.
        with transaction.atomic():
            return UsageRecord.objects.create(**fields)
    except IntegrityError:
        # Another worker booked the same finished job between our check and this insert: the
        # unique constraint kept it to one bill.
        return None


class DbLedger:
    """Saves entries as UsageRecords from async code without blocking the event loop."""

    async def record(self, entry: UsageEntry) -> None:
        from asgiref.sync import sync_to_async

        try:
            await sync_to_async(record_usage, thread_sensitive=True)(entry)
        except Exception:
            logger.exception("Could not record usage of %s/%s", entry.provider, entry.model)


class MemoryLedger:
    """Keeps entries in memory: for benchmarks and tests that must not touch the database."""

    def __init__(self) -> None:
        self.entries: list[UsageEntry] = []

    async def record(self, entry: UsageEntry) -> None:
        self.entries.append(entry)
