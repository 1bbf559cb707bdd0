"""The admin's cost review: changelist, summary, chart, CSV; staff only."""

import csv
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from tests.conftest import login
from tests.factories import create_drama, create_usage, create_user

SUMMARY = "admin:studio_usagerecord_summary"
EXPORT = "admin:studio_usagerecord_export"
CHANGELIST = "admin:studio_usagerecord_changelist"


@pytest.fixture
def ledger(db, published_prices):
    drama = create_drama(title="Neon Vows")
    create_usage(
        drama=drama,
        input_tokens=1000,
        cached_tokens=100,
        output_tokens=50,
        cost_usd="0.001",
        latency_ms=120,
        request_id="req-1",
    )
    create_usage(
        drama=drama,
        ok=False,
        error="=cmd|' /C calc'!A0",
        cost_usd="0",
        latency_ms=30,
        request_id="req-2",
    )
    create_usage(
        provider="self-hosted",
        model="my-llm",
        input_tokens=10,
        cost_usd=None,
        latency_ms=60,
        request_id="req-3",
    )
    create_usage(
        provider="runway",
        model="gen4_turbo",
        operation="video.generate",
        drama=drama,
        units=Decimal("5"),
        cost_usd="0.25",
        latency_ms=900,
    )
    return drama


@pytest.fixture
def staff(db):
    user = create_user(is_staff=True)
    user.is_superuser = True
    user.save()
    return login(user)


def read_csv(response) -> list[dict]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_the_changelist_filters_and_searches(ledger, staff):
    url = reverse(CHANGELIST)
    page = staff.get(url).content.decode()
    assert "Cost summary" in page and "Export CSV" in page
    assert f"#{ledger.id} Neon Vows" in page  # the drama filter names dramas
    assert staff.get(url, {"q": "req-3"}).context["cl"].result_count == 1
    assert staff.get(url, {"outcome": "failed"}).context["cl"].result_count == 1
    assert staff.get(url, {"drama_id": "none"}).context["cl"].result_count == 1
    assert staff.get(url, {"drama_id": str(ledger.id)}).context["cl"].result_count == 3
    assert staff.get(url, {"operation": "video.generate"}).context["cl"].result_count == 1


def test_the_summary_shows_totals_chart_and_what_if(ledger, staff):
    response = staff.get(reverse(SUMMARY))
    assert response.status_code == 200
    overall = response.context["overall"]
    assert (overall.calls, overall.failures, overall.unpriced) == (4, 1, 1)
    assert overall.cost_usd == Decimal("0.251")
    html = response.content.decode()
    assert "<svg" in html and html.count('class="bar"') == 1  # one day of usage
    assert "Neon Vows" in html and "No drama" in html
    assert "claude-sonnet-4-5" in html and "gemini-2.5-flash" in html  # what-if options
    assert "unknown" in html  # the self-hosted model's cost


def test_the_summary_covers_the_changelist_filters(ledger, staff):
    response = staff.get(reverse(SUMMARY), {"provider": "runway"})
    overall = response.context["overall"]
    assert (overall.calls, overall.cost_usd, overall.seconds) == (1, Decimal("0.25"), 5)
    assert [g.kind for g in response.context["what_if"]] == ["video"]


def test_the_csv_export_has_the_filtered_rows(ledger, staff):
    rows = read_csv(staff.get(reverse(EXPORT), {"provider": "deepseek"}))
    assert [row["request_id"] for row in rows] == ["req-1", "req-2"]
    first = rows[0]
    assert (first["input_tokens"], first["cached_tokens"], first["output_tokens"]) == (
        "1000",
        "100",
        "50",
    )
    assert Decimal(first["cost_usd"]) == Decimal("0.001")
    assert first["drama_id"] == str(ledger.id) and first["ok"] == "True"
    assert rows[1]["error"].startswith("'=")  # no formula injection into spreadsheets
    everything = read_csv(staff.get(reverse(EXPORT)))
    unpriced = next(row for row in everything if row["request_id"] == "req-3")
    assert unpriced["cost_usd"] == ""  # unknown, not 0


def test_non_staff_cannot_reach_the_admin(ledger):
    member = login(ledger.memberships.get().user)
    for name in (SUMMARY, EXPORT, CHANGELIST):
        response = member.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_staff_need_the_view_permission(ledger):
    user = create_user(is_staff=True)
    client = login(user)
    assert client.get(reverse(SUMMARY)).status_code == 403
    assert client.get(reverse(EXPORT)).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_usagerecord"))
    assert client.get(reverse(SUMMARY)).status_code == 200


def test_an_unknown_filter_is_refused_not_a_crash(ledger, staff):
    assert staff.get(reverse(SUMMARY), {"no_such_field__gt": "1"}).status_code == 400
