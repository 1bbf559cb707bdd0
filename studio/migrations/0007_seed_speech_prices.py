"""The offline voice's price: espeak-ng speaks on this machine, for nothing. Remote speech
services are priced by their producers in the admin (per million characters)."""

import datetime
from decimal import Decimal

from django.db import migrations

DAY = datetime.date(2000, 1, 1)


def seed(apps, schema_editor):
    Price = apps.get_model("studio", "Price")
    Price.objects.update_or_create(
        provider="local",
        model="espeak-ng",
        kind="speech",
        effective_date=DAY,
        defaults=dict(
            per_mchar=Decimal(0), source="Offline espeak-ng voice on this machine: no charge"
        ),
    )


def unseed(apps, schema_editor):
    Price = apps.get_model("studio", "Price")
    Price.objects.filter(
        provider="local", model="espeak-ng", kind="speech", effective_date=DAY
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("studio", "0006_speech_prices")]

    operations = [migrations.RunPython(seed, unseed)]
