"""`python manage.py bench costs`: the admin's cost review over a ledger from the simulator.

On a scratch database, 400 chat calls (100 with --quick) go through the real OpenAI-compatible
adapter to `provider_sim` (lognormal latency around 20 ms, 5 % server errors, no retries), as
three providers: two with seeded prices (deepseek/deepseek-chat, openai/gpt-4.1) and one
without (self-hosted/my-llm: its cost is unknown), booked to five dramas. The entries are priced
and saved by the ledger (`record_usage`) and spread over 14 days. Then, as a superuser, the
summary page (totals, p50/p95, chart, what-if), the same filtered to one provider, the CSV
export and the changelist are each loaded five times: median wall time and query count.
The summary's totals are checked against sums taken in Python over the saved rows.
"""

import asyncio
import contextlib
import datetime
import logging
import statistics
import time
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from studio import costs as costs_service
from studio.bench.harness import Browser, scratch_database
from studio.models import UsageRecord
from studio.providers.ledger import MemoryLedger, record_usage, usage_scope
from studio.providers.openai_chat import ChatConfig, OpenAICompatibleChat
from studio.providers.resilience import Guard, RetryPolicy
from studio.providers.sim.server import simulator_thread
from studio.providers.sim.state import RouteFaults, SimConfig

MODELS = [("deepseek", "deepseek-chat"), ("openai", "gpt-4.1"), ("self-hosted", "my-llm")]
DRAMAS = 5
DAYS = 14
RUNS = 5
TARGET_S = 1.0


async def _calls(url: str, total: int) -> list:
    ledger = MemoryLedger()
    chats = [
        OpenAICompatibleChat(
            ChatConfig(name=provider, base_url=f"{url}/v1", model=model, timeout_s=10),
            guard=Guard(f"bench:{provider}", retry=RetryPolicy(max_attempts=1), register=False),
            recorder=ledger,
        )
        for provider, model in MODELS
    ]

    async def one(index: int) -> None:
        chat = chats[index % len(chats)]
        prompt = [{"role": "user", "content": f"Scene {index}: " + "rain on neon. " * (index % 40)}]
        # A simulated 5xx raises; the ledger has booked the failed call all the same.
        with usage_scope(drama_id=1 + index % DRAMAS), contextlib.suppress(Exception):
            await chat.complete(prompt)

    for start in range(0, total, 20):
        await asyncio.gather(*(one(i) for i in range(start, min(start + 20, total))))
    return ledger.entries


def _median_load(browser: Browser, url: str) -> tuple[float, int, int]:
    times, queries, size = [], 0, 0
    for _ in range(RUNS):
        started = time.perf_counter()
        page = browser.get(url)
        times.append(time.perf_counter() - started)
        if page.status != 200:
            raise RuntimeError(f"{url} answered {page.status}")
        queries, size = page.queries, len(page.body)
    return statistics.median(times), queries, size


def costs(options: dict) -> dict:
    total = options.get("rows") or (100 if options.get("quick") else 400)
    with scratch_database() as vendor:
        config = SimConfig(
            seed=7, latency_ms=20, latency_sigma=0.5, faults={"*": RouteFaults(error_5xx=0.05)}
        )
        with simulator_thread(config) as simulator:
            entries = asyncio.run(_calls(simulator.url, total))
        now = timezone.now()
        # Unpriced calls are the point here: not a warning per row.
        logging.getLogger("studio.providers.ledger").setLevel(logging.ERROR)
        for index, entry in enumerate(entries):
            record = record_usage(entry)
            record.created_at = now - datetime.timedelta(days=index % DAYS, seconds=index)
            record.save(update_fields=["created_at"])
        rows = list(UsageRecord.objects.all())
        user = get_user_model().objects.create_superuser("bench", password="bench-password-1")
        browser = Browser(user)
        summary_url = reverse("admin:studio_usagerecord_summary")
        # The services the summary page renders, checked against sums taken here.
        usage = UsageRecord.objects.all()
        overall = costs_service.overall(usage=usage)
        chart = costs_service.spend_chart(days=costs_service.totals(usage=usage, by="day"))
        expected_cost = sum((r.cost_usd for r in rows if r.cost_usd is not None), Decimal(0))
        checks = {
            "calls": overall.calls == len(rows),
            "cost": overall.cost_usd == expected_cost,
            "unpriced": overall.unpriced == sum(r.cost_usd is None for r in rows),
            "failures": overall.failures == sum(not r.ok for r in rows),
            "chart_days": len(chart.bars) == len({timezone.localdate(r.created_at) for r in rows}),
        }
        figures = {"database": vendor, "rows": len(rows), "correct": all(checks.values())}
        if not figures["correct"]:
            figures["failed_checks"] = sorted(k for k, ok in checks.items() if not ok)
        pages = {
            "summary": summary_url,
            "csv": reverse("admin:studio_usagerecord_export"),
            "changelist": reverse("admin:studio_usagerecord_changelist"),
            "summary_filtered": summary_url + "?provider=deepseek",
        }
        for name, url in pages.items():
            seconds, queries, size = _median_load(browser, url)
            figures[f"{name}_ms"] = round(seconds * 1000, 1)
            figures[f"{name}_queries"] = queries
            if name == "csv":
                figures["csv_bytes"] = size
        slowest = max(figures[f"{name}_ms"] for name in pages) / 1000
        figures["under_1s"] = slowest < TARGET_S
    return figures
