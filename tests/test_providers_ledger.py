"""The usage ledger and prices. Database tests are sync and drive the async adapters through
async_to_sync, so the ledger's database thread is the test's own (inside its transaction)."""

import datetime
import logging
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync

from studio.models import Price, UsageRecord
from studio.providers import ledger
from studio.providers.base import Usage, VideoRequest
from studio.providers.ledger import (
    DbLedger,
    UsageEntry,
    cost_usd,
    price_at,
    record_usage,
    usage_scope,
)
from studio.providers.local_animatic import LocalAnimatic
from studio.providers.local_writer import LocalWriter
from studio.providers.video_http import wait_for
from studio.providers.writer import ChapterBrief
from tests.providers_support import brief_messages, chat_for, fast_guard, running_sim, video_for

pytestmark = pytest.mark.usefixtures("published_prices")

MILLION = 1_000_000
TODAY = datetime.date.today()

PUBLISHED = [
    # provider, model, kind, input, cached, output, per second
    ("deepseek", "deepseek-chat", "chat", "0.28", "0.028", "0.42", None),
    ("openai", "gpt-4.1", "chat", "2.00", "0.50", "8.00", None),
    ("openai", "gpt-5", "chat", "1.25", "0.125", "10.00", None),
    ("anthropic", "claude-sonnet-4-5", "chat", "3.00", "0.30", "15.00", None),
    ("google", "gemini-2.5-flash", "chat", "0.30", None, "2.50", None),
    ("google", "gemini-2.5-pro", "chat", "1.25", None, "10.00", None),
    ("openai", "sora-2", "video", None, None, None, "0.10"),
    ("openai", "sora-2-pro", "video", None, None, None, "0.30"),
    ("google", "veo-3.1", "video", None, None, None, "0.40"),
    ("google", "veo-3.1-fast", "video", None, None, None, "0.15"),
    ("runway", "gen4_turbo", "video", None, None, None, "0.05"),
    ("local", "offline-draft", "chat", "0", "0", "0", None),
    ("local", "animatic", "video", None, None, None, "0"),
]


def dec(value):
    return None if value is None else Decimal(value)


@pytest.mark.django_db
@pytest.mark.parametrize("row", PUBLISHED, ids=lambda row: f"{row[0]}/{row[1]}")
def test_it_seeds_every_published_price_with_source_and_date(row):
    provider, model, kind, input_, cached, output, per_second = row
    price = price_at(provider=provider, model=model, kind=kind, when=TODAY)
    assert price is not None and price.source and price.effective_date <= TODAY
    assert (price.input_per_mtok, price.cached_input_per_mtok) == (dec(input_), dec(cached))
    assert (price.output_per_mtok, price.per_second) == (dec(output), dec(per_second))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        # 1M uncached input, 1M cached input, 1M output: the three rates added up.
        ("deepseek", "deepseek-chat", "0.728"),
        ("openai", "gpt-4.1", "10.50"),
        ("openai", "gpt-5", "11.375"),
        ("anthropic", "claude-sonnet-4-5", "18.30"),
        # No cached price listed: cached tokens cost the input price.
        ("google", "gemini-2.5-flash", "3.10"),
        ("google", "gemini-2.5-pro", "12.50"),
        ("local", "offline-draft", "0"),
    ],
)
def test_it_prices_input_cached_and_output_apart(provider, model, expected):
    price = price_at(provider=provider, model=model, kind="chat", when=TODAY)
    usage = Usage(input_tokens=2 * MILLION, cached_tokens=MILLION, output_tokens=MILLION)
    assert cost_usd(price=price, usage=usage) == Decimal(expected)


@pytest.mark.django_db
def test_it_prices_a_small_call_exactly():
    price = price_at(provider="deepseek", model="deepseek-chat", kind="chat", when=TODAY)
    usage = Usage(input_tokens=1200, cached_tokens=1000, output_tokens=350)
    # 200 * 0.28 + 1000 * 0.028 + 350 * 0.42, per million
    assert cost_usd(price=price, usage=usage) == Decimal("0.000231")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("provider", "model", "seconds", "expected"),
    [
        ("openai", "sora-2", 8, "0.80"),
        ("google", "veo-3.1-fast", 4, "0.60"),
        ("local", "animatic", 10, "0"),
    ],
)
def test_it_prices_video_by_the_second(provider, model, seconds, expected):
    price = price_at(provider=provider, model=model, kind="video", when=TODAY)
    assert cost_usd(price=price, usage=Usage(), units=seconds) == Decimal(expected)


@pytest.mark.django_db
def test_it_records_an_unknown_model_as_unknown_cost_and_warns(caplog):
    caplog.set_level(logging.WARNING)
    entry = UsageEntry(
        provider="acme",
        model="mystery-1",
        kind="chat",
        operation="chat.complete",
        usage=Usage(input_tokens=10, output_tokens=5),
    )
    record = record_usage(entry)
    assert record.cost_usd is None and record.price is None
    assert "acme/mystery-1" in caplog.text and "unknown" in caplog.text


@pytest.mark.django_db
def test_a_call_with_nothing_billable_costs_nothing_without_a_price(caplog):
    caplog.set_level(logging.WARNING)
    poll = UsageEntry(provider="acme", model="mystery-1", kind="video", operation="video.poll")
    record = record_usage(poll)
    assert record.cost_usd == 0 and record.price is None
    assert "unknown" not in caplog.text  # a poll is never the reason a cost is unknown


@pytest.mark.django_db
def test_it_treats_a_missing_rate_as_unknown_not_free():
    Price.objects.create(
        provider="acme",
        model="half",
        kind="chat",
        input_per_mtok=1,
        output_per_mtok=None,
        source="test",
        effective_date=TODAY,
    )
    price = price_at(provider="acme", model="half", kind="chat", when=TODAY)
    assert cost_usd(price=price, usage=Usage(input_tokens=5)) == Decimal("0.000005")
    assert cost_usd(price=price, usage=Usage(input_tokens=5, output_tokens=1)) is None


@pytest.mark.django_db
def test_it_uses_the_price_in_force_on_the_day():
    for day, rate in [("2025-01-01", 1), ("2025-06-01", 2), ("2099-01-01", 9)]:
        Price.objects.create(
            provider="acme",
            model="m",
            kind="chat",
            input_per_mtok=rate,
            output_per_mtok=rate,
            source="test",
            effective_date=datetime.date.fromisoformat(day),
        )

    def pick(day):
        when = datetime.date.fromisoformat(day)
        return price_at(provider="ACME", model="m", kind="chat", when=when).input_per_mtok

    assert pick("2025-03-01") == 1 and pick("2025-06-01") == 2 and pick("2030-01-01") == 2
    assert price_at(provider="acme", model="m", kind="chat", when=datetime.date(2024, 1, 1)) is None


@pytest.mark.django_db
def test_it_records_every_chat_call_with_tokens_cost_and_scope():
    async def scenario():
        async with running_sim() as sim:
            sim.queue_faults("chat", "5xx")
            chat = chat_for(sim, ledger=DbLedger(), name="deepseek", model="deepseek-chat")
            with usage_scope(drama_id=7, take_id=42):
                messages = [
                    {"role": "system", "content": "Be brief. " * 40},
                    {"role": "user", "content": "Hello"},
                ]
                await chat.complete(messages)
                return await chat.complete(messages)

    result = async_to_sync(scenario)()
    failed, first, second = UsageRecord.objects.order_by("id")
    assert not failed.ok and "simulated outage" in failed.error and failed.cost_usd == 0
    assert first.ok and second.cached_tokens == result.usage.cached_tokens > 0
    price = price_at(provider="deepseek", model="deepseek-chat", kind="chat", when=TODAY)
    assert second.cost_usd == cost_usd(price=price, usage=result.usage) > 0
    assert {r.drama_id for r in (failed, first, second)} == {7}
    assert {r.take_id for r in (failed, first, second)} == {42}
    assert second.latency_ms is not None and second.request_id


@pytest.mark.django_db
def test_it_bills_a_finished_video_once_however_often_it_is_polled():
    async def scenario():
        async with running_sim() as sim:
            video = video_for(sim, ledger=DbLedger(), guard=fast_guard())
            handle = await video.submit(VideoRequest(prompt="Rain.", duration_s=8), "take-1")
            await wait_for(video, handle, timeout_s=5)
            await video.poll(handle)
            await video.poll(handle)

    async_to_sync(scenario)()
    [billed] = UsageRecord.objects.filter(operation="video.generate")
    assert billed.units == 8 and billed.cost_usd == Decimal("0.8")
    assert UsageRecord.objects.filter(operation="video.poll").count() >= 3


@pytest.mark.django_db
def test_it_bills_a_finished_video_once_when_two_workers_race(monkeypatch):
    def finished(latency_ms: int) -> UsageEntry:
        return UsageEntry(
            provider="openai",
            model="sora-2",
            kind="video",
            operation="video.generate",
            units=2.0,
            latency_ms=latency_ms,
            request_id="video_race",
            take_id=9,
            once_per_request=True,
        )

    real_price_at = ledger.price_at

    def price_at_while_the_other_worker_books(**kwargs):
        # Both workers have passed the "already billed?" check; the other one inserts first.
        monkeypatch.setattr(ledger, "price_at", real_price_at)
        assert record_usage(finished(latency_ms=1)) is not None
        return real_price_at(**kwargs)

    monkeypatch.setattr(ledger, "price_at", price_at_while_the_other_worker_books)
    assert record_usage(finished(latency_ms=2)) is None  # a no-op, not an IntegrityError
    [billed] = UsageRecord.objects.filter(operation="video.generate")
    assert (billed.latency_ms, billed.units, billed.cost_usd) == (1, 2, Decimal("0.2"))
    # The failed insert ran in a savepoint: the surrounding transaction still works.
    assert record_usage(finished(latency_ms=3)) is None
    assert UsageRecord.objects.filter(request_id="video_race").count() == 1


@pytest.mark.django_db
def test_it_records_offline_calls_at_a_known_zero(tmp_path):
    async def scenario():
        brief = ChapterBrief(genre="thriller", target_seconds=40)
        await LocalWriter(recorder=DbLedger()).complete(brief_messages(brief))
        animatic = LocalAnimatic(output_dir=tmp_path, recorder=DbLedger())
        await animatic._book(ok=True, units=2.0, started=0.0, request_id="x")

    async_to_sync(scenario)()
    writer_call, render = UsageRecord.objects.order_by("id")
    assert (writer_call.provider, writer_call.model, writer_call.cost_usd) == (
        "local",
        "offline-draft",
        Decimal(0),
    )
    assert (render.model, render.units, render.cost_usd) == ("animatic", 2, Decimal(0))


@pytest.mark.django_db
def test_it_prices_video_in_the_vendors_unit_tokens_or_requests():
    tokens = Price.objects.create(
        provider="byteplus",
        model="seedance",
        kind="video",
        output_per_mtok=Decimal("2.8"),
        source="test",
        effective_date=TODAY,
    )
    per_request = Price.objects.create(
        provider="fal",
        model="per-clip",
        kind="video",
        per_request=Decimal("0.25"),
        source="test",
        effective_date=TODAY,
    )

    # Seedance bills the clip's tokens; the seconds are not a rate it has.
    assert cost_usd(price=tokens, usage=Usage(output_tokens=100_000)) == Decimal("0.28")
    # A per-request price bills the request whatever the clip's length...
    assert cost_usd(price=per_request, usage=Usage(), units=10, requests=1) == Decimal("0.25")
    # ...and a call that is not the request (a poll, a download) costs nothing.
    assert cost_usd(price=per_request, usage=Usage(), units=0, requests=0) == Decimal(0)
    entry = UsageEntry(
        provider="fal",
        model="per-clip",
        kind="video",
        operation="video.generate",
        units=5,
        requests=1,
    )
    assert record_usage(entry).cost_usd == Decimal("0.25")
