"""Media on S3-compatible object storage (MEDIA_STORAGE=s3, django-storages), against moto's
S3 server on loopback: uploads, the whole take pipeline and the streaming views work with no
media on local disk, and the local working copies of a finished take are dropped."""

import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse
from moto.server import ThreadedMotoServer

from dramas.models import Take, TakeStatus, Verdict
from dramas.takes import take_enqueue
from studio.media import local_path
from tests.conftest import login
from tests.render_support import offline_video, running, seed_prices, two_person_drama, wait_for
from tests.studio_process import REPO, free_port

pytestmark = pytest.mark.django_db(transaction=True)
BUCKET = "studio-media"


@pytest.fixture
def s3(settings, tmp_path, monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": endpoint,
                "region_name": "us-east-1",
                "location": "media",
                "default_acl": "private",
                "file_overwrite": False,
            },
        },
    }
    settings.MEDIA_CACHE_DIR = tmp_path / "media-cache"
    yield client
    server.stop()


def stored_keys(client) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def local_files(folder) -> list:
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


async def test_takes_render_and_stream_with_media_only_in_object_storage(s3, settings, tmp_path):
    offline_video(settings, tmp_path)
    await sync_to_async(seed_prices)()
    drama, _chapter, cast = await sync_to_async(two_person_drama)()
    references = [key for key in stored_keys(s3) if key.startswith("media/references/")]
    assert len(references) == 2  # the portraits went to the bucket

    takes = await sync_to_async(take_enqueue)(drama=drama, scenes=[cast["first"]])
    async with running():

        async def finished():
            take = await Take.objects.aget(id=takes[0].id)
            return not take.active and take

        take = await wait_for(finished, timeout=90)

    assert take.status == TakeStatus.DONE, (take.error, take.note)
    assert take.verdict == Verdict.ACCEPT and take.score >= drama.consistency_threshold
    keys = stored_keys(s3)
    frames = [f async for f in take.frames.all()]
    assert frames and all(f.score is not None for f in frames if not f.scores.get("skipped"))
    assert f"media/{take.video.name}" in keys and f"media/{take.poster.name}" in keys
    assert {f"media/{f.image.name}" for f in frames} <= set(keys)
    # Nothing of the take on local disk: MEDIA_ROOT is empty, and the working copies of the
    # video and frames went when the take finished (the copies of references and of line audio
    # stay, for the next takes to reuse).
    assert local_files(settings.MEDIA_ROOT) == []
    cached = local_files(settings.MEDIA_CACHE_DIR)
    assert cached and all({"references", "line_audio"} & set(path.parts) for path in cached)
    assert any(key.startswith("media/line_audio/") for key in keys)

    # The membership-checked view streams the video from the bucket.
    client = await sync_to_async(login)(drama.created_by)
    url = reverse("take_video", kwargs={"drama_id": drama.id, "take_id": take.id})
    response = await sync_to_async(client.get)(url)
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    stored = s3.get_object(Bucket=BUCKET, Key=f"media/{take.video.name}")["Body"].read()
    assert body == stored and body[4:8] == b"ftyp"


def test_a_working_copy_is_downloaded_once_and_names_are_never_reused(s3, settings):
    from tests.factories import create_chapter, create_drama, create_scene, create_take

    scene = create_scene(chapter=create_chapter(drama=create_drama()))
    first, second = create_take(scene=scene), create_take(scene=scene)
    # The same upload name twice gets two storage names: a re-render never overwrites.
    assert first.video.name != second.video.name
    path = local_path(first.video)
    with first.video.open("rb") as stored:
        assert Path(path).read_bytes() == stored.read()
    s3.delete_object(Bucket=BUCKET, Key=f"media/{first.video.name}")
    assert local_path(first.video) == path  # served from the copy, not downloaded again


def test_s3_settings_come_from_the_environment():
    script = (
        "import django; django.setup(); from django.conf import settings; "
        "options = settings.STORAGES['default']['OPTIONS']; "
        "print(settings.STORAGES['default']['BACKEND'], options['bucket_name'], "
        "options['endpoint_url'], options['location'], options['file_overwrite'])"
    )
    env = {
        "DJANGO_SETTINGS_MODULE": "studio.settings",
        "MEDIA_STORAGE": "s3",
        "S3_BUCKET": "drama-media",
        "S3_ENDPOINT_URL": "https://s3.example.test",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.stdout.split() == [
        "storages.backends.s3.S3Storage",
        "drama-media",
        "https://s3.example.test",
        "media",
        "False",
    ], out.stderr
    missing = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**env, "S3_BUCKET": ""},
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0 and "MEDIA_STORAGE=s3 needs S3_BUCKET" in missing.stderr
