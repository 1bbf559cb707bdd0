"""`manage.py render_chapter CHAPTER_ID --wait --json` with no worker running: it renders the
chapter in its own process and prints every take done, with scores."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.factories import create_chapter, create_drama, create_scene

REPO = Path(__file__).resolve().parent.parent

SETUP = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from tests.render_support import two_person_drama
drama, chapter, cast = two_person_drama(seconds=2)
print(chapter.id)
"""


def test_it_renders_a_chapter_in_process_and_prints_json(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'studio.sqlite3'}",
        STUDIO_VAR_DIR=str(tmp_path / "var"),
        DJANGO_SETTINGS_MODULE="studio.settings",
        VIDEO_BASE_URL="",
        ANIMATIC_PRESET="ultrafast",
    )
    setup = subprocess.run(
        [sys.executable, "-c", SETUP],
        cwd=REPO,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    chapter_id = setup.stdout.strip().splitlines()[-1]
    result = subprocess.run(
        [sys.executable, "manage.py", "render_chapter", chapter_id, "--wait", "--json"],
        cwd=REPO,
        env=env,
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rendering in this process" in result.stderr
    takes = json.loads(result.stdout.strip().splitlines()[-1])["takes"]
    assert len(takes) == 2
    for take in takes:
        assert set(take) == {"id", "scene", "status", "verdict", "score", "frames", "cost_usd"}
        assert take["status"] == "done" and take["verdict"] == "accept"
        assert take["score"] >= 65 and take["frames"] == 4  # 5 sampled, the title card unscored
        assert take["cost_usd"] == 0.0


@pytest.mark.django_db
def test_it_names_a_missing_chapter_and_refuses_over_budget(settings):
    from decimal import Decimal

    from studio.models import Price

    with pytest.raises(CommandError, match="There is no chapter 999999"):
        call_command("render_chapter", "999999")
    settings.PROVIDER_VIDEO = {**settings.PROVIDER_VIDEO, "base_url": ""}
    Price.objects.update_or_create(
        provider="local",
        model="animatic",
        kind="video",
        defaults={"per_second": Decimal("5"), "effective_date": "2000-01-01"},
    )
    drama = create_drama(budget_usd=Decimal("1.00"))
    chapter = create_chapter(drama=drama)
    create_scene(chapter=chapter, duration_s=2)
    with pytest.raises(CommandError, match=r"would cost about \$10.00"):
        call_command("render_chapter", str(chapter.id))
