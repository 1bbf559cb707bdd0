"""A deleted reference image, or a deleted character's voice sample, takes its stored file with
it once the deletion commits (studio.files); this also covers the cascades from a deleted
character or drama."""

from django.db.models.signals import post_delete
from django.dispatch import receiver

from characters.models import Character, ReferenceImage
from studio.files import delete_after_commit


@receiver(post_delete, sender=ReferenceImage, dispatch_uid="characters.reference_files")
def reference_files(sender, instance: ReferenceImage, using: str, **kwargs) -> None:
    delete_after_commit([instance.image], using=using)


@receiver(post_delete, sender=Character, dispatch_uid="characters.voice_sample_files")
def voice_sample_files(sender, instance: Character, using: str, **kwargs) -> None:
    delete_after_commit([instance.voice_sample], using=using)
