"""Seed the price table with published prices (USD), each with its source and date.

Figures from the vendors' pricing pages as collected in the project's pricing notes. Where only a
year is known the date is 1 January of that year and the source says so. Prices change often:
edit them in the admin (add a row with a later effective date) rather than here.
Local providers (offline writer, animatic) are priced 0 explicitly, so their cost is a known 0.
"""

import datetime
from decimal import Decimal

from django.db import migrations

YEAR_ONLY = "; published in {year}, day not stated (dated 1 January)"

CHAT = [
    # provider, model, input, cached input, output, date, source
    (
        "deepseek",
        "deepseek-chat",
        "0.28",
        "0.028",
        "0.42",
        "2025-12-01",
        "DeepSeek API pricing page (deepseek-chat = V3.2), as of 2025-12",
    ),
    (
        "openai",
        "gpt-4.1",
        "2.00",
        "0.50",
        "8.00",
        "2025-01-01",
        "OpenAI pricing page" + YEAR_ONLY.format(year=2025),
    ),
    (
        "openai",
        "gpt-5",
        "1.25",
        "0.125",
        "10.00",
        "2025-01-01",
        "OpenAI pricing page" + YEAR_ONLY.format(year=2025),
    ),
    (
        "anthropic",
        "claude-sonnet-4-5",
        "3.00",
        "0.30",
        "15.00",
        "2025-01-01",
        "Anthropic pricing page" + YEAR_ONLY.format(year=2025),
    ),
    # Google lists no cached-input price here: cached tokens are priced as input.
    (
        "google",
        "gemini-2.5-flash",
        "0.30",
        None,
        "2.50",
        "2025-01-01",
        "Gemini API pricing page" + YEAR_ONLY.format(year=2025),
    ),
    (
        "google",
        "gemini-2.5-pro",
        "1.25",
        None,
        "10.00",
        "2025-01-01",
        "Gemini API pricing page, prompts <= 200k tokens" + YEAR_ONLY.format(year=2025),
    ),
    (
        "local",
        "offline-draft",
        "0",
        "0",
        "0",
        "2000-01-01",
        "Offline draft writer runs on this machine: no charge",
    ),
]

VIDEO = [
    # provider, model, per second, date, source
    ("openai", "sora-2", "0.10", "2025-10-01", "OpenAI pricing page, 720p, as of 2025-10"),
    ("openai", "sora-2-pro", "0.30", "2025-10-01", "OpenAI pricing page, 720p, as of 2025-10"),
    ("google", "veo-3.1", "0.40", "2025-10-01", "Gemini API pricing page, as of 2025-10"),
    ("google", "veo-3.1-fast", "0.15", "2025-10-01", "Gemini API pricing page, as of 2025-10"),
    (
        "runway",
        "gen4_turbo",
        "0.05",
        "2025-01-01",
        "Runway API docs: 5 credits/s at $0.01 per credit" + YEAR_ONLY.format(year=2025),
    ),
    ("local", "animatic", "0", "2000-01-01", "Offline animatic renders on this machine: no charge"),
]


def _decimal(value):
    return None if value is None else Decimal(value)


def seed(apps, schema_editor):
    Price = apps.get_model("studio", "Price")
    for provider, model, input_, cached, output, day, source in CHAT:
        Price.objects.update_or_create(
            provider=provider,
            model=model,
            kind="chat",
            effective_date=datetime.date.fromisoformat(day),
            defaults=dict(
                input_per_mtok=_decimal(input_),
                cached_input_per_mtok=_decimal(cached),
                output_per_mtok=_decimal(output),
                source=source,
            ),
        )
    for provider, model, per_second, day, source in VIDEO:
        Price.objects.update_or_create(
            provider=provider,
            model=model,
            kind="video",
            effective_date=datetime.date.fromisoformat(day),
            defaults=dict(per_second=_decimal(per_second), source=source),
        )


def unseed(apps, schema_editor):
    Price = apps.get_model("studio", "Price")
    # Only the seeded rows: prices added later in the admin stay.
    for kind, rows in (("chat", CHAT), ("video", VIDEO)):
        for provider, model, *_rest, day, _source in rows:
            Price.objects.filter(
                provider=provider, model=model, kind=kind, effective_date=day
            ).delete()


class Migration(migrations.Migration):
    dependencies = [("studio", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
