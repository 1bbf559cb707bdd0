"""A deleted take or frame takes its stored files with it, once the deletion commits
(studio.files). Receivers see every row a cascade or a bulk QuerySet.delete() removes: with
them connected, Django collects such rows one by one instead of deleting them in bulk SQL."""

from django.db.models.signals import post_delete
from django.dispatch import receiver

from dramas.models import Frame, Keyframe, LineAudio, Take
from studio.files import delete_after_commit

# Takes store under takes/<drama_id>/<take_id>/: a take's emptied folder goes too, its drama's
# stays (other takes of the drama may be saving into it right now).
TAKE_FOLDER_DEPTH = 3


@receiver(post_delete, sender=Take, dispatch_uid="dramas.take_files")
def take_files(sender, instance: Take, using: str, **kwargs) -> None:
    delete_after_commit(
        [instance.video, instance.unsynced_video, instance.poster],
        using=using,
        prune_depth=TAKE_FOLDER_DEPTH,
    )


@receiver(post_delete, sender=Frame, dispatch_uid="dramas.frame_files")
def frame_files(sender, instance: Frame, using: str, **kwargs) -> None:
    delete_after_commit([instance.image], using=using, prune_depth=TAKE_FOLDER_DEPTH)


@receiver(post_delete, sender=LineAudio, dispatch_uid="dramas.line_audio_files")
def line_audio_files(sender, instance: LineAudio, using: str, **kwargs) -> None:
    delete_after_commit([instance.audio], using=using)


@receiver(post_delete, sender=Keyframe, dispatch_uid="dramas.keyframe_files")
def keyframe_files(sender, instance: Keyframe, using: str, **kwargs) -> None:
    # Stored under keyframes/<drama_id>/<scene_id>/: the scene's emptied folder goes too.
    delete_after_commit([instance.image], using=using, prune_depth=TAKE_FOLDER_DEPTH)
