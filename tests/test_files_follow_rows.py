"""Files follow their rows: a deleted take, frame, reference image or drama takes its stored
files with it once the deletion commits, on disk and on S3 (moto); a rollback keeps them, and
a take's replaced video, frames or poster go only when the row names the new ones."""

import hashlib
import logging

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import transaction

from characters import services as character_services
from characters.models import Character, ReferenceImage
from dramas import pipeline_db
from dramas import services as drama_services
from dramas.models import Drama, Frame, Scene, Take
from dramas.sampling import SampledFrame
from studio.files import stored_file_names
from tests import test_media_storage
from tests.factories import (
    create_chapter,
    create_character,
    create_drama,
    create_scene,
    create_take,
    image_bytes,
)

pytestmark = pytest.mark.django_db

# moto's S3 server on loopback with the default storage on it, as tests/test_media_storage.py.
s3 = test_media_storage.s3


@pytest.fixture
def bucket(s3):
    """The media bucket, empty before and after: moto keeps its objects from one server to the
    next in the process, and other tests count what they find there."""
    empty_bucket(s3)
    yield s3
    empty_bucket(s3)


def empty_bucket(client) -> None:
    for key in test_media_storage.stored_keys(client):
        client.delete_object(Bucket=test_media_storage.BUCKET, Key=key)


class Boom(Exception):
    pass


def add_reference(character: Character, shade: int) -> ReferenceImage:
    data = image_bytes(color=(shade, 90, 40), format="JPEG")
    reference = ReferenceImage(
        character=character,
        original_name="face.jpg",
        sha256=hashlib.sha256(data).hexdigest(),
        original_bytes=len(data),
    )
    reference.image.save("face.jpg", ContentFile(data))
    return reference


def take_files(take: Take) -> list[str]:
    return [take.video.name, take.poster.name, *(f.image.name for f in take.frames.all())]


def drama_with_media() -> dict:
    """A drama with two rendered takes in two scenes and a character with two references."""
    drama = create_drama()
    chapter = create_chapter(drama=drama)
    takes = [create_take(scene=create_scene(chapter=chapter)) for _ in range(2)]
    character = create_character(drama=drama)
    references = [add_reference(character, shade) for shade in (10, 20)]
    files = [name for take in takes for name in take_files(take)]
    files += [reference.image.name for reference in references]
    return {"drama": drama, "chapter": chapter, "takes": takes, "files": files}


def stored(names: list[str]) -> list[str]:
    return [name for name in names if default_storage.exists(name)]


# --- On disk -----------------------------------------------------------------------------------


def test_deleting_a_take_deletes_its_video_poster_and_frames_once_it_commits(
    django_capture_on_commit_callbacks, media_root
):
    scene = create_scene(chapter=create_chapter(drama=create_drama()))
    take, other = create_take(scene=scene), create_take(scene=scene)
    files, kept = take_files(take), take_files(other)
    assert len(files) == 3 and stored(files) == files

    with django_capture_on_commit_callbacks(execute=True):
        take.delete()
        assert stored(files) == files  # nothing goes before the commit

    assert stored(files) == []
    assert stored(kept) == kept
    # The take's emptied folder goes too; the drama's, still holding the other take, stays.
    drama_folder = media_root / "takes" / str(scene.chapter.drama_id)
    assert not (drama_folder / str(take.id)).exists()
    assert (drama_folder / str(other.id) / "frames").is_dir()


def test_deleting_a_frame_deletes_only_its_image(django_capture_on_commit_callbacks):
    take = create_take(scene=create_scene(chapter=create_chapter(drama=create_drama())))
    frame = take.frames.get()

    with django_capture_on_commit_callbacks(execute=True):
        frame.delete()

    assert not default_storage.exists(frame.image.name)
    assert stored([take.video.name, take.poster.name]) == [take.video.name, take.poster.name]


def test_deleting_a_reference_image_deletes_its_file(django_capture_on_commit_callbacks):
    character = create_character(drama=create_drama())
    gone, kept = add_reference(character, 10), add_reference(character, 20)

    with django_capture_on_commit_callbacks(execute=True):
        character_services.reference_image_delete(reference=gone)

    assert not default_storage.exists(gone.image.name)
    assert default_storage.exists(kept.image.name)


def test_deleting_a_drama_deletes_every_file_of_its_takes_and_references(
    django_capture_on_commit_callbacks,
):
    doomed, other = drama_with_media(), drama_with_media()
    assert len(doomed["files"]) == 8 and stored(doomed["files"]) == doomed["files"]

    with django_capture_on_commit_callbacks(execute=True):
        drama_services.drama_delete(drama=doomed["drama"])

    assert not Drama.objects.filter(id=doomed["drama"].id).exists()
    assert stored(doomed["files"]) == []
    assert stored_file_names(["takes", "references"]) == sorted(other["files"])


@pytest.mark.parametrize(
    "delete",
    [
        pytest.param(lambda m: drama_services.chapter_delete(chapter=m["chapter"]), id="chapter"),
        pytest.param(lambda m: Scene.objects.filter(chapter=m["chapter"]).delete(), id="scenes"),
        pytest.param(
            lambda m: Take.objects.filter(id__in=[t.id for t in m["takes"]]).delete(), id="takes"
        ),
        pytest.param(lambda m: Frame.objects.filter(take__in=m["takes"]).delete(), id="frames"),
        pytest.param(lambda m: Character.objects.filter(drama=m["drama"]).delete(), id="cast"),
    ],
)
def test_cascades_and_bulk_deletes_take_every_removed_rows_files(
    delete, django_capture_on_commit_callbacks
):
    media = drama_with_media()
    names = {
        "video": {t.video.name for t in media["takes"]},
        "poster": {t.poster.name for t in media["takes"]},
        "frame": set(Frame.objects.filter(take__in=media["takes"]).values_list("image", flat=True)),
        "reference": set(ReferenceImage.objects.values_list("image", flat=True)),
    }

    with django_capture_on_commit_callbacks(execute=True):
        delete(media)

    rows = {
        "video": set(Take.objects.values_list("video", flat=True)),
        "poster": set(Take.objects.values_list("poster", flat=True)),
        "frame": set(Frame.objects.values_list("image", flat=True)),
        "reference": set(ReferenceImage.objects.values_list("image", flat=True)),
    }
    for kind, before in names.items():
        # Exactly the files whose rows went are gone; every remaining row keeps its file.
        assert {n for n in before if default_storage.exists(n)} == before & rows[kind], kind
    assert any(before - rows[kind] for kind, before in names.items())


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_delete_keeps_the_files_and_a_committed_one_deletes_them():
    media = drama_with_media()
    # Model.delete() clears the instance's id even when the transaction rolls back.
    drama_id, take_id = media["drama"].id, media["takes"][0].id

    with pytest.raises(Boom), transaction.atomic():
        drama_services.drama_delete(drama=media["drama"])
        raise Boom
    assert Drama.objects.filter(id=drama_id).exists()
    assert stored(media["files"]) == media["files"]

    # A rolled-back savepoint keeps its rows' files even when the transaction around commits.
    with transaction.atomic(), pytest.raises(Boom), transaction.atomic():
        Take.objects.get(id=take_id).delete()
        raise Boom
    assert stored(media["files"]) == media["files"]

    drama_services.drama_delete(drama=Drama.objects.get(id=drama_id))
    assert stored(media["files"]) == []


def test_a_file_that_cannot_be_deleted_is_logged_and_the_delete_still_succeeds(
    django_capture_on_commit_callbacks, monkeypatch, caplog
):
    take = create_take(scene=create_scene(chapter=create_chapter(drama=create_drama())))
    files = take_files(take)

    def refuse(self, name):
        raise PermissionError(f"read-only: {name}")

    monkeypatch.setattr(FileSystemStorage, "delete", refuse)
    with (
        caplog.at_level(logging.ERROR, logger="studio.files"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        take.delete()

    assert not Take.objects.filter(id=take.id).exists()
    assert stored(files) == files
    assert sorted(r.getMessage() for r in caplog.records) == sorted(
        f"Could not delete the stored file {name}" for name in files
    )


# --- A take's replaced files ------------------------------------------------------------------


def test_replacing_a_takes_video_deletes_only_the_old_one_after_commit(
    django_capture_on_commit_callbacks,
):
    take = create_take(scene=create_scene(chapter=create_chapter(drama=create_drama())))
    old, others = take.video.name, take_files(take)[1:]

    with django_capture_on_commit_callbacks(execute=True):
        pipeline_db.save_video(take_id=take.id, data=b"\x00\x00\x00\x18ftypisom")
        assert default_storage.exists(old)

    take.refresh_from_db()
    assert take.video.name != old and not default_storage.exists(old)
    with take.video.open("rb") as video:
        assert video.read() == b"\x00\x00\x00\x18ftypisom"
    assert stored(others) == others


def test_resampled_frames_replace_the_old_images_after_commit(
    django_capture_on_commit_callbacks, tmp_path
):
    take = create_take(scene=create_scene(chapter=create_chapter(drama=create_drama())))
    [old] = [frame.image.name for frame in take.frames.all()]
    sampled = []
    for index in range(2):
        path = tmp_path / f"{index}.jpg"
        path.write_bytes(image_bytes(format="JPEG"))
        sampled.append(
            SampledFrame(index=index, time_s=index / 2, path=str(path), width=64, height=48)
        )

    with django_capture_on_commit_callbacks(execute=True):
        pipeline_db.save_frames(take_id=take.id, frames=sampled)
        assert default_storage.exists(old)

    new = [frame.image.name for frame in take.frames.all()]
    assert len(new) == 2 and stored(new) == new
    assert not default_storage.exists(old)


def test_a_new_poster_replaces_the_old_one_and_without_frames_the_poster_stays(
    django_capture_on_commit_callbacks,
):
    take = create_take(scene=create_scene(chapter=create_chapter(drama=create_drama())))
    old = take.poster.name

    with django_capture_on_commit_callbacks(execute=True):
        pipeline_db.take_verdict(take_id=take.id, expected=[], unprofiled=[])
    take.refresh_from_db()
    assert take.poster.name != old and default_storage.exists(take.poster.name)
    assert not default_storage.exists(old)

    # No frame to make a poster of: the take keeps the one it has.
    kept = take.poster.name
    with django_capture_on_commit_callbacks(execute=True):
        take.frames.all().delete()
        pipeline_db.take_verdict(take_id=take.id, expected=[], unprofiled=[])
    take.refresh_from_db()
    assert take.poster.name == kept and default_storage.exists(kept)


# --- On S3 -------------------------------------------------------------------------------------


def bucket_names(client) -> list[str]:
    return [key.removeprefix("media/") for key in test_media_storage.stored_keys(client)]


def test_on_s3_deleting_a_take_or_a_drama_deletes_their_objects_after_commit(
    bucket, django_capture_on_commit_callbacks
):
    doomed, other = drama_with_media(), drama_with_media()
    take_id, files = doomed["takes"][0].id, take_files(doomed["takes"][0])
    assert bucket_names(bucket) == sorted(doomed["files"] + other["files"])

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(Boom),
        transaction.atomic(),
    ):
        Take.objects.get(id=take_id).delete()
        raise Boom
    assert bucket_names(bucket) == sorted(doomed["files"] + other["files"])

    with django_capture_on_commit_callbacks(execute=True):
        Take.objects.get(id=take_id).delete()
        assert set(files) <= set(bucket_names(bucket))
    assert not set(files) & set(bucket_names(bucket))

    with django_capture_on_commit_callbacks(execute=True):
        drama_services.drama_delete(drama=doomed["drama"])
    assert bucket_names(bucket) == sorted(other["files"])


def test_on_s3_a_replaced_video_is_deleted_after_commit(bucket, django_capture_on_commit_callbacks):
    take = create_take(scene=create_scene(chapter=create_chapter(drama=create_drama())))
    old = take.video.name

    with django_capture_on_commit_callbacks(execute=True):
        pipeline_db.save_video(take_id=take.id, data=b"\x00\x00\x00\x18ftypisom")
        assert old in bucket_names(bucket)

    take.refresh_from_db()
    assert old not in bucket_names(bucket) and take.video.name in bucket_names(bucket)


# --- Listing what is stored --------------------------------------------------------------------


def listing_checks() -> None:
    names = [
        "takes/1/2/video-aa.mp4",
        "takes/1/2/frames/000-bb.jpg",
        "takes/3/4/poster-cc.jpg",
        "references/5/abc.jpg",
        "elsewhere/kept-out.txt",
    ]
    for name in names:
        default_storage.save(name, ContentFile(b"x"))

    assert stored_file_names(["takes", "references/"]) == sorted(names[:4])
    assert stored_file_names(["takes/1"]) == sorted(names[:2])
    assert stored_file_names(["never-used"]) == []


def test_it_lists_the_stored_file_names_under_prefixes_on_disk():
    listing_checks()


def test_it_lists_the_stored_file_names_under_prefixes_on_s3(bucket):
    listing_checks()


def test_deleting_a_drama_deletes_its_keyframes_images(django_capture_on_commit_callbacks):
    from dramas.models import Keyframe
    from tests.factories import create_keyframes

    doomed, other = drama_with_media(), drama_with_media()
    for world in (doomed, other):
        create_keyframes(scene=Scene.objects.filter(chapter__drama=world["drama"]).first())
    mine = sorted(
        k.image.name for k in Keyframe.objects.filter(scene__chapter__drama=doomed["drama"])
    )
    theirs = sorted(
        k.image.name for k in Keyframe.objects.filter(scene__chapter__drama=other["drama"])
    )
    assert len(mine) == 3 and stored(mine) == mine

    with django_capture_on_commit_callbacks(execute=True):
        drama_services.drama_delete(drama=doomed["drama"])

    assert stored(mine) == []
    assert stored_file_names(["keyframes"]) == theirs
