"""`manage.py render_chapter ID --wait --json` with VIDEO_API set to each wire format and
VIDEO_BASE_URL at the provider simulator: every take done, scored, and billed in the vendor's
unit (tokens for Seedance on Ark, seconds on fal and /v1/videos, nothing on a self-hosted
ComfyUI)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.providers.sim.server import simulator_thread
from studio.providers.sim.state import SimConfig

REPO = Path(__file__).resolve().parent.parent

# A two-scene chapter, and the price of the chosen model in its vendor's unit.
SETUP = """
import sys
import django
django.setup()
from decimal import Decimal
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.conf import settings
from django.utils import timezone
from studio.models import Price
from studio.providers import registry
from tests.render_support import two_person_drama
video = registry.video()
unit = sys.argv[1]
rates = {"token": {"output_per_mtok": Decimal("2.8")}, "second": {"per_second": Decimal("0.1")}}
if unit in rates:
    Price.objects.update_or_create(
        provider=video.name, model=video.model, kind="video",
        effective_date=timezone.now().date(), defaults={"source": "test", **rates[unit]},
    )
drama, chapter, cast = two_person_drama(seconds=2)
print(chapter.id)
"""

APIS = [
    # VIDEO_API, VIDEO_PROVIDER (the name prices are looked up by), billed unit
    ("ark", "byteplus", "token"),
    ("fal", "fal", "second"),
    ("comfyui", "self-hosted", "free"),
    ("openai_videos", "openai", "second"),
]


@pytest.fixture(scope="module")
def simulator():
    with simulator_thread(SimConfig(job_s=0.3, video_max_side=320)) as sim:
        yield sim


@pytest.mark.parametrize(("api", "provider", "unit"), APIS)
def test_a_chapter_renders_through_each_wire_format(simulator, tmp_path, api, provider, unit):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'studio.sqlite3'}",
        STUDIO_VAR_DIR=str(tmp_path / "var"),
        DJANGO_SETTINGS_MODULE="studio.settings",
        VIDEO_API=api,
        VIDEO_BASE_URL=f"{simulator.url}/{api}",
        VIDEO_PROVIDER=provider,
        VIDEO_API_KEY="" if api == "comfyui" else "sim-key",
        VIDEO_POLL_S="0.1",
    )
    env.pop("VIDEO_MODEL", None)  # each wire format's default model
    run = dict(cwd=REPO, env=env, capture_output=True, text=True)
    setup = subprocess.run([sys.executable, "-c", SETUP, unit], timeout=90, **run)
    assert setup.returncode == 0, setup.stderr[-2000:]
    chapter_id = setup.stdout.strip().splitlines()[-1]

    result = subprocess.run(
        [sys.executable, "manage.py", "render_chapter", chapter_id, "--wait", "--json"],
        timeout=240,
        **run,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    takes = json.loads(result.stdout.strip().splitlines()[-1])["takes"]
    assert len(takes) == 2
    for take in takes:
        assert take["status"] == "done" and take["verdict"] == "accept", take
        assert take["score"] >= 65 and take["frames"] >= 3
        if unit == "free":
            assert take["cost_usd"] in (None, 0.0)  # self-hosted: no price, or a 0 one
        else:
            assert take["cost_usd"] and take["cost_usd"] > 0, take
