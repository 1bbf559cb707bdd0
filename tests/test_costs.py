"""Cost aggregates, what-if pricing, budgets: against ledgers computed by hand."""

import datetime
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from dramas.costs import drama_spend
from dramas.models import Role
from studio import costs
from studio.models import Price, UsageRecord
from tests.conftest import login
from tests.factories import add_member, create_drama, create_usage, create_user

D1 = timezone.make_aware(datetime.datetime(2026, 3, 1, 10, 0))
D2 = timezone.make_aware(datetime.datetime(2026, 3, 3, 9, 0))


@pytest.fixture
def ledger(db, published_prices):
    """Drama A: three DeepSeek calls (one failed), a video, an unpriced self-hosted call.
    Drama B: one GPT-4.1 call."""
    a = create_drama(title="A", budget_usd=Decimal("10"))
    b = create_drama(title="B")
    ds = dict(provider="deepseek", model="deepseek-chat", drama=a)
    create_usage(
        **ds,
        input_tokens=1000,
        cached_tokens=200,
        output_tokens=500,
        cost_usd="0.01",
        latency_ms=100,
        created_at=D1,
    )
    create_usage(
        **ds,
        operation="chat.stream",
        input_tokens=2000,
        output_tokens=1000,
        cost_usd="0.02",
        latency_ms=300,
        created_at=D1,
    )
    create_usage(**ds, ok=False, error="HTTP 503", cost_usd="0", latency_ms=50, created_at=D2)
    create_usage(
        provider="runway",
        model="gen4_turbo",
        operation="video.generate",
        drama=a,
        units=Decimal("5"),
        cost_usd="0.25",
        latency_ms=2000,
        created_at=D2,
    )
    create_usage(
        provider="self-hosted",
        model="my-llm",
        drama=a,
        input_tokens=100,
        output_tokens=10,
        cost_usd=None,
        latency_ms=80,
        created_at=D2,
    )
    create_usage(
        provider="openai",
        model="gpt-4.1",
        drama=b,
        input_tokens=500,
        output_tokens=100,
        cost_usd="0.0018",
        latency_ms=400,
        created_at=D1,
    )
    return {"a": a, "b": b}


def by_key(rows):
    return {tuple(t.key.values()): t for t in rows}


def test_it_totals_per_provider_with_failures_and_percentiles(ledger):
    rows = by_key(costs.totals(usage=UsageRecord.objects.all(), by="provider"))
    deepseek = rows[("deepseek",)]
    assert (deepseek.calls, deepseek.failures) == (3, 1)
    assert (deepseek.input_tokens, deepseek.cached_tokens, deepseek.output_tokens) == (
        3000,
        200,
        1500,
    )
    assert deepseek.cost_usd == Decimal("0.03")
    assert deepseek.unpriced == 0
    assert deepseek.failure_rate == pytest.approx(1 / 3)
    # Nearest rank over [50, 100, 300]: p50 is the 2nd, p95 the 3rd.
    assert (deepseek.p50_ms, deepseek.p95_ms) == (100, 300)


def test_it_counts_unpriced_calls_apart_never_as_zero(ledger):
    rows = by_key(costs.totals(usage=UsageRecord.objects.all(), by="model"))
    unpriced = rows[("self-hosted", "my-llm")]
    assert unpriced.cost_usd is None
    assert unpriced.unpriced == 1
    drama_a = by_key(costs.totals(usage=UsageRecord.objects.all(), by="drama"))[(ledger["a"].id,)]
    assert drama_a.cost_usd == Decimal("0.28")  # the priced calls only
    assert drama_a.unpriced == 1
    assert drama_a.seconds == Decimal("5")
    assert (drama_a.calls, drama_a.failures) == (5, 1)
    # [50, 80, 100, 300, 2000]: p50 = 3rd, p95 = 5th.
    assert (drama_a.p50_ms, drama_a.p95_ms) == (100, 2000)


def test_it_totals_per_day_and_overall(ledger):
    days = by_key(costs.totals(usage=UsageRecord.objects.all(), by="day"))
    assert set(days) == {(D1.date(),), (D2.date(),)}
    assert days[(D1.date(),)].cost_usd == Decimal("0.0318")
    assert days[(D2.date(),)].cost_usd == Decimal("0.25")
    assert days[(D2.date(),)].unpriced == 1
    overall = costs.overall(usage=UsageRecord.objects.all())
    assert (overall.calls, overall.failures, overall.unpriced) == (6, 1, 1)
    assert overall.cost_usd == Decimal("0.2818")
    # [50, 80, 100, 300, 400, 2000]: p50 = 3rd, p95 = 6th.
    assert (overall.p50_ms, overall.p95_ms) == (100, 2000)


def test_it_takes_percentiles_by_nearest_rank(db):
    for latency in range(10, 201, 10):  # 20 calls: 10 .. 200 ms
        create_usage(latency_ms=latency, cost_usd="0")
    create_usage(latency_ms=None, cost_usd="0")  # no latency: not in the percentiles
    overall = costs.overall(usage=UsageRecord.objects.all())
    assert (overall.p50_ms, overall.p95_ms) == (100, 190)


def test_an_empty_selection_has_no_figures(db):
    overall = costs.overall(usage=UsageRecord.objects.all())
    assert (overall.calls, overall.cost_usd, overall.p50_ms, overall.failure_rate) == (
        0,
        None,
        None,
        None,
    )
    assert costs.what_if(usage=UsageRecord.objects.all()) == []
    assert costs.spend_chart(days=[]).bars == []


def test_the_chart_has_a_bar_per_day_including_quiet_days(ledger):
    chart = costs.spend_chart(days=costs.totals(usage=UsageRecord.objects.all(), by="day"))
    assert [bar["day"].day for bar in chart.bars] == [1, 2, 3]
    tallest = max(chart.bars, key=lambda bar: bar["h"])
    assert tallest["day"] == D2.date() and tallest["y"] == pytest.approx(4.0)
    assert chart.bars[1]["h"] == 0 and chart.bars[1]["calls"] == 0
    assert chart.total_usd == Decimal("0.2818")


@pytest.fixture
def acme_prices(db):
    old = Price.objects.create(
        provider="acme",
        model="a1",
        kind="chat",
        source="test",
        input_per_mtok=Decimal("2"),
        cached_input_per_mtok=Decimal("0.5"),
        output_per_mtok=Decimal("8"),
        effective_date=datetime.date(2025, 1, 1),
    )
    new = Price.objects.create(
        provider="acme",
        model="a1",
        kind="chat",
        source="test",
        input_per_mtok=Decimal("1"),
        cached_input_per_mtok=None,
        output_per_mtok=Decimal("4"),
        effective_date=datetime.date(2026, 6, 1),
    )
    Price.objects.create(
        provider="acme",
        model="out-only",
        kind="chat",
        source="test",
        output_per_mtok=Decimal("5"),
        effective_date=datetime.date(2025, 1, 1),
    )
    Price.objects.create(
        provider="acme",
        model="v1",
        kind="video",
        source="test",
        per_second=Decimal("0.1"),
        effective_date=datetime.date(2025, 1, 1),
    )
    return {"old": old, "new": new}


def options(groups, kind):
    group = next(g for g in groups if g.kind == kind)
    return group, {(o.provider, o.model): o for o in group.options}


def test_what_if_prices_input_cached_and_output_apart(ledger, acme_prices):
    deepseek = UsageRecord.objects.filter(provider="deepseek")  # 2800 + 200 cached in, 1500 out
    group, found = options(costs.what_if(usage=deepseek, when=datetime.date(2026, 1, 1)), "chat")
    assert (group.uncached_tokens, group.cached_tokens, group.output_tokens) == (2800, 200, 1500)
    assert group.actual_usd == Decimal("0.03")
    # 2800 x $2 + 200 x $0.5 + 1500 x $8 per million
    assert found[("acme", "a1")].cost_usd == Decimal("0.0177")
    assert found[("acme", "a1")].price == acme_prices["old"]
    assert found[("acme", "out-only")].cost_usd is None  # lacks the input rate it needs
    assert found[("deepseek", "deepseek-chat")].actual
    assert {
        ("openai", "gpt-4.1"),
        ("anthropic", "claude-sonnet-4-5"),
        ("google", "gemini-2.5-flash"),
    } <= set(found)


def test_what_if_uses_the_price_in_force_and_input_for_missing_cached(ledger, acme_prices):
    deepseek = UsageRecord.objects.filter(provider="deepseek")
    _, found = options(costs.what_if(usage=deepseek, when=datetime.date(2026, 7, 1)), "chat")
    # No cached price: 200 cached tokens at the $1 input rate. 2800 + 200 + 1500 x 4
    assert found[("acme", "a1")].cost_usd == Decimal("0.009")
    assert found[("acme", "a1")].price == acme_prices["new"]


def test_what_if_compares_video_seconds_on_video_models_only(ledger, acme_prices):
    groups = costs.what_if(usage=UsageRecord.objects.all(), when=datetime.date(2026, 1, 1))
    group, found = options(groups, "video")
    assert group.seconds == Decimal("5")
    assert found[("acme", "v1")].cost_usd == Decimal("0.5")
    assert ("acme", "a1") not in found
    chat, _ = options(groups, "chat")
    assert chat.calls == 5 and chat.unpriced == 1


def test_csv_cells_cannot_become_formulas():
    assert costs._cell('=HYPERLINK("x")') == '\'=HYPERLINK("x")'
    assert costs._cell("-0.5") == "-0.5"
    assert costs._cell(None) == ""


# --- Budgets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "budget, warning, over, percent",
    [
        ("1.00", False, False, 28),
        ("0.35", True, False, 80),
        ("0.30", True, False, 93),
        ("0.25", True, True, 100),
    ],
)
def test_spend_warns_from_80_percent_of_the_budget(ledger, budget, warning, over, percent):
    drama = ledger["a"]
    drama.budget_usd = Decimal(budget)
    spend = drama_spend(drama=drama)
    assert spend.spent_usd == Decimal("0.28")
    assert spend.unpriced_calls == 1
    assert (spend.warning, spend.over, spend.percent) == (warning, over, percent)


def test_a_drama_without_usage_has_spent_nothing(db):
    spend = drama_spend(drama=create_drama())
    assert (spend.spent_usd, spend.warning, spend.percent, spend.unpriced_calls) == (0, False, 0, 0)


def test_the_producer_sees_the_drama_costs_page(ledger):
    drama = ledger["a"]
    drama.budget_usd = Decimal("0.30")
    drama.save()
    producer = drama.memberships.get(role=Role.PRODUCER).user
    response = login(producer).get(reverse("drama_costs", args=[drama.id]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "93 % of the budget is spent" in html
    assert "deepseek-chat" in html and "gen4_turbo" in html
    assert "1 call without a price" in html
    assert "gpt-4.1" not in html  # drama B's usage


def test_only_producers_see_a_dramas_costs(ledger):
    drama = ledger["a"]
    url = reverse("drama_costs", args=[drama.id])
    for role in (Role.EDITOR, Role.VIEWER):
        assert login(add_member(drama=drama, role=role)).get(url).status_code == 403
    producer_of_b = ledger["b"].memberships.get(role=Role.PRODUCER).user
    assert login(producer_of_b).get(url).status_code == 404
    assert login(create_user(is_staff=True)).get(url).status_code == 404


def test_dashboard_and_board_show_the_spend_bar_to_producers_only(ledger):
    drama = ledger["a"]
    producer = drama.memberships.get(role=Role.PRODUCER).user
    editor = add_member(drama=drama, role=Role.EDITOR)
    for user, shown in ((producer, True), (editor, False)):
        client = login(user)
        for url in (reverse("dashboard"), reverse("drama_board", args=[drama.id])):
            html = client.get(url).content.decode()
            assert ('aria-label="Budget spent"' in html) is shown, (user, url)
            assert ("$0.28 of $10.00" in html) is shown


def test_totals_equal_the_sum_of_the_listed_rows_to_the_last_place(db):
    # SQLite keeps the unrounded value it is given; each row reads back at 10 places.
    for cost in ("0.12345678904", "0.12345678904", "0.12345678904", "0.1", "0.2"):
        create_usage(cost_usd=cost)
    listed = sum((r.cost_usd for r in UsageRecord.objects.all()), Decimal(0))
    assert listed == Decimal("0.6703703670")
    assert costs.overall(usage=UsageRecord.objects.all()).cost_usd == listed
