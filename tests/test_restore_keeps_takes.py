"""The producer's scenario from the issue, end to end with real renders: render the chapter,
approve take 1, restore version 1 (the very script the chapter has): every take stays, with
its video, and the studio's own check finds nothing wrong."""

import io
import json

import av
import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.urls import reverse

from dramas import services
from dramas.models import Take, TakeStatus
from dramas.takes import take_enqueue
from studio.media import local_path
from tests.conftest import login
from tests.render_support import offline_video, running, two_person_drama, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def offline(settings, tmp_path, transactional_db):
    offline_video(settings, tmp_path)


def decoded_frames(take: Take) -> int:
    with av.open(local_path(take.video)) as container:
        return sum(1 for _ in container.decode(video=0))


async def test_render_approve_and_restore_the_same_version_keeps_every_take(producer):
    drama, chapter, cast = await sync_to_async(two_person_drama)(owner=producer)
    version = await sync_to_async(services.chapter_version_save)(chapter=chapter, user=producer)
    takes = await sync_to_async(take_enqueue)(drama=drama, scenes=[cast["first"], cast["second"]])

    ids = [take.id for take in takes]

    async def all_done():
        return all([t.status == TakeStatus.DONE async for t in Take.objects.filter(id__in=ids)])

    async with running():
        await wait_for(all_done, timeout=90)

    def restore_through_the_pages():
        client = login(producer)
        first = Take.objects.get(id=takes[0].id)
        approve = reverse("take_review_action", args=[drama.id, first.id])
        assert client.post(approve, {"action": "approve"}).status_code == 302
        url = reverse("chapter_version_restore", args=[drama.id, chapter.id, version.id])
        assert client.post(url).status_code == 302
        return client

    client = await sync_to_async(restore_through_the_pages)()

    for take in takes:
        kept = await Take.objects.aget(id=take.id)
        assert kept.status == TakeStatus.DONE
        assert await sync_to_async(decoded_frames)(kept) > 0
        page = await sync_to_async(client.get)(reverse("take_review", args=[drama.id, kept.id]))
        assert page.status_code == 200
    assert (await Take.objects.aget(id=takes[0].id)).locked
    assert await sync_to_async(lambda: chapter.scenes.count())() == 2
    assert (await sync_to_async(doctor_summary)())["problems"] == 0


def doctor_summary() -> dict:
    out = io.StringIO()
    call_command("studio_doctor", "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])
