"""Cost review over the usage ledger: totals, latency percentiles, spend over time, what-if.

Every function takes a UsageRecord queryset (any selection: a drama, a filtered admin
changelist, a day) and aggregates it in the database. Unknown costs (no price on the day of
the call) are counted apart, never summed as 0. The platform app knows nothing of dramas, so
groups "by drama" are by `drama_id`; the dramas app names them (`name_dramas`, from its
AppConfig.ready), and without it the admin shows the ids alone.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, DecimalField, F, Q, QuerySet, Sum, Window
from django.db.models.functions import Coalesce, Round, RowNumber, TruncDate
from django.utils import timezone

from studio.models import Price, PriceKind
from studio.providers.base import Usage
from studio.providers.ledger import cost_usd

# Ledger drama ids -> titles, as the domain app that owns dramas tells them (`name_dramas`).
_drama_titles: Callable[[list[int]], dict[int, str]] | None = None


def name_dramas(titles: Callable[[list[int]], dict[int, str]]) -> None:
    """How the ledger's plain drama ids get their titles (called by the dramas app)."""
    global _drama_titles
    _drama_titles = titles


def drama_titles(ids: Iterable[int | None]) -> dict[int, str]:
    """Titles of the dramas by id; empty when no app names dramas (or none of them exists)."""
    wanted = [i for i in ids if i]
    return _drama_titles(wanted) if _drama_titles and wanted else {}


# Group name -> the fields a row is grouped by (`day` is annotated, see `_grouped`).
GROUPS: dict[str, tuple[str, ...]] = {
    "drama": ("drama_id",),
    "provider": ("provider",),
    "model": ("provider", "model"),
    "operation": ("operation",),
    "day": ("day",),
}
PERCENTILES = (50, 95)
# The ledger's cost column: totals are rounded to its 10 places, like each row.
MONEY = DecimalField(max_digits=20, decimal_places=10)
COST_PLACES = Decimal("1e-10")
CSV_FIELDS = [
    "id",
    "created_at",
    "provider",
    "model",
    "operation",
    "drama_id",
    "take_id",
    "ok",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "units",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "request_id",
    "error",
]


@dataclass
class Totals:
    """One group's figures. `cost_usd` sums the priced calls only; `unpriced` says how many
    calls had no price (their cost is unknown, so the total is a lower bound when > 0)."""

    key: dict
    calls: int = 0
    failures: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    seconds: Decimal = Decimal(0)
    cost_usd: Decimal | None = None
    unpriced: int = 0
    p50_ms: int | None = None
    p95_ms: int | None = None

    @property
    def failure_rate(self) -> float | None:
        return self.failures / self.calls if self.calls else None

    @property
    def label(self) -> str:
        return " / ".join("—" if v is None else str(v) for v in self.key.values())


def _grouped(usage: QuerySet, by: str) -> tuple[QuerySet, tuple[str, ...]]:
    if by not in GROUPS:
        raise ValueError(f"unknown group {by!r}; choose one of {', '.join(GROUPS)}")
    if by == "day":
        usage = usage.annotate(day=TruncDate("created_at"))
    return usage, GROUPS[by]


def _sums() -> dict:
    # Aliases differ from the field names: an annotation may not shadow a field it reads.
    return {
        "t_calls": Count("id"),
        "t_failures": Count("id", filter=Q(ok=False)),
        "t_input_tokens": Coalesce(Sum("input_tokens"), 0),
        "t_cached_tokens": Coalesce(Sum("cached_tokens"), 0),
        "t_output_tokens": Coalesce(Sum("output_tokens"), 0),
        "t_seconds": Coalesce(Sum("units"), Decimal(0)),
        # Sum skips NULLs: the priced calls only. None when no call in the group had a price.
        # Each cost is rounded to the column's 10 places first: SQLite keeps the unrounded
        # value it was given, so the total would drift from the sum of the listed rows.
        "t_cost_usd": Sum(Round("cost_usd", 10), output_field=MONEY),
        "t_unpriced": Count("id", filter=Q(cost_usd__isnull=True)),
    }


def _figures(row: dict) -> dict:
    figures = {name[2:]: row[name] for name in _sums()}
    if figures["cost_usd"] is not None:
        # SQLite sums decimals as floats: back to the ledger's exact 10 places.
        figures["cost_usd"] = Decimal(figures["cost_usd"]).quantize(COST_PLACES)
    return figures


def totals(*, usage: QuerySet, by: str) -> list[Totals]:
    """Figures per group (drama, provider, model, operation or day), largest spend first
    (days in date order), with p50/p95 latency per group."""
    grouped, keys = _grouped(usage.order_by(), by)
    rows = grouped.values(*keys).annotate(**_sums()).order_by(*keys)
    result = [Totals(key={k: row[k] for k in keys}, **_figures(row)) for row in rows]
    latency = latency_percentiles(usage=usage, by=by)
    for item in result:
        item.p50_ms, item.p95_ms = latency.get(tuple(item.key.values()), (None, None))
    if by != "day":
        result.sort(key=lambda t: (-(t.cost_usd or 0), -t.calls, t.label))
    return result


def overall(*, usage: QuerySet) -> Totals:
    result = Totals(key={}, **_figures(usage.order_by().aggregate(**_sums())))
    ranks = _percentile_rows(usage=usage.order_by(), keys=())
    values = [ranks.get((), {}).get(p) for p in PERCENTILES]
    result.p50_ms, result.p95_ms = values
    return result


def latency_percentiles(*, usage: QuerySet, by: str) -> dict[tuple, tuple[int | None, ...]]:
    """Nearest-rank p50 and p95 latency per group, computed in SQL.

    Window functions number each group's calls by latency; only the rows at rank
    ceil(p/100 * n) come back (at most two per group), so this costs one query whatever the
    ledger's size, on SQLite and PostgreSQL alike.
    """
    grouped, keys = _grouped(usage.order_by(), by)
    found = _percentile_rows(usage=grouped, keys=keys)
    return {key: tuple(ranks.get(p) for p in PERCENTILES) for key, ranks in found.items()}


def _percentile_rows(*, usage: QuerySet, keys: tuple[str, ...]) -> dict[tuple, dict[int, int]]:
    partition = [F(k) for k in keys] or None
    ranked = usage.filter(latency_ms__isnull=False).annotate(
        position=Window(RowNumber(), partition_by=partition, order_by=[F("latency_ms"), F("id")]),
        group_size=Window(Count("id"), partition_by=partition),
    )
    # ceil(p * n / 100) in integer arithmetic (integer division on both databases).
    wanted = Q()
    for p in PERCENTILES:
        wanted |= Q(position=(F("group_size") * p + 99) / 100)
    found: dict[tuple, dict[int, int]] = {}
    for row in ranked.filter(wanted).values(*keys, "position", "group_size", "latency_ms"):
        key = tuple(row[k] for k in keys)
        for p in PERCENTILES:
            if row["position"] == (row["group_size"] * p + 99) // 100:
                found.setdefault(key, {})[p] = row["latency_ms"]
    return found


# --- Spend over time -------------------------------------------------------------------------


@dataclass
class Chart:
    """A bar per day of priced spend, in SVG user units (rendered by a template)."""

    width: int
    height: int
    bars: list[dict] = field(default_factory=list)
    peak_usd: Decimal = Decimal(0)
    total_usd: Decimal = Decimal(0)
    first: datetime.date | None = None
    last: datetime.date | None = None


def spend_chart(*, days: list[Totals], width: int = 720, height: int = 160) -> Chart:
    """Bars for `totals(by="day")`, gaps included (a day without calls is a zero bar)."""
    chart = Chart(width=width, height=height)
    by_day = {t.key["day"]: t for t in days if t.key.get("day") is not None}
    if not by_day:
        return chart
    chart.first, chart.last = min(by_day), max(by_day)
    span = (chart.last - chart.first).days + 1
    chart.peak_usd = max((t.cost_usd or Decimal(0)) for t in by_day.values())
    chart.total_usd = sum(((t.cost_usd or Decimal(0)) for t in by_day.values()), Decimal(0))
    slot = width / span
    for offset in range(span):
        day = chart.first + datetime.timedelta(days=offset)
        item = by_day.get(day)
        spent = (item.cost_usd or Decimal(0)) if item else Decimal(0)
        bar_height = float(spent / chart.peak_usd) * (height - 4) if chart.peak_usd else 0.0
        chart.bars.append(
            {
                "day": day,
                "x": round(offset * slot + slot * 0.1, 2),
                "w": round(max(slot * 0.8, 1.0), 2),
                "h": round(bar_height, 2),
                "y": round(height - bar_height, 2),
                "cost_usd": spent,
                "calls": item.calls if item else 0,
                "unpriced": item.unpriced if item else 0,
            }
        )
    return chart


# --- What-if pricing ---------------------------------------------------------------------------


@dataclass
class WhatIf:
    provider: str
    model: str
    kind: str
    cost_usd: Decimal | None  # None: the price lacks a rate this usage needs
    price: Price
    actual: bool  # the model the usage actually ran on (for some of its calls)


@dataclass
class KindUsage:
    kind: str
    calls: int
    uncached_tokens: int
    cached_tokens: int
    output_tokens: int
    seconds: Decimal
    actual_usd: Decimal | None
    unpriced: int
    options: list[WhatIf]


def prices_in_force(*, kind: str, when: datetime.date) -> list[Price]:
    """Each model's latest price of `kind` effective on or before `when`."""
    latest: dict[tuple[str, str], Price] = {}
    rows = Price.objects.filter(kind=kind, effective_date__lte=when).order_by(
        "provider", "model", "-effective_date", "-id"
    )
    for price in rows:
        latest.setdefault((price.provider.lower(), price.model.lower()), price)
    return list(latest.values())


def what_if(*, usage: QuerySet, when: datetime.date | None = None) -> list[KindUsage]:
    """What the selection's tokens and seconds would cost on every priced model of the same
    kind, at the prices in force on `when` (today by default), cheapest first.

    The kind of a call is its operation's prefix (chat.*, video.*, lipsync.*). Pricing the
    summed quantities equals summing per-call prices: the arithmetic is linear.
    """
    when = when or timezone.localdate()
    result = []
    for kind in PriceKind.values:
        rows = usage.order_by().filter(operation__startswith=f"{kind}.")
        sums = _figures(rows.aggregate(**_sums()))
        if not sums["calls"]:
            continue
        used = {
            (p.lower(), m.lower())
            for p, m in rows.values_list("provider", "model").distinct().order_by()
        }
        tokens = Usage(
            input_tokens=sums["input_tokens"],
            cached_tokens=sums["cached_tokens"],
            output_tokens=sums["output_tokens"],
        )
        options = [
            WhatIf(
                provider=price.provider,
                model=price.model,
                kind=kind,
                cost_usd=cost_usd(price=price, usage=tokens, units=sums["seconds"]),
                price=price,
                actual=(price.provider.lower(), price.model.lower()) in used,
            )
            for price in prices_in_force(kind=kind, when=when)
        ]
        options.sort(key=lambda o: (o.cost_usd is None, o.cost_usd or 0, o.provider, o.model))
        result.append(
            KindUsage(
                kind=kind,
                calls=sums["calls"],
                uncached_tokens=max(sums["input_tokens"] - sums["cached_tokens"], 0),
                cached_tokens=sums["cached_tokens"],
                output_tokens=sums["output_tokens"],
                seconds=sums["seconds"],
                actual_usd=sums["cost_usd"],
                unpriced=sums["unpriced"],
                options=options,
            )
        )
    return result


# --- CSV -------------------------------------------------------------------------------------


def csv_rows(*, usage: QuerySet):
    """The header, then one list per record (streamed from the database in chunks)."""
    yield CSV_FIELDS
    for values in usage.values_list(*CSV_FIELDS).iterator(chunk_size=2000):
        yield [_cell(value) for value in values]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    text = str(value)
    # A spreadsheet runs a cell starting with = + - @ as a formula: provider error texts
    # are not ours to trust. Numbers (negative ones included) are left alone.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True
