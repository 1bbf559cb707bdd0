"""Provider health across processes: workers publish their guards' state, the panel reads it.

A provider's breaker, token bucket and latency window live in the process that calls it
(studio/providers/resilience.py), or, with REDIS_URL, its breaker, bucket and concurrency cap
are every worker's, in Redis (studio/providers/shared_limits.py): then each row carries that
shared state as its worker last read it. Each job worker runs `publish_loop` (a worker companion,
registered in studio/apps.py), which every `PROVIDER_HEALTH_PUBLISH_S` seconds saves its
guards' snapshots as ProviderHealth rows and tells the `provider-health` channel group, whose
consumers re-render the panel. A row older
than `STALE_AFTER_S` is shown as stale with its age: its worker stopped reporting.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import uuid

from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from studio.jobs.models import Job, JobStatus
from studio.models import ProviderHealth
from studio.providers import registry
from studio.providers.resilience import refresh_shared

log = logging.getLogger(__name__)

GROUP = "provider-health"
EVENT_HANDLER = "health.changed"
# Rows of workers gone for this long are deleted at the next publish.
FORGET_AFTER = datetime.timedelta(days=1)


def publish_s() -> float:
    return float(settings.PROVIDER_HEALTH_PUBLISH_S)


def stale_after_s() -> float:
    return 3 * publish_s() + 5


def save_snapshots(*, process: str, snapshots: list[dict], now=None) -> int:
    """Store this process's guard snapshots (one row per guard); returns the rows written."""
    now = now or timezone.now()
    for snapshot in snapshots:
        ProviderHealth.objects.update_or_create(
            process=process[:200],
            name=str(snapshot["name"])[:100],
            defaults={
                "breaker": str(snapshot.get("breaker", ""))[:20],
                "snapshot": snapshot,
                "updated_at": now,
            },
        )
    ProviderHealth.objects.filter(updated_at__lt=now - FORGET_AFTER).delete()
    return len(snapshots)


def queue_depth() -> list[dict]:
    """Queued and running jobs per kind, across all dramas."""
    rows = (
        Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
        .order_by()
        .values("kind", "status")
        .annotate(n=Count("id"))
    )
    kinds: dict[str, dict] = {}
    for row in rows:
        entry = kinds.setdefault(row["kind"], {"kind": row["kind"], "queued": 0, "running": 0})
        entry["queued" if row["status"] == JobStatus.QUEUED else "running"] += row["n"]
    return sorted(kinds.values(), key=lambda e: (-e["queued"], e["kind"]))


def panel(*, now=None) -> dict:
    """What the health panel shows: each provider as its workers last reported it."""
    now = now or timezone.now()
    providers = []
    for row in ProviderHealth.objects.all():
        snap = row.snapshot or {}
        age_s = max((now - row.updated_at).total_seconds(), 0.0)
        rate = snap.get("success_rate")
        providers.append(
            {
                "name": row.name,
                "process": row.process,
                "breaker": row.breaker,
                "success_pct": None if rate is None else round(rate * 100, 1),
                "calls": snap.get("calls", 0),
                "failures": snap.get("failures", 0),
                "p50_ms": snap.get("p50_ms"),
                "p95_ms": snap.get("p95_ms"),
                "tokens": snap.get("tokens"),
                "burst": snap.get("burst"),
                "rate_per_s": snap.get("rate_per_s"),
                "waiting": snap.get("waiting", 0),
                "in_flight": snap.get("in_flight", 0),
                # With REDIS_URL, limits shared by every worker (studio/providers/shared_limits):
                # the breaker and tokens above are then every worker's, as Redis holds them.
                "shared": bool(snap.get("shared")),
                "shared_down": bool(snap.get("shared_down")),
                "in_flight_all": snap.get("in_flight_all"),
                "breaker_opened_by": snap.get("breaker_opened_by", ""),
                "breaker_opened_at": _when(snap.get("breaker_opened_at")),
                "last_error": snap.get("last_error", ""),
                "last_error_at": _when(snap.get("last_error_at")),
                "age_s": round(age_s),
                "stale": age_s > stale_after_s(),
            }
        )
    return {"providers": providers, "queue": queue_depth(), "checked_at": now}


def _when(epoch) -> datetime.datetime | None:
    if not isinstance(epoch, int | float):
        return None
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)


async def publish_once(*, process: str, db) -> int:
    """Save this process's snapshots (through `db`, the worker's database thread) and tell
    the panel's consumers. Offline providers have no guard: nothing to publish. Guards with
    limits shared through Redis read every worker's state first."""
    await refresh_shared()
    snapshots = registry.health()
    if not snapshots:
        return 0
    written = await db(save_snapshots, process=process, snapshots=snapshots)
    layer = get_channel_layer()
    if layer is not None:
        message = {"type": EVENT_HANDLER, "id": uuid.uuid4().hex, "sent_at": time.time()}
        await layer.group_send(GROUP, message)
    return written


async def publish_loop(*, process: str, db) -> None:
    """Run by each job worker until it stops (0 s in settings turns it off); a failed publish
    is logged and tried again next time. The first one waits an interval: a worker that has
    called no provider yet has nothing to say."""
    interval = publish_s()
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            await publish_once(process=process, db=db)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Could not publish provider health of %s", process)
